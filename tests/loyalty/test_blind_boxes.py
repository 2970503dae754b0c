"""Blind boxes: paid with points, prizes by weight, stock never oversold, every draw verifiable."""

from __future__ import annotations

import random

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.loyalty import blind_boxes, service
from siyu.loyalty.models import BlindBoxPrize, Member
from siyu.profiles.models import Profile
from tests import factories


def new_member(session: Session, points: int) -> Member:
    profile = Profile()
    session.add(profile)
    session.flush()
    member, _ = service.enrol(session, profile.id)
    service.earn(session, member.id, points, key=f"seed-{member.id}")
    return member


def test_draws_through_the_api(client: TestClient, session: Session) -> None:
    admin = factories.auth(factories.api_key(session, Role.admin))
    gift = client.post(
        "/api/v1/loyalty/voucher-templates",
        json={"name": "Silk scarf", "kind": "free_gift", "gift_sku": "SCARF"},
        headers=admin,
    ).json()
    box = client.post(
        "/api/v1/loyalty/blind-boxes",
        json={
            "name": "Double 11 box",
            "points_cost": 100,
            "prizes": [
                {"name": "Silk scarf", "weight": 1, "stock": 1, "voucher_template_id": gift["id"]},
                {"name": "50 points back", "weight": 3, "bonus_points": 50},
            ],
        },
        headers=admin,
    )
    assert box.status_code == 201, box.text
    unknown = client.post(
        "/api/v1/loyalty/blind-boxes",
        json={
            "name": "Typo box",
            "points_cost": 100,
            "prizes": [{"name": "?", "weight": 1, "voucher_template_id": 99999}],
        },
        headers=admin,
    )
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == "prizes[0].voucher_template_id: no active voucher template #99999"
    member = new_member(session, 250)
    path = f"/api/v1/loyalty/members/{member.profile_id}/blind-boxes/{box.json()['id']}/draws"
    first = client.post(path, headers={**admin, "Idempotency-Key": "d1"})
    assert first.status_code == 201
    assert client.post(path, headers={**admin, "Idempotency-Key": "d1"}).json() == first.json()
    second = client.post(path, headers={**admin, "Idempotency-Key": "d2"})
    assert second.status_code == 201
    session.refresh(member)
    bonus = sum(r.json()["bonus_points"] for r in (first, second))
    assert member.balance == 250 - 200 + bonus
    third = client.post(path, headers={**admin, "Idempotency-Key": "d3"})
    assert third.status_code in (201, 409)  # 409 when the two draws gave no points back
    stats = client.get(f"/api/v1/loyalty/blind-boxes/{box.json()['id']}/stats", headers=admin).json()
    assert stats["unverifiable_draws"] == [] and stats["draws"] == 2 + (third.status_code == 201)
    assert [p["configured_odds"] for p in stats["prizes"]] == [0.25, 0.75]


def test_stock_and_observed_odds(session: Session) -> None:
    from siyu.loyalty.models import BlindBox

    box = BlindBox(name="Odds", points_cost=1, active=True)
    session.add(box)
    session.flush()
    rare = BlindBoxPrize(box_id=box.id, name="Rare", weight=1, stock=3, awarded=0, bonus_points=0)
    common = BlindBoxPrize(box_id=box.id, name="Common", weight=9, stock=None, awarded=0, bonus_points=0)
    session.add_all([rare, common])
    session.flush()
    member = new_member(session, 2000)
    roller = random.Random(11)
    for i in range(1000):
        blind_boxes.draw(session, box.id, member.id, key=f"odds-{i}", roller=roller)
    session.refresh(rare)
    assert rare.awarded == 3  # its stock, never more
    stats = {s.name: s for s in blind_boxes.stats(session, box.id)}
    assert stats["Rare"].draws == 3 and stats["Common"].draws == 997
    assert blind_boxes.verify(session, box.id) == []
    # Tampering with a recorded prize is detected.
    from siyu.loyalty.models import BlindBoxDraw

    tampered = session.execute(
        select(BlindBoxDraw).where(BlindBoxDraw.prize_id == common.id).limit(1)
    ).scalar_one()
    tampered.prize_id = rare.id
    session.flush()
    assert blind_boxes.verify(session, box.id) == [tampered.id]


def test_observed_share_follows_the_weights(session: Session) -> None:
    from siyu.loyalty.models import BlindBox

    box = BlindBox(name="Shares", points_cost=1, active=True)
    session.add(box)
    session.flush()
    session.add_all(
        [
            BlindBoxPrize(box_id=box.id, name="A", weight=1, awarded=0, bonus_points=0),
            BlindBoxPrize(box_id=box.id, name="B", weight=3, awarded=0, bonus_points=0),
        ]
    )
    session.flush()
    member = new_member(session, 4000)
    roller = random.Random(5)
    for i in range(4000):
        blind_boxes.draw(session, box.id, member.id, key=f"share-{i}", roller=roller)
    shares = {s.name: s.observed_share for s in blind_boxes.stats(session, box.id)}
    # 4,000 draws: the standard error of a 25 % share is 0.7 points; 3 points is over 4 of them.
    assert abs(shares["A"] - 0.25) < 0.03 and abs(shares["B"] - 0.75) < 0.03
