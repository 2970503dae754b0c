"""The journeys' ingest reactor: goals met, customers entering, awaited events arriving.

Called in the ingest transaction for every batch. One indexed query on `journey_triggers` says whether
any running journey listens to the batch's event names; most batches stop there. Goals are checked
first, on every event, against the enrolments that existed before the batch (an entry and its goal in
one event do not cancel out), then entries, then waits.

Only recent events count (`journeys_trigger_max_age_hours`, by the event's own timestamp): an import of
last year's orders, or a phone that comes back online after a week, is history, not a reason to message
anyone now (decision 0016).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.config import get_settings
from siyu.db import utcnow
from siyu.ingest.reactors import StoredEvent
from siyu.journeys import engine, service
from siyu.journeys.counts import CountKey, add_counts
from siyu.journeys.models import (
    ACTIVE,
    PATH_LIMIT,
    Enrolment,
    EnrolmentStatus,
    Journey,
    JourneyStatus,
    JourneyTrigger,
    TriggerKind,
)

# Properties copied into an enrolment's context (personalisation: {{ event.properties.name }}).
MAX_CONTEXT_PROPERTIES = 30


def react(session: Session, events: Sequence[StoredEvent]) -> None:
    """Reactor: goals, entries and waits of the running journeys that listen to these recent events."""
    now = utcnow()
    events = recent(events, now - dt.timedelta(hours=get_settings().journeys_trigger_max_age_hours))
    names = sorted({e.event for e in events if e.event})
    if not names:
        return
    triggers = session.execute(
        select(
            JourneyTrigger.journey_id,
            JourneyTrigger.version_id,
            JourneyTrigger.kind,
            JourneyTrigger.event,
            JourneyTrigger.node,
        )
        .join(Journey, Journey.id == JourneyTrigger.journey_id)
        .where(
            JourneyTrigger.event.in_(names), Journey.status.in_([JourneyStatus.active, JourneyStatus.paused])
        )
    ).all()
    if not triggers:
        return
    by_kind: dict[TriggerKind, list[Any]] = {}
    for t in triggers:
        by_kind.setdefault(TriggerKind(t.kind), []).append(t)
    if TriggerKind.goal in by_kind:
        _goals(session, by_kind[TriggerKind.goal], events, now)
    if TriggerKind.entry in by_kind:
        _entries(session, by_kind[TriggerKind.entry], events, now)
    if TriggerKind.wait in by_kind:
        _waits(session, by_kind[TriggerKind.wait], events, now)


def recent(events: Sequence[StoredEvent], since: dt.datetime) -> list[StoredEvent]:
    """The events that happened at or after since (by their own timestamp)."""
    return [e for e in events if dt.datetime.fromisoformat(e.timestamp_iso) >= since]


def _goals(session: Session, triggers: list[Any], events: Sequence[StoredEvent], now: dt.datetime) -> None:
    stamp = now.isoformat(timespec="seconds")
    counts: Counter[CountKey] = Counter()
    for version_id in sorted({t.version_id for t in triggers}):
        d = engine.definition_of(session, version_id)
        met: dict[int, str] = {}
        for ev in events:
            for goal in d.goals:
                if goal.matches(ev.event, ev.properties):
                    met.setdefault(ev.profile_id, goal.event)
        if not met:
            continue
        rows = session.execute(
            select(
                Enrolment.id, Enrolment.journey_id, Enrolment.profile_id, Enrolment.node, Enrolment.path
            ).where(
                Enrolment.version_id == version_id,
                text(ACTIVE),
                bulk.matches(session, Enrolment.profile_id, sorted(met)),
            )
        ).all()
        ab_nodes = {n.id for n in d.nodes.values() if n.type == "ab"}
        updates = []
        for r in rows:
            outcome = f"goal:{met[r.profile_id]}"
            path = list(r.path or [])
            counts[(r.journey_id, version_id, r.node, outcome[:80])] += 1
            # A conversion counts for the A/B variant (or the holdout) the customer was given.
            for node, variant, *_ in path:
                if node in ab_nodes:
                    counts[(r.journey_id, version_id, node, f"converted:{variant}"[:80])] += 1
            path.append([r.node, outcome, stamp])
            updates.append(
                (r.id, str(EnrolmentStatus.converted), now, "goal", None, None, None, path[-PATH_LIMIT:])
            )
        bulk.update_rows(
            session,
            "journey_enrolments",
            [
                ("status", "text"),
                ("ended_at", "ts"),
                ("end_reason", "text"),
                ("active_key", "int"),
                ("due_at", "ts"),
                ("wait_event", "text"),
                ("path", "json"),
            ],
            updates,
        )
    add_counts(session, counts)


def _entries(session: Session, triggers: list[Any], events: Sequence[StoredEvent], now: dt.datetime) -> None:
    journeys = {
        j.id: j
        for j in session.execute(
            select(Journey).where(
                Journey.id.in_({t.journey_id for t in triggers}), Journey.status == JourneyStatus.active
            )
        ).scalars()
    }
    for t in triggers:
        journey = journeys.get(t.journey_id)
        if journey is None or journey.current_version_id != t.version_id:
            continue
        d = engine.definition_of(session, t.version_id)
        f = d.entry.filter
        if f is None:
            continue
        entries = [
            (ev.profile_id, ev.message_id, {"event": _context(ev)})
            for ev in events
            if f.matches(ev.event, ev.properties)
        ]
        if entries:
            service.enrol(session, journey, entries, now=now)


def _context(ev: StoredEvent) -> dict[str, Any]:
    props = dict(list(ev.properties.items())[:MAX_CONTEXT_PROPERTIES])
    return {"name": ev.event, "message_id": ev.message_id, "timestamp": ev.timestamp_iso, "properties": props}


def _waits(session: Session, triggers: list[Any], events: Sequence[StoredEvent], now: dt.datetime) -> None:
    by_profile: dict[int, list[StoredEvent]] = {}
    for ev in events:
        by_profile.setdefault(ev.profile_id, []).append(ev)
    versions = {t.version_id for t in triggers}
    rows = session.execute(
        select(Enrolment.id, Enrolment.version_id, Enrolment.profile_id, Enrolment.node).where(
            text(ACTIVE),
            Enrolment.version_id.in_(versions),
            Enrolment.wait_event.in_({t.event for t in triggers}),
            bulk.matches(session, Enrolment.profile_id, sorted(by_profile)),
        )
    ).all()
    woken: list[int] = []
    graphs = {v: engine.definition_of(session, v) for v in {r.version_id for r in rows}}
    for r in rows:
        node = graphs[r.version_id].nodes.get(r.node)
        if node is None or node.type != "wait_event":
            continue
        f = node.params["filter"]
        if any(f.matches(ev.event, ev.properties) for ev in by_profile.get(r.profile_id, [])):
            woken.append(r.id)
    if woken:
        session.execute(
            update(Enrolment)
            .where(bulk.matches(session, Enrolment.id, woken), Enrolment.status == EnrolmentStatus.active)
            .values(woken=True, due_at=now),
            execution_options={"synchronize_session": False},
        )
