"""Enqueue side effects in the caller's transaction; claim and run them in `siyu worker`."""

from __future__ import annotations

import datetime as dt
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

import structlog
from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from siyu.db import is_postgres, utcnow
from siyu.outbox.models import OutboxMessage, OutboxStatus

log = structlog.get_logger()
Handler = Callable[[Session, dict[str, Any]], None]
BatchHandler = Callable[[Session, list[dict[str, Any]]], None]
FailureHook = Callable[[Session, Exception], None]
# Every topic's handler as a batch handler with its batch size (1 for a plain handler).
_handlers: dict[str, tuple[BatchHandler, int]] = {}
_failure_hooks: list[FailureHook] = []
MAX_ATTEMPTS = 8


def handler(topic: str) -> Callable[[Handler], Handler]:
    """Register the function that performs messages of topic."""

    def register(fn: Handler) -> Handler:
        _handlers[topic] = (lambda session, payloads: fn(session, payloads[0]), 1)
        return fn

    return register


def batch_handler(topic: str, size: int) -> Callable[[BatchHandler], BatchHandler]:
    """Register the function that performs up to size messages of topic together, in one transaction.

    For jobs whose remote API takes many at once (WeChat's user/info/batchget takes 100 followers).
    If a batch fails, its messages are run again one by one, so one bad message fails alone.
    """

    def register(fn: BatchHandler) -> BatchHandler:
        _handlers[topic] = (fn, size)
        return fn

    return register


class Job(NamedTuple):
    """A side effect to enqueue: its topic, payload and idempotency key."""

    topic: str
    payload: dict[str, Any]
    idempotency_key: str


def enqueue(session: Session, topic: str, payload: dict[str, Any], *, idempotency_key: str) -> None:
    """Write an outbox row in the caller's transaction; the same key twice is a no-op."""
    enqueue_many(session, [Job(topic, payload, idempotency_key)])


def enqueue_many(session: Session, jobs: Sequence[Job]) -> None:
    """Write outbox rows in the caller's transaction with one statement; a key already there is a no-op."""
    if not jobs:
        return
    now = utcnow()
    rows = [
        {
            "topic": job.topic,
            "payload": job.payload,
            "idempotency_key": job.idempotency_key,
            "status": OutboxStatus.pending,
            "attempts": 0,
            "available_at": now,
            "created_at": now,
        }
        for job in jobs
    ]
    insert = pg_insert if is_postgres(session) else sqlite_insert
    # The table, not the entity: a plain executemany, without the ORM's bulk-insert bookkeeping; the
    # statement compiles once, whatever the number of rows.
    table = cast(Table, OutboxMessage.__table__)
    session.execute(insert(table).on_conflict_do_nothing(index_elements=["idempotency_key"]), rows)


def claim(session: Session, limit: int) -> list[OutboxMessage]:
    """Pending messages that are due; on PostgreSQL locked with SKIP LOCKED so workers share the queue."""
    statement = (
        select(OutboxMessage)
        .where(OutboxMessage.status == OutboxStatus.pending, OutboxMessage.available_at <= utcnow())
        .order_by(OutboxMessage.id)
        .limit(limit)
    )
    if is_postgres(session):
        statement = statement.with_for_update(skip_locked=True)
    return list(session.execute(statement).scalars())


def on_failure(hook: FailureHook) -> FailureHook:
    """Call hook with a failed job's exception in the transaction that records the failure.

    The job's own transaction is rolled back; a hook keeps what must outlive it (the WeChat call log).
    """
    _failure_hooks.append(hook)
    return hook


def _install_defaults() -> None:
    """Import the domains' task modules, which register their handlers: the one list of job kinds."""
    from siyu.channels import tasks  # noqa: F401
    from siyu.journeys import tasks as journey_tasks  # noqa: F401
    from siyu.segments import wechat_tags  # noqa: F401


def run_once(factory: sessionmaker[Session], limit: int = 100) -> int:
    """Claim and perform up to limit messages, each in its own transaction (batch topics: a batch in one)."""
    _install_defaults()
    with factory() as session:
        claimed = [(m.id, m.topic) for m in claim(session, limit)]
        session.rollback()
    done = 0
    waiting: dict[str, list[int]] = {}
    for message_id, topic in claimed:
        ids = waiting.setdefault(topic, [])
        ids.append(message_id)
        if len(ids) >= (_handlers[topic][1] if topic in _handlers else 1):
            done += _run_batch(factory, topic, waiting.pop(topic))
    for topic, ids in waiting.items():
        done += _run_batch(factory, topic, ids)
    return done


def _run_batch(factory: sessionmaker[Session], topic: str, ids: list[int]) -> int:
    if len(ids) == 1:
        return _run(factory, topic, ids)
    try:
        return _run(factory, topic, ids, raise_errors=True)
    except Exception:  # a failed batch: each message alone, so the one at fault fails alone
        log.warning("outbox.batch_failed", topic=topic, messages=len(ids))
        return sum(_run(factory, topic, [message_id]) for message_id in ids)


def _run(factory: sessionmaker[Session], topic: str, ids: list[int], *, raise_errors: bool = False) -> int:
    """Perform the pending messages among ids (all of topic) in one transaction; how many ran.

    A failure is raised (raise_errors) or recorded on the message (then ids holds one).
    """
    with factory() as session:
        statement = (
            select(OutboxMessage)
            .where(OutboxMessage.id.in_(ids), OutboxMessage.status == OutboxStatus.pending)
            .order_by(OutboxMessage.id)
        )
        if is_postgres(session):
            statement = statement.with_for_update(skip_locked=True)
        messages = list(session.execute(statement).scalars())
        if not messages:
            return 0
        try:
            if topic not in _handlers:
                raise LookupError(f"no handler for topic {topic!r}")
            _handlers[topic][0](session, [dict(m.payload) for m in messages])
            for message in messages:
                message.status = OutboxStatus.done
                message.processed_at = utcnow()
            session.commit()
            return len(messages)
        except Exception as exc:
            session.rollback()
            if raise_errors:
                raise
            _record_failure(session, ids[0], exc)
            for hook in _failure_hooks:
                hook(session, exc)
            session.commit()
            return 0


def _record_failure(session: Session, message_id: int, exc: Exception) -> None:
    attempts = session.execute(
        select(OutboxMessage.attempts).where(OutboxMessage.id == message_id)
    ).scalar_one()
    attempts += 1
    failed = attempts >= MAX_ATTEMPTS
    # Exponential back-off: 2, 4, 8 … seconds, so a remote outage is not hammered.
    session.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message_id)
        .values(
            attempts=attempts,
            status=OutboxStatus.failed if failed else OutboxStatus.pending,
            available_at=utcnow() + dt.timedelta(seconds=2**attempts),
            last_error="".join(traceback.format_exception_only(exc)).strip()[:2000],
        )
    )
    log.warning("outbox.failed", message_id=message_id, attempts=attempts, error=str(exc))
