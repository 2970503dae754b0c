"""The Mini Program's member API: join, my balance and vouchers, the catalogue, buying a reward."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.channels import service as channels_service
from siyu.channels.fake import FakeState
from siyu.channels.models import ChannelKind
from siyu.ingest import processor
from siyu.loyalty import service
from siyu.loyalty.models import Member
from tests import factories
from tests.channels.wechat import MP_APP_ID


def signed_in(fake: FakeState, client: TestClient, session: Session, openid: str) -> tuple[str, str]:
    """A write key and the session token of a customer signed in to the Mini Program."""
    channels_service.create_account(
        session, kind=ChannelKind.miniprogram, name="tos-mp", app_id=MP_APP_ID, secret="mp-secret"
    )
    key = factories.api_key(session, Role.source)
    fake.login_codes["c"] = {"openid": openid, "unionid": "u-" + openid}
    token = client.post("/mp/v1/session", json={"code": "c"}, auth=(key, "")).json()["session"]
    processor.drain()
    return key, token


def test_join_me_catalogue_buy(fake: FakeState, client: TestClient, session: Session) -> None:
    key, token = signed_in(fake, client, session, "o-mp-lizzy")
    headers = {"X-Siyu-Session": token}
    assert (
        client.get("/mp/v1/loyalty/me", headers=headers, auth=(key, "")).status_code == 404
    )  # not a member yet
    joined = client.post("/mp/v1/loyalty/join", headers=headers, auth=(key, ""))
    assert joined.status_code == 201 and joined.json()["balance"] == 0 and joined.json()["invite_code"]
    assert client.post("/mp/v1/loyalty/join", headers=headers, auth=(key, "")).status_code == 200
    admin = factories.auth(factories.api_key(session, Role.admin))
    reward = client.post(
        "/api/v1/loyalty/voucher-templates",
        json={"name": "Tea set", "kind": "free_gift", "gift_sku": "TEA", "points_cost": 80},
        headers=admin,
    ).json()
    client.post(
        "/api/v1/loyalty/voucher-templates",
        json={"name": "Staff only", "kind": "free_gift", "gift_sku": "X"},
        headers=admin,
    )
    assert [t["name"] for t in client.get("/mp/v1/loyalty/catalogue", auth=(key, "")).json()] == ["Tea set"]
    member = session.execute(select(Member)).scalar_one()
    service.earn(session, member.id, 100, key="gift")
    bought = client.post(
        "/mp/v1/loyalty/rewards",
        json={"template_id": reward["id"]},
        headers={**headers, "Idempotency-Key": "buy-1"},
        auth=(key, ""),
    )
    assert bought.status_code == 201
    again = client.post(
        "/mp/v1/loyalty/rewards",
        json={"template_id": reward["id"]},
        headers={**headers, "Idempotency-Key": "buy-1"},
        auth=(key, ""),
    )
    assert again.status_code == 200 and again.json()["code"] == bought.json()["code"]
    poor = client.post(
        "/mp/v1/loyalty/rewards",
        json={"template_id": reward["id"]},
        headers={**headers, "Idempotency-Key": "buy-2"},
        auth=(key, ""),
    )
    assert poor.status_code == 409
    me = client.get("/mp/v1/loyalty/me", headers=headers, auth=(key, "")).json()
    assert me["balance"] == 20 and [v["code"] for v in me["vouchers"]] == [bought.json()["code"]]


def test_needs_a_session_and_a_write_key(fake: FakeState, client: TestClient, session: Session) -> None:
    key, _token = signed_in(fake, client, session, "o-mp-x")
    assert client.get("/mp/v1/loyalty/me", auth=(key, "")).status_code == 401
    assert (
        client.get("/mp/v1/loyalty/me", headers={"X-Siyu-Session": "forged"}, auth=(key, "")).status_code
        == 401
    )
    assert client.get("/mp/v1/loyalty/me", headers={"X-Siyu-Session": "forged"}).status_code == 401
