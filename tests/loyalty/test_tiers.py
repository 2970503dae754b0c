"""Tiers: qualifying points over 12 months, immediate upgrade on the timeline, one-step anniversary downgrade."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu import db
from siyu.ingest import processor
from siyu.ingest.models import Event
from siyu.loyalty import service
from siyu.loyalty.tasks import run_scheduled
from siyu.profiles import service as profiles_service
from siyu.profiles.models import Profile
from tests import factories
from tests.factories import event
from tests.helpers import Api


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    api = Api(client, session)
    for body in (
        {"name": "Jade", "rank": 0},
        {
            "name": "Gold",
            "rank": 1,
            "threshold_points": 1000,
            "multiplier": 1.5,
            "benefits": ["early_access"],
        },
        {
            "name": "Platinum",
            "rank": 2,
            "threshold_points": 5000,
            "threshold_spend_fen": 800000,
            "multiplier": 2,
            "benefits": ["early_access", "event_invitations"],
        },
    ):
        r = client.post("/api/v1/loyalty/tiers", json=body, headers=factories.auth(api.admin_key))
        assert r.status_code == 201, r.text
    return api


def member_of(api: Api, session: Session, member_id: str) -> Any:
    m = service.get_member_by_profile_or_raise(session, int(api.lookup("member_id", member_id)["id"]))
    session.refresh(m)
    return m


def test_upgrade_is_immediate_and_on_the_timeline(api: Api, session: Session) -> None:
    api.send(event(userId="T1", event="Membership Joined", timestamp="2026-01-10T10:00:00+08:00"))
    assert member_of(api, session, "T1").tier == "Jade"
    api.send(
        event(
            userId="T1",
            event="Order Completed",
            properties={"order_id": "A", "total": 1200},
            timestamp="2026-02-01T10:00:00+08:00",
        )
    )
    member = member_of(api, session, "T1")
    assert member.tier == "Gold"  # 1,200 pending points qualify at once
    # The next order earns at Gold's 1.5: 8,000 CNY x 1.5 = 12,000 points, and 9,200 CNY spend reaches Platinum.
    api.send(
        event(
            userId="T1",
            event="Order Completed",
            properties={"order_id": "B", "total": 8000},
            timestamp="2026-03-01T10:00:00+08:00",
        )
    )
    member = member_of(api, session, "T1")
    assert member.tier == "Platinum" and member.pending == 1200 + 12000
    changes = (
        session.execute(
            select(Event.properties).where(Event.event == "Tier Changed").order_by(Event.timestamp)
        )
        .scalars()
        .all()
    )
    assert [(c["from"], c["to"]) for c in changes] == [("Jade", "Gold"), ("Gold", "Platinum")]


def test_points_posted_through_the_api_upgrade_at_once(api: Api, session: Session) -> None:
    api.send(event(userId="T2", event="Membership Joined"))
    pid = api.lookup("member_id", "T2")["id"]

    def post(points: int, key: str) -> Any:
        r = api.client.post(
            f"/api/v1/loyalty/members/{pid}/postings",
            json={"kind": "earn", "points": points, "reason": "store event"},
            headers={**factories.auth(api.admin_key), "Idempotency-Key": key},
        )
        assert r.status_code == 201, r.text
        return r.json()

    post(600, "k1")
    assert member_of(api, session, "T2").tier == "Jade"
    post(600, "k2")  # 1,200 in 12 months: Gold's 1,000
    assert member_of(api, session, "T2").tier == "Gold"
    processor.drain()
    change = session.execute(select(Event.properties).where(Event.event == "Tier Changed")).scalar_one()
    assert (change["from"], change["to"]) == ("Jade", "Gold")


def sent_on(monkeypatch: pytest.MonkeyPatch, api: Api, when: str, *events: dict[str, Any]) -> None:
    """Send events as they arrive on that day: a timestamp more than a day ahead of arrival is refused."""
    with monkeypatch.context() as m:
        m.setattr("siyu.ingest.api.utcnow", lambda: dt.datetime.fromisoformat(when) + dt.timedelta(hours=1))
        api.send(*events)


def test_anniversary_downgrade_by_one_tier(
    api: Api, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.send(
        event(userId="T2", event="Membership Joined", timestamp="2025-03-01T10:00:00+08:00"),
        event(
            userId="T2",
            event="Order Completed",
            properties={"order_id": "C", "total": 6000},
            timestamp="2025-03-02T10:00:00+08:00",
        ),
    )
    assert member_of(api, session, "T2").tier == "Platinum"
    # The first anniversary judges the year that contains the order: kept.
    run_scheduled(db.get_sessionmaker(), now=dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC))
    member = member_of(api, session, "T2")
    assert (
        member.tier == "Platinum" and member.tier_review_at is not None and member.tier_review_at.year == 2027
    )
    # The second: nothing earned in its year, down one tier, not to the bottom.
    run_scheduled(db.get_sessionmaker(), now=dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC))
    member = member_of(api, session, "T2")
    assert member.tier == "Gold" and member.tier_review_at is not None and member.tier_review_at.year == 2028
    # The review's "Tier Changed" is on her timeline but is not her being seen: last seen stays at her order,
    # counted as it arrived and when the counters are rebuilt from the events.
    processor.drain()
    profile_id = member.profile_id
    assert session.execute(select(Event.event).where(Event.event == "Tier Changed")).all()
    order_at = dt.datetime(2025, 3, 2, 2, 0, tzinfo=dt.UTC)
    assert api.profile(profile_id)["counters"]["last_seen_at"] == order_at.isoformat().replace("+00:00", "Z")
    profiles_service.recompute(session, [profile_id])
    session.flush()
    session.expire_all()
    assert session.get(Profile, profile_id).last_seen_at == order_at  # type: ignore[union-attr]
    run_scheduled(db.get_sessionmaker(), now=dt.datetime(2027, 3, 3, tzinfo=dt.UTC))  # not due again
    assert member_of(api, session, "T2").tier == "Gold"
    sent_on(
        monkeypatch,
        api,
        "2028-02-01T10:00:00+08:00",
        event(
            userId="T2",
            event="Order Completed",
            properties={"order_id": "D", "total": 1500},
            timestamp="2028-02-01T10:00:00+08:00",
        ),
    )
    run_scheduled(db.get_sessionmaker(), now=dt.datetime(2028, 3, 1, 12, 0, tzinfo=dt.UTC))
    assert member_of(api, session, "T2").tier == "Gold"  # requalified: 1,500 x 1.5 points in the year


def test_a_late_review_judges_the_year_before_the_anniversary(
    api: Api, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both joined on 1 March 2025 and reached Platinum by spend; their anniversaries fall on 1 March.
    for member in ("L1", "L2"):
        api.send(
            event(userId=member, event="Membership Joined", timestamp="2025-03-01T10:00:00+08:00"),
            event(
                userId=member,
                event="Order Completed",
                properties={"order_id": f"{member}-1", "total": 9000},
                timestamp="2025-03-02T10:00:00+08:00",
            ),
        )
        assert member_of(api, session, member).tier == "Platinum"
    # The worker was down: the 2026 review runs two months late. The order fell in the year before the
    # anniversary, not in the 12 months before 1 May: both keep Platinum.
    run_scheduled(db.get_sessionmaker(), now=dt.datetime(2026, 5, 1, tzinfo=dt.UTC))
    assert [member_of(api, session, m).tier for m in ("L1", "L2")] == ["Platinum", "Platinum"]
    # L2 buys again after the 2027 anniversary, before its (late) review: qualifying now, it keeps the tier.
    sent_on(
        monkeypatch,
        api,
        "2027-04-01T10:00:00+08:00",
        event(
            userId="L2",
            event="Order Completed",
            properties={"order_id": "L2-2", "total": 8500},
            timestamp="2027-04-01T10:00:00+08:00",
        ),
    )
    run_scheduled(db.get_sessionmaker(), now=dt.datetime(2027, 5, 1, tzinfo=dt.UTC))
    assert [member_of(api, session, m).tier for m in ("L1", "L2")] == ["Gold", "Platinum"]


def test_bad_tiers(api: Api) -> None:
    headers = factories.auth(api.admin_key)
    r = api.client.post("/api/v1/loyalty/tiers", json={"name": "Diamond", "rank": 3}, headers=headers)
    assert r.status_code == 400 and "needs a threshold" in r.json()["detail"]
    r = api.client.post(
        "/api/v1/loyalty/tiers", json={"name": "Gold", "rank": 4, "threshold_points": 1}, headers=headers
    )
    assert r.status_code == 409
    assert "a tier named 'Gold' exists (rank 1)" in r.json()["detail"]
    r = api.client.post(
        "/api/v1/loyalty/tiers", json={"name": "Dup", "rank": 2, "threshold_points": 9000}, headers=headers
    )
    assert r.status_code == 409 and r.json()["detail"] == "tier 'Platinum' has rank 2"
    # A higher rank needs more than every lower one: 100 points would jump past Gold and Platinum.
    r = api.client.post(
        "/api/v1/loyalty/tiers", json={"name": "Lower", "rank": 3, "threshold_points": 100}, headers=headers
    )
    assert r.status_code == 400 and "needs more points than 'Platinum'" in r.json()["detail"]
    # A multiplier or a rule amount that would overflow every later earning of its members.
    r = api.client.post(
        "/api/v1/loyalty/tiers",
        json={"name": "Huge", "rank": 3, "threshold_points": 90_000, "multiplier": 1e308},
        headers=headers,
    )
    assert r.status_code == 400 and "multiplier: more than 0 and at most 100" in r.json()["detail"]
    r = api.client.post(
        "/api/v1/loyalty/rules",
        json={"name": "Mega", "event": "Product Viewed", "mode": "fixed", "amount": 1e300},
        headers=headers,
    )
    assert r.status_code == 400 and "amount: at most 1,000,000 for a fixed rule" in r.json()["detail"]
    # A campaign window in year 1 or 9999 is a typo: the rule would always or never apply.
    for field, when in (("starts_at", "0001-01-01T00:00:00Z"), ("ends_at", "9999-12-31T23:59:59Z")):
        r = api.client.post(
            "/api/v1/loyalty/rules",
            json={"name": "Typo", "event": "Product Viewed", "mode": "fixed", "amount": 1, field: when},
            headers=headers,
        )
        assert r.status_code == 400 and r.json()["detail"].startswith(f"{field}: a date from 2000 to 2999")


def test_a_tier_is_changed_but_not_its_rank(api: Api) -> None:
    headers = factories.auth(api.admin_key)
    listed = {t["name"]: t for t in api.client.get("/api/v1/loyalty/tiers", headers=headers).json()}
    gold = listed["Gold"]["id"]
    r = api.client.patch(
        f"/api/v1/loyalty/tiers/{gold}", json={"multiplier": 1.8, "name": "Gold+"}, headers=headers
    )
    assert r.status_code == 200 and (r.json()["multiplier"], r.json()["name"], r.json()["rank"]) == (
        1.8,
        "Gold+",
        1,
    )
    r = api.client.patch(f"/api/v1/loyalty/tiers/{gold}", json={"threshold_points": 6000}, headers=headers)
    assert r.status_code == 400 and "needs more points than 'Gold+'" in r.json()["detail"]
    r = api.client.patch(f"/api/v1/loyalty/tiers/{gold}", json={"rank": 5}, headers=headers)
    assert r.status_code == 422  # a rank is a tier's place: make a new tier instead
    r = api.client.patch(f"/api/v1/loyalty/tiers/{gold}", json={"name": "Platinum"}, headers=headers)
    assert r.status_code == 409
    assert (
        api.client.patch("/api/v1/loyalty/tiers/999", json={"multiplier": 2}, headers=headers).status_code
        == 404
    )
    # A null multiplier keeps the one there (a cleared threshold would mean something; a null multiplier not).
    kept = api.client.patch(f"/api/v1/loyalty/tiers/{gold}", json={"multiplier": None}, headers=headers)
    assert kept.status_code == 200 and kept.json()["multiplier"] == 1.8
