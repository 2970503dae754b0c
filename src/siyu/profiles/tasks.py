"""Scheduled job of the profiles domain: logs that hold personal data are kept no longer than needed (PIPL)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from siyu.config import get_settings
from siyu.db import utcnow
from siyu.profiles import privacy
from siyu.schedule import try_lock


def run_scheduled(factory: sessionmaker[Session]) -> dict[str, int]:
    """Delete one batch of each log older than SIYU_LOG_RETENTION_DAYS; {log: rows deleted}."""
    with factory() as session:
        if not try_lock(session, "retention"):
            return {}
        done = privacy.purge_old_logs(session, now=utcnow(), days=get_settings().log_retention_days)
        session.commit()
    return done
