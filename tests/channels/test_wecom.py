"""The WeCom customer-contact callback: adds set the owner, deletions raise churn alerts, all encrypted."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.channels.models import ChannelAccount, ContactWay
from siyu.clienteling.models import Alert
from siyu.identity.models import Identifier
from siyu.ingest import processor
from siyu.ingest.models import DeadLetter, Event, QueuedBatch
from siyu.profiles.models import Profile
from tests import factories
from tests.channels.wechat import WeComPusher, wecom_account, wecom_change

EXTERNAL = "woAJ2GCAAAXtWyujaWJHDDGi0mAAAA"


@pytest.fixture
def pusher(client: TestClient, session: Session) -> WeComPusher:
    wecom_account(session)
    return WeComPusher(client)


def count(session: Session, model: type, *where: Any) -> int:
    return session.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


def profile_of(session: Session, external: str) -> Profile:
    processor.drain()
    session.expire_all()
    return session.execute(
        select(Profile)
        .join(Identifier, Identifier.profile_id == Profile.id)
        .where(Identifier.type == "wecom_external_userid", Identifier.value == external)
    ).scalar_one()


def events_of(session: Session, profile_id: int) -> list[Event]:
    return list(
        session.execute(
            select(Event).where(Event.profile_id == profile_id).order_by(Event.timestamp, Event.id)
        ).scalars()
    )


class TestTransport:
    def test_echostr_vector(self, client: TestClient, session: Session) -> None:
        wecom_account(session)
        params = {
            "msg_signature": "dd6b9c95b495b3f7e2901bfbc76c664930ffdb96",
            "timestamp": "1411443780",
            "nonce": "437374425",
            "echostr": "4ByGGj+sVCYcvGeQYhaKIk1o0pQRNbRjxybjTGblXrBaXlTXeOo1+bXFXDQQb1o6co6Yh9Bv41n7hOchLF6p+Q==",
        }
        r = client.get("/wechat/wecom/tos-wecom/callback", params=params)
        assert (r.status_code, r.text) == (200, "5927782489442352469")
        params["nonce"] = "437374424"
        assert client.get("/wechat/wecom/tos-wecom/callback", params=params).status_code == 403

    def test_official_inbound_vector_is_kept_but_not_a_customer_event(
        self, client: TestClient, session: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """wechatpy's encrypted inbound vector (a text message to an app, 2014) decrypts; it names no customer."""
        from siyu.config import get_settings
        from tests.channels.test_crypto import INBOUND

        monkeypatch.setenv("SIYU_WECHAT_CALLBACK_MAX_AGE_SECONDS", str(20 * 365 * 86400))
        get_settings.cache_clear()
        wecom_account(session)
        body = f"<xml><ToUserName><![CDATA[wx49f0ab532d5d035a]]></ToUserName>\n<Encrypt><![CDATA[{INBOUND}]]></Encrypt>\n<AgentID><![CDATA[1]]></AgentID>\n</xml>"
        params = {
            "msg_signature": "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
            "timestamp": "1411525903",
            "nonce": "461056294",
        }
        r = client.post("/wechat/wecom/tos-wecom/callback", params=params, content=body.encode())
        assert (r.status_code, r.text) == (200, "success")
        dead = session.execute(select(DeadLetter)).scalar_one()
        assert "not a customer-contact push" in dead.reason
        assert '"Content":"test"' in dead.payload
        assert count(session, QueuedBatch) == 0

    def test_forged_signature(self, pusher: WeComPusher, session: Session) -> None:
        assert pusher.push(wecom_change("add_external_contact", EXTERNAL), forge=True).status_code == 403
        assert count(session, QueuedBatch) == count(session, DeadLetter) == 0

    def test_envelope_for_another_corp(self, pusher: WeComPusher, session: Session) -> None:
        r = pusher.push(wecom_change("add_external_contact", EXTERNAL), corp_id="ww-another-corp")
        assert r.status_code == 403
        assert count(session, QueuedBatch) == 0

    def test_stale(self, pusher: WeComPusher, session: Session) -> None:
        assert (
            pusher.push(wecom_change("add_external_contact", EXTERNAL), timestamp=1403610513).status_code
            == 403
        )

    def test_malformed_envelope_is_refused_and_not_kept(self, client: TestClient, session: Session) -> None:
        import time

        wecom_account(session)
        params = {"msg_signature": "0" * 40, "timestamp": str(int(time.time())), "nonce": "1"}
        r = client.post("/wechat/wecom/tos-wecom/callback", params=params, content=b"<xml><Encrypt>")
        assert r.status_code == 400
        assert count(session, DeadLetter) == 0


class TestCustomerContact:
    def _setup(self, session: Session) -> tuple[Any, Any, Any, ContactWay]:
        store = factories.store(session, code="SH01")
        sa = factories.user(
            session,
            Role.sales_associate,
            wecom_userid="zhangsan",
            store_id=store.id,
            display_name="Zhang San",
        )
        manager = factories.user(session, Role.store_manager, store_id=store.id)
        account = session.execute(select(ChannelAccount)).scalar_one()
        way = ContactWay(
            account_id=account.id,
            state="teststate",
            name="Counter card",
            user_id=sa.id,
            store_id=store.id,
            campaign="autumn",
        )
        session.add(way)
        session.flush()
        return store, sa, manager, way

    def test_add_makes_the_associate_the_owner(self, pusher: WeComPusher, session: Session) -> None:
        store, sa, _, way = self._setup(session)
        body = wecom_change("add_external_contact", EXTERNAL, State="teststate", WelcomeCode="WELCOMECODE")
        for _ in range(3):  # WeCom retries
            assert pusher.push(body).text == "success"
        profile = profile_of(session, EXTERNAL)
        assert (profile.owner_user_id, profile.store_id) == (sa.id, store.id)
        [ev] = events_of(session, profile.id)
        assert ev.event == "WeCom Contact Added"
        assert ev.properties == {
            "change_type": "add_external_contact",
            "associate": "zhangsan",
            "state": "teststate",
            "welcome_code": True,
            "contact_way_id": way.id,
            "contact_way": "Counter card",
            "campaign": "autumn",
            "store": "SH01",
        }
        session.refresh(way)
        assert way.adds == 1

    def test_customer_deleting_the_associate_alerts_associate_and_store_manager(
        self, pusher: WeComPusher, session: Session
    ) -> None:
        _, sa, manager, _ = self._setup(session)
        pusher.push(wecom_change("add_external_contact", EXTERNAL, State="teststate"))
        body = wecom_change("del_follow_user", EXTERNAL, create_time=1403620000)
        pusher.push(body)
        pusher.push(body)
        profile = profile_of(session, EXTERNAL)
        assert [e.event for e in events_of(session, profile.id)] == [
            "WeCom Contact Added",
            "WeCom Contact Deleted",
        ]
        alerts = session.execute(select(Alert).order_by(Alert.user_id)).scalars().all()
        assert sorted((a.user_id, a.title) for a in alerts) == sorted(
            [
                (sa.id, "A customer removed you on WeCom"),
                (manager.id, "A customer removed Zhang San on WeCom"),
            ]
        )
        assert {a.profile_id for a in alerts} == {profile.id}

    @pytest.mark.parametrize(
        ("change", "fields", "expected"),
        [
            ("del_external_contact", {"Source": "DELETE_BY_TRANSFER"}, {"by": "transfer"}),
            ("del_external_contact", {}, {"by": "associate"}),
            ("edit_external_contact", {"State": "teststate"}, {"state": "teststate"}),
            ("add_half_external_contact", {"State": "teststate"}, {"state": "teststate"}),
            ("transfer_fail", {"FailReason": "customer_refused"}, {"reason": "customer_refused"}),
            ("some_future_change", {}, {}),
        ],
    )
    def test_other_changes(
        self,
        pusher: WeComPusher,
        session: Session,
        change: str,
        fields: dict[str, str],
        expected: dict[str, str],
    ) -> None:
        self._setup(session)
        assert pusher.push(wecom_change(change, EXTERNAL, **fields)).text == "success"
        profile = profile_of(session, EXTERNAL)
        [ev] = events_of(session, profile.id)
        names = {
            "del_external_contact": "WeCom Contact Deleted",
            "edit_external_contact": "WeCom Contact Updated",
            "add_half_external_contact": "WeCom Contact Requested",
            "transfer_fail": "WeCom Transfer Failed",
            "some_future_change": "WeCom Contact Event Received",
        }
        assert ev.event == names[change]
        assert ev.properties == {"change_type": change, "associate": "zhangsan", **expected}
        assert profile.owner_user_id is None  # only an add sets the owner
        assert count(session, Alert) == 0  # only the customer's deletion is churn
