"""A brand ready to message its customers: accounts, a store, an advisor, followers who can be reached.

Customers are made through the real ingest API with the context the WeChat callbacks give their events
(channel, account, openid), so reach is learnt the way production learns it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.auth.models import Role, User
from siyu.channels import service as channels
from siyu.channels.fake import FakeState
from siyu.channels.models import ChannelAccount, ChannelKind
from siyu.clienteling.models import Store
from siyu.config import get_settings
from siyu.journeys import engine, triggers
from siyu.journeys import service as journeys
from siyu.journeys.models import Journey
from siyu.messaging import service as messaging
from siyu.messaging.models import Channel, MessageTemplate
from tests import factories
from tests.channels.wechat import MP_APP_ID, oa_account, wecom_account
from tests.factories import event
from tests.helpers import Api

NOW = dt.datetime(2026, 11, 23, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai: outside quiet hours


def recent(kind: str = "track", **fields: Any) -> dict[str, Any]:
    """An event that happens now as the journeys' reactor sees it (older events trigger no journey)."""
    return event(kind, timestamp=triggers.utcnow().isoformat(), **fields)


def oa_context(openid: str, account: str = "tos-oa") -> dict[str, Any]:
    return {
        "channel": "wechat_oa",
        "externalIds": [{"id": openid, "type": "wechat_openid"}],
        "wechat": {"account": account},
    }


def wecom_context(external: str, account: str = "tos-wecom") -> dict[str, Any]:
    return {
        "channel": "wecom",
        "externalIds": [{"id": external, "type": "wecom_external_userid"}],
        "wechat": {"account": account},
    }


@dataclass
class Brand:
    api: Api
    session: Session
    fake: FakeState
    oa: ChannelAccount
    wecom: ChannelAccount
    mp: ChannelAccount
    store: Store
    advisor: User
    customers: dict[str, int] = field(default_factory=dict)

    def follower(self, name: str, *, wecom: bool = False, traits: dict[str, Any] | None = None) -> int:
        """A customer following the OA (and, with wecom, a contact of the advisor); her profile id."""
        openid = f"o-{name}"
        self.fake.users[openid] = {"unionid": f"u-{name}"}
        events = [
            event(
                "identify",
                userId=name,
                traits={"name": name.title(), **(traits or {})},
                context=oa_context(openid),
            ),
            event(userId=name, event="Official Account Followed", context=oa_context(openid)),
        ]
        if wecom:
            external = f"wm-{name}"
            self.fake.contacts[external] = {"external_contact": {"external_userid": external}}
            events.append(
                event(
                    userId=name,
                    event="WeCom Contact Added",
                    properties={"associate": self.advisor.wecom_userid},
                    context=wecom_context(external),
                )
            )
        self.api.send(*events)
        pid = int(self.api.lookup("member_id", name)["id"])
        if wecom:
            from siyu.profiles.models import Profile

            profile = self.session.get(Profile, pid)
            assert profile is not None
            profile.owner_user_id = self.advisor.id
            self.session.flush()
        self.customers[name] = pid
        return pid

    def template(self, name: str, channel: Channel = Channel.oa_template, **body: Any) -> MessageTemplate:
        account = {
            Channel.oa_template: self.oa,
            Channel.oa_kefu: self.oa,
            Channel.oa_mass: self.oa,
            Channel.mp_subscribe: self.mp,
            Channel.wecom_1to1: self.wecom,
            Channel.wecom_mass: self.wecom,
        }.get(channel)
        if not body:
            body = (
                {"data": {"first": "Hi {{ first_name }}"}}
                if channel in (Channel.oa_template, Channel.mp_subscribe)
                else {"text": "Hi {{ first_name }}"}
            )
        return messaging.create_template(
            self.session,
            name=name,
            channel=channel,
            account_id=account.id if account else None,
            external_template_id="TPL-1" if channel in (Channel.oa_template, Channel.mp_subscribe) else None,
            body=body,
        )

    def journey(self, definition: dict[str, Any], name: str | None = None) -> Journey:
        """A published journey."""
        journey = journeys.create(
            self.session, name=name or f"j-{uuid.uuid4().hex[:6]}", definition=definition
        )
        journeys.publish(self.session, journey)
        return journey

    def run(self, now: dt.datetime = NOW, rounds: int = 5) -> int:
        """Step the engine until nothing is due at `now`."""
        total = 0
        for _ in range(rounds):
            steps = engine.run_due(self.session, now=now)
            total += steps
            if not steps:
                break
        return total


@pytest.fixture(autouse=True)
def _no_quiet_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    """Quiet hours off unless a test switches them on: the clock of the machine would otherwise decide."""
    monkeypatch.setenv("SIYU_QUIET_HOURS", "")
    get_settings.cache_clear()


@pytest.fixture
def brand(client: TestClient, session: Session, fake: FakeState) -> Brand:
    store = factories.store(session, code="SH-JA")
    advisor = factories.user(
        session, Role.sales_associate, wecom_userid="fa.chen", store_id=store.id, display_name="Chen Jing"
    )
    oa = oa_account(session)
    corp = wecom_account(session)
    mp = channels.create_account(
        session, kind=ChannelKind.miniprogram, name="tos-mp", app_id=MP_APP_ID, secret="mp-secret"
    )
    return Brand(Api(client, session), session, fake, oa, corp, mp, store, advisor)


def linear(*nodes: dict[str, Any], entry: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A definition whose nodes follow each other in order (ids n0, n1, …) and end in an exit."""
    body: dict[str, Any] = {}
    for i, node in enumerate(nodes):
        body[f"n{i}"] = {**node, "next": f"n{i + 1}"}
    body[f"n{len(nodes)}"] = {"type": "exit"}
    return {"entry": entry or {"type": "manual"}, "start": "n0", "nodes": body, **extra}
