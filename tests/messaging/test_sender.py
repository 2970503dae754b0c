"""Sending through the channels, against the local fake WeChat API over real HTTP (no WeChat host is
reachable from a test machine): answers, retries, receipts, associate confirmations, lost senders."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from siyu import bulk, db
from siyu.config import get_settings
from siyu.ingest.models import Event
from siyu.messaging import reactions, sender
from siyu.messaging import service as messaging
from siyu.messaging.models import CapSlot, Channel, Message, MessageLease, MessageStatus, Reach
from tests.channels.wechat import OaPusher, oa_event
from tests.journeys.brand import NOW, Brand


def queue(brand: Brand, name: str, pids: list[int], key: str = "k") -> None:
    template = messaging.get_template_by_name(brand.session, name)
    assert template is not None
    messaging.queue(brand.session, template, [messaging.Request(p, f"{key}:{p}") for p in pids], now=NOW)


def message(session: Session, pid: int) -> Message:
    session.expire_all()
    return (
        session.execute(select(Message).where(Message.profile_id == pid).order_by(Message.id.desc()))
        .scalars()
        .first()
    )  # type: ignore[return-value]


def test_template_message_sent_then_delivered_by_the_receipt(brand: Brand) -> None:
    amy = brand.follower("amy")
    brand.template("Hello", data={"first": "Hi {{ first_name }}"}, url="https://tos.example/a")
    queue(brand, "Hello", [amy])
    run = sender.run_once(db.get_sessionmaker())
    assert (run.claimed, run.sent) == (1, 1)
    api, body = brand.fake.sent[-1]
    assert api == "message/template/send"
    assert body == {
        "touser": "o-amy",
        "template_id": "TPL-1",
        "data": {"first": {"value": "Hi Amy"}},
        "url": "https://tos.example/a",
    }
    m = message(brand.session, amy)
    assert m.status == MessageStatus.sent and m.external_id
    # WeChat's TEMPLATESENDJOBFINISH push, through the real callback.
    pusher = OaPusher(brand.api.client)
    assert (
        pusher.push(
            oa_event("TEMPLATESENDJOBFINISH", openid="o-amy", MsgID=int(m.external_id), Status="success")
        ).text
        == "success"
    )
    from siyu.ingest import processor

    processor.drain()
    m = message(brand.session, amy)
    assert m.status == MessageStatus.delivered and m.delivered_at is not None


def test_busy_answers_are_retried_with_back_off_and_unreachable_customers_fail(brand: Brand) -> None:
    amy, bea = brand.follower("amy"), brand.follower("bea")
    brand.template("Hello")
    queue(brand, "Hello", [amy])
    brand.fake.fail(-1, "system error", times=10)
    run = sender.run_once(db.get_sessionmaker())
    assert run.retried == 1
    m = message(brand.session, amy)
    assert (m.status, m.attempts) == (MessageStatus.queued, 1)
    assert m.available_at > dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)
    # Bea unfollowed without siyu hearing of it: WeChat answers 43004; her reach is corrected.
    brand.fake.fail_next.clear()
    queue(brand, "Hello", [bea], key="b")
    brand.fake.fail(43004, "require subscribe")
    run = sender.run_once(db.get_sessionmaker())
    m = message(brand.session, bea)
    assert (m.status, m.error) == (
        MessageStatus.failed,
        "/cgi-bin/message/template/send: errcode 43004 (require subscribe)",
    )
    reach = brand.session.execute(select(Reach).where(Reach.address == "o-bea")).scalar_one()
    assert reach.reachable is False
    assert (
        brand.session.execute(
            select(func.count()).select_from(CapSlot).where(CapSlot.message_key == m.idempotency_key)
        ).scalar_one()
        == 0
    )


def test_wecom_messages_wait_for_the_associate_and_are_grouped_when_identical(brand: Brand) -> None:
    amy, bea = brand.follower("amy", wecom=True), brand.follower("bea", wecom=True)
    brand.template("Mass", Channel.wecom_mass, text="New in: the autumn qipao")
    queue(brand, "Mass", [amy, bea])
    sender.run_once(db.get_sessionmaker())
    calls = [b for api, b in brand.fake.sent if api == "externalcontact/add_msg_template"]
    assert len(calls) == 1 and sorted(calls[0]["external_userid"]) == ["wm-amy", "wm-bea"]
    assert calls[0]["sender"] == "fa.chen"
    m = message(brand.session, amy)
    assert m.status == MessageStatus.created
    # Not confirmed yet: polling changes nothing. The associate taps "send": both are delivered.
    assert reactions.poll_wecom_confirmations(db.get_sessionmaker()) == 0
    brand.fake.confirm_group_msg(str(m.external_id))
    assert reactions.poll_wecom_confirmations(db.get_sessionmaker()) == 2
    assert message(brand.session, bea).status == MessageStatus.delivered


def leased_by_a_sender_that_died(brand: Brand, at: dt.datetime) -> tuple[int, list[int]]:
    """amy's "Hello" queued and claimed at `at` by a sender that then died; (amy, the leased ids)."""
    amy = brand.follower("amy")
    brand.template("Hello")
    queue(brand, "Hello", [amy])
    with db.get_sessionmaker()() as s:
        ids = sender.claim(s, 10, at, get_settings())
        s.commit()
    return amy, ids


def test_a_sender_that_dies_mid_call_never_sends_twice(brand: Brand) -> None:
    amy, ids = leased_by_a_sender_that_died(brand, dt.datetime.now(dt.UTC))
    factory = db.get_sessionmaker()
    settings = get_settings()
    # The process dies here, after the claim and (perhaps) the call: nothing is recorded.
    assert message(brand.session, amy).status == MessageStatus.queued
    assert brand.session.execute(select(MessageLease.message_id)).scalars().all() == ids
    assert sender.run_once(factory).claimed == 0
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=settings.messages_lease_seconds + 1)
    with factory() as s:
        assert sender.expire_leases(s, later) == len(ids) == 1
        s.commit()
    assert message(brand.session, amy).status == MessageStatus.unknown
    assert sender.run_once(factory).claimed == 0
    # The first sender coming back late with its old lease sends nothing either: the message is not queued.
    with factory() as s:
        assert sender.deliver(s, ids, now=later, settings=settings).sent == 0
        s.commit()
    assert message(brand.session, amy).status == MessageStatus.unknown
    assert not [api for api, _ in brand.fake.sent if api == "message/template/send"]


def test_the_next_round_after_a_lease_ran_out_marks_the_message_unknown(brand: Brand) -> None:
    start = dt.datetime.now(dt.UTC)
    amy, ids = leased_by_a_sender_that_died(brand, start)
    assert len(ids) == 1
    factory = db.get_sessionmaker()
    settings = get_settings()
    assert sender.run_once(factory, now=start).lost == 0  # still leased: nothing to claim, nothing lost
    later = start + dt.timedelta(seconds=settings.messages_lease_seconds + 1)
    assert sender.run_once(factory, now=later).lost == 1
    assert message(brand.session, amy).status == MessageStatus.unknown
    assert not [api for api, _ in brand.fake.sent if api == "message/template/send"]


def test_customer_service_reply_inside_the_window(brand: Brand) -> None:
    from tests.factories import event
    from tests.journeys.brand import oa_context

    amy = brand.follower("amy")
    brand.api.send(
        event(
            userId="amy",
            event="Official Account Message Received",
            timestamp=dt.datetime.now(dt.UTC).isoformat(),
            context=oa_context("o-amy"),
        )
    )
    brand.fake.kefu_open.add("o-amy")
    brand.template(
        "Reply", Channel.oa_kefu, text="Thanks {{ first_name }}, {{ sa_name or 'we' }} will call you"
    )
    template = messaging.get_template_by_name(brand.session, "Reply")
    assert template is not None
    messaging.queue(brand.session, template, [messaging.Request(amy, "kefu")], now=dt.datetime.now(dt.UTC))
    sender.run_once(db.get_sessionmaker())
    assert brand.fake.sent[-1] == (
        "message/custom/send",
        {"touser": "o-amy", "msgtype": "text", "text": {"content": "Thanks Amy, we will call you"}},
    )


@pytest.fixture
def sms_provider() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local HTTP endpoint standing in for an SMS provider: it records what it is asked to send."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(body)
            status = 503 if body["to"].endswith("0000") else 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps({"id": f"sms-{len(received)}"}).encode())

        def log_message(self, *_: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/send", received
    server.shutdown()


def test_sms_through_the_configured_provider(
    brand: Brand, sms_provider: tuple[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, received = sms_provider
    monkeypatch.setenv("SIYU_SMS_WEBHOOK_URL", url)
    get_settings.cache_clear()
    from tests.factories import event

    amy = brand.follower("amy", traits={"phone": "13800138001"})
    bea = brand.follower("bea", traits={"phone": "13900000000"})
    for name in ("amy", "bea"):
        brand.api.send(event(userId=name, event="Consent Granted", properties={"purpose": "sms"}))
    brand.template("Text", Channel.sms, text="{{ first_name }}: 20% off this weekend. Reply TD to opt out")
    queue(brand, "Text", [amy, bea])
    run = sender.run_once(db.get_sessionmaker())
    assert (run.sent, run.retried) == (1, 1)
    assert received[0] == {
        "to": "+8613800138001",
        "text": "Amy: 20% off this weekend. Reply TD to opt out",
        "id": f"k:{amy}",
    }
    assert message(brand.session, amy).external_id == "sms-1"
    assert message(brand.session, bea).status == MessageStatus.queued
    # The message list never shows a full phone number (PIPL).
    from tests import factories

    listed = brand.api.client.get(
        "/api/v1/messages", params={"profile_id": amy}, headers=factories.auth(brand.api.admin_key)
    ).json()
    assert [m["recipient"] for m in listed] == ["+86138****8001"]
    assert "13800138001" not in str(listed)


def test_tracked_links_record_the_first_click_and_redirect(brand: Brand) -> None:
    amy = brand.follower("amy")
    brand.template("Story", data={"first": "A story"}, url="{{ track('https://tos.example/story?a=1') }}")
    queue(brand, "Story", [amy])
    m = message(brand.session, amy)
    link = urlparse(m.content["url"])
    assert link.path == "/m/click"
    client = brand.api.client
    r = client.get(link.path + "?" + link.query, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (302, "https://tos.example/story?a=1")
    from siyu.ingest import processor

    processor.drain()
    m = message(brand.session, amy)
    assert m.clicked_at is not None
    assert (
        brand.session.execute(
            select(func.count()).where(Event.event == "Message Clicked", Event.profile_id == amy)
        ).scalar_one()
        == 1
    )
    # A forged link (another URL with the same signature) goes nowhere.
    query = parse_qs(link.query)
    forged = client.get(
        "/m/click",
        params={"k": query["k"][0], "u": "https://evil.example", "t": query["t"][0]},
        follow_redirects=False,
    )
    assert forged.status_code == 404


def test_mass_pushes_go_out_as_one_job_per_text_and_a_lone_follower_waits(brand: Brand) -> None:
    amy, bea, cai = brand.follower("amy"), brand.follower("bea"), brand.follower("cai")
    brand.template("Push", Channel.oa_mass, text="The autumn collection is in")
    queue(brand, "Push", [amy, bea])
    sender.run_once(db.get_sessionmaker())
    jobs = [b for a, b in brand.fake.sent if a.startswith("message/mass/")]
    assert len(jobs) == 1 and sorted(jobs[0]["touser"]) == ["o-amy", "o-bea"]
    assert jobs[0]["text"] == {"content": "The autumn collection is in"} and jobs[0]["clientmsgid"]
    assert message(brand.session, amy).status == MessageStatus.sent
    assert message(brand.session, amy).external_id == message(brand.session, bea).external_id
    # WeChat's MASSSENDJOBFINISH for the job, through the real callback: both are delivered.
    from siyu.messaging import tasks as message_tasks

    job_id = int(str(message(brand.session, amy).external_id))
    report = oa_event(
        "MASSSENDJOBFINISH",
        openid="gh_tos",
        MsgID=job_id,
        Status="send success",
        TotalCount=2,
        FilterCount=2,
        SentCount=2,
        ErrorCount=0,
    )
    assert OaPusher(brand.api.client).push(report).text == "success"
    assert message_tasks.run_scheduled(db.get_sessionmaker()) == 2
    assert message(brand.session, bea).status == MessageStatus.delivered
    # WeChat takes no job of one follower: Cai's waits (with back-off) for others to join it.
    queue(brand, "Push", [cai], key="later")
    run = sender.run_once(db.get_sessionmaker())
    assert run.retried == 1 and message(brand.session, cai).status == MessageStatus.queued


def test_what_became_of_a_journeys_messages_is_counted_at_its_node(brand: Brand) -> None:
    """Sent, then confirmed by the associate: the node's numbers follow the message (journey stats)."""
    from siyu.journeys import engine
    from siyu.journeys import service as journeys
    from tests.journeys.brand import linear

    amy = brand.follower("amy", wecom=True)
    brand.template("Hi", Channel.wecom_1to1)
    j = brand.journey(linear({"type": "send", "template": "Hi"}))
    journeys.enrol(brand.session, j, [(amy, "k", {})], now=NOW)
    engine.run_due(brand.session, now=NOW)
    sender.run_once(db.get_sessionmaker(), now=NOW)
    assert journeys.stats(brand.session, j)["nodes"]["n0"]["messages"] == {"created": 1}
    brand.fake.confirm_group_msg(str(message(brand.session, amy).external_id))
    reactions.poll_wecom_confirmations(db.get_sessionmaker())
    assert journeys.stats(brand.session, j)["nodes"]["n0"]["messages"] == {"created": 1, "delivered": 1}


def _plan(session: Session, sql: str, params: dict[str, Any]) -> str:
    with bulk.driver_connection(session).cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(str(r[0]) for r in cursor.fetchall())


def test_the_claim_walks_the_due_index_in_order_whatever_the_statistics_say(session: Session) -> None:
    # A broadcast queues a million messages between two analyses; planned on statistics that say the queue
    # is small, the claim would fetch and sort every queued message for each batch.
    if not db.is_postgres(session):
        pytest.skip("a PostgreSQL planner setting")
    n = 20_000
    rows = [
        (
            f"claim-plan:{i}",
            1,
            "oa_template",
            None,
            i,
            f"o-{i}",
            None,
            {},
            "queued",
            None,
            0,
            NOW,
            *[None] * 4,
            NOW,
        )
        for i in range(1, n + 1)
    ]
    bulk.insert_rows(session, "messages", messaging.MESSAGE_COLUMNS, rows)
    sql = sender._candidates("%(due)s", "%(limit)s")
    params = {"due": NOW, "limit": 1000}
    with db.in_index_order(session):
        plan = _plan(session, sql, params)
    assert "Sort" not in plan
    assert "ix_messages_due" in plan
    # Undone after the claim: the rest of the transaction plans as usual.
    assert session.execute(text("SHOW enable_sort")).scalar_one() == "on"


def test_messages_page_newest_first(session: Session) -> None:
    rows = [
        (f"page:{i}", 1, "oa_template", None, i, f"o-{i}", None, {}, "queued", None, 0, NOW, *[None] * 4, NOW)
        for i in range(1, 4)
    ]
    bulk.insert_rows(session, "messages", messaging.MESSAGE_COLUMNS, rows)
    first = messaging.list_messages(session, limit=2)
    rest = messaging.list_messages(session, limit=2, before_id=first[-1].id)
    assert [m.idempotency_key for m in [*first, *rest]] == ["page:3", "page:2", "page:1"]
