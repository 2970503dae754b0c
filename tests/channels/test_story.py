"""Nancy and Lizzy (domain.md §8) replayed from raw channel traffic: WeCom and Official Account pushes,
Mini Program calls, a Segment event from the Mini Program, a POS export row and a template message,
with the local fake WeChat API answering the enrichment calls. One profile each, attributed to the
store and the advisor, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu import db
from siyu.auth.models import Role
from siyu.channels import service
from siyu.channels.fake import FakeState
from siyu.channels.imports import mappings
from siyu.channels.imports.service import run_import
from siyu.channels.models import ChannelAccount, ChannelKind, ContactWay, QrPurpose, WechatQrCode
from siyu.channels.outbound.oa import OaClient
from siyu.identity.models import Identifier
from siyu.ingest import processor
from siyu.ingest.models import Event
from siyu.outbox import service as outbox
from siyu.profiles import service as profiles_service
from siyu.profiles.models import Profile
from tests import factories
from tests.channels.wechat import (
    MP_APP_ID,
    OaPusher,
    WeComPusher,
    oa_account,
    oa_event,
    wecom_account,
    wecom_change,
)


def worker() -> None:
    """One pass of `siyu worker`: queued events, then jobs, then what the jobs ingested."""
    processor.drain()
    outbox.run_once(db.get_sessionmaker())
    processor.drain()


def owner_of(session: Session, id_type: str, value: str) -> Profile:
    session.expire_all()
    return session.execute(
        select(Profile)
        .join(Identifier, Identifier.profile_id == Profile.id)
        .where(Identifier.type == id_type, Identifier.value == value)
    ).scalar_one()


def test_nancy_and_lizzy_from_raw_channel_traffic(
    fake: FakeState, client: TestClient, session: Session, tmp_path: Path
) -> None:
    # The brand: the Jing'an store, its fashion advisor on WeCom, the OA, WeCom and the Mini Program.
    store = factories.store(session, code="SH-JA")
    advisor = factories.user(
        session, Role.sales_associate, wecom_userid="fa.chen", store_id=store.id, display_name="Chen Jing"
    )
    oa = oa_account(session)
    corp = wecom_account(session, welcome_text="Welcome to Taste of Su, I'm Chen Jing.")
    service.create_account(
        session, kind=ChannelKind.miniprogram, name="tos-mp", app_id=MP_APP_ID, secret="mp-secret"
    )
    qr = WechatQrCode(
        account_id=oa.id,
        scene="store-sh-ja",
        name="Jing'an counter",
        purpose=QrPurpose.store,
        store_id=store.id,
        url="http://weixin.qq.com/q/x",
    )
    way = ContactWay(
        account_id=corp.id, state="sh-ja-chen", name="Chen Jing card", user_id=advisor.id, store_id=store.id
    )
    session.add_all([qr, way])
    session.flush()
    write_key = factories.api_key(session, Role.source)

    # What WeChat knows about the two women (the fake's side of the enrichment calls).
    fake.users["o-oa-nancy"] = {
        "unionid": "u-nancy",
        "subscribe_scene": "ADD_SCENE_QR_CODE",
        "subscribe_time": 1761274800,
    }
    fake.users["o-oa-lizzy"] = {
        "unionid": "u-lizzy",
        "subscribe_scene": "ADD_SCENE_QR_CODE",
        "subscribe_time": 1761275400,
    }
    fake.contacts["wm-nancy"] = {
        "external_contact": {
            "external_userid": "wm-nancy",
            "name": "Nancy",
            "type": 1,
            "gender": 2,
            "unionid": "u-nancy",
        },
        "follow_user": [{"userid": "fa.chen", "createtime": 1761274500, "add_way": 1, "state": "sh-ja-chen"}],
    }
    fake.welcome_codes.add("WC-NANCY")
    fake.login_codes["code-nancy"] = {"openid": "o-mp-nancy", "unionid": "u-nancy"}
    fake.phone_codes["phone-nancy"] = "13800138000"

    # In the store: Nancy adds the advisor on WeCom with his 「联系我」 card, then both scan the store's QR.
    wecom = WeComPusher(client)
    assert (
        wecom.push(
            wecom_change(
                "add_external_contact",
                "wm-nancy",
                user="fa.chen",
                create_time=1761274500,
                State="sh-ja-chen",
                WelcomeCode="WC-NANCY",
            )
        ).text
        == "success"
    )
    pusher = OaPusher(client)
    assert (
        pusher.push(
            oa_event(
                "subscribe",
                openid="o-oa-nancy",
                create_time=1761274800,
                EventKey="qrscene_store-sh-ja",
                Ticket="T",
            ),
            mode="aes",
        ).text
        == "success"
    )
    assert (
        pusher.push(
            oa_event(
                "subscribe",
                openid="o-oa-lizzy",
                create_time=1761275400,
                EventKey="qrscene_store-sh-ja",
                Ticket="T",
            ),
            mode="aes",
        ).text
        == "success"
    )
    worker()

    # Nancy joins in the Mini Program: sign-in, phone authorisation, and the app's own Segment event.
    session_token = client.post("/mp/v1/session", json={"code": "code-nancy"}, auth=(write_key, "")).json()[
        "session"
    ]
    phone = client.post(
        "/mp/v1/phone", json={"session": session_token, "code": "phone-nancy"}, auth=(write_key, "")
    )
    assert phone.json()["phone"] == "+86138****8000"
    joined = {
        "type": "track",
        "event": "Membership Joined",
        "userId": "M-NANCY",
        "messageId": "mp-join-nancy",
        "timestamp": "2026-10-24T11:25:00+08:00",
        "properties": {"tier": "Jade", "welcome_benefit": "10% off"},
        "context": {
            "externalIds": [{"id": "o-mp-nancy", "type": "wechat_openid"}],
            "traits": {"phone": "13800138000"},
        },
    }
    assert client.post("/v1/batch", json={"batch": [joined]}, auth=(write_key, "")).json()["accepted"] == 1
    worker()

    # She buys at the till with 10% off: the POS export row.
    pos = tmp_path / "pos-2026-10-24.csv"
    with pos.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "order_id",
                "member_card",
                "member_id",
                "phone",
                "amount",
                "time",
                "store",
                "associate",
                "status",
                "skus",
            ]
        )
        writer.writerow(
            [
                "JA-20261024-0007",
                "",
                "M-NANCY",
                "13800138000",
                "2152.80",
                "2026-10-24 11:40:00",
                "SH-JA",
                "fa.chen",
                "paid",
                "QP-SU-018",
            ]
        )
    assert (
        run_import(pos, kind="orders", source="pos", mapping=mappings.load("orders", "pos")).rows_imported
        == 1
    )

    # The thank-you template message, and WeChat's delivery receipt.
    with OaClient(session, session.get(ChannelAccount, oa.id)) as oa_client:  # type: ignore[arg-type]
        sent = oa_client.send_template(
            "o-oa-nancy",
            "TPL-THANKS",
            {"first": "Thank you, Nancy"},
            idempotency_key="thanks:JA-20261024-0007",
        )
    pusher.push(
        oa_event(
            "TEMPLATESENDJOBFINISH",
            openid="o-oa-nancy",
            create_time=1761277300,
            MsgID=sent["msgid"],
            Status="success",
        )
    )
    worker()

    nancy = owner_of(session, "member_id", "M-NANCY")
    held = {(i.type, i.value) for i in profiles_service.identities(session, nancy.id)}
    assert held >= {
        ("wechat_openid", "o-oa-nancy"),
        ("wechat_openid", "o-mp-nancy"),
        ("wechat_unionid", "u-nancy"),
        ("wecom_external_userid", "wm-nancy"),
        ("phone", "+8613800138000"),
        ("member_id", "M-NANCY"),
    }
    assert (nancy.owner_user_id, nancy.store_id) == (advisor.id, store.id)
    assert (nancy.orders_count, nancy.revenue_fen) == (1, 215280)
    names = [
        e.event
        for e in session.execute(
            select(Event).where(Event.profile_id == nancy.id).order_by(Event.timestamp)
        ).scalars()
    ]
    for expected in (
        "WeCom Contact Added",
        "Official Account Followed",
        "Phone Number Authorized",
        "Membership Joined",
        "Order Completed",
        "Template Message Sent",
    ):
        assert expected in names, (expected, names)
    assert [c.purpose for c in profiles_service.consents(session, nancy.id)] == ["phone_number"]
    assert nancy.traits["oa_follow_source"] == "qr_code"

    lizzy = owner_of(session, "wechat_openid", "o-oa-lizzy")
    assert lizzy.id != nancy.id and lizzy.orders_count == 0
    follow = session.execute(
        select(Event).where(Event.profile_id == lizzy.id, Event.event == "Official Account Followed")
    ).scalar_one()
    assert follow.properties["store"] == "SH-JA" and follow.properties["qr_code_id"] == qr.id
    session.refresh(qr)
    session.refresh(way)
    assert (qr.scans, qr.follows, way.adds) == (2, 2, 1)
    assert [api for api, _ in fake.sent] == ["externalcontact/send_welcome_msg", "message/template/send"]
