"""Ingestion monitoring API: throughput and dead letters."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.auth.principal import NAME_MASKED_ROLES
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import Forbidden
from siyu.ingest import stats
from siyu.profiles.masking import mask_raw_payload, mask_text

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
    principal: ReaderDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    reveal: Annotated[bool, Query(description="full phones and emails (admin, hq; audited)")] = False,
) -> list[DeadLetterOut]:
    """The latest refused events, phones and emails masked unless revealed; names masked for marketers."""
    if principal.role not in MONITOR_ROLES:
        raise Forbidden("ingestion monitoring is for admin, hq and marketer")
    letters = stats.dead_letters(session, limit)
    if reveal:
        if not principal.can_reveal():
            raise Forbidden(f"the {principal.role} role may not reveal personal data")
        auth_service.audit(
            session, principal, "dead_letters.reveal", "dead_letter", None, {"ids": [d.id for d in letters]}
        )
    mask_names = principal.role in NAME_MASKED_ROLES
    return [
        DeadLetterOut(
            id=d.id,
            received_at=d.received_at,
            source_key_id=d.source_key_id,
            batch_index=d.batch_index,
            message_id=d.message_id,
            reason=mask_text(d.reason, reveal=reveal, mask_names=mask_names),
            payload=mask_raw_payload(d.payload, reveal=reveal, mask_names=mask_names),
        )
        for d in letters
    ]
