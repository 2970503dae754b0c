"""The journeys and messages APIs: roles, drafts, problems before publishing, enrolment by identifier,
templates with a preview on a real customer, caps, assets, the library, date entries and webhooks."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from sqlalchemy import select

from siyu import db
from siyu.auth.models import Role
from siyu.journeys import tasks
from siyu.journeys.models import Enrolment
from siyu.messaging.models import Channel, Message, MessageStatus
from siyu.outbox import service as outbox
from siyu.outbox.models import OutboxMessage, OutboxStatus
from siyu.profiles.models import Profile
from tests import factories
from tests.journeys.brand import NOW, Brand, linear


def test_roles_drafts_problems_and_publishing(brand: Brand) -> None:
    client, api = brand.api.client, brand.api
    sa = factories.auth(factories.api_key(brand.session, Role.sales_associate))
    admin = factories.auth(api.admin_key)
    assert client.get("/api/v1/journeys", headers=sa).status_code == 403
    draft = {
        "entry": {"type": "manual"},
        "start": "hello",
        "nodes": {"hello": {"type": "send", "template": "Nope", "next": "gone"}},
    }
    r = client.post("/api/v1/journeys", json={"name": "Welcome", "definition": draft}, headers=admin)
    assert r.status_code == 201, r.text
    jid = r.json()["id"]
    assert client.post("/api/v1/journeys", json={"name": "Welcome"}, headers=admin).status_code == 409
    problems = client.post(f"/api/v1/journeys/{jid}/validate", headers=admin).json()
    paths = {p["path"] for p in problems}
    assert {"$.nodes.hello.next", "$.nodes", "$.nodes.hello.template"} <= paths
    r = client.post(f"/api/v1/journeys/{jid}/publish", json={}, headers=admin)
    assert r.status_code == 422 and {p["path"] for p in r.json()["problems"]} == paths
    brand.template("Hello")
    fixed = linear({"type": "send", "template": "Hello"})
    assert (
        client.patch(f"/api/v1/journeys/{jid}", json={"definition": fixed}, headers=admin).status_code == 200
    )
    assert client.post(f"/api/v1/journeys/{jid}/validate", headers=admin).json() == []
    r = client.post(f"/api/v1/journeys/{jid}/publish", json={"in_flight": "migrate"}, headers=admin)
    assert r.status_code == 200 and r.json()["number"] == 1
    assert (
        client.post(
            f"/api/v1/journeys/{jid}/publish", json={"in_flight": "sometimes"}, headers=admin
        ).status_code
        == 422
    )
    versions = client.get(f"/api/v1/journeys/{jid}/versions", headers=admin).json()
    assert [v["number"] for v in versions] == [1]
    assert client.post(f"/api/v1/journeys/{jid}/pause", headers=admin).json()["status"] == "paused"
    assert client.post(f"/api/v1/journeys/{jid}/resume", headers=admin).json()["status"] == "active"


def test_enrol_a_list_by_identifier_and_take_someone_out(brand: Brand) -> None:
    client, admin = brand.api.client, factories.auth(brand.api.admin_key)
    amy = brand.follower("amy")
    j = brand.journey(linear({"type": "wait", "duration": "1d"}))
    body = {
        "identifiers": [{"type": "member_id", "value": "amy"}, {"type": "phone", "value": "+8613000000000"}],
        "key": "list-1",
    }
    r = client.post(f"/api/v1/journeys/{j.id}/enrol", json=body, headers=admin)
    assert r.json() == {
        "entered": 1,
        "not_found": [{"type": "phone", "value": "+8613000000000"}],
        "not_found_profile_ids": [],
        "invalid": [],
    }
    assert client.post(f"/api/v1/journeys/{j.id}/enrol", json=body, headers=admin).json()["entered"] == 0
    assert client.delete(f"/api/v1/journeys/{j.id}/enrolments/{amy}", headers=admin).status_code == 204
    # Again (a retry): nothing to end, no error. A customer who was never in it: 404.
    assert client.delete(f"/api/v1/journeys/{j.id}/enrolments/{amy}", headers=admin).status_code == 204
    never = client.delete(f"/api/v1/journeys/{j.id}/enrolments/999999", headers=admin)
    assert (
        never.status_code == 404 and never.json()["detail"] == f"profile 999999 was never in journey {j.id}"
    )
    rows = client.get(f"/api/v1/journeys/{j.id}/enrolments", params={"profile_id": amy}, headers=admin).json()
    assert [(e["status"], e["end_reason"], e["path"]) for e in rows] == [
        ("removed", "removed by an operator", [])
    ]


def test_enrol_by_a_phone_as_a_person_types_it(brand: Brand) -> None:
    client, admin = brand.api.client, factories.auth(brand.api.admin_key)
    bea = brand.follower("bea", traits={"phone": "+8613912345678"})
    j = brand.journey(linear({"type": "wait", "duration": "1d"}))
    body = {"identifiers": [{"type": "phone", "value": "139 1234 5678"}], "key": "list-2"}
    r = client.post(f"/api/v1/journeys/{j.id}/enrol", json=body, headers=admin)
    assert r.json() == {"entered": 1, "not_found": [], "not_found_profile_ids": [], "invalid": []}
    rows = client.get(f"/api/v1/journeys/{j.id}/enrolments", params={"profile_id": bea}, headers=admin).json()
    assert [e["status"] for e in rows] == ["active"]
    # A phone that is no number is reported with its place in the list; the rest of the list enrols.
    cai = brand.follower("cai", traits={"phone": "+8613900000001"})
    bad = {
        "identifiers": [{"type": "phone", "value": "12"}, {"type": "phone", "value": "13900000001"}],
        "key": "l3",
    }
    r = client.post(f"/api/v1/journeys/{j.id}/enrol", json=bad, headers=admin)
    assert r.status_code == 200 and r.json()["entered"] == 1
    [invalid] = r.json()["invalid"]
    assert invalid["index"] == 0 and "'12'" in invalid["reason"]
    assert [
        e["status"]
        for e in client.get(
            f"/api/v1/journeys/{j.id}/enrolments", params={"profile_id": cai}, headers=admin
        ).json()
    ] == ["active"]
    # A profile id no database holds is a 422 naming it, not a server error.
    r = client.post(f"/api/v1/journeys/{j.id}/enrol", json={"profile_ids": [10**20]}, headers=admin)
    assert r.status_code == 422 and "profile_ids" in r.text


def test_a_marketer_enrols_by_member_id_not_by_phone(brand: Brand) -> None:
    """Who entered and who was not found would tell her whose a phone is: she sees phones masked."""
    client = brand.api.client
    marketer = factories.auth(factories.api_key(brand.session, Role.marketer))
    brand.follower("dai", traits={"phone": "+8613900000009"})
    j = brand.journey(linear({"type": "wait", "duration": "1d"}))
    url = f"/api/v1/journeys/{j.id}/enrol"
    r = client.post(url, json={"identifiers": [{"type": "phone", "value": "13900000009"}]}, headers=marketer)
    assert r.status_code == 403 and "cannot enrol by phone" in r.json()["detail"]
    r = client.post(url, json={"identifiers": [{"type": "member_id", "value": "dai"}]}, headers=marketer)
    assert r.status_code == 200 and r.json()["entered"] == 1


def test_enrol_refuses_what_cannot_enter(brand: Brand) -> None:
    """Unknown ids come back; a merged id enrols the survivor; only active manual journeys take lists."""
    client, admin = brand.api.client, factories.auth(brand.api.admin_key)
    cai = brand.follower("cai")
    j = brand.journey(linear({"type": "wait", "duration": "1d"}))
    url = f"/api/v1/journeys/{j.id}/enrol"
    r = client.post(url, json={"profile_ids": [cai, 987654], "key": "ids"}, headers=admin)
    assert r.json() == {"entered": 1, "not_found": [], "not_found_profile_ids": [987654], "invalid": []}
    # A profile merged into another is enrolled as the one it is now part of.
    merged = Profile(name="old cai", merged_into_id=cai)
    brand.session.add(merged)
    brand.session.flush()
    other = brand.journey(linear({"type": "wait", "duration": "1d"}))
    r = client.post(f"/api/v1/journeys/{other.id}/enrol", json={"profile_ids": [merged.id]}, headers=admin)
    assert r.json()["entered"] == 1
    rows = client.get(f"/api/v1/journeys/{other.id}/enrolments", headers=admin).json()
    assert [e["profile_id"] for e in rows] == [cai]

    assert client.post(f"/api/v1/journeys/{j.id}/pause", headers=admin).status_code == 200
    paused = client.post(url, json={"profile_ids": [cai], "key": "again"}, headers=admin)
    assert paused.status_code == 409 and "paused: resume it" in paused.json()["detail"]
    on_event = brand.journey(
        linear({"type": "wait", "duration": "1d"}, entry={"type": "event", "event": "Order Completed"})
    )
    r = client.post(f"/api/v1/journeys/{on_event.id}/enrol", json={"profile_ids": [cai]}, headers=admin)
    assert r.status_code == 409 and "enrols on its event entry" in r.json()["detail"]


def test_enrolments_page_newest_first(brand: Brand) -> None:
    client, admin = brand.api.client, factories.auth(brand.api.admin_key)
    pids = [brand.follower(name) for name in ("cai", "dan", "eve")]
    j = brand.journey(linear({"type": "wait", "duration": "1d"}))
    body = {
        "identifiers": [{"type": "member_id", "value": n} for n in ("cai", "dan", "eve")],
        "key": "list-4",
    }
    assert client.post(f"/api/v1/journeys/{j.id}/enrol", json=body, headers=admin).json()["entered"] == 3
    url = f"/api/v1/journeys/{j.id}/enrolments"
    first = client.get(url, params={"limit": 2}, headers=admin).json()
    rest = client.get(url, params={"limit": 2, "before_id": first[-1]["id"]}, headers=admin).json()
    assert len(first) == 2 and len(rest) == 1
    assert sorted(e["profile_id"] for e in first + rest) == sorted(pids)
    assert [e["id"] for e in first + rest] == sorted((e["id"] for e in first + rest), reverse=True)
    assert client.get(url, params={"limit": 0}, headers=admin).status_code == 422


def test_templates_preview_caps_assets_and_messages(brand: Brand) -> None:
    client, admin = brand.api.client, factories.auth(brand.api.admin_key)
    amy = brand.follower("amy")
    r = client.post(
        "/api/v1/messages/assets",
        json={
            "key": "spring",
            "kind": "article",
            "title": "Spring in Suzhou",
            "url": "https://tos.example/s",
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    # Items WeCom could not attach are refused, naming what is missing.
    for item, words in (
        ({"key": "bad", "kind": "link", "title": "t", "url": "notaurl"}, "url: an http(s) address"),
        ({"key": "bad", "kind": "link", "title": "t"}, "url: a link needs its address"),
        ({"key": "bad", "kind": "miniprogram", "title": "t", "appid": "wx1"}, "appid, page"),
    ):
        r = client.post("/api/v1/messages/assets", json=item, headers=admin)
        assert r.status_code == 400 and r.json()["detail"].startswith(words), r.text
    body = {
        "name": "Story",
        "channel": "oa_template",
        "account_id": brand.oa.id,
        "external_template_id": "T1",
        "body": {"data": {"first": "{{ first_name }}: {{ asset('spring').title }}"}},
    }
    r = client.post("/api/v1/messages/templates", json=body, headers=admin)
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    r = client.post(f"/api/v1/messages/templates/{tid}/preview", json={"profile_id": amy}, headers=admin)
    assert r.json()["content"] == {"data": {"first": "Amy: Spring in Suzhou"}}
    # A marketer does not see customers' names (PIPL): the preview masks hers.
    marketer = factories.auth(factories.api_key(brand.session, Role.marketer))
    r = client.post(f"/api/v1/messages/templates/{tid}/preview", json={"profile_id": amy}, headers=marketer)
    assert r.json()["content"] == {"data": {"first": "A**: Spring in Suzhou"}}
    bad = client.post(
        "/api/v1/messages/templates",
        json={**body, "name": "Bad", "body": {"data": {"first": "{{ nobody }}"}}},
        headers=admin,
    )
    assert bad.status_code == 422 and bad.json()["path"] == "body.data.first"
    wrong = client.post(
        "/api/v1/messages/templates",
        json={**body, "name": "Wrong", "account_id": brand.wecom.id},
        headers=admin,
    )
    assert wrong.status_code == 400 and "account_id" in wrong.json()["detail"]
    cap = client.post(
        "/api/v1/messages/caps", json={"channel": "oa_template", "period": "week", "limit": 2}, headers=admin
    )
    assert cap.status_code == 201
    # A key the API does not know is named, not dropped (a typo would otherwise go unnoticed).
    typo = client.post(
        "/api/v1/messages/caps", json={"period": "week", "limit": 2, "name": "weekly"}, headers=admin
    )
    assert typo.status_code == 422 and typo.json()["detail"] == "name: Extra inputs are not permitted"
    assert (
        client.patch(
            f"/api/v1/messages/caps/{cap.json()['id']}", json={"active": False}, headers=admin
        ).json()["active"]
        is False
    )
    assert client.get("/api/v1/messages", params={"profile_id": amy}, headers=admin).json() == []


def test_previews_and_sent_messages_mask_phones_emails_and_names(brand: Brand) -> None:
    """Content is free text: whatever a template put in it, personal data is masked as the 360 masks it."""
    client, admin = brand.api.client, factories.auth(brand.api.admin_key)
    marketer = factories.auth(factories.api_key(brand.session, Role.marketer))
    nancy = brand.follower(
        "nancy",
        traits={
            "phone": "13812345678",
            "email": "nancy@example.com",
            "address": "上海市静安区南京西路1266号",
        },
    )
    body = {
        "name": "Leaky",
        "channel": "oa_template",
        "account_id": brand.oa.id,
        "external_template_id": "T1",
        "body": {
            "data": {
                "first": "{{ name }}, call {{ traits.phone }} or write {{ traits.email }}",
                "remark": "to {{ traits.address }} for {{ traits.name }}",
            }
        },
    }
    tid = client.post("/api/v1/messages/templates", json=body, headers=admin).json()["id"]
    url = f"/api/v1/messages/templates/{tid}/preview"
    seen = client.post(url, json={"profile_id": nancy}, headers=admin).json()["content"]["data"]
    assert seen == {
        "first": "Nancy, call +86138****5678 or write n***@example.com",
        "remark": "to 上海市静安区**** for Nancy",
    }
    seen = client.post(url, json={"profile_id": nancy}, headers=marketer).json()["content"]["data"]
    assert seen == {
        "first": "N****, call +86138****5678 or write n***@example.com",
        "remark": "to 上海市静安区**** for N****",
    }

    # What was sent is stored in full (it went to her); reading it back masks it the same way.
    brand.session.add(
        Message(
            idempotency_key="leaky-1",
            template_id=tid,
            channel=Channel.oa_template,
            profile_id=nancy,
            content={"data": {"first": "Nancy, your number +8613812345678 is confirmed"}},
            status=MessageStatus.sent,
        )
    )
    brand.session.flush()
    listed = client.get("/api/v1/messages", params={"profile_id": nancy}, headers=admin).json()
    assert listed[0]["content"] == {"data": {"first": "Nancy, your number +86138****5678 is confirmed"}}
    listed = client.get("/api/v1/messages", params={"profile_id": nancy}, headers=marketer).json()
    assert listed[0]["content"] == {"data": {"first": "N****, your number +86138****5678 is confirmed"}}


def test_library_lists_what_each_journey_needs_and_creates_drafts(brand: Brand) -> None:
    client, admin = brand.api.client, factories.auth(brand.api.admin_key)
    library = {e["key"]: e for e in client.get("/api/v1/journeys/library", headers=admin).json()}
    assert set(library) == {
        "welcome-and-nurture",
        "post-store-purchase",
        "favourite-reminder",
        "birthday-alert",
        "points-expiring",
        "lapsed-win-back",
    }
    assert "wecom account" in library["lapsed-win-back"]["needs"]
    segment = client.post("/api/v1/segments", json={"name": "lapsed", "rule": {"tag": "x"}}, headers=admin)
    for key in library:
        r = client.post(
            f"/api/v1/journeys/library/{key}",
            json={
                "accounts": {"oa": brand.oa.id, "wecom": brand.wecom.id},
                "segment_id": segment.json()["id"],
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
        problems = client.post(f"/api/v1/journeys/{r.json()['id']}/validate", headers=admin).json()
        # What is left to the brand: its voucher templates.
        assert all(p["path"] in ("$.nodes.voucher.template", "$.nodes.give.template") for p in problems), (
            problems
        )
    assert client.post("/api/v1/journeys/library/nope", json={}, headers=admin).status_code == 404


def test_library_inputs_are_checked_before_anything_is_made(brand: Brand) -> None:
    client, admin = brand.api.client, factories.auth(brand.api.admin_key)

    def make(key: str, body: dict[str, object]) -> Any:
        return client.post(f"/api/v1/journeys/library/{key}", json=body, headers=admin)

    r = make("birthday-alert", {})
    assert r.status_code == 400 and r.json()["detail"].startswith("accounts.wecom: "), r.text
    r = make("birthday-alert", {"accounts": {"wecom": brand.oa.id}})
    assert r.status_code == 400 and "is of kind oa" in r.json()["detail"]
    assert make("birthday-alert", {"accounts": {"wecom": 999_999}}).status_code == 404
    r = make(
        "lapsed-win-back", {"accounts": {"oa": brand.oa.id, "wecom": brand.wecom.id}, "segment_id": 999_999}
    )
    assert r.status_code == 404 and "segment_id: no segment #999999" in r.json()["detail"]
    r = make("lapsed-win-back", {"accounts": {"oa": brand.oa.id, "wecom": brand.wecom.id}})
    assert r.status_code == 400 and r.json()["detail"].startswith("segment_id: ")
    assert make("birthday-alert", {"accounts": {"wecom": brand.wecom.id}}).status_code == 201


def test_date_entries_enrol_on_the_day_once_local_time_has_come(
    brand: Brand, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = brand.session
    today = dt.datetime.now(dt.UTC).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai")).date()
    soon = today + dt.timedelta(days=3)
    amy = brand.follower("amy", traits={"birthday": f"1990-{soon:%m-%d}"})
    brand.follower(
        "bea", traits={"birthday": "1990-01-01" if soon.strftime("%m-%d") != "01-01" else "1990-02-02"}
    )
    cai = brand.follower("cai", traits={"birthday": f"{soon:%m-%d}"})
    j = brand.journey(
        linear(
            {"type": "wait", "duration": "1d"},
            entry={"type": "date", "attribute": "birthday", "days_before": 3, "at": "00:00"},
            reentry="always",
        )
    )
    assert tasks.run_scheduled(db.get_sessionmaker()) == 2
    assert tasks.run_scheduled(db.get_sessionmaker()) == 0  # once a day
    s.expire_all()
    assert sorted(
        s.execute(select(Enrolment.profile_id).where(Enrolment.journey_id == j.id)).scalars()
    ) == sorted([amy, cai])


@pytest.fixture
def hook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(
                {
                    "body": json.loads(self.rfile.read(int(self.headers["Content-Length"]))),
                    "key": self.headers["Idempotency-Key"],
                }
            )
            self.send_response(500 if len(got) == 1 else 204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/crm", got
    server.shutdown()


def test_webhook_nodes_post_once_delivered_with_retries(
    brand: Brand, hook: tuple[str, list[dict[str, Any]]]
) -> None:
    from siyu.journeys import engine
    from siyu.journeys import service as journeys

    url, got = hook
    amy = brand.follower("amy")
    j = brand.journey(linear({"type": "webhook", "url": url}))
    journeys.enrol(brand.session, j, [(amy, "k", {})], now=NOW)
    engine.run_due(brand.session, now=NOW)
    factory = db.get_sessionmaker()
    outbox.run_once(factory)  # the endpoint answers 500: the job is kept for a retry
    job = brand.session.execute(
        select(OutboxMessage).where(OutboxMessage.topic == engine.WEBHOOK)
    ).scalar_one()
    brand.session.refresh(job)
    assert (job.status, job.attempts) == (OutboxStatus.pending, 1)
    job.available_at = dt.datetime.now(dt.UTC)
    brand.session.flush()
    outbox.run_once(factory)
    brand.session.refresh(job)
    assert job.status == OutboxStatus.done
    assert [g["body"]["profile_id"] for g in got] == [amy, amy]
    assert got[0]["key"] == got[1]["key"] == got[0]["body"]["idempotency_key"]
