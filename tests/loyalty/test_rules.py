"""Earning rules configured through the API: the seeds' mechanics (first Mini Program visit, favourites,
shares, check-ins capped per day, tier and category multipliers, Membership Day x2, campaign budgets)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.loyalty import service
from tests import factories
from tests.factories import event
from tests.helpers import Api


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def rule(api: Api, **body: Any) -> dict[str, Any]:
    r = api.client.post("/api/v1/loyalty/rules", json=body, headers=factories.auth(api.admin_key))
    assert r.status_code == 201, r.text
    return dict(r.json())


def join(api: Api, member: str, at: str = "2026-11-01T09:00:00+08:00", tier: str = "Jade") -> int:
    api.send(event(userId=member, event="Membership Joined", properties={"tier": tier}, timestamp=at))
    return int(api.lookup("member_id", member)["id"])


def balance(session: Session, profile_id: int) -> tuple[int, int]:
    member = service.get_member_by_profile_or_raise(session, profile_id)
    session.refresh(member)
    return member.balance, member.pending


def test_event_rules_first_only_and_daily_cap(api: Api, session: Session) -> None:
    rule(
        api,
        name="First Mini Program visit",
        event="Mini Program Opened",
        mode="fixed",
        amount=50,
        first_only=True,
    )
    rule(api, name="Favourite", event="Product Added to Wishlist", mode="fixed", amount=5, cap_per_day=10)
    rule(api, name="Check-in", event="Checked In", mode="fixed", amount=2, channels=["miniprogram"])
    pid = join(api, "M1")
    day = "2026-11-02T{:02d}:00:00+08:00"
    api.send(
        event(userId="M1", event="Mini Program Opened", timestamp=day.format(9)),
        event(userId="M1", event="Mini Program Opened", timestamp=day.format(10)),
        *[
            event(userId="M1", event="Product Added to Wishlist", timestamp=day.format(11 + i))
            for i in range(3)
        ],
        event(userId="M1", event="Product Added to Wishlist", timestamp="2026-11-03T09:00:00+08:00"),
        event(
            userId="M1", event="Checked In", properties={"channel": "miniprogram"}, timestamp=day.format(20)
        ),
        event(userId="M1", event="Checked In", properties={"channel": "pos"}, timestamp=day.format(21)),
    )
    # 50 once; favourites 5 + 5 (then capped at 10 that day) + 5 the next day; one check-in from the Mini Program.
    assert balance(session, pid) == (50 + 10 + 5 + 2, 0)


def test_orders_with_tier_and_category_multipliers_and_membership_day(api: Api, session: Session) -> None:
    rule(
        api,
        name="Purchases",
        event="Order Completed",
        mode="per_yuan",
        amount=1,
        tier_multipliers={"Gold": 1.5},
        item_multipliers={"category:qipao": 2},
    )
    rule(
        api,
        name="Membership Day x2",
        event="Order Completed",
        mode="multiplier",
        amount=2,
        starts_at="2026-11-11T00:00:00+08:00",
        ends_at="2026-11-12T00:00:00+08:00",
    )
    gold = join(api, "G1", tier="Gold")
    jade = join(api, "J1")
    order = {
        "order_id": "O1",
        "total": 1500,
        "products": [
            {"sku": "QP-1", "category": "qipao", "price": 1000, "quantity": 1},
            {"sku": "SC-1", "category": "scarf", "price": 500, "quantity": 1},
        ],
    }
    api.send(
        event(userId="J1", event="Order Completed", properties=order, timestamp="2026-11-05T12:00:00+08:00")
    )
    # 1000 qipao x2 + 500 scarf, pending for the return window.
    assert balance(session, jade) == (0, 2500)
    api.send(
        event(
            userId="G1",
            event="Order Completed",
            properties={**order, "order_id": "O2"},
            timestamp="2026-11-11T12:00:00+08:00",
        )
    )
    # Gold x1.5 and Membership Day x2: 2500 x 1.5 x 2.
    assert balance(session, gold) == (0, 7500)


def test_category_multipliers_cover_sub_categories_most_specific_first(api: Api, session: Session) -> None:
    # Segment's spec writes categories as paths; the demo catalogue's are "Qipao/Heritage", "Qipao/Evening"...
    rule(
        api,
        name="Purchases",
        event="Order Completed",
        mode="per_yuan",
        amount=1,
        item_multipliers={"category:qipao": 2, "category:Qipao/Evening": 3, "sku:QP-9": 5},
    )
    pid = join(api, "M1")
    lines = [
        {"sku": "QP-1", "category": "Qipao/Heritage", "price": 100},  # x2, by its parent category
        {"sku": "QP-2", "category": "qipao / evening", "price": 100},  # x3, its own category wins
        {"sku": "QP-9", "category": "Qipao/Evening", "price": 100},  # x5, the SKU wins
        {"sku": "QX-1", "category": "Qipaoish/Modern", "price": 100},  # x1: not a sub-category of qipao
        {"sku": "AC-1", "category": "Accessories/Scarf", "price": 100},  # x1
    ]
    api.send(
        event(
            userId="M1",
            event="Order Completed",
            properties={"order_id": "O1", "total": 500, "products": lines},
        )
    )
    assert balance(session, pid) == (0, 200 + 300 + 500 + 100 + 100)


def test_campaign_budget_and_per_member_cap(api: Api, session: Session) -> None:
    rule(
        api,
        name="Share to Win Credits",
        event="Product Shared",
        mode="fixed",
        amount=10,
        cap_per_member=20,
        cap_total=25,
    )
    a, b = join(api, "A1"), join(api, "B1")
    api.send(
        *[
            event(userId="A1", event="Product Shared", timestamp=f"2026-11-0{d}T10:00:00+08:00")
            for d in range(2, 6)
        ]
    )
    api.send(
        *[
            event(userId="B1", event="Product Shared", timestamp=f"2026-11-0{d}T11:00:00+08:00")
            for d in range(2, 6)
        ]
    )
    assert balance(session, a) == (20, 0)  # the member cap
    assert balance(session, b) == (5, 0)  # what was left of the campaign's 25


def test_refund_of_a_multi_rule_order_takes_back_its_share(api: Api, session: Session) -> None:
    rule(api, name="Purchases", event="Order Completed", mode="per_yuan", amount=1)
    rule(
        api,
        name="Qipao bonus",
        event="Order Completed",
        mode="fixed",
        amount=100,
        where={"campaign": "qipao-week"},
    )
    pid = join(api, "R1")
    api.send(
        event(
            userId="R1",
            event="Order Completed",
            properties={"order_id": "Q1", "total": 800, "campaign": "qipao-week"},
            timestamp="2026-11-05T12:00:00+08:00",
        )
    )
    assert balance(session, pid) == (0, 900)
    api.send(
        event(
            userId="R1",
            event="Order Refunded",
            properties={"order_id": "Q1", "total": 400},
            timestamp="2026-11-06T12:00:00+08:00",
        )
    )
    assert balance(session, pid) == (0, 450)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"name": "x", "event": "Order Completed", "mode": "fixed", "amount": 0},
            "amount: must be more than 0",
        ),
        ({"name": "x", "event": "Order Completed", "mode": "fixed", "amount": 1.5}, "whole points"),
        (
            {"name": "x", "event": "E", "mode": "per_yuan", "amount": 1, "item_multipliers": {"qipao": 2}},
            "item_multipliers.qipao",
        ),
        (
            {
                "name": "x",
                "event": "E",
                "mode": "fixed",
                "amount": 1,
                "starts_at": "2026-11-02T00:00:00Z",
                "ends_at": "2026-11-01T00:00:00Z",
            },
            "ends_at",
        ),
        ({"name": "x", "event": "E", "mode": "fixed", "amount": 1, "cap_total": 0}, "cap_total"),
    ],
)
def test_bad_rules(api: Api, body: dict[str, Any], message: str) -> None:
    r = api.client.post("/api/v1/loyalty/rules", json=body, headers=factories.auth(api.admin_key))
    assert r.status_code == 400 and message in r.json()["detail"]


def test_a_multiplier_for_a_tier_that_does_not_exist_is_refused(api: Api, session: Session) -> None:
    from siyu.loyalty import tiers

    tiers.create(session, name="Jade", rank=0, multiplier=1.0)
    tiers.create(session, name="Gold", rank=1, threshold_points=1000, multiplier=1.5)
    body = {"name": "x", "event": "E", "mode": "per_yuan", "amount": 1, "tier_multipliers": {"gold": 1.5}}
    r = api.client.post("/api/v1/loyalty/rules", json=body, headers=factories.auth(api.admin_key))
    assert r.status_code == 400
    assert r.json()["detail"] == "tier_multipliers.gold: no tier 'gold' (tiers: Jade, Gold)"
    made = rule(api, **{**body, "tier_multipliers": {"Gold": 1.5}})
    twice = api.client.post(
        "/api/v1/loyalty/rules", json={**body, "tier_multipliers": {}}, headers=factories.auth(api.admin_key)
    )
    assert (
        twice.status_code == 409
        and f"an active rule named 'x' exists (#{made['id']})" in twice.json()["detail"]
    )


def test_switching_a_rule_off(api: Api, session: Session) -> None:
    favourite = rule(api, name="Favourite", event="Product Added to Wishlist", mode="fixed", amount=5)
    pid = join(api, "S1")
    r = api.client.patch(
        f"/api/v1/loyalty/rules/{favourite['id']}",
        json={"active": False},
        headers=factories.auth(api.admin_key),
    )
    assert r.status_code == 200 and r.json()["active"] is False
    api.send(event(userId="S1", event="Product Added to Wishlist", timestamp="2026-11-02T10:00:00+08:00"))
    assert balance(session, pid) == (0, 0)
