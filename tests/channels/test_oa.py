"""The Official Account callback, end to end: WeChat's documented pushes become events on the follower."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.channels.models import MassSendReceipt, MenuCategory, OaMenuItem, QrPurpose, WechatQrCode
from siyu.identity.models import Identifier
from siyu.ingest import processor
from siyu.ingest.models import DeadLetter, Event, QueuedBatch
from tests import factories
from tests.channels.wechat import OA_TOKEN, OaPusher, oa_account, oa_event
from tests.helpers import SYSTEM_EVENTS

TEXT = (
    "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[fromUser]]></FromUserName>"
    "<CreateTime>1348831860</CreateTime><MsgType><![CDATA[text]]></MsgType>"
    "<Content><![CDATA[this is a test]]></Content><MsgId>1234567890123456</MsgId></xml>"
)


@pytest.fixture
def pusher(client: TestClient, session: Session) -> OaPusher:
    oa_account(session)
    return OaPusher(client)


def count(session: Session, model: type, *where: Any) -> int:
    return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def stored(session: Session, openid: str) -> list[Event]:
    """The events stored for the profile that holds openid, oldest first."""
    processor.drain()
    session.expire_all()
    profile_id = session.execute(
        select(Event.profile_id)
        .join(Identifier, Identifier.id == Event.identifier_id)
        .where(Identifier.type == "wechat_openid", Identifier.value == openid)
    ).scalar()
    return list(
        session.execute(
            select(Event)
            .where(Event.profile_id == profile_id, Event.event.not_in(SYSTEM_EVENTS))
            .order_by(Event.id)  # in the order pushed: the samples' CreateTimes are years apart
        ).scalars()
    )


class TestUrlVerification:
    def test_official_example(self, client: TestClient, session: Session) -> None:
        oa_account(session)
        params = {
            "signature": "f464b24fc39322e44b38aa78f5edd27bd1441696",
            "echostr": "4375120948345356249",
            "timestamp": "1714036504",
            "nonce": "1514711492",
        }
        r = client.get("/wechat/oa/tos-oa/callback", params=params)
        assert r.status_code == 200
        assert r.text == "4375120948345356249"

    def test_wrong_signature(self, client: TestClient, session: Session) -> None:
        oa_account(session)
        params = {"signature": "0" * 40, "echostr": "1", "timestamp": "1714036504", "nonce": "1514711492"}
        assert client.get("/wechat/oa/tos-oa/callback", params=params).status_code == 403

    def test_unknown_account(self, client: TestClient, session: Session) -> None:
        params = {"signature": "0" * 40, "echostr": "1", "timestamp": "1", "nonce": "1"}
        assert client.get("/wechat/oa/nobody/callback", params=params).status_code == 404


class TestPushes:
    def test_official_signed_post_example(
        self, client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """WeChat's own signed POST (2024): accepted once the freshness window is widened to cover it."""
        from siyu.config import get_settings

        monkeypatch.setenv("SIYU_WECHAT_CALLBACK_MAX_AGE_SECONDS", str(10 * 365 * 86400))
        get_settings.cache_clear()
        oa_account(session)
        params = {
            "signature": "899cf89e464efb63f54ddac96b0a0a235f53aa78",
            "timestamp": "1714037059",
            "nonce": "486452656",
        }
        r = client.post("/wechat/oa/tos-oa/callback", params=params, content=TEXT.encode())
        assert (r.status_code, r.text) == (200, "success")
        [ev] = stored(session, "fromUser")
        assert ev.event == "Official Account Message Received"
        assert ev.properties == {
            "msg_type": "text",
            "msg_id": "1234567890123456",
            "content": "this is a test",
        }
        assert ev.timestamp.isoformat() == "2012-09-28T11:31:00+00:00"
        assert ev.context["wechat"]["account"] == "tos-oa"

    @pytest.mark.parametrize("mode", ["plaintext", "compat", "aes"])
    def test_every_documented_push_in_every_mode(self, pusher: OaPusher, session: Session, mode: str) -> None:
        pushes = [
            oa_event("subscribe"),
            oa_event("subscribe", EventKey="qrscene_123123", Ticket="TICKET", create_time=123456790),
            oa_event("SCAN", EventKey="SCENE_VALUE", Ticket="TICKET", create_time=123456791),
            oa_event("LOCATION", create_time=123456792).replace(
                "</xml>",
                "<Latitude>23.137466</Latitude><Longitude>113.352425</Longitude><Precision>119.385040</Precision></xml>",
            ),
            oa_event("CLICK", EventKey="EVENTKEY", create_time=123456793),
            oa_event("VIEW", EventKey="https://shop.example.com/qipao", create_time=123456794),
            oa_event(
                "TEMPLATESENDJOBFINISH", create_time=123456795, MsgID=200163836, Status="failed:user block"
            ),
            oa_event("unsubscribe", create_time=123456796),
            TEXT.replace("fromUser", "FromUser"),
        ]
        for body in pushes:
            r = pusher.push(body, mode=mode)
            assert (r.status_code, r.text) == (200, "success"), r.text
        events = stored(session, "FromUser")
        summary = [(e.event, {k: v for k, v in e.properties.items() if k != "content"}) for e in events]
        assert summary == [
            ("Official Account Followed", {"source": "other"}),
            ("Official Account Followed", {"source": "qr_code", "scene": "123123"}),
            ("QR Code Scanned", {"scene": "SCENE_VALUE"}),
            ("Location Reported", {"latitude": 23.137466, "longitude": 113.352425, "precision": 119.38504}),
            ("Menu Clicked", {"action": "click", "menu_key": "EVENTKEY"}),
            ("Menu Clicked", {"action": "view", "url": "https://shop.example.com/qipao"}),
            ("Template Message Sent", {"status": "failed:user block", "wechat_msg_id": "200163836"}),
            ("Official Account Unfollowed", {}),
            ("Official Account Message Received", {"msg_type": "text", "msg_id": "1234567890123456"}),  # 2012
        ]

    def test_mass_send_report_is_an_account_fact(self, pusher: OaPusher, session: Session) -> None:
        body = oa_event(
            "MASSSENDJOBFINISH",
            openid="mphelper",
            create_time=1394524295,
            MsgID=1988,
            Status="sendsuccess",
            TotalCount=100,
            FilterCount=80,
            SentCount=75,
            ErrorCount=5,
        )
        for _ in range(2):
            assert pusher.push(body, mode="aes").text == "success"
        processor.drain()
        receipt = session.execute(select(MassSendReceipt)).scalar_one()
        assert (
            receipt.msg_id,
            receipt.status,
            receipt.total_count,
            receipt.filter_count,
            receipt.sent_count,
            receipt.error_count,
        ) == ("1988", "sendsuccess", 100, 80, 75, 5)
        assert count(session, Event) == 0

    def test_unknown_event_is_kept_on_the_timeline(self, pusher: OaPusher, session: Session) -> None:
        pusher.push(oa_event("view_miniprogram", EventKey="pages/index", MenuId="208396993"))
        [ev] = stored(session, "FromUser")
        assert ev.event == "Official Account Event Received"
        assert ev.properties == {"wechat_event": "view_miniprogram", "event_key": "pages/index"}
        assert ev.context["wechat"]["push"]["MenuId"] == "208396993"

    def test_retries_store_the_event_once(self, pusher: OaPusher, session: Session) -> None:
        body = oa_event("subscribe", openid="o-nancy")
        for mode in ("plaintext", "aes", "aes"):  # WeChat's three tries, each freshly signed
            assert pusher.push(body, mode=mode).text == "success"
        assert len(stored(session, "o-nancy")) == 1
        # …and a later retry of a stored event changes nothing either.
        assert pusher.push(body).text == "success"
        processor.drain()
        assert count(session, Event) == 1

    def test_answered_before_processing_and_kept_until_then(self, pusher: OaPusher, session: Session) -> None:
        """`success` goes back once the push is queued durably; the ingest processor stores it after."""
        assert pusher.push(oa_event("subscribe", openid="o-lizzy")).text == "success"
        assert count(session, QueuedBatch) == 1 and count(session, Event) == 0
        assert [e.event for e in stored(session, "o-lizzy")] == ["Official Account Followed"]
        assert count(session, QueuedBatch) == 0


class TestRefusals:
    @pytest.mark.parametrize(
        ("mode", "forge"), [("plaintext", "signature"), ("aes", "signature"), ("aes", "msg_signature")]
    )
    def test_forged_signature_is_403_and_nothing_is_stored(
        self, pusher: OaPusher, session: Session, mode: str, forge: str
    ) -> None:
        r = pusher.push(oa_event("subscribe"), mode=mode, forge=forge)
        assert r.status_code == 403
        processor.drain()
        assert count(session, Event) == count(session, QueuedBatch) == count(session, DeadLetter) == 0

    def test_stale_timestamp_is_403(self, pusher: OaPusher, session: Session) -> None:
        import time

        r = pusher.push(oa_event("subscribe"), timestamp=int(time.time()) - 3600)
        assert r.status_code == 403
        assert "stale timestamp" in r.text
        assert count(session, QueuedBatch) == 0

    def test_envelope_for_another_app_is_403(self, client: TestClient, session: Session) -> None:
        oa_account(session)
        r = OaPusher(client, app_id="wx-other-app").push(oa_event("subscribe"), mode="aes")
        assert r.status_code == 403
        assert "made for 'wx-other-app'" in r.text

    def test_wrong_token_is_403(self, client: TestClient, session: Session) -> None:
        oa_account(session)
        assert OaPusher(client, token=OA_TOKEN + "x").push(oa_event("subscribe")).status_code == 403

    @pytest.mark.parametrize(
        ("body", "reason"),
        [
            ("<xml><FromUserName>o1</xml>", "malformed XML"),
            ("<xml><MsgType>event</MsgType><Event>subscribe</Event></xml>", "FromUserName: missing"),
        ],
    )
    def test_unreadable_signed_body_is_400_and_kept(
        self, pusher: OaPusher, session: Session, body: str, reason: str
    ) -> None:
        r = pusher.push(body)
        assert r.status_code == 400
        assert reason in r.text
        dead = session.execute(select(DeadLetter)).scalar_one()
        assert reason in dead.reason and dead.payload == body
        assert count(session, QueuedBatch) == 0


class TestAttribution:
    def test_store_qr_attributes_follow_and_counts(self, pusher: OaPusher, session: Session) -> None:
        store = factories.store(session, code="SH01")
        sa = factories.user(session, Role.sales_associate, wecom_userid="zhangsan", store_id=store.id)
        account_id = session.execute(select(WechatQrCode.account_id)).scalar()  # none yet
        assert account_id is None
        from siyu.channels.models import ChannelAccount

        account = session.execute(select(ChannelAccount)).scalar_one()
        qr = WechatQrCode(
            account_id=account.id,
            scene="sh01-zhangsan",
            name="Nanjing Road counter",
            purpose=QrPurpose.associate,
            store_id=store.id,
            user_id=sa.id,
            campaign="autumn-qipao",
        )
        session.add(qr)
        session.flush()
        pusher.push(oa_event("subscribe", openid="o-new", EventKey="qrscene_sh01-zhangsan", Ticket="T"))
        pusher.push(
            oa_event("subscribe", openid="o-new", EventKey="qrscene_sh01-zhangsan", Ticket="T")
        )  # retry
        pusher.push(
            oa_event("SCAN", openid="o-old", EventKey="sh01-zhangsan", Ticket="T", create_time=123456999)
        )
        [follow] = stored(session, "o-new")
        assert follow.properties == {
            "source": "qr_code",
            "scene": "sh01-zhangsan",
            "qr_code_id": qr.id,
            "qr_code": "Nanjing Road counter",
            "qr_purpose": "associate",
            "store": "SH01",
            "associate": "zhangsan",
            "campaign": "autumn-qipao",
        }
        [scan] = stored(session, "o-old")
        assert scan.event == "QR Code Scanned" and scan.properties["store"] == "SH01"
        session.refresh(qr)
        assert (qr.scans, qr.follows) == (2, 1)

    def test_menu_items_label_and_categorise_clicks(self, pusher: OaPusher, session: Session) -> None:
        from siyu.channels.models import ChannelAccount

        account = session.execute(select(ChannelAccount)).scalar_one()
        session.add(
            OaMenuItem(
                account_id=account.id,
                key="V1001_NEW",
                label="New arrivals",
                action_type="click",
                category=MenuCategory.ecommerce,
            )
        )
        session.flush()
        pusher.push(oa_event("CLICK", EventKey="V1001_NEW"))
        [ev] = stored(session, "FromUser")
        assert ev.properties == {
            "action": "click",
            "menu_key": "V1001_NEW",
            "menu": "New arrivals",
            "category": "ecommerce",
        }
