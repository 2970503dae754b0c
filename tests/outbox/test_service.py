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
