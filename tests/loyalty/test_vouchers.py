"""Vouchers: issued with unique codes within stock, redeemed exactly once, rewards bought with points."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.loyalty import service
from siyu.profiles.models import Profile
from tests import factories


@pytest.fixture
def admin(session: Session) -> dict[str, str]:
    return factories.auth(factories.api_key(session, Role.admin))


@pytest.fixture
def profile_id(client: TestClient, session: Session, admin: dict[str, str]) -> int:
    profile = Profile()
    session.add(profile)
    session.flush()
    assert (
        client.post("/api/v1/loyalty/members", json={"profile_id": profile.id}, headers=admin).status_code
        == 201
    )
    return profile.id


def template(client: TestClient, admin: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post("/api/v1/loyalty/voucher-templates", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return dict(r.json())


def call(client: TestClient, headers: dict[str, str], path: str, key: str, **body: Any) -> Any:
    return client.post(path, json=body, headers={**headers, "Idempotency-Key": key})


def test_issue_and_redeem_exactly_once(client: TestClient, admin: dict[str, str], profile_id: int) -> None:
    t = template(
        client,
        admin,
        name="20 RMB off, 200 minimum",
        kind="amount_off",
        value=2000,
        min_spend_fen=20000,
        channels=["pos", "miniprogram"],
    )
    issued = call(client, admin, f"/api/v1/loyalty/members/{profile_id}/vouchers", "i1", template_id=t["id"])
    assert issued.status_code == 201
    again = call(client, admin, f"/api/v1/loyalty/members/{profile_id}/vouchers", "i1", template_id=t["id"])
    assert again.status_code == 200 and again.json()["code"] == issued.json()["code"]
    code = issued.json()["code"]
    assert len(code) == 10 and not set(code) & set("01OIL")
    redeem = f"/api/v1/loyalty/vouchers/{code}/redeem"
    # An order total beyond any order's (100,000,000 yuan) is refused, naming the field; the voucher stays.
    huge = call(client, admin, redeem, "r0", channel="pos", order_total_fen=10**20)
    assert huge.status_code == 422 and "order_total_fen" in str(huge.json()["detail"])
    low = call(client, admin, redeem, "r0", channel="pos", order_total_fen=19999)
    assert low.status_code == 409 and "minimum spend of 200.00 CNY" in low.json()["detail"]
    wrong = call(client, admin, redeem, "r0", channel="tmall", order_total_fen=50000)
    assert wrong.status_code == 409 and "not tmall" in wrong.json()["detail"]
    ok = call(client, admin, redeem, "r1", channel="pos", order_total_fen=50000, order_id="JA-1")
    assert ok.status_code == 200 and ok.json()["status"] == "redeemed"
    assert (
        call(client, admin, redeem, "r1", channel="pos", order_total_fen=50000).status_code == 200
    )  # the retry
    twice = call(client, admin, redeem.lower(), "r2", channel="miniprogram", order_total_fen=50000)
    assert twice.status_code == 409 and "already redeemed" in twice.json()["detail"]


def test_stock_is_never_exceeded(client: TestClient, admin: dict[str, str], profile_id: int) -> None:
    t = template(client, admin, name="Blind box gift", kind="free_gift", gift_sku="SCARF-1", stock=2)
    codes = [
        call(client, admin, f"/api/v1/loyalty/members/{profile_id}/vouchers", f"s{i}", template_id=t["id"])
        for i in range(3)
    ]
    assert [r.status_code for r in codes] == [201, 201, 409]
    assert "out of stock" in codes[2].json()["detail"]


def test_reward_catalogue_spends_points_or_issues_nothing(
    client: TestClient, session: Session, admin: dict[str, str], profile_id: int
) -> None:
    t = template(client, admin, name="10% off", kind="percent_off", value=10, points_cost=300)
    member = service.get_member_by_profile_or_raise(session, profile_id)
    service.earn(session, member.id, 500, key="seed")
    bought = call(client, admin, f"/api/v1/loyalty/members/{profile_id}/rewards", "b1", template_id=t["id"])
    assert bought.status_code == 201
    session.refresh(member)
    assert member.balance == 200
    poor = call(client, admin, f"/api/v1/loyalty/members/{profile_id}/rewards", "b2", template_id=t["id"])
    assert poor.status_code == 409
    listed = client.get(f"/api/v1/loyalty/members/{profile_id}/vouchers", headers=admin).json()
    assert len(listed) == 1 and listed[0]["code"] == bought.json()["code"]
    not_reward = template(client, admin, name="gift", kind="free_gift", gift_sku="X")
    assert (
        call(
            client, admin, f"/api/v1/loyalty/members/{profile_id}/rewards", "b3", template_id=not_reward["id"]
        ).status_code
        == 400
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "kind": "percent_off", "value": 120}, "between 1 and 100"),
        ({"name": "x", "kind": "amount_off", "value": 0}, "more than 0"),
        ({"name": "x", "kind": "free_gift"}, "gift_sku"),
        ({"name": "x", "kind": "amount_off", "value": 100, "points_cost": 0}, "points_cost"),
        ({"name": "x", "kind": "amount_off", "value": 100, "valid_days": 9_999_999_999}, "at most 3,660"),
    ],
)
def test_bad_templates(client: TestClient, admin: dict[str, str], body: dict[str, Any], message: str) -> None:
    r = client.post("/api/v1/loyalty/voucher-templates", json=body, headers=admin)
    assert r.status_code == 400 and message in r.json()["detail"]
