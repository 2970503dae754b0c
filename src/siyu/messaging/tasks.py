"""Worker jobs of messaging: send what is queued, learn which associate-confirmed messages went out."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from siyu.config import Settings, get_settings
from siyu.messaging import reactions, sender


def run_sender(
    factory: sessionmaker[Session], settings: Settings | None = None, *, max_batches: int = 100
) -> int:
    """Send due messages batch by batch; returns how many were handed to a channel."""
    settings = settings or get_settings()
    total = 0
    for _ in range(max_batches):
        run = sender.run_once(factory, settings)
        total += run.claimed
        if run.claimed == 0:
            break
    return total


def run_scheduled(factory: sessionmaker[Session]) -> int:
    """The scheduler's job: WeCom confirmations of company messages, then the mass-push job reports."""
    changed = reactions.poll_wecom_confirmations(factory)
    with factory() as session:
        changed += reactions.apply_mass_receipts(session)
        session.commit()
    return changed
