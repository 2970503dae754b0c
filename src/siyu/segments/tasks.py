"""Scheduled work: recompute the segments that time alone can change, and any not computed yet or failed."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from siyu.schedule import try_lock
from siyu.segments import service
from siyu.segments.models import SegmentStatus


def run_scheduled(factory: sessionmaker[Session]) -> dict[int, service.Change | None]:
    """Recompute each due segment in its own transaction; {segment id: change, None if it failed}."""
    with factory() as session:
        due = [(s.id, s.status) for s in service.due(session)]
    done: dict[int, service.Change | None] = {}
    for segment_id, status in due:
        with factory() as session:
            if not try_lock(session, f"segment:{segment_id}"):
                continue
            segment = service.get(session, segment_id)
            if segment is None:
                continue
            kind = "full" if status is not SegmentStatus.ready else "schedule"
            done[segment_id] = service.refresh(session, segment, kind=kind)
            session.commit()
    return done
