"""A group of pushes in one transaction: each push still gets its own answer, and only its own effects."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.channels import tasks
from siyu.channels.models import ChannelKind, QrPurpose, WechatQrCode
from siyu.channels.receiver import Push, receive_group
from siyu.config import get_settings
from siyu.db import utcnow
from siyu.ingest.models import DeadLetter, QueuedBatch
from siyu.outbox.models import OutboxMessage
from tests.channels.wechat import OaPusher, WeComPusher, oa_account, oa_event, wecom_account, wecom_change


def oa_push(body: str, *, name: str = "tos-oa", mode: str = "aes", forge: str | None = None) -> Push:
    params, content = OaPusher(name=name).signed(body, mode=mode, forge=forge)
    return Push(ChannelKind.oa, name, params, content, utcnow())


def count(session: Session, model: type, *where: Any) -> int:
    return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def test_each_push_gets_its_own_answer(session: Session) -> None:
    oa_account(session)
    queued_before = count(session, QueuedBatch)
    pushes = [
        oa_push(oa_event("subscribe", "o-new")),
        oa_push(oa_event("CLICK", "o-forger", EventKey="V1001"), forge="msg_signature"),
        oa_push("<xml><FromUserName>o-broken</xml>", mode="plaintext"),
        oa_push(oa_event("subscribe", "o-elsewhere"), name="no-such-account"),
        oa_push(oa_event("CLICK", "o-2", EventKey="V1001_MENU")),
        oa_push("<xml><MsgType>event</MsgType><Event>CLICK</Event></xml>", mode="plaintext"),
    ]

    answers = receive_group(session, pushes, get_settings())

    assert [(a.status, a.body) for a in answers[:1] + answers[4:5]] == [(200, b"success")] * 2
    assert answers[1].status == 403 and b"envelope" in answers[1].body
    assert answers[2].status == 400 and answers[2].body.startswith(b"Official Account tos-oa: malformed XML")
    assert answers[3].status == 404 and b"no-such-account" in answers[3].body
    assert answers[5].status == 400 and b"FromUserName: missing" in answers[5].body
    # The two good pushes, queued together; the unreadable ones kept as dead letters; the forged one nowhere.
    batches = session.execute(select(QueuedBatch).order_by(QueuedBatch.id)).scalars().all()[queued_before:]
    assert len(batches) == 1 and batches[0].event_count == 2
    events = orjson.loads(batches[0].events)
    assert [e["event"] for e in events] == ["Official Account Followed", "Menu Clicked"]
    assert not any("o-forger" in e["messageId"] for e in events)
    reasons = session.execute(select(DeadLetter.reason)).scalars().all()
    assert len(reasons) == 2 and all(r.startswith("Official Account tos-oa") for r in reasons)
    # The follow asks WeChat for the follower's user/info once, with the push.
    jobs = session.execute(select(OutboxMessage.payload).where(OutboxMessage.topic == tasks.OA_USER_INFO))
    assert [job["openid"] for job in jobs.scalars()] == ["o-new"]


def test_lookups_are_shared_by_the_group(session: Session) -> None:
    account = oa_account(session)
    session.add_all(
        [
            WechatQrCode(
                account_id=account.id, scene="store-1", name="Store 1 counter", purpose=QrPurpose.store
            ),
            WechatQrCode(
                account_id=account.id,
                scene="event-9",
                name="Live show",
                purpose=QrPurpose.campaign,
                campaign="live",
            ),
        ]
    )
    session.flush()
    pushes = [
        oa_push(oa_event("subscribe", "o-a", EventKey="qrscene_store-1")),
        oa_push(oa_event("SCAN", "o-b", EventKey="event-9")),
        oa_push(oa_event("SCAN", "o-c", EventKey="store-1")),
        oa_push(oa_event("SCAN", "o-d", EventKey="unknown-scene")),
    ]

    assert [a.status for a in receive_group(session, pushes, get_settings())] == [200] * 4

    batch = session.execute(select(QueuedBatch).order_by(QueuedBatch.id.desc())).scalars().first()
    assert batch is not None
    props = [e["properties"] for e in orjson.loads(batch.events)]
    assert [p.get("qr_code") for p in props] == ["Store 1 counter", "Live show", "Store 1 counter", None]
    assert props[1]["campaign"] == "live" and props[3] == {"scene": "unknown-scene"}


def test_official_account_and_wecom_pushes_in_one_group(session: Session) -> None:
    oa_account(session)
    wecom_account(session, welcome_text="Welcome to Taste of Su")
    params, content = WeComPusher().signed(
        wecom_change("add_external_contact", external="wm-1", user="sa-li", WelcomeCode="WC1")
    )
    pushes = [
        oa_push(oa_event("unsubscribe", "o-1")),
        Push(ChannelKind.wecom, "tos-wecom", params, content, utcnow()),
    ]

    assert [a.status for a in receive_group(session, pushes, get_settings())] == [200, 200]

    batch = session.execute(select(QueuedBatch).order_by(QueuedBatch.id.desc())).scalars().first()
    assert batch is not None
    assert [e["event"] for e in orjson.loads(batch.events)] == [
        "Official Account Unfollowed",
        "WeCom Contact Added",
    ]
    topics = session.execute(select(OutboxMessage.topic).order_by(OutboxMessage.id)).scalars().all()
    assert topics[-2:] == [tasks.WECOM_CONTACT, tasks.WECOM_WELCOME]


def test_a_push_that_cannot_be_opened_spoils_only_itself(session: Session) -> None:
    oa_account(session)
    wecom_account(session)
    params, content = WeComPusher().signed(wecom_change("del_follow_user", external="wm-1"))
    params["timestamp"] = "9" * 400  # no datetime can hold it
    bad_encoding = b'<?xml version="1.0" encoding="bogus"?><xml><FromUserName>o-x</FromUserName></xml>'
    oa_params, _ = OaPusher().signed("<xml/>", mode="plaintext")
    pushes = [
        oa_push(oa_event("unsubscribe", "o-1")),
        Push(ChannelKind.wecom, "tos-wecom", params, content, utcnow()),
        Push(ChannelKind.oa, "tos-oa", oa_params, bad_encoding, utcnow()),
        oa_push(oa_event("unsubscribe", "o-2")),
    ]

    answers = receive_group(session, pushes, get_settings())

    assert [a.status for a in answers] == [200, 403, 400, 200]
    assert b"timestamp" in answers[1].body and b"unreadable XML" in answers[2].body
    batch = session.execute(select(QueuedBatch).order_by(QueuedBatch.id.desc())).scalars().first()
    assert batch is not None and batch.event_count == 2
