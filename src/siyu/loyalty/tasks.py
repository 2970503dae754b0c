"""Scheduled work for `siyu worker`: release points whose return window closed, expire old ones, review tiers."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from siyu.db import utcnow
from siyu.loyalty import service, tiers


@dataclass(frozen=True, slots=True)
class Scheduled:
    released: int
    expired: int
    reviewed: int = 0


def run_scheduled(
    factory: sessionmaker[Session], now: dt.datetime | None = None, batch: int = 500
) -> Scheduled:
    """Release and expire everything due, a batch per transaction; safe to run in several workers at once."""
    now = now or utcnow()
    released = expired = 0
    while True:
        with factory() as session:
            n = service.release_due(session, now=now, limit=batch)
            session.commit()
        released += n
        if n < batch:
            break
    while True:
        with factory() as session:
            n = service.expire_due(session, now=now, limit=batch)
            session.commit()
        expired += n
        if n < batch:
            break
    with factory() as session:
        reviewed = tiers.review_due(session, now=now, limit=100_000)
        session.commit()
    return Scheduled(released, expired, reviewed)
