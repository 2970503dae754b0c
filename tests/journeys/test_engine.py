"""Every node type, goals, re-entry and versions, driven through the engine on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.channels.imports import mappings
from siyu.channels.imports.service import run_import
from siyu.clienteling.models import Task
from siyu.console import journeys as console_journeys
from siyu.ingest import processor
from siyu.journeys import engine, library, triggers
from siyu.journeys import service as journeys
from siyu.journeys.models import Enrolment, EnrolmentStatus
from siyu.loyalty import service as loyalty
from siyu.loyalty import vouchers
from siyu.loyalty.models import Member, Voucher, VoucherKind
from siyu.messaging.models import Message, MessageStatus
from siyu.outbox.models import OutboxMessage
from siyu.profiles import service as profiles
from siyu.profiles.models import Profile
from tests import factories
from tests.factories import event
from tests.journeys.brand import NOW, Brand, linear, recent


def enrolment(session: Session, journey_id: int, pid: int) -> Enrolment:
    session.expire_all()
    return (
        session.execute(
            select(Enrolment)
            .where(Enrolment.journey_id == journey_id, Enrolment.profile_id == pid)
            .order_by(Enrolment.id.desc())
        )
        .scalars()
        .first()
    )  # type: ignore[return-value]


def outcomes(session: Session, enrolment_id: int) -> list[tuple[str, str]]:
    return [(node, outcome) for node, outcome, _ in journeys.path_of(session, enrolment_id)]


def test_send_wait_and_exit_in_order(brand: Brand) -> None:
    s = brand.session
    amy = brand.follower("amy")
    brand.template("Welcome", data={"first": "Welcome {{ first_name }}"})
    j = brand.journey(
        linear(
            {"type": "send", "template": "Welcome"},
            {"type": "wait", "duration": "1d"},
            {"type": "tag", "add": ["welcomed"]},
        )
    )
    assert journeys.enrol(s, j, [(amy, "k", {})], now=NOW) == 1
    brand.run(NOW)
    e = enrolment(s, j.id, amy)
    assert (e.node, e.status, e.due_at) == ("n1", EnrolmentStatus.active, NOW + dt.timedelta(days=1))
    message = s.execute(select(Message).where(Message.profile_id == amy)).scalar_one()
    assert (message.status, message.recipient, message.content) == (
        MessageStatus.queued,
        "o-amy",
        {"data": {"first": "Welcome Amy"}},
    )
    # Nothing moves before the day is up; then the tag, then the exit.
    assert brand.run(NOW + dt.timedelta(hours=23)) == 0
    brand.run(NOW + dt.timedelta(days=1, seconds=1))
    e = enrolment(s, j.id, amy)
    assert (e.status, e.end_reason, e.active_key) == (EnrolmentStatus.completed, "exit", None)
    assert outcomes(s, e.id) == [("n0", "queued"), ("n1", "waited"), ("n2", "tagged"), ("n3", "exit")]
    assert [t.name for t in profiles.tags(s, amy)] == ["welcomed"]
    # The customer's 360 says which journeys she is in and what she was sent.
    seen = brand.api.profile(amy)
    assert [(j["journey_id"], j["status"], j["end_reason"]) for j in seen["journeys"]] == [
        (j.id, "completed", "exit")
    ]
    assert [(m["channel"], m["status"]) for m in seen["messages"]] == [("oa_template", "queued")]


def test_customers_with_no_recipient_are_counted_as_suppressed_everywhere(brand: Brand) -> None:
    """No openid: no message can be made, yet the node's stats and graph say who was not messaged and why."""
    s = brand.session
    amy = brand.follower("amy")
    nobody = Profile(name="Walk-in")
    s.add(nobody)
    s.flush()
    brand.template("Welcome", data={"first": "Welcome {{ first_name }}"})
    j = brand.journey(linear({"type": "send", "template": "Welcome"}))
    journeys.enrol(s, j, [(amy, "k", {}), (nobody.id, "k", {})], now=NOW)
    brand.run(NOW)
    n0 = journeys.stats(s, j)["nodes"]["n0"]
    assert n0["suppressed"] == {"no_recipient": 1} and n0["passed"] == 2
    assert n0["messages"].get("suppressed", 0) == 0  # no message exists for her
    graph = console_journeys.graph(journeys.current_definition(s, j), journeys.stats(s, j))
    [label] = [n["label"] for n in graph["nodes"] if n["name"] == "n0"]
    assert "suppressed 1" in label


def test_a_replayed_batch_queues_each_message_once(brand: Brand) -> None:
    s = brand.session
    amy = brand.follower("amy")
    brand.template("Welcome")
    j = brand.journey(linear({"type": "send", "template": "Welcome"}, {"type": "wait", "duration": "1h"}))
    journeys.enrol(s, j, [(amy, "k", {})], now=NOW)
    e = enrolment(s, j.id, amy)
    # A worker that died after queueing but before moving the customer: the step is redone.
    savepoint = s.begin_nested()
    brand.run(NOW)
    savepoint.commit()
    s.execute(
        Enrolment.__table__.update()
        .where(Enrolment.id == e.id)
        .values(node="n0", steps=0, due_at=NOW, wait_event=None)
    )
    brand.run(NOW)
    assert s.execute(select(func.count()).select_from(Message)).scalar_one() == 1


def test_wait_until_a_local_time_on_chosen_weekdays(brand: Brand) -> None:
    s = brand.session
    amy = brand.follower("amy", traits={"timezone": "Europe/Paris"})
    bea = brand.follower("bea")
    j = brand.journey(linear({"type": "wait_until", "time": "10:00", "weekdays": ["mon"]}))
    journeys.enrol(s, j, [(amy, "k", {}), (bea, "k", {})], now=NOW)  # Monday 2026-11-23, 04:00 UTC
    brand.run(NOW)
    # Bea (Shanghai, 12:00 now): next Monday 10:00 +08:00; Amy (Paris, 05:00 now): today 10:00 +01:00.
    assert enrolment(s, j.id, bea).due_at == dt.datetime(2026, 11, 30, 2, 0, tzinfo=dt.UTC)
    assert enrolment(s, j.id, amy).due_at == dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


def test_wait_for_an_event_takes_the_event_branch_or_the_timeout(
    brand: Brand, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = brand.session
    # The events below arrive a minute after NOW (the reactor wakes a customer at the time an event arrives).
    monkeypatch.setattr(triggers, "utcnow", lambda: NOW + dt.timedelta(minutes=1))
    amy, bea = brand.follower("amy"), brand.follower("bea")
    definition = {
        "entry": {"type": "manual"},
        "start": "w",
        "nodes": {
            "w": {
                "type": "wait_event",
                "event": "Product Viewed",
                "where": [{"property": "category", "op": "eq", "value": "qipao"}],
                "timeout": "2d",
                "next": "saw",
                "timeout_next": "late",
            },
            "saw": {"type": "tag", "add": ["saw-qipao"], "next": "done"},
            "late": {"type": "tag", "add": ["no-show"], "next": "done"},
            "done": {"type": "exit"},
        },
    }
    j = brand.journey(definition)
    journeys.enrol(s, j, [(amy, "k", {}), (bea, "k", {})], now=NOW)
    brand.run(NOW)
    assert enrolment(s, j.id, amy).wait_event == "Product Viewed"
    # A view of the wrong category does not wake her; the right one does, at once.
    brand.api.send(recent(userId="amy", event="Product Viewed", properties={"category": "shoes"}))
    assert enrolment(s, j.id, amy).woken is False
    brand.api.send(recent(userId="amy", event="Product Viewed", properties={"category": "qipao"}))
    assert enrolment(s, j.id, amy).woken is True
    brand.run(NOW + dt.timedelta(minutes=1))
    assert brand.run(NOW + dt.timedelta(days=2, seconds=1)) > 0
    assert [t.name for t in profiles.tags(s, amy)] == ["saw-qipao"]
    assert [t.name for t in profiles.tags(s, bea)] == ["no-show"]
    assert outcomes(s, enrolment(s, j.id, bea).id)[0] == ("w", "timeout")


def test_condition_split_on_any_segment_rule(brand: Brand) -> None:
    s = brand.session
    amy = brand.follower("amy", traits={"city": "Shanghai"})
    bea = brand.follower("bea", traits={"city": "Beijing"})
    definition = {
        "entry": {"type": "manual"},
        "start": "s",
        "nodes": {
            "s": {
                "type": "split",
                "rule": {
                    "all": [
                        {"trait": "city", "op": "eq", "value": "Shanghai"},
                        {"event": "Official Account Followed", "within_days": 30},
                    ]
                },
                "yes": "y",
                "no": "n",
            },
            "y": {"type": "tag", "add": ["sh"], "next": "e"},
            "n": {"type": "tag", "add": ["other"], "next": "e"},
            "e": {"type": "exit"},
        },
    }
    j = brand.journey(definition)
    journeys.enrol(s, j, [(amy, "k", {}), (bea, "k", {})], now=NOW)
    # At NOW: both followed on the factory's date, 22 days earlier (the machine's clock must not decide).
    brand.run(NOW)
    assert [t.name for t in profiles.tags(s, amy)] == ["sh"]
    assert [t.name for t in profiles.tags(s, bea)] == ["other"]


def test_ab_split_is_stable_weighted_and_holds_out(brand: Brand) -> None:
    assert engine.bucket(1, "ab", 42) == engine.bucket(1, "ab", 42)
    places = [engine.bucket(7, "ab", pid) for pid in range(20_000)]
    assert min(places) >= 0 and max(places) < 100
    # Uniform enough that weights and the holdout mean what they say.
    assert abs(sum(p < 10 for p in places) / len(places) - 0.10) < 0.01
    s = brand.session
    pids = [brand.follower(f"c{i}") for i in range(40)]
    definition = {
        "entry": {"type": "manual"},
        "holdout_days": 3,
        "goals": [{"event": "Order Completed"}],
        "start": "ab",
        "nodes": {
            "ab": {
                "type": "ab",
                "holdout": 20,
                "variants": [
                    {"name": "A", "weight": 3, "next": "e"},
                    {"name": "B", "weight": 1, "next": "e"},
                ],
            },
            "e": {"type": "exit"},
        },
    }
    j = brand.journey(definition)
    journeys.enrol(s, j, [(p, "k", {}) for p in pids], now=NOW)
    brand.run(NOW)
    s.expire_all()
    rows = s.execute(
        select(Enrolment.profile_id, Enrolment.variant, Enrolment.status).where(Enrolment.journey_id == j.id)
    ).all()
    expected = {}
    for pid in pids:
        place = engine.bucket(j.id, "ab", pid)
        expected[pid] = "holdout" if place < 20 else ("A" if (place - 20) / 80 * 4 < 3 else "B")
    assert {r.profile_id: r.variant for r in rows} == expected
    held = [r.profile_id for r in rows if r.variant == "holdout"]
    assert held and all(r.status == EnrolmentStatus.active for r in rows if r.variant == "holdout")
    # A held-out customer who buys counts as converted (the uplift's baseline); the rest leave after 3 days.
    brand.api.send(
        recent(userId=f"c{pids.index(held[0])}", event="Order Completed", properties={"total": 10})
    )
    brand.run(NOW + dt.timedelta(days=3, seconds=1))
    s.expire_all()
    statuses = dict(
        s.execute(select(Enrolment.profile_id, Enrolment.status).where(Enrolment.journey_id == j.id)).all()
    )
    assert statuses[held[0]] == EnrolmentStatus.converted
    assert all(statuses[p] == EnrolmentStatus.completed for p in held[1:])
    results = journeys.ab_results(s, j)[0]
    assert results["groups"]["holdout"]["customers"] == len(held)
    assert results["groups"]["holdout"]["converted"] == 1
    assert results["uplift"]["holdout_rate"] == 1 / len(held)


def test_points_voucher_task_and_webhook_nodes(brand: Brand) -> None:
    s = brand.session
    amy = brand.follower("amy", wecom=True)
    bea = brand.follower("bea")  # not a member, no associate
    member, _ = loyalty.enrol(s, amy, channel="console")
    template = vouchers.create_template(
        s, name="20 RMB off", kind=VoucherKind.amount_off, value=2000, valid_days=30
    )
    definition = linear(
        {"type": "points", "points": 50, "reason": "welcome gift"},
        {"type": "voucher", "template": "20 RMB off"},
        {"type": "task", "title": "Call {{ name }} about her voucher", "due": "1d"},
        {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
    )
    j = brand.journey(definition)
    journeys.enrol(s, j, [(amy, "k", {}), (bea, "k", {})], now=NOW)
    brand.run(NOW)
    s.expire_all()
    assert s.get(Member, member.id).balance == 50  # type: ignore[union-attr]
    assert s.execute(
        select(Voucher).where(Voucher.member_id == member.id, Voucher.template_id == template.id)
    ).scalar_one()
    task = s.execute(select(Task).where(Task.profile_id == amy)).scalar_one()
    assert (task.user_id, task.title, task.due_at) == (
        brand.advisor.id,
        "Call Amy about her voucher",
        NOW + dt.timedelta(days=1),
    )
    hooks = s.execute(select(OutboxMessage).where(OutboxMessage.topic == engine.WEBHOOK)).scalars().all()
    assert sorted(h.payload["body"]["profile_id"] for h in hooks) == sorted([amy, bea])
    assert outcomes(s, enrolment(s, j.id, bea).id)[:3] == [
        ("n0", "skipped:not a member"),
        ("n1", "skipped:not a member"),
        ("n2", "skipped:no associate"),
    ]


def test_a_task_for_a_customer_whose_associate_left_goes_to_the_store_manager(brand: Brand) -> None:
    s = brand.session
    amy = brand.follower("amy", wecom=True)
    s.get_one(Profile, amy).store_id = brand.store.id
    manager = factories.user(s, Role.store_manager, store_id=brand.store.id)
    brand.advisor.is_active = False  # she left: her keys and sessions no longer work
    s.flush()
    j = brand.journey(linear({"type": "task", "title": "Call {{ name }}"}))
    journeys.enrol(s, j, [(amy, "k", {})], now=NOW)
    brand.run(NOW)
    task = s.execute(select(Task).where(Task.profile_id == amy)).scalar_one()
    assert task.user_id == manager.id


def test_a_reward_not_given_takes_the_else_branch_when_there_is_one(brand: Brand) -> None:
    s = brand.session
    amy = brand.follower("amy")
    bea = brand.follower("bea")  # not a member
    loyalty.enrol(s, amy, channel="console")
    vouchers.create_template(s, name="Win-back", kind=VoucherKind.amount_off, value=2000, valid_days=30)
    brand.template("A voucher is waiting")
    brand.template("Our new collection")
    j = brand.journey(
        {
            "entry": {"type": "manual"},
            "start": "give",
            "nodes": {
                "give": {"type": "voucher", "template": "Win-back", "next": "tell", "else": "story"},
                "tell": {"type": "send", "template": "A voucher is waiting", "next": "done"},
                "story": {"type": "send", "template": "Our new collection", "next": "done"},
                "done": {"type": "exit"},
            },
        }
    )
    journeys.enrol(s, j, [(amy, "k", {}), (bea, "k", {})], now=NOW)
    brand.run(NOW)
    assert outcomes(s, enrolment(s, j.id, amy).id)[:2] == [("give", "issued"), ("tell", "queued")]
    assert outcomes(s, enrolment(s, j.id, bea).id)[:2] == [
        ("give", "skipped:not a member"),
        ("story", "queued"),
    ]
    # A node id that is not a string is a problem of the definition, located.
    problems = journeys.problems(
        s,
        {
            "entry": {"type": "manual"},
            "start": "g",
            "nodes": {
                "g": {"type": "voucher", "template": "Win-back", "next": "x", "else": 3},
                "x": {"type": "exit"},
            },
        },
    )
    assert ("$.nodes.g.else", "a node id") in [(p.path, p.problem) for p in problems]


def test_the_library_birthday_wish_goes_out_on_the_birthday_whatever_the_hour_of_enrolment(
    brand: Brand,
) -> None:
    s = brand.session
    library.instantiate(s, "birthday-alert", library.InstantiateIn(accounts={"wecom": brand.wecom.id}))
    entry = next(e for e in library.entries() if e.key == "birthday-alert")
    j = brand.journey({**entry.definition, "entry": {"type": "manual"}})
    amy = brand.follower("amy", wecom=True)
    shanghai = ZoneInfo("Asia/Shanghai")
    # Enrolled in the afternoon, three days before: later in the day than the entry's 10:00.
    enrolled = dt.datetime(2026, 12, 4, 17, 10, tzinfo=shanghai)
    journeys.enrol(s, j, [(amy, "k", {})], now=enrolled)
    brand.run(enrolled)
    birthday = enrolled + dt.timedelta(days=3)
    brand.run(birthday)
    wish = s.execute(
        select(Message).where(Message.journey_id == j.id, Message.profile_id == amy)
    ).scalar_one()
    assert wish.created_at.astimezone(shanghai).date() == birthday.date()


def test_a_goal_ends_the_journey_on_the_event_itself(brand: Brand) -> None:
    s = brand.session
    amy = brand.follower("amy")
    definition = linear(
        {"type": "wait", "duration": "3d"},
        goals=[{"event": "Order Completed", "where": [{"property": "total", "op": "gte", "value": 100}]}],
    )
    j = brand.journey(definition)
    journeys.enrol(s, j, [(amy, "k", {})], now=NOW)
    brand.run(NOW)
    brand.api.send(recent(userId="amy", event="Order Completed", properties={"total": 50}))
    assert enrolment(s, j.id, amy).status == EnrolmentStatus.active
    brand.api.send(recent(userId="amy", event="Order Completed", properties={"total": 120}))
    e = enrolment(s, j.id, amy)
    assert (e.status, e.active_key) == (EnrolmentStatus.converted, None)
    assert outcomes(s, e.id)[-1] == ("n0", "goal:Order Completed")
    assert journeys.stats(s, j)["converted"] == 1


def test_entry_by_event_and_the_three_re_entry_policies(
    brand: Brand, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = brand.session
    # The events arrive at NOW: their customers enter then, and the one-hour wait ends before NOW + 1 day.
    monkeypatch.setattr(triggers, "utcnow", lambda: NOW)
    brand.follower("amy")
    made = {}
    for policy in ("never", "after_exit", "always"):
        made[policy] = brand.journey(
            {
                "entry": {"type": "event", "event": "Product Added to Wishlist"},
                "reentry": policy,
                "start": "w",
                "nodes": {"w": {"type": "wait", "duration": "1h", "next": "e"}, "e": {"type": "exit"}},
            }
        )

    def count(policy: str) -> int:
        return int(
            s.execute(select(func.count()).where(Enrolment.journey_id == made[policy].id)).scalar_one()
        )

    wish = recent(userId="amy", event="Product Added to Wishlist", properties={"name": "Qipao"})
    brand.api.send(wish)
    brand.api.send(wish)  # the same event again (a retry): no one enters twice
    assert [count(p) for p in made] == [1, 1, 1]
    brand.api.send(recent(userId="amy", event="Product Added to Wishlist"))
    # In flight: "always" enters again, the others do not.
    assert [count(p) for p in made] == [1, 1, 2]
    brand.run(NOW + dt.timedelta(days=1))
    brand.run(NOW + dt.timedelta(days=2))
    brand.api.send(recent(userId="amy", event="Product Added to Wishlist"))
    # After exit: "after_exit" enters again, "never" never does.
    assert [count(p) for p in made] == [1, 2, 3]
    e = enrolment(s, made["always"].id, brand.customers["amy"])
    assert e.context["event"]["name"] == "Product Added to Wishlist"


def test_a_new_version_keeps_or_migrates_customers_in_flight(brand: Brand) -> None:
    s = brand.session
    amy, bea = brand.follower("amy"), brand.follower("bea")
    v1 = {
        "entry": {"type": "manual"},
        "start": "w",
        "nodes": {
            "w": {"type": "wait", "duration": "1d", "next": "t"},
            "t": {"type": "tag", "add": ["v1"], "next": "e"},
            "e": {"type": "exit"},
        },
    }
    j = brand.journey(v1)
    journeys.enrol(s, j, [(amy, "k", {})], now=NOW)
    brand.run(NOW)
    v2 = {**v1, "nodes": {**v1["nodes"], "t": {"type": "tag", "add": ["v2"], "next": "e"}}}
    journeys.update_draft(s, j, definition=v2)
    kept = journeys.publish(s, j, in_flight="keep")
    assert (kept.kept, kept.migrated) == (1, 0)
    journeys.enrol(s, j, [(bea, "k", {})], now=NOW)
    brand.run(NOW)
    v3 = {**v1, "nodes": {**v1["nodes"], "t": {"type": "tag", "add": ["v3"], "next": "e"}}}
    journeys.update_draft(s, j, definition=v3)
    # Migrating moves both (each waits at "w", which v3 has).
    moved = journeys.publish(s, j, in_flight="migrate")
    assert (moved.migrated, moved.kept) == (2, 0)
    brand.run(NOW + dt.timedelta(days=1, seconds=1))
    assert [t.name for t in profiles.tags(s, amy)] == ["v3"]
    assert [t.name for t in profiles.tags(s, bea)] == ["v3"]
    s.expire_all()
    assert [v.migration["in_flight"] for v in journeys.versions(s, j.id)] == ["keep", "keep", "migrate"]


def test_a_failing_node_is_retried_later_and_recorded_not_lost(brand: Brand) -> None:
    s = brand.session
    amy = brand.follower("amy")
    j = brand.journey(linear({"type": "tag", "add": ["x" * 90]}))  # a tag is 80 characters at most
    journeys.enrol(s, j, [(amy, "k", {})], now=NOW)
    brand.run(NOW)
    e = enrolment(s, j.id, amy)
    assert (e.status, e.node) == (EnrolmentStatus.active, "n0")
    assert e.due_at is not None and e.due_at > NOW
    steps = [outcome for _, outcome in outcomes(s, e.id)]
    assert steps and steps[0].startswith("error: BadRequest")
    assert journeys.stats(s, j)["nodes"]["n0"]["outcomes"] == {"error": 1}


def test_paused_journeys_hold_everyone_and_archived_ones_release_them(brand: Brand) -> None:
    s = brand.session
    amy = brand.follower("amy")
    j = brand.journey(linear({"type": "tag", "add": ["x"]}))
    journeys.enrol(s, j, [(amy, "k", {})], now=NOW)
    from siyu.journeys.models import JourneyStatus

    journeys.set_status(s, j, JourneyStatus.paused)
    assert brand.run(NOW) == 0
    assert journeys.enrol(s, j, [(brand.follower("bea"), "k", {})], now=NOW) == 0
    journeys.set_status(s, j, JourneyStatus.archived)
    e = enrolment(s, j.id, amy)
    assert (e.status, e.end_reason) == (EnrolmentStatus.removed, "journey archived")


def test_segment_entry_enrols_entrants_and_include_existing_broadcasts(brand: Brand) -> None:
    from siyu.segments import service as segments

    s = brand.session
    amy = brand.follower("amy", traits={"vip": True})
    segment = segments.create(s, name="VIP", rule={"trait": "vip", "op": "eq", "value": True}, actor="t")
    j = brand.journey(
        {
            "entry": {"type": "segment", "segment_id": segment.id, "include_existing": True},
            "start": "e",
            "nodes": {"e": {"type": "exit"}},
        }
    )
    assert s.execute(select(Enrolment.profile_id).where(Enrolment.journey_id == j.id)).scalars().all() == [
        amy
    ]
    brand.follower("bea", traits={"vip": True})
    processor.drain()  # the Segment Entered event goes through the pipeline
    s.expire_all()
    entered = sorted(s.execute(select(Enrolment.profile_id).where(Enrolment.journey_id == j.id)).scalars())
    assert entered == sorted([amy, brand.customers["bea"]])


def test_a_merge_keeps_one_enrolment_per_person(brand: Brand) -> None:
    s = brand.session
    amy = brand.follower("amy")
    card = {"externalIds": [{"id": "POS-88", "type": "pos_card"}]}
    brand.api.send(event("identify", anonymousId="till-1", traits={"name": "Amy"}, context=card))
    pos = int(brand.api.lookup("pos_card", "POS-88")["id"])
    both = brand.journey(linear({"type": "wait", "duration": "1d"}))
    one = brand.journey(linear({"type": "wait", "duration": "1d"}))
    journeys.enrol(s, both, [(amy, "k", {}), (pos, "k", {})], now=NOW)
    journeys.enrol(s, one, [(pos, "k", {})], now=NOW)
    # The POS card turns out to be Amy's: the two profiles merge.
    both_ids = {
        "externalIds": [{"id": "POS-88", "type": "pos_card"}, {"id": "o-amy", "type": "wechat_openid"}]
    }
    brand.api.send(event("identify", anonymousId="till-1", context=both_ids))
    survivor = int(brand.api.lookup("pos_card", "POS-88")["id"])
    assert survivor == int(brand.api.lookup("wechat_openid", "o-amy")["id"])
    s.expire_all()
    rows = s.execute(
        select(Enrolment.journey_id, Enrolment.profile_id, Enrolment.status).where(
            Enrolment.journey_id.in_([both.id, one.id])
        )
    ).all()
    active = [(r.journey_id, r.profile_id) for r in rows if r.status == EnrolmentStatus.active]
    assert sorted(active) == sorted([(both.id, survivor), (one.id, survivor)])
    assert [r.status for r in rows if r.status != EnrolmentStatus.active] == [EnrolmentStatus.removed]


def test_only_recent_events_enter_wake_or_convert(brand: Brand, tmp_path: Path) -> None:
    """History is not a reason to message anyone: an import of last year's orders enters no journey."""
    s = brand.session
    entry = brand.journey(
        {
            "entry": {"type": "event", "event": "Order Completed"},
            "start": "w",
            "nodes": {"w": {"type": "wait", "duration": "1h", "next": "e"}, "e": {"type": "exit"}},
        }
    )
    amy = brand.follower("amy")
    waiting = brand.journey(
        {
            "entry": {"type": "manual"},
            "goals": [{"event": "Order Completed"}],
            "start": "w",
            "nodes": {
                "w": {
                    "type": "wait_event",
                    "event": "Product Viewed",
                    "timeout": "2d",
                    "next": "e",
                    "timeout_next": "e",
                },
                "e": {"type": "exit"},
            },
        }
    )
    journeys.enrol(s, waiting, [(amy, "k", {})], now=dt.datetime.now(dt.UTC))
    brand.run(dt.datetime.now(dt.UTC))

    # The brand loads its POS history: one order from last year, one from this morning.
    local = ZoneInfo("Asia/Shanghai")
    now = dt.datetime.now(local)
    path = tmp_path / "pos.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["order_id", "member_card", "amount", "time", "status"])
        writer.writerow(
            ["P-OLD", "880001", "100", f"{now - dt.timedelta(days=400):%Y-%m-%d %H:%M:%S}", "paid"]
        )
        writer.writerow(
            ["P-NEW", "880002", "200", f"{now - dt.timedelta(hours=2):%Y-%m-%d %H:%M:%S}", "paid"]
        )
    result = run_import(path, kind="orders", source="pos", mapping=mappings.load("orders", "pos"))
    assert (result.rows_imported, result.rows_failed) == (2, 0)
    entered = set(s.execute(select(Enrolment.profile_id).where(Enrolment.journey_id == entry.id)).scalars())
    assert entered == {int(brand.api.lookup("pos_card", "880002")["id"])}

    # Amy's phone comes back online with a week-old view and order: she is neither woken nor converted.
    week_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=7)).isoformat()
    brand.api.send(event(userId="amy", event="Product Viewed", timestamp=week_ago))
    brand.api.send(event(userId="amy", event="Order Completed", properties={"total": 10}, timestamp=week_ago))
    e = enrolment(s, waiting.id, amy)
    assert (e.status, e.woken) == (EnrolmentStatus.active, False)
    brand.api.send(recent(userId="amy", event="Order Completed", properties={"total": 10}))
    assert enrolment(s, waiting.id, amy).status == EnrolmentStatus.converted
