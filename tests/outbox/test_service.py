"""The outbox: enqueued in the caller's transaction, idempotent, retried with back-off."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu import db
from siyu.outbox import service as outbox
from siyu.outbox.models import OutboxMessage, OutboxStatus


def test_enqueue_is_idempotent_and_worker_runs_it(session: Session) -> None:
    seen: list[dict[str, Any]] = []
    outbox.handler("test.ping")(lambda _s, payload: seen.append(payload))
    outbox.enqueue(session, "test.ping", {"n": 1}, idempotency_key="ping-1")
    outbox.enqueue(session, "test.ping", {"n": 2}, idempotency_key="ping-1")
    session.commit()
    assert outbox.run_once(db.get_sessionmaker()) == 1
    assert seen == [{"n": 1}]
    message = session.execute(select(OutboxMessage)).scalar_one()
    session.refresh(message)
    assert message.status == OutboxStatus.done
    assert outbox.run_once(db.get_sessionmaker()) == 0


def test_failure_is_retried_later(session: Session) -> None:
    def fail(_s: Session, _p: dict[str, Any]) -> None:
        raise ConnectionError("api.weixin.qq.com unreachable")

    outbox.handler("test.fail")(fail)
    outbox.enqueue(session, "test.fail", {}, idempotency_key="fail-1")
    session.commit()
    assert outbox.run_once(db.get_sessionmaker()) == 0
    message = session.execute(select(OutboxMessage)).scalar_one()
    session.refresh(message)
    assert (message.status, message.attempts) == (OutboxStatus.pending, 1)
    assert "unreachable" in (message.last_error or "")
    assert message.available_at > message.created_at


def test_batch_topic_runs_its_messages_together(session: Session) -> None:
    batches: list[list[int]] = []
    outbox.batch_handler("test.batch", size=3)(
        lambda _s, payloads: batches.append([p["n"] for p in payloads])
    )
    for n in range(7):
        outbox.enqueue(session, "test.batch", {"n": n}, idempotency_key=f"batch-{n}")
    session.commit()

    assert outbox.run_once(db.get_sessionmaker()) == 7

    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
    statuses = session.execute(select(OutboxMessage.status)).scalars().all()
    assert statuses == [OutboxStatus.done] * 7


def test_a_failing_batch_is_retried_one_by_one(session: Session) -> None:
    ran: list[list[int]] = []

    def handle(_s: Session, payloads: list[dict[str, Any]]) -> None:
        if any(p["n"] == 2 for p in payloads):
            raise ValueError("message 2 is malformed")
        ran.append([p["n"] for p in payloads])

    outbox.batch_handler("test.batch-fail", size=10)(handle)
    for n in range(4):
        outbox.enqueue(session, "test.batch-fail", {"n": n}, idempotency_key=f"batch-fail-{n}")
    session.commit()

    assert outbox.run_once(db.get_sessionmaker()) == 3

    assert ran == [[0], [1], [3]]
    session.expire_all()
    rows = session.execute(select(OutboxMessage).order_by(OutboxMessage.id)).scalars().all()
    assert [(m.status, m.attempts) for m in rows] == [
        (OutboxStatus.done, 0),
        (OutboxStatus.done, 0),
        (OutboxStatus.pending, 1),
        (OutboxStatus.done, 0),
    ]
    assert "message 2 is malformed" in (rows[2].last_error or "")
