"""Tags: put on by people, or kept true by automatic rules as events arrive; segments follow both."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.db import utcnow
from siyu.identity.service import PlannedMerge, merge_many
from siyu.profiles import service
from siyu.profiles.models import Profile, Tag
from siyu.segments.models import SegmentMember
from tests import factories
from tests.factories import event
from tests.helpers import Api


def at(days_ago: float) -> str:
    return (utcnow() - dt.timedelta(days=days_ago)).isoformat()


def order(
    user: str, n: int, *, channel: str, discount: float = 0, store: str | None = None
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "order_id": f"{user}-{n}",
        "total": 100,
        "channel": channel,
        "discount": discount,
    }
    if store:
        props["store"] = store
    return event(userId=user, event="Order Completed", properties=props, timestamp=at(10 - n))


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def names(session: Session, pid: int, source: str | None = None) -> set[str]:
    return {t.name for t in service.tags(session, pid) if source is None or t.source == source}


def test_automatic_tags_follow_behaviour(api: Api, session: Session) -> None:
    views = [
        event(userId="amy", event="Product Viewed", properties={"category": c}, timestamp=at(5))
        for c in ("qipao", "qipao", "qipao", "shoes", "shoes")
    ]
    api.send(
        *views,
        order("amy", 1, channel="store", store="SH01", discount=50),
        order("amy", 2, channel="store", store="SH01", discount=20),
    )
    pid = int(api.lookup("member_id", "amy")["id"])
    assert names(session, pid) == {
        "favourite-category:qipao",
        "preferred-channel:store",
        "preferred-store:SH01",
        "price-sensitive",
    }
    # More shoes than qipao now, and three full-price orders online: the rules move the tags.
    api.send(
        *[
            event(
                userId="amy",
                event="Product Added to Wishlist",
                properties={"category": "shoes"},
                timestamp=at(1),
            )
            for _ in range(3)
        ],
        *[order("amy", n, channel="mini_program") for n in (3, 4, 5, 6)],
    )
    tags = names(session, pid)
    assert "favourite-category:shoes" in tags and "favourite-category:qipao" not in tags
    assert "preferred-channel:mini_program" in tags
    assert "price-sensitive" not in tags  # 2 discounted of 6 orders


def test_each_rule_at_its_edges(api: Api, session: Session) -> None:
    """Minimum of browsing, ties (first by value), coupons, full price, and nothing older than a year."""

    def bought(user: str, n: int, days_ago: float, **props: Any) -> dict[str, Any]:
        return event(
            userId=user,
            event="Order Completed",
            properties={"order_id": f"{user}-{n}", "total": 100, **props},
            timestamp=at(days_ago),
        )

    api.send(
        # Bea: one look at a qipao is not a favourite; one order in each of two stores and channels: a tie,
        # won by the first value; one of her two orders used a coupon: half discounted.
        event(userId="bea", event="Product Viewed", properties={"category": "qipao"}, timestamp=at(3)),
        bought("bea", 1, 5, store="SH02", channel="store", coupon="WELCOME20"),
        bought("bea", 2, 4, store="BJ01", channel="mini_program"),
        # Cat: three full-price orders this year (one without a store); last year's discounted order and
        # browsing are outside the year and count for nothing.
        *[
            event(userId="cat", event="Product Viewed", properties={"category": "bags"}, timestamp=at(400))
            for _ in range(3)
        ],
        bought("cat", 0, 400, store="GZ01", channel="store", discount=30),
        bought("cat", 1, 30, store="SH01", channel="tmall"),
        bought("cat", 2, 20, store="SH01", channel="tmall", discount=0),
        bought("cat", 3, 10, channel="tmall"),
    )
    bea = int(api.lookup("member_id", "bea")["id"])
    cat = int(api.lookup("member_id", "cat")["id"])
    assert names(session, bea) == {
        "preferred-store:BJ01",
        "preferred-channel:mini_program",
        "price-sensitive",
    }
    assert names(session, cat) == {"preferred-store:SH01", "preferred-channel:tmall", "full-price"}


def test_manual_tags_through_the_api_move_segments(api: Api, session: Session) -> None:
    api.send(event("identify", userId="bo", traits={"name": "Bo"}))
    pid = int(api.lookup("member_id", "bo")["id"])
    headers = factories.auth(api.admin_key)
    r = api.client.post("/api/v1/segments", json={"name": "VIPs", "rule": {"tag": "vip"}}, headers=headers)
    seg = r.json()["id"]
    r = api.client.post(f"/api/v1/profiles/{pid}/tags", json={"name": "vip"}, headers=headers)
    assert r.status_code == 201 and r.json()["source"] == "manual"
    assert session.get(SegmentMember, (seg, pid))
    assert [t["name"] for t in api.profile(pid)["tags"]] == ["vip"]
    # Automatic rules never remove a manual tag.
    api.send(order("bo", 1, channel="store"))
    assert "vip" in names(session, pid, "manual")
    assert api.client.delete(f"/api/v1/profiles/{pid}/tags/vip", headers=headers).status_code == 204
    assert not session.get(SegmentMember, (seg, pid))
    assert api.client.delete(f"/api/v1/profiles/{pid}/tags/vip", headers=headers).status_code == 404
    assert (
        api.client.post(f"/api/v1/profiles/{pid}/tags", json={"name": ""}, headers=headers).status_code == 422
    )


def test_profile_360_has_stage_tags_and_segments(api: Api, session: Session) -> None:
    api.send(order("cy", 1, channel="tmall"))
    pid = int(api.lookup("member_id", "cy")["id"])
    body = api.profile(pid)
    assert body["lifecycle"]["stage"] == "First-Time"
    assert body["stage_changes"][0]["to_stage"] == "First-Time"
    assert "preferred-channel:tmall" in [t["name"] for t in body["tags"]]


def test_a_merge_moves_the_absorbed_profiles_tags(session: Session) -> None:
    """Tags follow the person: one of each name on the survivor, through a merge of a merge's survivor too."""
    profiles = [Profile() for _ in range(5)]
    session.add_all(profiles)
    session.flush()
    a, b, c, d, e = (p.id for p in profiles)
    service.add_tag(session, b, "VIP")
    service.add_tag(session, b, "qipao")
    service.add_tag(session, d, "VIP")
    service.add_tag(session, c, "wedding")
    # b and c are absorbed by a (no tags of its own), then a by d, in one call; e has nothing and stays so.
    merge_many(
        session,
        [
            PlannedMerge(a, [b, c], "test", None, None, "system", {}),
            PlannedMerge(d, [a], "test", None, None, "system", {}),
        ],
    )
    session.expire_all()
    held = session.execute(select(Tag.profile_id, Tag.name).order_by(Tag.name)).all()
    assert [(pid, name) for pid, name in held] == [(d, "VIP"), (d, "qipao"), (d, "wedding")]
    assert names(session, e) == set()
