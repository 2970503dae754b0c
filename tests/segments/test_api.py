"""Segments through the API: define, preview, follow events in real time, fail visibly, export."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.db import utcnow
from siyu.ingest import processor
from siyu.ingest.models import Event
from siyu.segments import tasks
from siyu.segments.models import Segment, SegmentMember, SegmentSize
from tests import factories
from tests.factories import event
from tests.helpers import Api
from tests.segments.conftest import Population

TWO_ORDERS = {"event": "Order Completed", "count": {"gte": 2}}


def order(user: str, n: int, days_ago: float = 1) -> dict[str, Any]:
    at = (utcnow() - dt.timedelta(days=days_ago)).isoformat()
    return event(
        userId=user,
        event="Order Completed",
        properties={"order_id": f"{user}-{n}", "total": 10},
        timestamp=at,
    )


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def post(api: Api, path: str, body: dict[str, Any], expect: int) -> Any:
    r = api.client.post(path, json=body, headers=factories.auth(api.admin_key))
    assert r.status_code == expect, r.text
    return r.json()


def test_create_preview_and_members(population: Population, session: Session) -> None:
    api = population.api
    preview = post(api, "/api/v1/segments/preview", {"rule": {"tag": "hi-po"}}, 200)
    assert preview["size"] == 2 and population.names(preview["sample"]) == {"amy", "dan"}
    body = post(api, "/api/v1/segments", {"name": "Hi-Po", "rule": {"tag": "hi-po"}}, 201)
    assert (body["status"], body["size"], body["version"]) == ("ready", 2, 1)
    r = api.client.get(f"/api/v1/segments/{body['id']}/members", headers=factories.auth(api.admin_key))
    assert population.names(r.json()["profile_ids"]) == {"amy", "dan"}
    r = api.client.get(f"/api/v1/segments/{body['id']}/export.csv", headers=factories.auth(api.admin_key))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0] == "profile_id,entered_at" and len(lines) == 3
    post(api, "/api/v1/segments", {"name": "Hi-Po", "rule": {"tag": "x"}}, 409)


def test_bad_rule_points_at_the_node(api: Api) -> None:
    rule = {"all": [{"tag": "vip"}, {"event": "Order Completed", "count": {"gte": "two"}}]}
    body = post(api, "/api/v1/segments", {"name": "Bad", "rule": rule}, 422)
    assert body["path"] == "$.all[1].count.gte"
    assert "whole number" in body["detail"]
    assert post(api, "/api/v1/segments/preview", {"rule": {"stage": "Loyl"}}, 422)["path"] == "$.stage"


def test_a_store_or_region_that_does_not_exist_points_at_the_node(api: Api, session: Session) -> None:
    """A typo in a code would silently match no one: refused, with the spelling that exists."""
    factories.store(session, "SH01", region_code="EAST")
    typo = {"all": [{"tag": "vip"}, {"not": {"store": ["SH01", "sh01"]}}]}
    body = post(api, "/api/v1/segments", {"name": "Typo", "rule": typo}, 422)
    assert body["path"] == "$.all[1].not.store" and "no store 'sh01' (did you mean 'SH01'?)" in body["detail"]
    body = post(api, "/api/v1/segments/preview", {"rule": {"region": "WEST"}}, 422)
    assert body["path"] == "$.region" and body["detail"].endswith("no region 'WEST' (regions: EAST)")
    assert post(api, "/api/v1/segments/preview", {"rule": {"region": "EAST"}}, 200)["size"] == 0


def test_membership_follows_events_and_is_on_the_timeline(api: Api, session: Session) -> None:
    seg = post(api, "/api/v1/segments", {"name": "Two orders", "rule": TWO_ORDERS}, 201)
    api.send(order("zoe", 1))
    pid = int(api.lookup("member_id", "zoe")["id"])
    assert not session.get(SegmentMember, (seg["id"], pid))
    api.send(order("zoe", 2))
    # Entered in the same transaction as the event that qualified her.
    assert session.get(SegmentMember, (seg["id"], pid))
    processor.drain()
    timeline = session.execute(
        select(Event.event, Event.properties).where(Event.profile_id == pid, Event.event == "Segment Entered")
    ).all()
    assert [(name, props["segment"]) for name, props in timeline] == [("Segment Entered", "Two orders")]
    # Leaving: the rule changes so that she no longer qualifies.
    r = api.client.patch(
        f"/api/v1/segments/{seg['id']}",
        json={"rule": {"event": "Order Completed", "count": {"gte": 3}}},
        headers=factories.auth(api.admin_key),
    )
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["size"] == 0
    processor.drain()
    exited = session.execute(
        select(Event.id).where(Event.profile_id == pid, Event.event == "Segment Exited")
    ).all()
    assert len(exited) == 1
    sizes = session.execute(
        select(SegmentSize.kind, SegmentSize.size)
        .where(SegmentSize.segment_id == seg["id"])
        .order_by(SegmentSize.id)
    ).all()
    assert [tuple(s) for s in sizes] == [("full", 0), ("incremental", 1), ("full", 0)]


def test_time_moves_members_out_on_schedule(api: Api, session: Session) -> None:
    api.send(order("yan", 1, days_ago=29.99))
    seg = post(
        api,
        "/api/v1/segments",
        {"name": "Bought this month", "rule": {"event": "Order Completed", "within_days": 30}},
        201,
    )
    assert seg["size"] == 1
    # Nothing happens to her but time: the schedule takes her out once the window has passed.
    session.execute(
        update(Event)
        .where(Event.event == "Order Completed")
        .values(timestamp=utcnow() - dt.timedelta(days=31))
    )
    from siyu import db

    done = tasks.run_scheduled(db.get_sessionmaker())
    assert done[seg["id"]] is not None and done[seg["id"]].exited == 1
    assert session.get_one(Segment, seg["id"]).size == 0


def test_a_failed_computation_shows_as_failed(api: Api, session: Session) -> None:
    seg = post(api, "/api/v1/segments", {"name": "Broken later", "rule": {"tag": "x"}}, 201)
    # A rule that no longer compiles (written by an older version, say) fails loudly, never "in progress".
    session.execute(update(Segment).where(Segment.id == seg["id"]).values(rule={"colour": "red"}))
    r = api.client.post(f"/api/v1/segments/{seg['id']}/refresh", headers=factories.auth(api.admin_key))
    assert r.status_code == 422 and "unknown node" in r.json()["detail"]
    body = api.client.get(f"/api/v1/segments/{seg['id']}", headers=factories.auth(api.admin_key)).json()
    assert body["status"] == "failed" and "unknown node" in body["error"]


def test_store_roles_cannot_use_brand_wide_segments(api: Api, session: Session) -> None:
    key = factories.api_key(session, Role.sales_associate)
    r = api.client.get("/api/v1/segments", headers=factories.auth(key))
    assert r.status_code == 403


def test_a_marketer_may_not_segment_on_the_value_of_personal_data(api: Api, session: Session) -> None:
    """Her phones and names are masked: a preview of "phone is X" would tell her who has it."""
    marketer = factories.auth(factories.api_key(session, Role.marketer))

    def preview(rule: dict[str, Any]) -> Any:
        return api.client.post("/api/v1/segments/preview", json={"rule": rule}, headers=marketer)

    r = preview({"all": [{"tag": "vip"}, {"trait": "phone", "op": "eq", "value": "+8613812345678"}]})
    assert r.status_code == 422 and r.json()["path"] == "$.all[1].trait", r.text
    assert "personal data" in r.json()["detail"]
    r = preview(
        {"event": "Order Completed", "where": [{"property": "shipping_name", "op": "eq", "value": "王"}]}
    )
    assert r.status_code == 422 and r.json()["path"] == "$.where[0].property"
    created = api.client.post(
        "/api/v1/segments",
        json={"name": "x", "rule": {"trait": "name", "op": "contains", "value": "王"}},
        headers=marketer,
    )
    assert created.status_code == 422
    r = preview({"trait": "wx_account", "op": "eq", "value": "13911112222"})  # a phone under any key
    assert r.status_code == 422 and r.json()["path"] == "$.value", r.text
    r = preview(
        {"event": "X", "where": [{"property": "by", "op": "in", "value": ["a", "nancy@example.com"]}]}
    )
    assert r.status_code == 422 and r.json()["path"] == "$.where[0].value", r.text
    # Whether she has a phone says nothing about whom it is; an admin may ask anything.
    assert preview({"trait": "phone", "op": "exists"}).status_code == 200
    post(
        api,
        "/api/v1/segments/preview",
        {"rule": {"trait": "phone", "op": "eq", "value": "+8613812345678"}},
        200,
    )
