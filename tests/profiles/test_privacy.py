"""A person's PIPL rights: a full copy of her data on request, and erasure that keeps the books balanced."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth.models import AuditLog, Role
from siyu.identity.models import Identifier
from siyu.ingest.models import DeadLetter
from siyu.loyalty import service as loyalty
from siyu.profiles.models import Consent, Tag
from siyu.profiles.service import add_tag
from tests import factories
from tests.factories import event
from tests.helpers import Api


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def nancy(api: Api) -> int:
    api.send(
        event(
            "identify",
            userId="M-NANCY",
            traits={"name": "林南希", "phone": "13812345678", "address": "上海市静安区南京西路1266号"},
            context={"externalIds": [{"id": "o-nancy", "type": "wechat_openid"}]},
        ),
        event(
            userId="M-NANCY",
            event="Order Completed",
            properties={"order_id": "N1", "total": 300, "shipping_phone": "13812345678"},
        ),
        event(
            userId="M-NANCY",
            event="Consent Granted",
            properties={"purpose": "marketing_wechat"},
        ),
    )
    return int(api.lookup("member_id", "M-NANCY")["id"])


def test_export_is_everything_unmasked_for_admin_and_hq_only(api: Api, session: Session) -> None:
    pid = nancy(api)
    hq = factories.auth(factories.api_key(session, Role.hq))
    r = api.client.get(f"/api/v1/profiles/{pid}/export", headers=hq)
    assert r.status_code == 200 and r.headers["content-disposition"].endswith(f'profile-{pid}.json"')
    data = r.json()
    assert data["profiles"][0]["traits"]["phone"] == "+8613812345678"
    assert {i["value"] for i in data["identifiers"]} >= {"M-NANCY", "+8613812345678", "o-nancy"}
    assert [e["event"] for e in data["events"] if e["event"]] == ["Order Completed", "Consent Granted"]
    log = session.execute(select(AuditLog).where(AuditLog.action == "profile.export")).scalar_one()
    assert log.detail["events"] == 3
    marketer = factories.auth(factories.api_key(session, Role.marketer))
    assert api.client.get(f"/api/v1/profiles/{pid}/export", headers=marketer).status_code == 403


def test_erasure_removes_what_identifies_her_and_keeps_the_ledger(api: Api, session: Session) -> None:
    pid = nancy(api)
    # A refused event of hers (a bad email) is a dead letter holding her phone as she typed it.
    bad = event("identify", userId="M-NANCY", traits={"phone": "13812345678", "email": "not-an-email"})
    api.send(bad, event(userId="M-OTHER"))
    assert session.execute(select(DeadLetter)).scalars().all() != []
    member, _ = loyalty.enrol(session, pid)
    loyalty.earn(session, member.id, 120, key="seed")
    add_tag(session, pid, "vip", actor="test")
    session.flush()
    admin = factories.auth(api.admin_key)
    url = f"/api/v1/profiles/{pid}/erase"
    hq = factories.auth(factories.api_key(session, Role.hq))
    assert api.client.post(url, json={"confirm": pid}, headers=hq).status_code == 403
    wrong = api.client.post(url, json={"confirm": pid + 1}, headers=admin)
    assert wrong.status_code == 400 and "repeat the profile id" in wrong.json()["detail"]

    r = api.client.post(url, json={"confirm": pid}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["erased"]["identifiers"] == 3 and r.json()["erased"]["events"] == 3
    seen = api.profile(pid)
    assert seen["erased_at"] is not None and seen["name"] is None and seen["traits"] == {}
    assert all(i["value"].startswith("erased:") for i in seen["identities"]), seen["identities"]
    assert seen["counters"]["revenue_fen"] == 30000  # the brand's totals still add up
    items = api.client.get(f"/api/v1/profiles/{pid}/timeline", headers=admin).json()["items"]
    assert all(i["properties"] == {} and i["context"] == {} for i in items), [
        (i["event"], i["properties"]) for i in items
    ]
    assert session.execute(select(Consent).where(Consent.profile_id == pid)).first() is None
    assert session.execute(select(Tag).where(Tag.profile_id == pid)).first() is None
    session.refresh(member)
    assert member.balance == 120  # the ledger is append-only: her points stay, anonymous
    api.lookup("phone", "13812345678", expect=404)
    # She is no one now: the same phone later is a new customer, and segments leave her out.
    api.send(event("identify", userId="M-NEW", traits={"phone": "13812345678"}))
    assert api.lookup("phone", "13812345678")["id"] != pid
    preview = api.client.post(
        "/api/v1/segments/preview",
        json={"rule": {"profile": "orders_count", "op": "gte", "value": 1}},
        headers=admin,
    ).json()
    assert pid not in preview["sample"]
    assert api.client.post(url, json={"confirm": pid}, headers=admin).status_code == 409
    assert session.execute(select(DeadLetter)).scalars().all() == []
    log = session.execute(select(AuditLog).where(AuditLog.action == "profile.erase")).scalar_one()
    assert log.subject_id == pid and "13812345678" not in str(log.detail)
    assert session.execute(select(Identifier).where(Identifier.value == "o-nancy")).first() is None


def test_logs_that_hold_personal_data_are_purged_after_the_retention_period(session: Session) -> None:
    from siyu import db
    from siyu.channels.models import ChannelCall
    from siyu.db import utcnow
    from siyu.profiles import tasks
    from tests.channels.wechat import oa_account

    now = utcnow()
    account = oa_account(session)
    old, recent = now - dt.timedelta(days=200), now - dt.timedelta(days=10)
    session.add_all(
        [
            DeadLetter(received_at=old, reason="x", payload='{"phone": "13812345678"}'),
            DeadLetter(received_at=recent, reason="y", payload="{}"),
            ChannelCall(account_id=account.id, api="user/info", request={"openid": "o-old"}, created_at=old),
            ChannelCall(
                account_id=account.id, api="user/info", request={"openid": "o-new"}, created_at=recent
            ),
        ]
    )
    session.flush()
    assert tasks.run_scheduled(db.get_sessionmaker()) == {"dead_letters": 1, "channel_calls": 1}
    session.expire_all()
    assert [d.reason for d in session.execute(select(DeadLetter)).scalars()] == ["y"]
    assert [c.request["openid"] for c in session.execute(select(ChannelCall)).scalars()] == ["o-new"]
