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
from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.config import Settings, get_settings
from siyu.db import is_postgres, utcnow
from siyu.errors import NotFound
from siyu.identity.models import Identifier
from siyu.identity.service import Resolver
from siyu.ingest import reactors
from siyu.ingest.models import DeadLetter, Event, QueuedBatch, QueueStatus
from siyu.ingest.normalize import EventError, NormalizedEvent, normalizer
from siyu.profiles import service as profiles_service
from siyu.profiles.service import ORDER_COMPLETED, ORDER_REFUNDED
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
    ("order_id", "text"),
    ("properties", "json"),
    ("context", "json"),
    ("traits", "json"),
]
_dead = cast(Table, DeadLetter.__table__)
_queue = cast(Table, QueuedBatch.__table__)
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


@dataclass(slots=True)
class CheckedBatch:
    """A batch after validation: the valid events (normalised and as sent) and the refused ones."""

    valid: list[NormalizedEvent]
    result: BatchResult
    dead_rows: list[dict[str, Any]]


def check_batch(
    raw_events: Sequence[Any],
    *,
    source_key_id: int | None,
    batch_context: dict[str, Any] | None,
    received_at: dt.datetime,
    settings: Settings,
) -> CheckedBatch:
    """Validate each event (size, then shape); pure, so the API runs it outside any transaction."""
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
            ev = norm.normalize(raw, received_at, batch_context)
        except EventError as exc:
            result.errors.append(EventRejection(index, message_id, str(exc)))
            dead_rows.append(
                {
                    "received_at": received_at,
                    "source_key_id": source_key_id,
                    "batch_index": index,
                    "message_id": message_id,
                    "reason": str(exc),
                    "payload": encoded.decode(),
                }
            )
            continue
        ev.source_key_id = source_key_id
        valid.append(ev)
    return CheckedBatch(valid, result, dead_rows)


def ingest_batch(
    session: Session,
    raw_events: Sequence[Any],
    *,
    source_key_id: int | None,
    batch_context: dict[str, Any] | None = None,
    received_at: dt.datetime | None = None,
    settings: Settings | None = None,
) -> BatchResult:
    """Validate, de-duplicate, resolve and store raw_events now, in the caller's transaction.

    The path of imports, callbacks and the demo; the HTTP API queues instead (`enqueue_batch`).
    Flushes, never commits.
    """
    settings = settings or get_settings()
    now = received_at or utcnow()
    checked = check_batch(
        raw_events,
        source_key_id=source_key_id,
        batch_context=batch_context,
        received_at=now,
        settings=settings,
    )
    result = checked.result
    _keep_dead_letters(session, checked.dead_rows)
    _lock(session)
    fresh = _deduplicate(session, checked.valid, result)
    if fresh:
        result.profile_ids = store_events(session, fresh, settings=settings, now=now)
    result.accepted = len(fresh)
    return result


def enqueue_batch(
    session: Session, checked: CheckedBatch, *, batch_context: dict[str, Any] | None
) -> BatchResult:
    """Keep the dead letters and queue the new valid events of a checked batch; flushes, never commits.

    `duplicates` counts repeats inside the batch and events already stored; a repeat of an event still
    in the queue is dropped by the processor.
    """
    result = checked.result
    _keep_dead_letters(session, checked.dead_rows)
    fresh = _deduplicate(session, checked.valid, result)
    if fresh:
        first = fresh[0]
        _queue_batch(
            session,
            [ev.raw for ev in fresh],
            received_at=first.received_at,
            source_key_id=first.source_key_id,
            batch_context=batch_context,
        )
    result.accepted = len(fresh)
    return result


def _queue_batch(
    session: Session,
    raw_events: Sequence[dict[str, Any]],
    *,
    received_at: dt.datetime | None,
    source_key_id: int | None = None,
    batch_context: dict[str, Any] | None = None,
) -> None:
    session.execute(
        insert(_queue).values(
            received_at=received_at,
            source_key_id=source_key_id,
            events=orjson.dumps(list(raw_events)).decode(),
            batch_context=orjson.dumps(batch_context).decode() if batch_context else None,
            event_count=len(raw_events),
            status=QueueStatus.pending.value,
            attempts=0,
        )
    )


def enqueue_built(
    session: Session, raw_events: Sequence[dict[str, Any]], *, received_at: dt.datetime
) -> None:
    """Queue events siyu built itself (from WeChat's pushes) as one batch; flushes, never commits.

    They are not checked here: siyu wrote them, and the processor checks every event before storing
    it (one that fails then becomes a dead letter, as it would have here). Repeats are dropped there.
    """
    if raw_events:
        _queue_batch(session, raw_events, received_at=received_at)


@dataclass(slots=True)
class Drained:
    """What one pass over the queue did."""

    batches: int = 0
    events: int = 0
    duplicates: int = 0
    failed: int = 0
    failed_passes: int = 0

    def add(self, other: Drained) -> None:
        """Count other's work into this one."""
        self.batches += other.batches
        self.events += other.events
        self.duplicates += other.duplicates
        self.failed += other.failed
        self.failed_passes += other.failed_passes


def process_queue(
    session: Session,
    *,
    max_events: int | None = None,
    batch_ids: Sequence[int] | None = None,
    settings: Settings | None = None,
) -> Drained:
    """Resolve and store the oldest pending queued batches (up to about max_events events) together.

    Flushes, never commits: the caller commits the events and the queue rows' removal as one unit.
    """
    settings = settings or get_settings()
    budget = max_events or settings.ingest_process_events
    # The sizes first: a queued row holds one API batch (up to 500 events) or a few WeChat pushes, so
    # how many rows make up the budget is known only once their counts are read.
    statement = (
        select(_queue.c.id, _queue.c.event_count)
        .where(_queue.c.status == QueueStatus.pending.value)
        .order_by(_queue.c.id)
        .limit(budget)
    )
    if batch_ids is not None:
        statement = statement.where(_queue.c.id.in_(batch_ids))
    ids: list[int] = []
    total = 0
    for queued_id, count in session.execute(statement):
        if ids and total + count > budget:
            break
        ids.append(queued_id)
        total += count
    drained = Drained()
    if not ids:
        return drained
    rows = (
        select(
            _queue.c.id, _queue.c.received_at, _queue.c.source_key_id, _queue.c.events, _queue.c.batch_context
        )
        .where(bulk.matches(session, _queue.c.id, ids), _queue.c.status == QueueStatus.pending.value)
        .order_by(_queue.c.id)
    )
    if is_postgres(session):
        # Only the rows taken are locked (not every row whose size was read); rows another processor
        # holds are skipped: it is storing them.
        rows = rows.with_for_update(skip_locked=True)
    taken = session.execute(rows).all()
    if not taken:
        return drained
    ids = [row.id for row in taken]
    events: list[NormalizedEvent] = []
    dead_rows: list[dict[str, Any]] = []
    for row in taken:
        # Checked again as the API checked it: only a change of settings since then can refuse an event.
        checked = check_batch(
            orjson.loads(row.events),
            source_key_id=row.source_key_id,
            batch_context=orjson.loads(row.batch_context) if row.batch_context else None,
            received_at=row.received_at,
            settings=settings,
        )
        events += checked.valid
        dead_rows += checked.dead_rows
    _keep_dead_letters(session, dead_rows)
    _lock(session)
    result = BatchResult()
    fresh = _deduplicate(session, events, result)
    if fresh:
        store_events(session, fresh, settings=settings, now=utcnow())
    session.execute(delete(_queue).where(bulk.matches(session, _queue.c.id, ids)))
    drained.batches, drained.events, drained.duplicates = len(taken), len(fresh), result.duplicates
    drained.failed = len(dead_rows)
    return drained


def park_failed(session: Session, batch_id: int, error: str, *, max_attempts: int = 5) -> None:
    """Count a failed attempt at one queued batch; after max_attempts it is split, or parked if alone.

    One bad event must not hold back the valid events it was sent with: a batch that keeps failing is
    split into one queued row per event, each retried on its own; an event that keeps failing alone is
    parked as failed with its error, for an operator to retry or discard (never dropped).
    """
    row = session.execute(
        select(
            _queue.c.attempts,
            _queue.c.event_count,
            _queue.c.events,
            _queue.c.batch_context,
            _queue.c.received_at,
            _queue.c.source_key_id,
        ).where(_queue.c.id == batch_id)
    ).one_or_none()
    if row is None:
        return
    attempts = row.attempts + 1
    if attempts >= max_attempts and row.event_count > 1:
        events = orjson.loads(row.events)
        note = f"split from queued batch {batch_id} after {attempts} failed attempts: {error}"[:2000]
        session.execute(
            insert(_queue),
            [
                {
                    "received_at": row.received_at,
                    "source_key_id": row.source_key_id,
                    "events": orjson.dumps([one]).decode(),
                    "batch_context": row.batch_context,
                    "event_count": 1,
                    "status": QueueStatus.pending.value,
                    "attempts": 0,
                    "last_error": note,
                }
                for one in events
            ],
        )
        session.execute(delete(_queue).where(_queue.c.id == batch_id))
        return
    session.execute(
        update(_queue)
        .where(_queue.c.id == batch_id)
        .values(
            attempts=attempts,
            last_error=error[:2000],
            status=QueueStatus.failed.value if attempts >= max_attempts else _queue.c.status,
        )
    )


def list_failed(session: Session, *, limit: int = 50) -> Sequence[QueuedBatch]:
    """Queued batches parked as failed, newest first."""
    return (
        session.execute(
            select(QueuedBatch)
            .where(QueuedBatch.status == QueueStatus.failed)
            .order_by(QueuedBatch.id.desc())
            .limit(limit)
        )
        .scalars()
        .all()
    )


def _get_failed_or_raise(session: Session, batch_id: int) -> QueuedBatch:
    batch = session.get(QueuedBatch, batch_id)
    if batch is None or batch.status != QueueStatus.failed:
        raise NotFound(f"no failed batch {batch_id}")
    return batch


def retry_failed(session: Session, batch_id: int) -> QueuedBatch:
    """Put a parked batch back in the queue with its attempts reset (after the cause was fixed)."""
    batch = _get_failed_or_raise(session, batch_id)
    batch.status, batch.attempts = QueueStatus.pending, 0
    session.flush()
    return batch


def discard_failed(session: Session, batch_id: int, *, actor: str) -> int:
    """Take a parked batch out of the queue; its events become dead letters with the reason. The count."""
    batch = _get_failed_or_raise(session, batch_id)
    events = orjson.loads(batch.events)
    reason = f"discarded by {actor} after {batch.attempts} failed attempts to store it: {batch.last_error}"
    _keep_dead_letters(
        session,
        [
            {
                "received_at": batch.received_at,
                "source_key_id": batch.source_key_id,
                "batch_index": index,
                "message_id": str(one.get("messageId"))[:255]
                if isinstance(one, dict) and one.get("messageId")
                else None,
                "reason": reason,
                "payload": orjson.dumps(one).decode(),
            }
            for index, one in enumerate(events)
        ],
    )
    session.delete(batch)
    session.flush()
    return len(events)


def pending_batch_ids(session: Session, limit: int) -> list[int]:
    """The ids of the oldest pending queued batches."""
    return list(
        session.execute(
            select(_queue.c.id)
            .where(_queue.c.status == QueueStatus.pending.value)
            .order_by(_queue.c.id)
            .limit(limit)
        ).scalars()
    )


def _keep_dead_letters(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(_dead), rows)


def _lock(session: Session) -> None:
    if is_postgres(session):
        # Batches that create the same new identifier would collide on its unique key and fail each other's
        # retries under load; one transaction-scoped lock makes concurrent batches take turns.
        session.execute(select(func.pg_advisory_xact_lock(INGEST_LOCK_KEY)))


def store_events(
    session: Session, fresh: list[NormalizedEvent], *, settings: Settings, now: dt.datetime
) -> list[int]:
    """Resolve, store and count de-duplicated events, then run the reactors; returns their profile ids."""
    resolution = Resolver(session, settings, now=now).resolve(fresh)
    _cap_refunds(session, fresh)

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
                ev.received_at or now,
                ev.source_key_id,
                ev.amount_fen,
                ev.order_id,
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
                amount_fen=ev.amount_fen,
                context=ev.context,
            )
            for eid, ev, pid in zip(event_ids, fresh, resolution.profile_ids, strict=True)
        ],
    )
    return resolution.profile_ids


def _cap_refunds(session: Session, fresh: list[NormalizedEvent]) -> None:
    """Refunds never take back more than their order brought in: the excess is cut, and noted on the event.

    Checked against the orders siyu has stored (and those earlier in this batch); a refund of an order siyu
    never saw (a marketplace order not imported) is taken as sent.
    """
    refunds: set[str] = {
        ev.order_id for ev in fresh if ev.event == ORDER_REFUNDED and ev.order_id and ev.amount_fen
    }
    if not refunds:
        return
    paid: dict[str, int] = {}
    refunded: dict[str, int] = {}
    for chunk in bulk.chunks(sorted(refunds)):
        for stored_id, name, amount in session.execute(
            select(Event.order_id, Event.event, func.sum(Event.amount_fen))
            .where(Event.order_id.in_(chunk), Event.event.in_((ORDER_COMPLETED, ORDER_REFUNDED)))
            .group_by(Event.order_id, Event.event)
        ):
            (paid if name == ORDER_COMPLETED else refunded)[str(stored_id)] = int(amount or 0)
    for ev in fresh:
        order_id = ev.order_id
        if order_id is None or order_id not in refunds:
            continue
        if ev.event == ORDER_COMPLETED:
            paid[order_id] = paid.get(order_id, 0) + ev.amount_fen
        elif ev.event == ORDER_REFUNDED and order_id in paid:
            left = max(paid[order_id] - refunded.get(order_id, 0), 0)
            if ev.amount_fen > left:
                ev.properties = {**ev.properties, "siyu_refund_capped_from_fen": ev.amount_fen}
                ev.amount_fen = left
            refunded[order_id] = refunded.get(order_id, 0) + ev.amount_fen


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


def enqueue_for_profiles(
    session: Session,
    events: Sequence[tuple[int, dict[str, Any]]],
    *,
    channel: str,
    settings: Settings | None = None,
) -> int:
    """Queue events siyu itself observed (stage changes, segment entries) onto the given profiles' timelines.

    Each event goes through the pipeline on the profile's first identifier, like any other event (and
    so reaches the reactors, journeys among them); a profile without identifiers is skipped. Returns how
    many were queued. Flushes, never commits.
    """
    if not events:
        return 0
    settings = settings or get_settings()
    ids = sorted({pid for pid, _ in events})
    first: dict[int, tuple[str, str]] = {}
    for chunk_start in range(0, len(ids), 10_000):
        chunk = ids[chunk_start : chunk_start + 10_000]
        lowest = (
            select(func.min(Identifier.id))
            .where(bulk.matches(session, Identifier.profile_id, chunk))
            .group_by(Identifier.profile_id)
        )
        rows = session.execute(
            select(Identifier.profile_id, Identifier.type, Identifier.value).where(Identifier.id.in_(lowest))
        )
        for pid, id_type, value in rows:
            first[pid] = (id_type, value)
    raw: list[dict[str, Any]] = []
    for pid, event in events:
        if pid not in first:
            continue
        id_type, value = first[pid]
        context = dict(event.get("context") or {})
        context.setdefault("channel", channel)
        context["externalIds"] = [{"id": value, "type": id_type}]
        raw.append({**event, "context": context})
    queued = 0
    now = utcnow()
    for start in range(0, len(raw), settings.ingest_process_events):
        checked = check_batch(
            raw[start : start + settings.ingest_process_events],
            source_key_id=None,
            batch_context=None,
            received_at=now,
            settings=settings,
        )
        queued += enqueue_batch(session, checked, batch_context=None).accepted
    return queued
