"""Ingestion monitoring API: throughput, dead letters, and batches that could not be stored (retry, discard)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.auth.principal import NAME_MASKED_ROLES, Principal
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import Forbidden
from siyu.ingest import service as ingest_service
from siyu.ingest import stats
from siyu.profiles.masking import mask_raw_payload, mask_text

router = APIRouter(prefix="/api/v1/ingest", tags=["ingestion"])
MONITOR_ROLES = frozenset({Role.admin, Role.hq, Role.marketer})
FAILED_BATCH_ROLES = frozenset({Role.admin, Role.hq})


class DeadLetterOut(BaseModel):
    id: int
    received_at: dt.datetime
    source_key_id: int | None
    batch_index: int
    message_id: str | None
    reason: str
    payload: str


class FailedBatchOut(BaseModel):
    id: int
    received_at: dt.datetime
    source_key_id: int | None
    event_count: int
    attempts: int
    last_error: str | None
    events: str


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
    before_id: Annotated[
        int | None, Query(description="the next page: the last id of the previous one")
    ] = None,
    reveal: Annotated[bool, Query(description="full phones and emails (admin, hq; audited)")] = False,
) -> list[DeadLetterOut]:
    """The latest refused events, phones and emails masked unless revealed; names masked for marketers."""
    if principal.role not in MONITOR_ROLES:
        raise Forbidden("ingestion monitoring is for admin, hq and marketer")
    letters = stats.dead_letters(session, limit, before_id=before_id)
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


@router.get(
    "/failed-batches",
    response_model=list[FailedBatchOut],
    summary="Accepted batches that could not be stored",
)
def list_failed_batches(
    principal: ReaderDep, session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[FailedBatchOut]:
    """Batches parked after repeated failures, newest first, with the error; events masked as dead letters are."""
    if principal.role not in MONITOR_ROLES:
        raise Forbidden("ingestion monitoring is for admin, hq and marketer")
    mask_names = principal.role in NAME_MASKED_ROLES
    return [
        FailedBatchOut(
            id=b.id,
            received_at=b.received_at,
            source_key_id=b.source_key_id,
            event_count=b.event_count,
            attempts=b.attempts,
            last_error=mask_text(b.last_error, reveal=False, mask_names=mask_names) if b.last_error else None,
            events=mask_raw_payload(b.events, reveal=False, mask_names=mask_names),
        )
        for b in ingest_service.list_failed(session, limit=limit)
    ]


def _require_operator(principal: Principal) -> None:
    if principal.role not in FAILED_BATCH_ROLES:
        raise Forbidden("retrying or discarding a failed batch is for admin and hq")


@router.post("/failed-batches/{batch_id}/retry", status_code=202, summary="Queue a failed batch again")
def retry_failed_batch(batch_id: int, principal: ReaderDep, session: SessionDep) -> dict[str, int]:
    """Back in the queue with its attempts reset, for when the cause was fixed; 404 unless it is failed."""
    _require_operator(principal)
    batch = ingest_service.retry_failed(session, batch_id)
    auth_service.audit(session, principal, "ingest.failed.retry", "queued_batch", batch.id, {})
    return {"id": batch.id, "event_count": batch.event_count}


@router.post(
    "/failed-batches/{batch_id}/discard", summary="Give up on a failed batch: its events become dead letters"
)
def discard_failed_batch(batch_id: int, principal: ReaderDep, session: SessionDep) -> dict[str, int]:
    """Its events are kept as dead letters, with the error and who discarded them; 404 unless it is failed."""
    _require_operator(principal)
    count = ingest_service.discard_failed(session, batch_id, actor=principal.actor)
    auth_service.audit(
        session, principal, "ingest.failed.discard", "queued_batch", batch_id, {"events": count}
    )
    return {"id": batch_id, "dead_letters": count}
