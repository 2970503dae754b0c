"""The callback lane: pushes that wait for the writer are committed together, each answered after it."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from siyu import lanes
from siyu.app import create_app
from siyu.channels import lane, oa
from siyu.channels.lane import MAX_BODY_BYTES, callback_writer
from siyu.channels.models import ChannelKind
from siyu.channels.receiver import Push
from siyu.db import utcnow
from siyu.ingest.models import QueuedBatch
from siyu.lanes import Answer
from tests.channels.wechat import OaPusher, oa_account, oa_event
from tests.lanes import HeldWriter


def oa_push(body: str) -> Push:
    params, content = OaPusher().signed(body, mode="aes")
    return Push(ChannelKind.oa, "tos-oa", params, content, utcnow())


def queued(session: Session) -> list[QueuedBatch]:
    session.expire_all()
    return list(session.execute(select(QueuedBatch).order_by(QueuedBatch.id)).scalars())


def test_waiting_pushes_share_one_transaction(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    oa_account(session)
    held = HeldWriter(monkeypatch, callback_writer())
    rest = [oa_push(oa_event("CLICK", f"o-{i}", EventKey="V1001_MENU")) for i in range(20)]

    first, answers = held.answer(oa_push(oa_event("subscribe", "o-first")), rest)

    assert first.status == 200 and [a.status for a in answers] == [200] * 20
    assert held.transactions == 2  # the first push alone, then the twenty that waited for it
    batches = queued(session)
    assert [b.event_count for b in batches] == [1, 20]
    assert sorted(e["context"]["externalIds"][0]["id"] for e in orjson.loads(batches[1].events)) == sorted(
        f"o-{i}" for i in range(20)
    )


def test_a_push_that_breaks_its_group_fails_alone(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    oa_account(session)
    real_accept = oa.accept

    def accept(session: Session, account: Any, msg: dict[str, Any], *args: Any) -> Any:
        if msg["FromUserName"] == "o-poison":
            session.execute(text("SELECT * FROM no_such_table"))  # the database refuses this push
        return real_accept(session, account, msg, *args)

    monkeypatch.setattr(oa, "accept", accept)
    held = HeldWriter(monkeypatch, callback_writer())
    rest = [oa_push(oa_event("unsubscribe", openid)) for openid in ("o-1", "o-poison", "o-2")]

    _, answers = held.answer(oa_push(oa_event("subscribe", "o-first")), rest)

    assert [a.status for a in answers] == [200, 500, 200]
    # The group failed as a whole, then each push was written in a transaction of its own.
    assert held.transactions == 1 + 1 + 3
    openids = [e["context"]["externalIds"][0]["id"] for b in queued(session) for e in orjson.loads(b.events)]
    assert openids == ["o-first", "o-1", "o-2"]


def test_oversized_body_is_refused_unread(client: TestClient, session: Session) -> None:
    oa_account(session)
    params, _ = OaPusher().signed(oa_event("subscribe", "o-big"), mode="aes")

    r = client.post(
        "/wechat/oa/tos-oa/callback", params=params, content=b"<xml>" + b" " * MAX_BODY_BYTES + b"</xml>"
    )

    assert r.status_code == 413
    assert session.execute(select(func.count()).select_from(QueuedBatch)).scalar_one() == 0


def test_other_requests_pass_through(client: TestClient, session: Session) -> None:
    oa_account(session)
    # GET is URL verification (FastAPI's route); a POST elsewhere is the API's.
    assert client.get("/wechat/oa/tos-oa/callback", params={"signature": "x"}).status_code == 403
    assert client.post("/wechat/oa/tos-oa/callback/extra").status_code == 404
    assert client.get("/healthz").text == "ok"


def test_the_writer_outlives_a_failure_and_a_closed_loop(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    oa_account(session)
    writer = callback_writer()
    real_write = writer._write
    failures = iter([RuntimeError("the writer's own bug")])

    def write(group: list[Any], held: Any) -> list[Answer]:
        for exc in failures:
            raise exc
        return real_write(group, held)

    monkeypatch.setattr(writer, "_write", write)
    try:
        # A bug in the writer answers 500 (WeChat retries) instead of leaving the push waiting forever.
        assert asyncio.run(writer.submit(oa_push(oa_event("subscribe", "o-1")))).status == 500
        # The event loop of that push is closed now; the thread still answers the next one.
        assert asyncio.run(writer.submit(oa_push(oa_event("subscribe", "o-2")))).status == 200
        loop = asyncio.new_event_loop()
        waiting = lanes._Waiting(oa_push("<xml/>"), loop, loop.create_future())
        loop.close()
        lanes._answer([waiting], [lane.FAILED])  # does not raise: nobody waits on a closed loop
    finally:
        writer.stop()


def test_callbacks_under_a_root_path(session: Session) -> None:
    oa_account(session)
    params, content = OaPusher().signed(oa_event("subscribe", "o-root"), mode="aes")
    # Behind a proxy that mounts siyu at /crm, uvicorn puts the prefix in both path and root_path.
    with TestClient(create_app(), root_path="/crm") as client:
        r = client.post("/crm/wechat/oa/tos-oa/callback", params=params, content=content)
    assert (r.status_code, r.text) == (200, "success")
