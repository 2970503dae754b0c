"""Journeys: drafts, publishing (with the choice for customers in flight), enrolment, analytics.

Flushes, never commits. A journey is edited as a draft; publishing checks it (every problem with its
JSONPath), freezes it as a new version and says what happens to customers in flight on the previous
one: they `keep` it, or `migrate` to the new one at the node of the same id.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.config import get_settings
from siyu.db import is_postgres, utcnow
from siyu.errors import BadRequest, Conflict, NotFound
from siyu.journeys import definition as language
from siyu.journeys.counts import NOT_PASSES
from siyu.journeys.engine import definition_of
from siyu.journeys.models import (
    ACTIVE,
    Enrolment,
    EnrolmentStatus,
    Journey,
    JourneyStatus,
    JourneyTrigger,
    JourneyVersion,
    NodeCount,
    TriggerKind,
)
from siyu.loyalty.models import VoucherTemplate
from siyu.messaging import service as messaging
from siyu.segments.models import Segment

InFlight = Literal["keep", "migrate"]


# --- definitions -------------------------------------------------------------------------------------


def check(session: Session, raw: Any) -> language.Definition:
    """The definition checked for publishing, references included; DefinitionError lists every problem."""

    def known(kind: str, value: Any) -> str | None:
        if kind == "template":
            if not isinstance(value, str) or messaging.get_template_by_name(session, value) is None:
                return f"no message template named {value!r}"
        elif kind == "voucher":
            if not session.execute(select(VoucherTemplate.id).where(VoucherTemplate.name == value)).first():
                return f"no voucher template named {value!r}"
        elif kind == "segment" and session.get(Segment, value) is None:
            return f"no segment {value}"
        return None

    return language.check(raw, timezone=get_settings().timezone, known=known)


def problems(session: Session, raw: Any) -> list[language.Problem]:
    """What stands between a draft and publishing it (empty: it may be published)."""
    try:
        check(session, raw)
    except language.DefinitionError as exc:
        return exc.problems
    return []


# --- journeys ------------------------------------------------------------------------------------------


def create(
    session: Session, *, name: str, definition: dict[str, Any], description: str = "", actor: str = ""
) -> Journey:
    """A new journey in draft (the definition need not be complete yet); Conflict for a taken name."""
    if session.execute(select(Journey.id).where(Journey.name == name)).first():
        raise Conflict(f"a journey named {name!r} exists")
    journey = Journey(name=name, description=description, draft=definition, created_by=actor)
    session.add(journey)
    session.flush()
    return journey


def get_or_raise(session: Session, journey_id: int) -> Journey:
    journey = session.get(Journey, journey_id)
    if journey is None:
        raise NotFound(f"no journey {journey_id}")
    return journey


def list_(session: Session) -> Sequence[Journey]:
    return session.execute(select(Journey).order_by(Journey.id)).scalars().all()


def update_draft(
    session: Session,
    journey: Journey,
    *,
    definition: dict[str, Any] | None = None,
    name: str | None = None,
    description: str | None = None,
) -> Journey:
    """Change the draft (running customers are not affected until it is published)."""
    if journey.status == JourneyStatus.archived:
        raise Conflict("an archived journey cannot be edited")
    if name is not None and name != journey.name:
        if session.execute(select(Journey.id).where(Journey.name == name)).first():
            raise Conflict(f"a journey named {name!r} exists")
        journey.name = name
    if definition is not None:
        journey.draft = definition
    if description is not None:
        journey.description = description
    journey.updated_at = utcnow()
    session.flush()
    return journey


def versions(session: Session, journey_id: int) -> Sequence[JourneyVersion]:
    return (
        session.execute(
            select(JourneyVersion)
            .where(JourneyVersion.journey_id == journey_id)
            .order_by(JourneyVersion.number)
        )
        .scalars()
        .all()
    )


def current_definition(session: Session, journey: Journey) -> language.Definition | None:
    if journey.current_version_id is None:
        return None
    return definition_of(session, journey.current_version_id)


@dataclass(frozen=True, slots=True)
class Published:
    version: JourneyVersion
    migrated: int
    kept: int
    enrolled: int


def publish(
    session: Session, journey: Journey, *, in_flight: InFlight = "keep", actor: str = ""
) -> Published:
    """Freeze the draft as the next version and run it; customers in flight keep or migrate (as chosen)."""
    if journey.status == JourneyStatus.archived:
        raise Conflict("an archived journey cannot be published")
    if in_flight not in ("keep", "migrate"):
        raise BadRequest("in_flight: keep or migrate")
    parsed = check(session, journey.draft)
    previous = journey.current_version_id
    number = (
        session.execute(
            select(func.max(JourneyVersion.number)).where(JourneyVersion.journey_id == journey.id)
        ).scalar()
        or 0
    ) + 1
    version = JourneyVersion(
        journey_id=journey.id, number=number, definition=journey.draft, published_by=actor
    )
    session.add(version)
    session.flush()
    migrated = kept = 0
    if previous is not None:
        in_flight_q = select(func.count()).where(
            Enrolment.journey_id == journey.id,
            Enrolment.status == EnrolmentStatus.active,
            Enrolment.version_id != version.id,
        )
        total = int(session.execute(in_flight_q).scalar_one())
        if in_flight == "migrate":
            # Customers move to the node of the same id; one whose node is gone stays on its version.
            result = session.execute(
                update(Enrolment)
                .where(
                    Enrolment.journey_id == journey.id,
                    Enrolment.status == EnrolmentStatus.active,
                    Enrolment.version_id != version.id,
                    Enrolment.node.in_(list(parsed.nodes)),
                )
                .values(version_id=version.id)
            )
            migrated = int(result.rowcount or 0)  # type: ignore[attr-defined]
        kept = total - migrated
    version.migration = {
        "in_flight": in_flight,
        "migrated": migrated,
        "kept": kept,
        "from_version_id": previous,
    }
    journey.current_version_id = version.id
    first = journey.status == JourneyStatus.draft
    journey.status = JourneyStatus.active
    journey.updated_at = utcnow()
    _index_triggers(session, journey.id)
    enrolled = 0
    if first and parsed.entry.kind == "segment" and parsed.entry.include_existing and parsed.entry.segment_id:
        # A draft has no enrolments (only active and paused journeys enrol) and gets none from another
        # transaction before this one commits (to them it is a draft; a second publication of it fails on the
        # version number): no conflict to check for, a third of a million customers' insert time.
        enrolled = enrol_segment(session, journey, version, parsed, parsed.entry.segment_id, first=True)
    session.flush()
    return Published(version, migrated, kept, enrolled)


def _index_triggers(session: Session, journey_id: int) -> None:
    """The events the journey's versions listen for: entries of the current one, goals and waits of all."""
    journey = get_or_raise(session, journey_id)
    session.execute(delete(JourneyTrigger).where(JourneyTrigger.journey_id == journey_id))
    rows: list[dict[str, Any]] = []
    live_versions = set(
        session.execute(
            select(Enrolment.version_id)
            .where(Enrolment.journey_id == journey_id, Enrolment.status == EnrolmentStatus.active)
            .distinct()
        ).scalars()
    )
    if journey.current_version_id is not None:
        live_versions.add(journey.current_version_id)
    for version_id in sorted(live_versions):
        d = definition_of(session, version_id)
        if version_id == journey.current_version_id and d.entry.filter is not None:
            rows.append(
                {
                    "kind": TriggerKind.entry,
                    "event": d.entry.filter.event,
                    "node": None,
                    "version_id": version_id,
                }
            )
        for goal in d.goals:
            rows.append(
                {"kind": TriggerKind.goal, "event": goal.event, "node": None, "version_id": version_id}
            )
        for node in d.nodes.values():
            if node.type == "wait_event":
                rows.append(
                    {
                        "kind": TriggerKind.wait,
                        "event": node.params["filter"].event,
                        "node": node.id,
                        "version_id": version_id,
                    }
                )
    for row in rows:
        session.add(JourneyTrigger(journey_id=journey_id, **row))
    session.flush()


def set_status(session: Session, journey: Journey, status: JourneyStatus) -> Journey:
    """Pause (no one enters, no one moves), resume, or archive (everyone in flight is removed)."""
    if journey.current_version_id is None:
        raise Conflict("publish the journey first")
    if status == JourneyStatus.draft:
        raise BadRequest("a published journey cannot go back to draft")
    journey.status = status
    journey.updated_at = utcnow()
    if status == JourneyStatus.archived:
        now = utcnow()
        session.execute(
            update(Enrolment)
            .where(Enrolment.journey_id == journey.id, Enrolment.status == EnrolmentStatus.active)
            .values(
                status=EnrolmentStatus.removed,
                ended_at=now,
                end_reason="journey archived",
                active_key=None,
                due_at=None,
            )
        )
        session.execute(delete(JourneyTrigger).where(JourneyTrigger.journey_id == journey.id))
    session.flush()
    return journey


# --- enrolment -------------------------------------------------------------------------------------------


ENROL_COLUMNS = (
    "journey_id, version_id, profile_id, node, status, due_at, woken, steps, entry_key, active_key, context, path, "
    "entered_at"
)


def check_manual_entry(session: Session, journey: Journey) -> None:
    """Conflict unless the journey is active and enrols the lists it is given (a manual entry)."""
    if journey.status != JourneyStatus.active or journey.current_version_id is None:
        what = "publish it" if journey.current_version_id is None else "resume it"
        raise Conflict(f"journey #{journey.id} is {journey.status}: {what} before enrolling anyone")
    kind = definition_of(session, journey.current_version_id).entry.kind
    if kind != "manual":
        raise Conflict(
            f"journey #{journey.id} enrols on its {kind} entry: only a journey with a manual entry takes a list"
        )


def enrol(
    session: Session,
    journey: Journey,
    entries: Sequence[tuple[int, str, dict[str, Any]]],
    *,
    now: dt.datetime | None = None,
) -> int:
    """Enrol (profile, entry key, context) entries on the current version, by its re-entry policy.

    Returns how many entered. "never": once per customer; "after_exit": again once the last enrolment
    ended; "always": each entry key (a trigger event) enrols, even while another is in flight.
    """
    if journey.status != JourneyStatus.active or journey.current_version_id is None:
        return 0
    d = definition_of(session, journey.current_version_id)
    now = now or utcnow()
    rows = []
    for pid, key, context in entries:
        rows.append(
            {
                "journey_id": journey.id,
                "version_id": journey.current_version_id,
                "profile_id": pid,
                "node": d.start,
                "status": EnrolmentStatus.active,
                "due_at": now,
                "woken": False,
                "steps": 0,
                "entry_key": "once" if d.reentry == "never" else key[:255],
                "active_key": None if d.reentry == "always" else pid,
                "context": context,
                "path": [],
                "entered_at": now,
            }
        )
    insert = pg_insert if is_postgres(session) else sqlite_insert
    entered = 0
    for start in range(0, len(rows), 1000):
        result = session.execute(
            insert(Enrolment)
            .values(rows[start : start + 1000])
            .on_conflict_do_nothing()
            .returning(Enrolment.id)
        )
        entered += len(result.all())
    return entered


def enrol_segment(
    session: Session,
    journey: Journey,
    version: JourneyVersion,
    d: language.Definition,
    segment_id: int,
    *,
    first: bool = False,
) -> int:
    """Enrol a segment's current members in one statement (a broadcast to a million customers).

    first: the journey's first publication, in its transaction; its enrolments then need no conflict check.
    """
    now = bulk.bind_time(session, utcnow())
    active_key = "NULL" if d.reentry == "always" else "m.profile_id"
    entry_key = "once" if d.reentry == "never" else f"segment:{segment_id}:{version.id}"
    empty, none = ("'{}'::jsonb", "'[]'::jsonb") if is_postgres(session) else ("'{}'", "'[]'")
    result = session.execute(
        text(
            f"INSERT INTO journey_enrolments ({ENROL_COLUMNS}) "
            f"SELECT :j, :v, m.profile_id, :start, 'active', :now, false, 0, :key, {active_key}, {empty}, {none}, :now "
            f"FROM segment_members AS m WHERE m.segment_id = :s {'' if first else 'ON CONFLICT DO NOTHING'}"
        ),
        {"j": journey.id, "v": version.id, "start": d.start, "now": now, "key": entry_key, "s": segment_id},
    )
    entered = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if entered > 10_000 and is_postgres(session):
        # A broadcast just wrote most of the table: without fresh statistics the planner would sort every
        # due enrolment for each batch the workers claim, until autovacuum's next analyze.
        session.execute(text("ANALYZE journey_enrolments"))
    return entered


def remove(session: Session, journey: Journey, profile_id: int) -> int:
    """Take a customer out of the journey (every active enrolment); returns how many ended.

    NotFound when the customer was never in it (taking out one who already left is a no-op: a retry).
    """
    result = session.execute(
        update(Enrolment)
        .where(
            Enrolment.journey_id == journey.id,
            Enrolment.profile_id == profile_id,
            Enrolment.status == EnrolmentStatus.active,
        )
        .values(
            status=EnrolmentStatus.removed,
            ended_at=utcnow(),
            end_reason="removed by an operator",
            active_key=None,
            due_at=None,
        )
    )
    ended = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if (
        not ended
        and not session.execute(
            select(Enrolment.id).where(Enrolment.journey_id == journey.id, Enrolment.profile_id == profile_id)
        ).first()
    ):
        raise NotFound(f"profile {profile_id} was never in journey {journey.id}")
    return ended


def enrolments(
    session: Session,
    journey_id: int,
    *,
    profile_id: int | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Sequence[Enrolment]:
    """A journey's enrolments, newest first; the next page starts before the last id of this one."""
    statement = select(Enrolment).where(Enrolment.journey_id == journey_id)
    if profile_id is not None:
        statement = statement.where(Enrolment.profile_id == profile_id)
    if before_id is not None:
        statement = statement.where(Enrolment.id < before_id)
    return session.execute(statement.order_by(Enrolment.id.desc()).limit(limit)).scalars().all()


def of_profile(session: Session, profile_id: int, *, limit: int = 10) -> list[tuple[Enrolment, str]]:
    """A customer's enrolments, newest first, with their journeys' names."""
    rows = session.execute(
        select(Enrolment, Journey.name)
        .join(Journey, Journey.id == Enrolment.journey_id)
        .where(Enrolment.profile_id == profile_id)
        .order_by(Enrolment.id.desc())
        .limit(limit)
    ).all()
    return [(e, str(name)) for e, name in rows]


def path_of(session: Session, enrolment_id: int) -> list[list[str]]:
    """The nodes an enrolment passed, oldest first: [node, outcome, ISO time]."""
    path = session.execute(select(Enrolment.path).where(Enrolment.id == enrolment_id)).scalar_one_or_none()
    return list(path or [])


# --- analytics ---------------------------------------------------------------------------------------------


def two_proportion(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float] | None:
    """(z, two-sided p) of the difference of two conversion rates; None when either group is empty."""
    if n1 == 0 or n2 == 0:
        return None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x1 / n1 - x2 / n2) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def totals(session: Session, journey_ids: Sequence[int] | None = None) -> dict[int, dict[str, Any]]:
    """Each journey's enrolments by outcome and its conversion rate, in one grouped query."""
    statement = select(Enrolment.journey_id, Enrolment.status, func.count()).group_by(
        Enrolment.journey_id, Enrolment.status
    )
    if journey_ids is not None:
        statement = statement.where(Enrolment.journey_id.in_(journey_ids))
    by_status: dict[int, dict[str, int]] = {}
    for journey_id, status, n in session.execute(statement):
        by_status.setdefault(int(journey_id), {})[str(status)] = int(n)
    out: dict[int, dict[str, Any]] = {}
    for journey_id in journey_ids if journey_ids is not None else by_status:
        counts = by_status.get(journey_id, {})
        entered = sum(counts.values())
        row: dict[str, Any] = {"entered": entered} | {str(s): counts.get(str(s), 0) for s in EnrolmentStatus}
        row["conversion_rate"] = row["converted"] / entered if entered else 0.0
        out[journey_id] = row
    return out


def stats(session: Session, journey: Journey) -> dict[str, Any]:
    """Per node: passed (by outcome), waiting, messages by status, customers not messaged by reason; totals; A/B."""
    j = journey.id
    nodes: dict[str, dict[str, Any]] = {}

    def node(name: str) -> dict[str, Any]:
        return nodes.setdefault(
            name, {"passed": 0, "outcomes": {}, "waiting": 0, "messages": {}, "suppressed": {}, "goal": 0}
        )

    for name, outcome, n in session.execute(
        select(NodeCount.node, NodeCount.outcome, func.sum(NodeCount.n))
        .where(NodeCount.journey_id == j)
        .group_by(NodeCount.node, NodeCount.outcome)
    ):
        entry = node(name)
        if str(outcome).startswith("goal:"):
            entry["goal"] += int(n)
        if str(outcome).startswith("message:"):
            entry["messages"][str(outcome).removeprefix("message:")] = int(n)
        if str(outcome).startswith(NOT_PASSES):
            continue
        entry["passed"] += int(n)
        entry["outcomes"][outcome] = int(n)
        if str(outcome).startswith("suppressed:"):
            # Customers a send node did not message, by reason: with no recipient there is no message at
            # all, so `messages` (what became of the messages made) cannot say it.
            entry["suppressed"][str(outcome).removeprefix("suppressed:")] = int(n)
    for name, n in session.execute(
        select(Enrolment.node, func.count())
        .where(Enrolment.journey_id == j, Enrolment.status == EnrolmentStatus.active)
        .group_by(Enrolment.node)
    ):
        node(name)["waiting"] = int(n)
    return {"journey_id": j, **totals(session, [j])[j], "nodes": nodes, "ab": ab_results(session, journey)}


def ab_results(session: Session, journey: Journey) -> list[dict[str, Any]]:
    """Each A/B node's variants: customers, conversions, rate; the test between the two best; holdout uplift."""
    out: list[dict[str, Any]] = []
    d = current_definition(session, journey)
    if d is None:
        return out
    for node in d.nodes.values():
        if node.type != "ab":
            continue
        names = [n for n, _ in node.params["variants"]] + ["holdout"]
        groups: dict[str, dict[str, float]] = {n: {"customers": 0, "converted": 0} for n in names}
        for outcome, n in session.execute(
            select(NodeCount.outcome, func.sum(NodeCount.n))
            .where(NodeCount.journey_id == journey.id, NodeCount.node == node.id)
            .group_by(NodeCount.outcome)
        ):
            name = str(outcome).removeprefix("converted:")
            if name in groups:
                groups[name]["converted" if str(outcome).startswith("converted:") else "customers"] += int(n)
        for g in groups.values():
            g["rate"] = g["converted"] / g["customers"] if g["customers"] else 0.0
        variants = [n for n in names if n != "holdout"]
        ranked = sorted(variants, key=lambda n: groups[n]["rate"], reverse=True)
        test = None
        if len(ranked) >= 2:
            a, b = groups[ranked[0]], groups[ranked[1]]
            zp = two_proportion(
                int(a["converted"]), int(a["customers"]), int(b["converted"]), int(b["customers"])
            )
            if zp is not None:
                test = {
                    "leader": ranked[0],
                    "runner_up": ranked[1],
                    "z": zp[0],
                    "p_value": zp[1],
                    "significant": zp[1] < 0.05,
                }
        treated = [groups[n] for n in variants]
        t_customers = sum(g["customers"] for g in treated)
        t_rate = sum(g["converted"] for g in treated) / t_customers if t_customers else 0.0
        hold = groups["holdout"]
        uplift = None
        if hold["customers"] and t_customers:
            uplift = {"treated_rate": t_rate, "holdout_rate": hold["rate"], "uplift": t_rate - hold["rate"]}
        out.append(
            {"node": node.id, "label": node.params["label"], "groups": groups, "test": test, "uplift": uplift}
        )
    return out


def merge_enrolments(session: Session, pairs: list[tuple[int, int]], now: dt.datetime) -> None:
    """Identity hook: an absorbed profile's journeys go on with the survivor, unless it is already in them.

    Where both were in the same journey the survivor's enrolment goes on and the absorbed one ends, so
    one person never gets a journey's messages twice.
    """
    # One look-up for the batch: most absorbed profiles were made moments ago and are in no journey.
    enrolled = set(
        session.execute(
            select(Enrolment.profile_id)
            .where(bulk.matches(session, Enrolment.profile_id, [loser for loser, _ in pairs]), text(ACTIVE))
            .distinct()
        ).scalars()
    )
    for loser, winner in pairs:
        if loser not in enrolled:
            continue
        enrolled.add(winner)  # a survivor absorbed in turn later in pairs hands these on
        moving = (
            session.execute(select(Enrolment).where(Enrolment.profile_id == loser, text(ACTIVE)))
            .scalars()
            .all()
        )
        for e in moving:
            taken = (
                e.active_key is not None
                and session.execute(
                    select(Enrolment.id).where(
                        Enrolment.journey_id == e.journey_id, Enrolment.active_key == winner
                    )
                ).first()
            )
            if taken:
                e.status, e.ended_at, e.active_key, e.due_at = EnrolmentStatus.removed, now, None, None
                e.end_reason = f"merged into profile {winner}"
            else:
                e.profile_id = winner
                if e.active_key is not None:
                    e.active_key = winner
        session.flush()
