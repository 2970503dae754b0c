"""The journey engine: claims due enrolments, runs them through their nodes, writes what happened.

Enrolments are rows; a worker claims a batch of due ones (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
workers share the work) and moves every customer of the batch forward until each one waits, leaves or
meets a node that must wait for time. Customers at the same node are handled together (one query per
node for a thousand customers), and the whole batch commits at once with its messages, tags, points,
tasks and webhooks: a worker killed mid-batch leaves nothing, and the next one redoes the batch. A
message's idempotency key (journey version, node, enrolment and step number) makes the redo queue it once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import operator
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.auth.models import Role, User
from siyu.clienteling.models import Task
from siyu.config import Settings, get_settings
from siyu.db import in_index_order, is_postgres, utcnow
from siyu.errors import SiyuError
from siyu.journeys import definition as language
from siyu.journeys.counts import CountKey, add_counts, count_label
from siyu.journeys.models import (
    ACTIVE,
    PATH_LIMIT,
    Enrolment,
    EnrolmentStatus,
    Journey,
    JourneyStatus,
    JourneyVersion,
)
from siyu.loyalty import service as loyalty
from siyu.loyalty import vouchers
from siyu.loyalty.models import Member, MemberStatus, VoucherTemplate
from siyu.messaging import policy, render
from siyu.messaging import service as messaging
from siyu.outbox import service as outbox
from siyu.profiles import service as profiles
from siyu.profiles.models import Profile
from siyu.segments import service as segments

log = structlog.get_logger(__name__)
WEBHOOK = "journeys.webhook"
MAX_ROUNDS = 64
ENROLMENT_UPDATE: bulk.Columns = [
    ("node", "text"),
    ("status", "text"),
    ("due_at", "ts"),
    ("wait_event", "text"),
    ("woken", "bool"),
    ("variant", "text"),
    ("steps", "int"),
    ("active_key", "int"),
    ("ended_at", "ts"),
    ("end_reason", "text"),
    ("path", "json"),
]


@dataclass(slots=True)
class Cursor:
    """An enrolment as the engine moves it."""

    id: int
    journey_id: int
    version_id: int
    profile_id: int
    node: str
    due_at: dt.datetime | None
    wait_event: str | None
    woken: bool
    variant: str | None
    steps: int
    active_key: int | None
    context: dict[str, Any]
    path: list[list[str]]
    status: str = EnrolmentStatus.active
    ended_at: dt.datetime | None = None
    end_reason: str | None = None


@dataclass(slots=True)
class Run:
    """One batch: the cursors still moving, the steps to write, what the batch did."""

    session: Session
    now: dt.datetime
    settings: Settings
    names: dict[int, str]
    moving: list[Cursor] = field(default_factory=list)
    counts: Counter[CountKey] = field(default_factory=Counter)
    stamp: str = ""

    def __post_init__(self) -> None:
        self.stamp = self.now.isoformat(timespec="seconds")

    def record(self, cur: Cursor, node: str, outcome: str) -> None:
        """The customer left node with outcome: counted for the node, kept on her path."""
        self.counts[(cur.journey_id, cur.version_id, node, count_label(outcome))] += 1
        cur.path.append([node, outcome if len(outcome) <= 300 else outcome[:300], self.stamp])

    def advance(self, cur: Cursor, node: language.Node, branch: str, outcome: str) -> None:
        """The customer passed node (with outcome) and moves on along branch, now."""
        self.record(cur, node.id, outcome)
        cur.node = node.branches[branch]
        cur.steps += 1
        cur.wait_event, cur.woken = None, False
        self.moving.append(cur)

    def wait(self, cur: Cursor, until: dt.datetime, event: str = "") -> None:
        """The customer stays at the node until `until` (or the awaited event)."""
        cur.due_at, cur.wait_event, cur.woken = until, event, False

    def defer(self, cur: Cursor, until: dt.datetime) -> None:
        """The node runs again for this customer at `until` (quiet hours, a busy batch)."""
        cur.due_at = until

    def end(self, cur: Cursor, node: str, status: EnrolmentStatus, reason: str) -> None:
        self.record(cur, node, reason)
        cur.status, cur.ended_at, cur.end_reason = status, self.now, reason
        cur.active_key, cur.due_at, cur.wait_event = None, None, None


# Parsed versions by (id, publication time): ids alone could be reused by a database rebuilt (tests).
_parsed: dict[tuple[int, dt.datetime], language.Definition] = {}


def definition_of(session: Session, version_id: int) -> language.Definition:
    """The parsed graph of a published version: versions never change, so it is read and parsed once."""
    published_at = session.execute(
        select(JourneyVersion.published_at).where(JourneyVersion.id == version_id)
    ).scalar_one()
    key = (version_id, published_at)
    parsed = _parsed.get(key)
    if parsed is None:
        raw = session.execute(
            select(JourneyVersion.definition).where(JourneyVersion.id == version_id)
        ).scalar_one()
        if len(_parsed) >= 512:
            _parsed.clear()
        parsed = _parsed[key] = language.parse(raw)
    return parsed


def claim(session: Session, limit: int, now: dt.datetime) -> list[Cursor]:
    """Due enrolments of running journeys, locked for this worker on PostgreSQL (others skip them)."""
    e = Enrolment
    running = [
        int(i)
        for i in session.execute(select(Journey.id).where(Journey.status == JourneyStatus.active)).scalars()
    ]
    if not running:
        return []
    pg = is_postgres(session)
    # "journey_id + 0" on SQLite: it would otherwise search the journey's unique index and sort every due
    # enrolment for each batch; written so, it walks the due index in order and stops at `limit`. Not on
    # PostgreSQL, whose planner guesses 0.5 % for an expression it has no statistics for and would then
    # sort a whole broadcast's enrolments for each batch, thinking them few.
    journey = (e.journey_id + 0) if not pg else e.journey_id
    # No join: the claim walks the partial index in its order and stops at `limit` rows.
    statement = (
        select(
            e.id,
            e.journey_id,
            e.version_id,
            e.profile_id,
            e.node,
            e.due_at,
            e.wait_event,
            e.woken,
            e.variant,
            e.steps,
            e.active_key,
            e.context,
            e.path,
        )
        .where(text(ACTIVE), e.due_at <= now, journey.in_(running))
        .order_by(e.due_at, e.id)
        .limit(limit)
    )
    if pg:
        statement = statement.with_for_update(skip_locked=True, of=e)
    with in_index_order(session):
        rows = session.execute(statement).all()
    # Positional, not by name: a batch builds a thousand of these.
    return [
        Cursor(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            r[6],
            bool(r[7]),
            r[8],
            r[9],
            r[10],
            dict(r[11] or {}),
            list(r[12] or []),
        )
        for r in rows
    ]


def run_due(session: Session, *, now: dt.datetime | None = None, settings: Settings | None = None) -> int:
    """Move one batch of due enrolments as far as each can go; returns how many were claimed.

    Flushes, never commits. A customer deferred (quiet hours) counts: the batch did its work.
    """
    settings = settings or get_settings()
    now = now or utcnow()
    cursors = claim(session, settings.journeys_batch_size, now)
    if not cursors:
        return 0
    names = dict(
        session.execute(
            select(Journey.id, Journey.name).where(Journey.id.in_({c.journey_id for c in cursors}))
        ).all()
    )
    run = Run(session, now, settings, names, moving=list(cursors))
    definitions: dict[int, language.Definition] = {}
    for _round in range(MAX_ROUNDS):
        if not run.moving:
            break
        groups: dict[tuple[int, str], list[Cursor]] = {}
        for cur in run.moving:
            groups.setdefault((cur.version_id, cur.node), []).append(cur)
        run.moving = []
        for (version_id, node_id), group in groups.items():
            definition = definitions.get(version_id)
            if definition is None:
                definition = definitions[version_id] = definition_of(session, version_id)
            node = definition.nodes.get(node_id)
            if node is None:
                for cur in group:
                    run.end(cur, node_id, EnrolmentStatus.removed, "node missing from its version")
                continue
            _step(run, definition, node, group)
    for cur in run.moving:
        # Still moving after MAX_ROUNDS nodes: carry on in the next batch.
        run.defer(cur, now)
    _write(session, cursors, run)
    return len(cursors)


# What a node may change on a cursor: saved before each node, put back if the node fails.
_MUTABLE = (
    "node",
    "due_at",
    "wait_event",
    "woken",
    "variant",
    "steps",
    "active_key",
    "status",
    "ended_at",
    "end_reason",
)
_STATE = operator.attrgetter(*_MUTABLE)


def _step(run: Run, definition: language.Definition, node: language.Node, group: list[Cursor]) -> None:
    """Run one node for a group of customers; a failure retries the group later, recorded, not lost."""
    saved = [(_STATE(c), len(c.path)) for c in group]
    moving, counts = len(run.moving), run.counts.copy()
    savepoint = run.session.begin_nested()
    try:
        HANDLERS[node.type](run, definition, node, group)
        savepoint.commit()
    except Exception as exc:
        savepoint.rollback()
        log.exception("journeys.step_failed", node=node.id, type=node.type)
        del run.moving[moving:]
        run.counts = counts
        retry = run.now + dt.timedelta(seconds=run.settings.journeys_retry_seconds)
        for cur, (before, length) in zip(group, saved, strict=True):
            for name, value in zip(_MUTABLE, before, strict=True):
                setattr(cur, name, value)
            del cur.path[length:]
            run.record(cur, node.id, f"error: {type(exc).__name__}: {exc}")
            run.defer(cur, retry)


def _write(session: Session, cursors: Sequence[Cursor], run: Run) -> None:
    # The key first, then the columns in ENROLMENT_UPDATE's order.
    rows = [
        (
            c.id,
            c.node,
            str(c.status),
            c.due_at,
            c.wait_event,
            c.woken,
            c.variant,
            c.steps,
            c.active_key,
            c.ended_at,
            c.end_reason,
            c.path[-PATH_LIMIT:],
        )
        for c in cursors
    ]
    bulk.update_rows(session, "journey_enrolments", ENROLMENT_UPDATE, rows)
    # Last before the commit: the counter rows are locked for the shortest time.
    add_counts(session, run.counts)


# --- nodes --------------------------------------------------------------------------------------------

Handler = Callable[[Run, language.Definition, language.Node, list[Cursor]], None]


def message_key(cur: Cursor, node: str) -> str:
    """The idempotency key of the message a send node makes: version, node, enrolment and step."""
    return f"journey:{cur.version_id}:{node}:{cur.id}:{cur.steps}"


def _send(run: Run, d: language.Definition, node: language.Node, group: list[Cursor]) -> None:
    template = messaging.get_template_by_name(run.session, node.params["template"])
    if template is None:
        for cur in group:
            run.advance(cur, node, "next", "failed:no such template")
        return
    requests = [
        messaging.Request(
            cur.profile_id,
            message_key(cur, node.id),
            journey_id=cur.journey_id,
            version_id=cur.version_id,
            node=node.id,
            enrolment_id=cur.id,
            extra={"event": cur.context.get("event") or {}},
        )
        for cur in group
    ]
    outcomes = messaging.queue(run.session, template, requests, now=run.now, settings=run.settings)
    for cur, o in zip(group, outcomes, strict=True):
        if o.status == "deferred":
            run.defer(cur, o.until or run.now)
        elif o.status == "suppressed" or (o.status == "exists" and o.rule):
            run.advance(cur, node, "next", f"suppressed:{o.rule}")
        else:
            run.advance(cur, node, "next", "queued")


def _wait(run: Run, d: language.Definition, node: language.Node, group: list[Cursor]) -> None:
    for cur in group:
        if cur.wait_event is None:
            run.wait(cur, run.now + dt.timedelta(seconds=node.params["seconds"]))
        else:
            run.advance(cur, node, "next", "waited")


def _wait_until(run: Run, d: language.Definition, node: language.Node, group: list[Cursor]) -> None:
    fresh = [c for c in group if c.wait_event is None]
    zones = messaging.zones(run.session, sorted({c.profile_id for c in fresh}), run.settings)
    at = dt.time.fromisoformat(node.params["time"])
    for cur in group:
        if cur.wait_event is not None:
            run.advance(cur, node, "next", "waited")
            continue
        zone = policy.zone(zones.get(cur.profile_id, run.settings.timezone))
        local = run.now.astimezone(zone)
        for days in range(8):
            day = local.date() + dt.timedelta(days=days)
            moment = dt.datetime.combine(day, at, tzinfo=zone)
            if moment > local and day.weekday() in node.params["weekdays"]:
                run.wait(cur, moment.astimezone(dt.UTC))
                break


def _wait_event(run: Run, d: language.Definition, node: language.Node, group: list[Cursor]) -> None:
    f: language.Filter = node.params["filter"]
    for cur in group:
        if cur.wait_event is None:
            run.wait(cur, run.now + dt.timedelta(seconds=node.params["seconds"]), f.event)
        elif cur.woken:
            run.advance(cur, node, "next", "event")
        else:
            run.advance(cur, node, "timeout_next", "timeout")


def _split(run: Run, d: language.Definition, node: language.Node, group: list[Cursor]) -> None:
    yes = set(
        segments.matching(
            run.session, node.params["rule"], as_of=run.now, scope=[c.profile_id for c in group]
        )
    )
    for cur in group:
        if cur.profile_id in yes:
            run.advance(cur, node, "yes", "yes")
        else:
            run.advance(cur, node, "no", "no")


def bucket(journey_id: int, node: str, profile_id: int) -> float:
    """The customer's fixed place in [0, 100) for a split: the same customer always lands alike."""
    digest = hashlib.sha256(f"{journey_id}:{node}:{profile_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


def _ab(run: Run, d: language.Definition, node: language.Node, group: list[Cursor]) -> None:
    holdout: float = node.params["holdout"]
    variants: list[tuple[str, float]] = node.params["variants"]
    total = sum(w for _, w in variants)
    for cur in group:
        if cur.variant == "holdout" and cur.wait_event is not None:
            # The holdout's watch is over: its goals were counted while it waited, untouched.
            run.end(cur, node.id, EnrolmentStatus.completed, "holdout over")
            continue
        place = bucket(cur.journey_id, node.id, cur.profile_id)
        if place < holdout:
            cur.variant = "holdout"
            run.record(cur, node.id, "holdout")
            # Held out customers get nothing but stay enrolled, so a goal they meet counts for the uplift.
            run.wait(cur, run.now + dt.timedelta(days=d.holdout_days))
            continue
        point = (place - holdout) / (100 - holdout) * total
        chosen = variants[-1][0]
        for name, weight in variants:
            if point < weight:
                chosen = name
                break
            point -= weight
        cur.variant = chosen
        run.advance(cur, node, chosen, chosen)


def _tag(run: Run, d: language.Definition, node: language.Node, group: list[Cursor]) -> None:
    actor = f"journey:{run.names.get(group[0].journey_id, '')}"
    for cur in group:
        for name in node.params["add"]:
            profiles.add_tag(run.session, cur.profile_id, name, actor=actor)
        for name in node.params["remove"]:
            profiles.remove_tag(run.session, cur.profile_id, name)
        run.advance(cur, node, "next", "tagged")


def _otherwise(node: language.Node) -> str:
    """The branch of a reward that was not given: `else` when the node has one (so a "your voucher is
    waiting" message is not sent without a voucher), else on as usual."""
    return "else" if "else" in node.branches else "next"


def _members(session: Session, pids: Sequence[int]) -> dict[int, int]:
    return dict(
        session.execute(
            select(Member.profile_id, Member.id).where(
                bulk.matches(session, Member.profile_id, list(pids)), Member.status == MemberStatus.active
            )
        ).all()
    )


def _points(run: Run, d: language.Definition, node: language.Node, group: list[Cursor]) -> None:
    members = _members(run.session, [c.profile_id for c in group])
    for cur in group:
        member_id = members.get(cur.profile_id)
        if member_id is None:
            run.advance(cur, node, _otherwise(node), "skipped:not a member")
            continue
        loyalty.earn(
            run.session,
            member_id,
            int(node.params["points"]),
            key=message_key(cur, node.id),
            reason=node.params["reason"],
            actor=f"journey:{run.names.get(cur.journey_id, '')}",
            now=run.now,
            settings=run.settings,
        )
        run.advance(cur, node, "next", "granted")


def _voucher(run: Run, d: language.Definition, node: language.Node, group: list[Cursor]) -> None:
    template = run.session.execute(
        select(VoucherTemplate).where(VoucherTemplate.name == node.params["template"])
    ).scalar_one_or_none()
    members = _members(run.session, [c.profile_id for c in group])
    for cur in group:
        member_id = members.get(cur.profile_id)
        if template is None:
            run.advance(cur, node, _otherwise(node), "failed:no such voucher template")
        elif member_id is None:
            run.advance(cur, node, _otherwise(node), "skipped:not a member")
        else:
            try:
                vouchers.issue(
                    run.session, template.id, member_id, key=message_key(cur, node.id), now=run.now
                )
                run.advance(cur, node, "next", "issued")
            except SiyuError as exc:  # out of stock, inactive: the journey goes on, the step says why
                run.advance(cur, node, _otherwise(node), f"failed:{exc.message}")


def _task(run: Run, d: language.Definition, node: language.Node, group: list[Cursor]) -> None:
    pids = [c.profile_id for c in group]
    owners: dict[int, int | None] = {}
    stores: dict[int, int | None] = {}
    for pid, owner, store in run.session.execute(
        select(Profile.id, Profile.owner_user_id, Profile.store_id).where(
            bulk.matches(run.session, Profile.id, pids)
        )
    ):
        owners[pid], stores[pid] = owner, store
    # An associate who has left (disabled) sees no task: theirs go to the store's manager, as for none.
    active = set(
        run.session.execute(
            select(User.id).where(User.id.in_({o for o in owners.values() if o}), User.is_active)
        ).scalars()
    )
    owners = {pid: owner if owner in active else None for pid, owner in owners.items()}
    # No associate: the store's manager takes the task, so the customer is not forgotten.
    managers = dict(
        run.session.execute(
            select(User.store_id, User.id)
            .where(
                User.role == Role.store_manager,
                User.is_active,
                User.store_id.in_({s for s in stores.values() if s}),
            )
            .order_by(User.id.desc())
        ).all()
    )
    body = {"title": node.params["title"]}
    ctx = render.contexts(run.session, pids, render.names(body))
    due = run.now + dt.timedelta(seconds=node.params["seconds"]) if node.params.get("seconds") else None
    rows: list[dict[str, Any]] = []
    for cur in group:
        assignee = owners.get(cur.profile_id) or managers.get(stores.get(cur.profile_id) or 0)
        if assignee is None:
            run.advance(cur, node, "next", "skipped:no associate")
            continue
        title = render.render(body, {**ctx[cur.profile_id], "event": cur.context.get("event") or {}})["title"]
        rows.append(
            {
                "user_id": assignee,
                "profile_id": cur.profile_id,
                "title": title[:200],
                "detail": {
                    "journey_id": cur.journey_id,
                    "journey": run.names.get(cur.journey_id),
                    "node": node.id,
                },
                "source": "journey",
                "source_key": message_key(cur, node.id),
                "due_at": due,
                "created_at": run.now,
            }
        )
        run.advance(cur, node, "next", "task")
    if rows:
        insert = pg_insert if is_postgres(run.session) else sqlite_insert
        run.session.execute(insert(Task).values(rows).on_conflict_do_nothing(index_elements=["source_key"]))


def _webhook(run: Run, d: language.Definition, node: language.Node, group: list[Cursor]) -> None:
    for cur in group:
        key = message_key(cur, node.id)
        payload = {
            "url": node.params["url"],
            "body": {
                "journey_id": cur.journey_id,
                "journey": run.names.get(cur.journey_id),
                "node": node.id,
                "profile_id": cur.profile_id,
                "enrolment_id": cur.id,
                "idempotency_key": key,
                "at": run.now.isoformat(),
            },
        }
        outbox.enqueue(run.session, WEBHOOK, payload, idempotency_key=key)
        run.advance(cur, node, "next", "called")


def _exit(run: Run, d: language.Definition, node: language.Node, group: list[Cursor]) -> None:
    for cur in group:
        run.end(cur, node.id, EnrolmentStatus.completed, "exit")


HANDLERS: dict[str, Handler] = {
    "send": _send,
    "wait": _wait,
    "wait_until": _wait_until,
    "wait_event": _wait_event,
    "split": _split,
    "ab": _ab,
    "tag": _tag,
    "points": _points,
    "voucher": _voucher,
    "task": _task,
    "webhook": _webhook,
    "exit": _exit,
}
