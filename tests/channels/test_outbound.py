"""Outbound calls against the local fake WeChat server (real HTTP; no WeChat host is reachable here)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from siyu import db
from siyu.auth.models import Role
from siyu.channels.fake import FakeState
from siyu.channels.models import ChannelCall
from siyu.channels.outbound.base import WeChatError
from siyu.channels.outbound.oa import OaClient
from siyu.channels.outbound.wecom import SHANGHAI, WeComClient
from siyu.identity.models import Identifier
from siyu.ingest import processor
from siyu.outbox import service as outbox
from siyu.outbox.models import OutboxMessage
from siyu.profiles.models import Profile
from tests import factories
from tests.channels.wechat import (
    OA_APP_ID,
    OaPusher,
    WeComPusher,
    oa_account,
    oa_event,
    wecom_account,
    wecom_change,
)


def calls(session: Session) -> list[ChannelCall]:
    return list(session.execute(select(ChannelCall).order_by(ChannelCall.id)).scalars())


class TestClientBehaviour:
    def test_token_is_fetched_once_and_stored_sealed(self, fake: FakeState, session: Session) -> None:
        account = oa_account(session)
        fake.users["o1"] = {"unionid": "u1", "subscribe_scene": "ADD_SCENE_SEARCH"}
        with OaClient(session, account) as client:
            assert client.user_info("o1")["unionid"] == "u1"
            assert client.user_info("o1")["subscribe_scene"] == "ADD_SCENE_SEARCH"
        assert fake.calls == ["token", "user/info", "user/info"]
        assert account.access_token_sealed and "FAKE_" not in account.access_token_sealed
        assert [(c.api, c.ok, c.errcode) for c in calls(session)] == [("/cgi-bin/user/info", True, 0)] * 2
        assert "access_token" not in calls(session)[0].request["params"]

    def test_expired_token_is_refreshed(self, fake: FakeState, session: Session) -> None:
        account = oa_account(session)
        fake.users["o1"] = {}
        with OaClient(session, account) as client:
            client.user_info("o1")
            fake.expire_tokens()
            client.user_info("o1")
        assert fake.calls == ["token", "user/info", "user/info", "token", "user/info"]

    def test_busy_is_retried_with_backoff(self, fake: FakeState, session: Session) -> None:
        account = oa_account(session)
        fake.users["o1"] = {}
        fake.fail(-1, "system error", times=2)
        waits: list[float] = []
        with OaClient(session, account, sleep=waits.append) as client:
            client.user_info("o1")
        assert fake.calls.count("user/info") == 3
        assert len(waits) == 2 and waits[0] <= waits[1]
        assert calls(session)[-1].attempts == 3

    def test_rate_limit_beyond_the_attempts_is_an_error_and_recorded(
        self, fake: FakeState, session: Session
    ) -> None:
        account = oa_account(session)
        fake.fail(45009, "reach max api daily quota limit", times=5)
        with OaClient(session, account, sleep=lambda _s: None) as client, pytest.raises(WeChatError) as err:
            client.user_info("o1")
        assert err.value.errcode == 45009
        [call] = calls(session)
        assert (call.ok, call.errcode, call.attempts) == (False, 45009, 3)

    def test_other_errors_are_not_retried(self, fake: FakeState, session: Session) -> None:
        account = oa_account(session)
        with OaClient(session, account) as client, pytest.raises(WeChatError, match="errcode 40003"):
            client.user_info("o-unknown")
        assert fake.calls.count("user/info") == 1

    def test_wrong_secret(self, fake: FakeState, session: Session) -> None:
        fake.register(OA_APP_ID, "rotated")
        account = oa_account(session)
        with OaClient(session, account) as client, pytest.raises(WeChatError, match="40125"):
            client.user_info("o1")

    def test_idempotency_key_sends_once(self, fake: FakeState, session: Session) -> None:
        account = oa_account(session)
        fake.users["o1"] = {}
        with OaClient(session, account) as client:
            first = client.send_template(
                "o1", "TPL1", {"first": "Thank you"}, idempotency_key="order-1:thanks"
            )
            second = client.send_template(
                "o1", "TPL1", {"first": "Thank you"}, idempotency_key="order-1:thanks"
            )
        assert first == second and first["msgid"]
        assert [api for api, _ in fake.sent] == ["message/template/send"]
        assert fake.sent[0][1]["data"] == {"first": {"value": "Thank you"}}


class TestEnrichmentAndWelcome:
    def _run_worker(self) -> None:
        """What `siyu worker` does: store queued events, run due jobs, store what they ingested."""
        processor.drain()
        outbox.run_once(db.get_sessionmaker())
        processor.drain()

    def test_unionid_stitches_the_follower_and_the_wecom_contact(
        self, fake: FakeState, client: TestClient, session: Session
    ) -> None:
        oa_account(session)
        wecom_account(session, welcome_text="欢迎来到苏韵 Taste of Su!")
        factories.user(session, Role.sales_associate, wecom_userid="zhangsan")
        fake.users["o-nancy"] = {
            "unionid": "u-nancy",
            "subscribe_scene": "ADD_SCENE_QR_CODE",
            "subscribe_time": 1700000000,
        }
        fake.contacts["wm-nancy"] = {
            "external_contact": {
                "external_userid": "wm-nancy",
                "name": "Nancy",
                "type": 1,
                "gender": 2,
                "unionid": "u-nancy",
            },
            "follow_user": [
                {"userid": "zhangsan", "remark": "VIP", "createtime": 1700000100, "add_way": 1, "state": "s1"}
            ],
        }
        fake.welcome_codes.add("WELCOME-1")
        OaPusher(client).push(oa_event("subscribe", openid="o-nancy", create_time=1700000000))
        body = wecom_change(
            "add_external_contact", "wm-nancy", create_time=1700000100, WelcomeCode="WELCOME-1"
        )
        WeComPusher(client).push(body)
        WeComPusher(client).push(body)  # WeCom's retry: one welcome, one enrichment
        self._run_worker()
        session.expire_all()
        owners = dict(
            session.execute(
                select(Identifier.value, Identifier.profile_id).where(
                    Identifier.value.in_(["o-nancy", "wm-nancy", "u-nancy"])
                )
            ).all()
        )
        assert len(set(owners.values())) == 1, owners
        profile = session.get(Profile, owners["o-nancy"])
        assert profile is not None
        assert profile.traits["oa_follow_source"] == "qr_code"
        assert profile.traits["gender"] == "female" and profile.traits["wecom_remark"] == "VIP"
        assert [api for api, _ in fake.sent] == ["externalcontact/send_welcome_msg"]
        # Each platform's own token endpoint, fetched once per account by the worker.
        assert (fake.calls.count("token"), fake.calls.count("gettoken")) == (1, 1)
        assert fake.sent[0][1] == {
            "welcome_code": "WELCOME-1",
            "text": {"content": "欢迎来到苏韵 Taste of Su!"},
        }
        statuses = session.execute(select(OutboxMessage.topic, OutboxMessage.status)).all()
        assert sorted(statuses) == sorted(
            [
                ("wechat.oa.user_info", "done"),
                ("wechat.wecom.contact", "done"),
                ("wechat.wecom.welcome", "done"),
            ]
        )

    def test_followers_are_enriched_a_hundred_per_call(
        self, fake: FakeState, client: TestClient, session: Session
    ) -> None:
        oa_account(session)
        pusher = OaPusher(client)
        for i in range(150):
            fake.users[f"o-{i}"] = {"unionid": f"u-{i}", "subscribe_scene": "ADD_SCENE_QR_CODE"}
            pusher.push(oa_event("subscribe", openid=f"o-{i}", create_time=1700000000 + i))
        processor.drain()
        outbox.run_once(db.get_sessionmaker(), limit=200)
        processor.drain()
        assert fake.calls.count("user/info/batchget") == 2 and "user/info" not in fake.calls
        session.expire_all()
        unionids = dict(
            session.execute(
                select(Identifier.value, Identifier.profile_id).where(Identifier.type == "wechat_unionid")
            ).all()
        )
        assert len(unionids) == 150
        openid_owner = session.execute(
            select(Identifier.profile_id).where(
                Identifier.type == "wechat_openid", Identifier.value == "o-42"
            )
        ).scalar_one()
        assert unionids["u-42"] == openid_owner
        profile = session.get(Profile, openid_owner)
        assert profile is not None and profile.traits["oa_follow_source"] == "qr_code"

    def test_batchget_refuses_a_list_it_cannot_take(self, fake: FakeState, session: Session) -> None:
        account = oa_account(session)
        fake.users["o1"] = {}
        with OaClient(session, account) as client:
            assert [u["openid"] for u in client.user_info_batch(["o1"])] == ["o1"]
            with pytest.raises(WeChatError, match="40003"):
                client.user_info_batch(["o1", "o-unknown"])
            with pytest.raises(ValueError, match="1 to 100"):
                client.user_info_batch([f"o{i}" for i in range(101)])

    def test_a_used_welcome_code_fails_visibly(
        self, fake: FakeState, client: TestClient, session: Session
    ) -> None:
        wecom_account(session, welcome_text="hi")
        fake.contacts["wm-1"] = {
            "external_contact": {"external_userid": "wm-1", "type": 2},
            "follow_user": [],
        }
        WeComPusher(client).push(wecom_change("add_external_contact", "wm-1", WelcomeCode="EXPIRED"))
        self._run_worker()
        session.expire_all()
        job = session.execute(
            select(OutboxMessage).where(OutboxMessage.topic == "wechat.wecom.welcome")
        ).scalar_one()
        assert job.status == "pending" and job.attempts == 1
        assert job.last_error is not None and "41051" in job.last_error
        # The job's transaction was rolled back, but the refused call is in the call log.
        refused = session.execute(select(ChannelCall).where(ChannelCall.errcode == 41051)).scalar_one()
        assert refused.api == "/cgi-bin/externalcontact/send_welcome_msg" and not refused.ok

    def test_no_welcome_text_no_welcome_job(
        self, fake: FakeState, client: TestClient, session: Session
    ) -> None:
        wecom_account(session)
        WeComPusher(client).push(wecom_change("add_external_contact", "wm-2", WelcomeCode="W2"))
        topics: list[Any] = list(session.execute(select(OutboxMessage.topic)).scalars())
        assert topics == ["wechat.wecom.contact"]


class TestMoreCalls:
    def test_mass_send_is_idempotent_by_clientmsgid(self, fake: FakeState, session: Session) -> None:
        account = oa_account(session)
        with OaClient(session, account) as client:
            first = client.mass_send(client_msg_id="push-2026-11-23", tag_id=101, text="新品上市 New qipao")
            # A retry after a lost answer: WeChat refuses the job (45065) and names the first one.
            session.execute(delete(ChannelCall))
            second = client.mass_send(client_msg_id="push-2026-11-23", tag_id=101, text="新品上市 New qipao")
            by_openid = client.mass_send(client_msg_id="vip-1", openids=["o1", "o2"], media_id="MEDIA")
            with pytest.raises(ValueError, match="2 to 10,000"):
                client.mass_send(client_msg_id="x", openids=["o1"], text="hi")
        assert first["msg_id"] == second["msg_id"]
        assert [api for api, _ in fake.sent] == ["message/mass/sendall", "message/mass/send"]
        assert fake.sent[0][1]["filter"] == {"is_to_all": False, "tag_id": 101}
        assert by_openid["msg_id"] != first["msg_id"]

    def test_tags(self, fake: FakeState, session: Session) -> None:
        account = oa_account(session)
        openids = [f"o{i}" for i in range(120)]
        with OaClient(session, account) as client:
            tag = client.create_tag("Hi-Po young professionals")["tag"]
            client.tag_users(tag["id"], openids)
            client.tag_users(tag["id"], openids[:10], untag=True)
        assert fake.tags[tag["id"]]["openids"] == set(openids[10:])
        assert fake.calls.count("tags/members") == 4  # 50 a call: 3 to tag, 1 to untag

    def test_company_mass_message_created_then_confirmed(self, fake: FakeState, session: Session) -> None:
        account = wecom_account(session)
        fake.contacts["wm1"] = {"external_contact": {"external_userid": "wm1"}}
        with WeComClient(session, account) as client:
            created = client.add_msg_template("zhangsan", ["wm1", "wm-gone"], "双十二 VIP preview")
            assert created["fail_list"] == ["wm-gone"]
            assert [r["status"] for r in client.group_msg_send_result(created["msgid"], "zhangsan")] == [0]
            fake.confirm_group_msg(created["msgid"])
            assert [r["status"] for r in client.group_msg_send_result(created["msgid"], "zhangsan")] == [1]

    def test_transfers_twice_in_90_days(self, fake: FakeState, session: Session) -> None:
        account = wecom_account(session)
        customers = [f"wm{i}" for i in range(150)]
        for c in customers:
            fake.contacts[c] = {"external_contact": {"external_userid": c}}
        with WeComClient(session, account) as client:
            first = client.transfer_customers(
                "zhangsan", "lisi", customers, message="Li Si will look after you"
            )
            assert len(first) == 150 and {r["errcode"] for r in first} == {0}
            assert fake.calls.count("externalcontact/transfer_customer") == 2  # 100 a call
            client.transfer_customers("lisi", "wangwu", customers[:1])
            third = client.transfer_customers("wangwu", "zhangsan", customers[:1], resigned=True)
            assert third == [{"external_userid": "wm0", "errcode": 40096}]
            assert {r["status"] for r in client.resigned_transfer_result("zhangsan", "lisi")} == {2}
        assert "transfer_success_msg" not in fake.sent[-1][1]

    def test_behavior_data_one_associate_per_call(self, fake: FakeState, session: Session) -> None:
        import datetime as dt

        account = wecom_account(session)
        today = dt.date.today()
        day = int(dt.datetime.combine(today - dt.timedelta(days=2), dt.time(), tzinfo=SHANGHAI).timestamp())
        fake.behavior["zhangsan"] = [
            {"stat_time": day, "chat_cnt": 100, "message_cnt": 80, "new_contact_cnt": 5}
        ]
        with WeComClient(session, account) as client:
            rows = client.user_behavior("zhangsan", today - dt.timedelta(days=7), today)
            assert rows == fake.behavior["zhangsan"]
            with pytest.raises(ValueError, match="30 days"):
                client.user_behavior("zhangsan", today - dt.timedelta(days=40), today)
            with pytest.raises(ValueError, match="180 days"):
                client.user_behavior(
                    "zhangsan", today - dt.timedelta(days=200), today - dt.timedelta(days=190)
                )
