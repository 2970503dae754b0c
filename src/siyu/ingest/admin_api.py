"""Ingestion monitoring API: throughput and dead letters."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from siyu.auth.models import Role
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import Forbidden
from siyu.ingest import stats

router = APIRouter(prefix="/api/v1/ingest", tags=["ingestion"])
MONITOR_ROLES = frozenset({Role.admin, Role.hq, Role.marketer})


class DeadLetterOut(BaseModel):
    id: int
    received_at: dt.datetime
    source_key_id: int | None
    batch_index: int
    message_id: str | None
    reason: str
    payload: str


class StatsOut(BaseModel):
    events: int
    dead_letters: int
    queued_events: int
    failed_batches: int
    per_minute: list[tuple[str, int]]


@router.get("/stats", response_model=StatsOut, summary="Events per minute, totals")
def get_stats(
    principal: ReaderDep, session: SessionDep, minutes: Annotated[int, Query(ge=1, le=1440)] = 60
) -> StatsOut:
    if principal.role not in MONITOR_ROLES:
        raise Forbidden("ingestion monitoring is for admin, hq and marketer")
    return StatsOut(**stats.totals(session), per_minute=stats.events_per_minute(session, minutes))


@router.get("/dead-letters", response_model=list[DeadLetterOut], summary="Events refused, with the reason")
def list_dead_letters(
    principal: ReaderDep, session: SessionDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[DeadLetterOut]:
    if principal.role not in MONITOR_ROLES:
        raise Forbidden("ingestion monitoring is for admin, hq and marketer")
    return [DeadLetterOut.model_validate(d, from_attributes=True) for d in stats.dead_letters(session, limit)]
