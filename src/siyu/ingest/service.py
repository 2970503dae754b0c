"""The ingest pipeline: every source (HTTP API, WeChat callbacks, file imports) calls `ingest_batch`.

One batch is one transaction: validation, de-duplication by messageId, identity resolution, event
storage, profile counters, reactors and dead letters all commit together or not at all.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
from sqlalchemy import Table, func, insert, select
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.config import Settings, get_settings
from siyu.db import is_postgres, utcnow
from siyu.identity.service import Resolver
from siyu.ingest import reactors
from siyu.ingest.models import DeadLetter, Event
from siyu.ingest.normalize import EventError, NormalizedEvent, Normalizer
from siyu.profiles import service as profiles_service
from siyu.profiles.traits import OrgDirectory

_events = cast(Table, Event.__table__)
EVENT_COLUMNS: bulk.Columns = [
    ("id", "int"),
    ("message_id", "text"),
    ("type", "text"),
    ("event", "text"),
    ("profile_id", "int"),
    ("identifier_id", "int"),
    ("user_id", "text"),
    ("anonymous_id", "text"),
    ("timestamp", "ts"),
    ("received_at", "ts"),
    ("source_key_id", "int"),
    ("amount_fen", "int"),
    ("properties", "json"),
    ("context", "json"),
    ("traits", "json"),
]
_dead = cast(Table, DeadLetter.__table__)
INGEST_LOCK_KEY = 0x53595955  # "SYYU": the advisory lock of the ingest pipeline


@dataclass(slots=True)
class EventRejection:
    """Why the event at index was not accepted."""

    index: int
    message_id: str | None
    reason: str


@dataclass(slots=True)
class BatchResult:
    """What became of a batch: accepted, already seen, refused (with index and reason)."""

    accepted: int = 0
    duplicates: int = 0
    errors: list[EventRejection] = field(default_factory=list)
    profile_ids: list[int] = field(default_factory=list)


def normalizer(settings: Settings | None = None) -> Normalizer:
    """The normalizer configured by settings."""
    settings = settings or get_settings()
    return Normalizer(
        extra_identifier_types=frozenset(settings.extra_identifier_types),
        phone_region=settings.default_phone_region,
    )


def ingest_batch(
    session: Session,
    raw_events: Sequence[Any],
    *,
    source_key_id: int | None,
    batch_context: dict[str, Any] | None = None,
    received_at: dt.datetime | None = None,
    settings: Settings | None = None,
) -> BatchResult:
    """Validate, de-duplicate, resolve and store raw_events; flushes, never commits."""
    settings = settings or get_settings()
    now = received_at or utcnow()
    norm = normalizer(settings)
    result = BatchResult()
    valid: list[NormalizedEvent] = []
    dead_rows: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_events):
        encoded = orjson.dumps(raw)
        message_id = raw.get("messageId") if isinstance(raw, dict) else None
        message_id = str(message_id)[:255] if isinstance(message_id, str | int) else None
        try:
            if len(encoded) > settings.max_event_bytes:
                raise EventError(
                    f"event is {len(encoded)} bytes, over the {settings.max_event_bytes // 1024} KB limit"
                )
            valid.append(norm.normalize(raw, now, batch_context))
        except EventError as exc:
            result.errors.append(EventRejection(index, message_id, str(exc)))
            dead_rows.append(
                {
                    "received_at": now,
                    "source_key_id": source_key_id,
                    "batch_index": index,
                    "message_id": message_id,
                    "reason": str(exc),
                    "payload": encoded.decode(),
                }
            )
    if dead_rows:
        session.execute(insert(_dead), dead_rows)

    if is_postgres(session):
        # Batches that create the same new identifier would collide on its unique key and fail each other's
        # retries under load; one transaction-scoped lock makes concurrent batches take turns.
        session.execute(select(func.pg_advisory_xact_lock(INGEST_LOCK_KEY)))
    fresh = _deduplicate(session, valid, result)
    if not fresh:
        return result

    resolution = Resolver(session, settings, source_key_id=source_key_id, now=now).resolve(fresh)

    event_ids = bulk.allocate_ids(session, "events", len(fresh))
    bulk.insert_rows(
        session,
        "events",
        EVENT_COLUMNS,
        [
            (
                eid,
                ev.message_id,
                ev.type,
                ev.event,
                pid,
                iid,
                ev.user_id,
                ev.anonymous_id,
                ev.timestamp,
                now,
                source_key_id,
                ev.amount_fen,
                ev.properties,
                ev.context,
                ev.traits,
            )
            for eid, ev, pid, iid in zip(
                event_ids, fresh, resolution.profile_ids, resolution.identifier_ids, strict=True
            )
        ],
    )

    # Counters: incremental for the profiles this batch only added to, rebuilt for merged ones.
    merged = resolution.merged_profiles
    touched = {pid for pid in resolution.profile_ids if pid not in merged}
    states = profiles_service.load_states(session, touched)
    with_traits = [ev.traits for ev, pid in zip(fresh, resolution.profile_ids, strict=True) if ev.traits]
    org = OrgDirectory.load(session, with_traits) if with_traits else OrgDirectory({}, {})
    order = sorted(range(len(fresh)), key=lambda i: fresh[i].timestamp)
    for i in order:
        pid = resolution.profile_ids[i]
        state = states.get(pid)
        if state is None:
            continue
        ev = fresh[i]
        profiles_service.add_event(state, ev.event, ev.timestamp, ev.amount_fen)
        if ev.traits:
            state.apply_traits(ev.traits, org)
    profiles_service.save_states(session, states.values(), now)
    if merged:
        profiles_service.recompute(session, merged)

    reactors.dispatch(
        session,
        [
            reactors.StoredEvent(
                id=eid,
                message_id=ev.message_id,
                type=ev.type,
                event=ev.event,
                profile_id=pid,
                timestamp_iso=ev.timestamp.isoformat(),
                properties=ev.properties,
            )
            for eid, ev, pid in zip(event_ids, fresh, resolution.profile_ids, strict=True)
        ],
    )
    result.accepted = len(fresh)
    result.profile_ids = resolution.profile_ids
    return result


def _deduplicate(
    session: Session, events: list[NormalizedEvent], result: BatchResult
) -> list[NormalizedEvent]:
    """events minus those whose messageId was stored before or came earlier in the batch."""
    seen: set[str] = set()
    unique: list[NormalizedEvent] = []
    for ev in events:
        if ev.message_id in seen:
            result.duplicates += 1
            continue
        seen.add(ev.message_id)
        unique.append(ev)
    if not unique:
        return unique
    ids = [ev.message_id for ev in unique]
    stored: set[str] = set()
    for i in range(0, len(ids), 10_000):
        stored.update(
            session.execute(
                select(_events.c.message_id).where(
                    bulk.matches(session, _events.c.message_id, ids[i : i + 10_000])
                )
            ).scalars()
        )
    if stored:
        result.duplicates += sum(1 for ev in unique if ev.message_id in stored)
        unique = [ev for ev in unique if ev.message_id not in stored]
    return unique


def record_dead_letter(
    session: Session,
    payload: str,
    reason: str,
    *,
    source_key_id: int | None,
    received_at: dt.datetime | None = None,
) -> None:
    """Keep a request that could not even be parsed, so it can be inspected and replayed."""
    session.add(
        DeadLetter(
            received_at=received_at or utcnow(),
            source_key_id=source_key_id,
            batch_index=0,
            message_id=None,
            reason=reason,
            payload=payload,
        )
    )
