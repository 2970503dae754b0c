"""Taste of Su's welcome journey end to end (domain.md §8, seed 001), from raw Official Account pushes to
messages at the fake WeChat API: Lizzy and Mei follow, enter the Hi-Po segment, get a personalised welcome
and a story on day 2; Mei, a member, buys and leaves converted; Lizzy, who has not joined, is invited to."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from siyu import db
from siyu.ingest import processor
from siyu.ingest.models import Event
from siyu.journeys import engine
from siyu.loyalty import service as loyalty
from siyu.loyalty import vouchers
from siyu.loyalty.models import VoucherKind
from siyu.messaging import sender
from siyu.messaging.models import Message, MessageStatus
from siyu.outbox import service as outbox
from tests import factories
from tests.channels.wechat import OaPusher, oa_event
from tests.factories import event
from tests.journeys.brand import Brand, oa_context, recent


def worker() -> None:
    """What `siyu worker` does between two journey steps: events, jobs, the events the jobs made."""
    for _ in range(3):
        processor.drain()
        outbox.run_once(db.get_sessionmaker())


def sent_to(brand: Brand, openid: str) -> list[str]:
    return [
        b["data"]["keyword1"]["value"]
        for a, b in brand.fake.sent
        if a == "message/template/send" and b["touser"] == openid
    ]


def test_welcome_and_nurture_for_two_new_followers(brand: Brand) -> None:
    s, api = brand.session, brand.api
    headers = factories.auth(api.admin_key)
    client = api.client
    segment = client.post(
        "/api/v1/segments",
        json={
            "name": "Hi-Po young professionals",
            "rule": {"all": [{"stage": "Window"}, {"event": "Official Account Followed", "within_days": 30}]},
        },
        headers=headers,
    )
    assert segment.status_code == 201, segment.text
    vouchers.create_template(
        s, name="20 RMB welcome voucher", kind=VoucherKind.amount_off, value=2000, valid_days=30
    )
    made = client.post(
        "/api/v1/journeys/library/welcome-and-nurture",
        json={
            "name": "Welcome Hi-Po followers",
            "accounts": {"oa": brand.oa.id},
            "segment_id": segment.json()["id"],
        },
        headers=headers,
    )
    assert made.status_code == 201, made.text
    journey_id = made.json()["id"]
    # The library's templates carry a placeholder WeChat template id: publishing works, the brand edits it.
    published = client.post(f"/api/v1/journeys/{journey_id}/publish", json={}, headers=headers)
    assert published.status_code == 200, published.text

    # Mei is a member (she signed up in the Mini Program); Lizzy only follows.
    api.send(event("identify", userId="mei", traits={"name": "Mei Lin"}, context=oa_context("o-mei")))
    loyalty.enrol(s, int(api.lookup("member_id", "mei")["id"]), channel="miniprogram")
    brand.fake.users.update({"o-mei": {"unionid": "u-mei"}, "o-lizzy": {"unionid": "u-lizzy"}})
    pusher = OaPusher(client)
    now = int(dt.datetime.now(dt.UTC).timestamp())
    for openid in ("o-mei", "o-lizzy"):
        assert (
            pusher.push(oa_event("subscribe", openid=openid, create_time=now), mode="aes").text == "success"
        )
    worker()
    lizzy = int(api.lookup("wechat_openid", "o-lizzy")["id"])
    mei = int(api.lookup("wechat_openid", "o-mei")["id"])
    assert api.profile(lizzy)["lifecycle"]["stage"] == "Window"
    enrolled = client.get(f"/api/v1/journeys/{journey_id}/enrolments", headers=headers).json()
    assert sorted(e["profile_id"] for e in enrolled) == sorted([lizzy, mei])

    # Within the hour: the personalised welcome goes out on the Official Account.
    t0 = dt.datetime.now(dt.UTC)
    engine.run_due(s, now=t0)
    sender.run_once(db.get_sessionmaker())
    assert sent_to(brand, "o-lizzy") == ["Welcome"] and sent_to(brand, "o-mei") == ["Welcome"]
    welcome = [b for a, b in brand.fake.sent if a == "message/template/send" and b["touser"] == "o-mei"][0]
    assert welcome["data"]["first"]["value"] == "Mei, welcome to our world"
    assert "/m/click?" in welcome["url"]

    # Day 2: the story. Then Mei buys; she leaves the journey converted at once.
    engine.run_due(s, now=t0 + dt.timedelta(days=1, minutes=1))
    sender.run_once(db.get_sessionmaker(), now=t0 + dt.timedelta(days=1, minutes=1))
    assert sent_to(brand, "o-lizzy") == ["Welcome", "A story for you"]
    api.send(
        recent(
            userId="mei",
            event="Order Completed",
            properties={"order_id": "TOS-1", "total": 1280, "currency": "CNY"},
        )
    )
    # 72 hours after the follow, Lizzy has not bought and is not a member: she is invited to join.
    engine.run_due(s, now=t0 + dt.timedelta(days=3, minutes=2))
    engine.run_due(s, now=t0 + dt.timedelta(days=3, minutes=2))
    sender.run_once(db.get_sessionmaker(), now=t0 + dt.timedelta(days=3, minutes=2))
    assert sent_to(brand, "o-lizzy") == ["Welcome", "A story for you", "Membership"]
    assert sent_to(brand, "o-mei") == ["Welcome", "A story for you"]

    stats = client.get(f"/api/v1/journeys/{journey_id}/stats", headers=headers).json()
    assert (stats["entered"], stats["converted"], stats["completed"]) == (2, 1, 1)
    assert stats["nodes"]["welcome"]["messages"] == {"sent": 2}
    assert stats["nodes"]["member"]["outcomes"] == {"no": 1}
    assert stats["nodes"]["buy"]["goal"] == 1
    s.expire_all()
    statuses = {
        m.profile_id: m.status for m in s.execute(select(Message).where(Message.node == "invite")).scalars()
    }
    assert statuses == {lizzy: MessageStatus.sent}
    # Both timelines show the segment entry that started it.
    assert s.execute(
        select(Event.profile_id).where(Event.event == "Segment Entered").order_by(Event.profile_id)
    ).scalars().all() == sorted([lizzy, mei])
