"""Scheduled work: re-stage everyone, because time alone lapses customers and moves P(alive)."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from siyu.lifecycle import service
from siyu.schedule import try_lock


def run_scheduled(factory: sessionmaker[Session]) -> service.Run | None:
    """Re-stage every customer in one transaction; None when another worker is doing it."""
    with factory() as session:
        if not try_lock(session, "lifecycle"):
            return None
        run = service.restage(session)
        session.commit()
    return run
