"""What the ingestion page shows: events per minute and the dead letters."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.db import utcnow
from siyu.ingest.models import DeadLetter, Event, QueuedBatch, QueueStatus


def events_per_minute(
    session: Session, minutes: int = 60, now: dt.datetime | None = None
) -> list[tuple[str, int]]:
    """(minute as HH:MM in UTC, events received) for the last `minutes` minutes, zeros included."""
    now = (now or utcnow()).replace(second=0, microsecond=0)
    start = now - dt.timedelta(minutes=minutes - 1)
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        bucket = func.date_trunc("minute", Event.received_at)
    else:
        bucket = func.strftime("%Y-%m-%d %H:%M", Event.received_at)
    rows = session.execute(
        select(bucket, func.count()).where(Event.received_at >= start).group_by(bucket)
    ).all()
    counts: dict[str, int] = {}
    for b, n in rows:
        key = b.strftime("%Y-%m-%d %H:%M") if isinstance(b, dt.datetime) else str(b)
        counts[key] = n
    series = []
    for i in range(minutes):
        minute = start + dt.timedelta(minutes=i)
        key = minute.strftime("%Y-%m-%d %H:%M")
        series.append((minute.strftime("%H:%M"), counts.get(key, 0)))
    return series


def dead_letters(session: Session, limit: int = 100, *, before_id: int | None = None) -> Sequence[DeadLetter]:
    """The newest dead letters; the next page starts before the last id of this one."""
    statement = select(DeadLetter)
    if before_id is not None:
        statement = statement.where(DeadLetter.id < before_id)
    return session.execute(statement.order_by(DeadLetter.id.desc()).limit(limit)).scalars().all()


def totals(session: Session) -> dict[str, int]:
    """Events stored, dead letters kept, events waiting in the ingest queue and queued batches parked as failed."""
    queued, failed = session.execute(
        select(
            func.coalesce(
                func.sum(QueuedBatch.event_count).filter(QueuedBatch.status == QueueStatus.pending), 0
            ),
            func.count().filter(QueuedBatch.status == QueueStatus.failed),
        )
    ).one()
    return {
        "events": session.execute(select(func.count()).select_from(Event)).scalar_one(),
        "dead_letters": session.execute(select(func.count()).select_from(DeadLetter)).scalar_one(),
        "queued_events": int(queued),
        "failed_batches": int(failed),
    }
