"""Segments: create and edit them, compute who is in them, keep that true as events arrive and time passes.

Rules compile to Ibis (`compiler`), rendered to the operational database's SQL and run on the request's
own connection, so a batch's reactor sees the rows the batch just wrote. Memberships change in three
ways: a full computation (creation, an edited rule, the console's "recompute"), the ingest reactor for the
profiles a batch touched, and the schedule for rules that time alone can change. Each change after the
first computation writes `Segment Entered` / `Segment Exited` to the customer's timeline.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import ibis
import orjson
import structlog
from sqlalchemy import Table, delete, func, select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from siyu import bulk
from siyu.clienteling.models import Region, Store
from siyu.config import get_settings
from siyu.db import get_read_sessionmaker, is_postgres, utcnow
from siyu.errors import Conflict, NotFound
from siyu.ingest import service as ingest_service
from siyu.ingest.reactors import StoredEvent
from siyu.segments import rules, wechat_tags
from siyu.segments.compiler import SCOPE_TABLE, compile_rule
from siyu.segments.models import (
    Segment,
    SegmentMember,
    SegmentSize,
    SegmentStatus,
    WechatTagged,
    WechatTagLink,
)
from siyu.segments.tables import tables

log = structlog.get_logger(__name__)
_members = cast(Table, SegmentMember.__table__)
ENTERED, EXITED = "Segment Entered", "Segment Exited"
# Events the reactor ignores: its own, which would otherwise re-evaluate the segment they came from.
_OWN_EVENTS = frozenset({ENTERED, EXITED})


@dataclass(frozen=True, slots=True)
class Preview:
    """The size of a rule's audience now and a few of its members."""

    size: int
    sample: list[int]


@dataclass(frozen=True, slots=True)
class Change:
    """What a computation changed."""

    size: int
    entered: int
    exited: int


# --- compiling and running ----------------------------------------------------------------------------


def dialect(session: Session) -> str:
    """The Ibis dialect of the session's database."""
    return "postgres" if is_postgres(session) else "sqlite"


def check(rule: Any) -> rules.Node:
    """The parsed rule, in the brand's time zone; RuleError pointing at the offending node."""
    return rules.parse(rule, get_settings().timezone)


def check_codes(session: Session, rule: Any) -> None:
    """RuleError at the node naming a store or region that does not exist (a typo would match no one)."""
    known = {
        "store": {c.upper(): c for c in session.execute(select(Store.code)).scalars()},
        "region": {c.upper(): c for c in session.execute(select(Region.code)).scalars()},
    }
    for path, kind, codes in _org_nodes(rule, "$"):
        for code in codes:
            if code in known[kind].values():
                continue
            spelled = known[kind].get(code.strip().upper())
            hint = (
                f"did you mean {spelled!r}?"
                if spelled
                else f"{kind}s: " + (", ".join(sorted(known[kind].values())) or "none yet")
            )
            raise rules.RuleError(path, f"no {kind} {code!r} ({hint})")


def _org_nodes(raw: Any, path: str) -> Iterable[tuple[str, str, list[str]]]:
    """(path, "store" or "region", codes) of each store and region node of a parsed-valid rule."""
    if not isinstance(raw, dict):
        return
    for kind in ("store", "region"):
        if kind in raw:
            value = raw[kind]
            yield f"{path}.{kind}", kind, [v for v in (value if isinstance(value, list) else [value])]
    for combinator in ("all", "any"):
        for i, child in enumerate(raw.get(combinator) or []):
            yield from _org_nodes(child, f"{path}.{combinator}[{i}]")
    if "not" in raw:
        yield from _org_nodes(raw["not"], f"{path}.not")


def to_sql(rule: Any, sql_dialect: str, as_of: dt.datetime, *, scoped: bool = False) -> str:
    """The SQL of a rule on an engine, relative windows evaluated at as_of (to the minute)."""
    minute = as_of.astimezone(dt.UTC).replace(second=0, microsecond=0)
    return _sql(orjson.dumps(rule, option=orjson.OPT_SORT_KEYS).decode(), sql_dialect, minute, scoped)


@lru_cache(maxsize=512)
def _sql(rule_json: str, sql_dialect: str, minute: dt.datetime, scoped: bool) -> str:
    # Compiling takes tens of milliseconds; the reactor runs every segment on every batch, so cache it.
    node = check(orjson.loads(rule_json))
    expr = compile_rule(node, tables(sql_dialect), as_of=minute, scoped=scoped)
    sql = str(ibis.to_sql(expr, dialect=sql_dialect))
    if sql_dialect == "sqlite" and not scoped:
        # Over everyone, SQLite's planner groups events by profile through the (profile_id, timestamp)
        # index: one random table read per event, 10-30x slower than a scan at 20M events (bench/segments.py).
        # A correlated EXISTS (its WHERE starts by matching the outer profile) keeps the index: it looks
        # up one profile's events.
        sql = _UNCORRELATED_EVENTS.sub(r"\g<0> NOT INDEXED", sql)
    return sql


_UNCORRELATED_EVENTS = re.compile(
    r'FROM "events" AS "(t\d+)"(?!\s+WHERE\s+\(?\s*"\1"\."profile_id" = "t\d+"\."id")'
)


def matching(
    session: Session, rule: Any, *, as_of: dt.datetime, scope: Iterable[int] | None = None
) -> list[int]:
    """Ids of the live profiles matching rule at as_of (only among scope when given), in the session."""
    sql = to_sql(rule, dialect(session), as_of, scoped=scope is not None)
    if scope is not None:
        ids = ",".join(str(int(pid)) for pid in scope)
        if is_postgres(session):
            values = f"SELECT unnest(ARRAY[{ids}]::bigint[]) AS profile_id"
        else:
            values = f"SELECT value AS profile_id FROM json_each('[{ids}]')"
        sql = f"WITH {SCOPE_TABLE} AS ({values}) SELECT profile_id FROM ({sql}) AS scoped_members"
    # The driver's own cursor: no bind-parameter parsing of a rule's literals (a ':' or '%' in a value).
    cursor = bulk.driver_connection(session).cursor()
    try:
        if scope is None and is_postgres(session):
            # Over everyone, a NOT IN of a few hundred thousand ids is hashed only if it fits in work_mem;
            # otherwise PostgreSQL rescans it for every profile. For this transaction only.
            cursor.execute(f"SET LOCAL work_mem = '{int(get_settings().segments_work_mem_mb)}MB'")
        cursor.execute(sql)
        return [int(row[0]) for row in cursor.fetchall()]
    finally:
        cursor.close()


def preview(session: Session, rule: Any, *, sample: int = 10, as_of: dt.datetime | None = None) -> Preview:
    """How many customers a rule matches now and the first few of them (checks the rule first)."""
    check(rule)
    check_codes(session, rule)
    ids = matching(session, rule, as_of=as_of or utcnow())
    return Preview(size=len(ids), sample=sorted(ids)[:sample])


# --- segments -------------------------------------------------------------------------------------------


def list_(session: Session) -> Sequence[Segment]:
    """Every segment, by name."""
    return session.execute(select(Segment).order_by(Segment.name)).scalars().all()


def get(session: Session, segment_id: int) -> Segment | None:
    """The segment, or None."""
    return session.get(Segment, segment_id)


def get_or_raise(session: Session, segment_id: int) -> Segment:
    """The segment; NotFound otherwise."""
    segment = session.get(Segment, segment_id)
    if segment is None:
        raise NotFound(f"no segment {segment_id}")
    return segment


def create(
    session: Session,
    *,
    name: str,
    rule: Any,
    description: str = "",
    actor: str = "system",
    compute: bool = True,
    now: dt.datetime | None = None,
) -> Segment:
    """A new segment (RuleError for a bad rule, Conflict for a taken name), computed now unless told not to."""
    check(rule)
    check_codes(session, rule)
    name = name.strip()
    if not name:
        raise rules.RuleError("$", "a segment needs a name")
    if session.execute(select(Segment.id).where(Segment.name == name)).first():
        raise Conflict(f"a segment named {name!r} exists")
    now = now or utcnow()
    segment = Segment(
        name=name, rule=rule, description=description, created_by=actor, created_at=now, updated_at=now
    )
    session.add(segment)
    session.flush()
    if compute:
        refresh(session, segment, now=now, kind="full")
    return segment


def update(
    session: Session,
    segment: Segment,
    *,
    rule: Any | None = None,
    name: str | None = None,
    description: str | None = None,
    now: dt.datetime | None = None,
) -> Segment:
    """Change a segment; a new rule bumps the version and recomputes the memberships (with entries/exits)."""
    now = now or utcnow()
    if name is not None and name.strip() != segment.name:
        taken = session.execute(
            select(Segment.id).where(Segment.name == name.strip(), Segment.id != segment.id)
        )
        if taken.first():
            raise Conflict(f"a segment named {name!r} exists")
        segment.name = name.strip()
    if description is not None:
        segment.description = description
    segment.updated_at = now
    if rule is not None and rule != segment.rule:
        check(rule)
        check_codes(session, rule)
        segment.rule = rule
        segment.version += 1
        session.flush()
        refresh(session, segment, now=now, kind="full")
    session.flush()
    return segment


def delete_(session: Session, segment: Segment) -> None:
    """Remove a segment with its memberships, size history and WeChat tag links (no exit events; the tag stays on WeChat)."""
    links = select(WechatTagLink.id).where(WechatTagLink.segment_id == segment.id).scalar_subquery()
    session.execute(delete(WechatTagged).where(WechatTagged.link_id.in_(links)))
    session.execute(delete(WechatTagLink).where(WechatTagLink.segment_id == segment.id))
    session.execute(delete(SegmentMember).where(SegmentMember.segment_id == segment.id))
    session.execute(delete(SegmentSize).where(SegmentSize.segment_id == segment.id))
    session.delete(segment)
    session.flush()


def refresh(
    session: Session, segment: Segment, *, now: dt.datetime | None = None, kind: str = "full"
) -> Change | None:
    """Recompute everyone's membership; on failure mark the segment failed with the error and keep the old ones."""
    now = now or utcnow()
    try:
        with session.begin_nested():
            found = set(matching(session, segment.rule, as_of=now))
    except Exception as exc:
        mark_failed(session, segment, exc)
        return None
    return write_members(session, segment, found, now=now, kind=kind)


def mark_failed(session: Session, segment: Segment, exc: Exception) -> None:
    """A failed computation shows as failed with its error, never as a segment stuck "building"."""
    log.warning("segment.compute_failed", segment_id=segment.id, error=str(exc)[:500])
    segment.status = SegmentStatus.failed
    segment.error = f"{type(exc).__name__}: {exc}"[:2000]
    session.flush()


def write_members(
    session: Session,
    segment: Segment,
    found: set[int],
    *,
    now: dt.datetime,
    kind: str,
    may_exit: Callable[[int], bool] | None = None,
) -> Change:
    """Make found the segment's members (a full computation's result): entries and exits recorded and announced.

    may_exit, when given, says which current members a computation may take out (a warehouse snapshot
    knows nothing of customers created after it).
    """
    first = segment.computed_at is None
    current = set(
        session.execute(
            select(SegmentMember.profile_id).where(SegmentMember.segment_id == segment.id)
        ).scalars()
    )
    entered = found - current
    exited = {pid for pid in current - found if may_exit is None or may_exit(pid)}
    _apply(session, segment, entered, exited, now=now, announce=not first)
    size = len(current) + len(entered) - len(exited)
    segment.size = size
    segment.status = SegmentStatus.ready
    segment.error = None
    segment.computed_at = now
    session.add(
        SegmentSize(
            segment_id=segment.id, at=now, size=size, entered=len(entered), exited=len(exited), kind=kind
        )
    )
    session.flush()
    return Change(size=size, entered=len(entered), exited=len(exited))


def _apply(
    session: Session,
    segment: Segment,
    entered: set[int],
    exited: set[int],
    *,
    now: dt.datetime,
    announce: bool,
) -> None:
    if entered:
        bulk.insert_rows(
            session,
            "segment_members",
            [("segment_id", "int"), ("profile_id", "int"), ("entered_at", "ts")],
            [(segment.id, pid, now) for pid in sorted(entered)],
        )
    gone = sorted(exited)
    for start in range(0, len(gone), 10_000):
        chunk = gone[start : start + 10_000]
        session.execute(
            delete(SegmentMember).where(
                SegmentMember.segment_id == segment.id, bulk.matches(session, SegmentMember.profile_id, chunk)
            )
        )
    if entered or exited:
        # Mirrors of the segment on WeChat (user tags) follow its members.
        wechat_tags.request_sync(session, [segment.id], now=now)
    if announce and (entered or exited):
        stamp = now.isoformat()
        properties = {"segment_id": segment.id, "segment": segment.name, "version": segment.version}
        timeline = [
            (pid, _event(name, segment, pid, stamp, properties))
            for name, ids in ((ENTERED, sorted(entered)), (EXITED, gone))
            for pid in ids
        ]
        ingest_service.enqueue_for_profiles(session, timeline, channel="segments")


def _event(name: str, segment: Segment, pid: int, stamp: str, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "track",
        "event": name,
        # One entry (or exit) per segment, customer and moment: a retried job adds nothing.
        "messageId": f"segment:{segment.id}:{pid}:{name[8:].lower()}:{stamp}",
        "timestamp": stamp,
        "properties": properties,
    }


def react(session: Session, events: Sequence[StoredEvent]) -> None:
    """Reactor: re-evaluate every ready segment for the profiles this batch touched."""
    refresh_for(session, sorted({e.profile_id for e in events if e.event not in _OWN_EVENTS}))


def refresh_for(session: Session, profile_ids: Sequence[int]) -> None:
    """Re-evaluate every ready segment for these profiles (after events, a tag, a merge)."""
    if not profile_ids:
        return
    segments = session.execute(select(Segment).where(Segment.status == SegmentStatus.ready)).scalars().all()
    now = utcnow()
    for segment in segments:
        refresh_profiles(session, segment, profile_ids, now=now)


def refresh_profiles(
    session: Session, segment: Segment, profile_ids: Sequence[int], *, now: dt.datetime
) -> Change:
    """Re-evaluate the segment for these profiles only (entries and exits recorded and announced)."""
    found = set(matching(session, segment.rule, as_of=now, scope=profile_ids))
    current: set[int] = set()
    for start in range(0, len(profile_ids), 10_000):
        chunk = profile_ids[start : start + 10_000]
        current.update(
            session.execute(
                select(SegmentMember.profile_id).where(
                    SegmentMember.segment_id == segment.id,
                    bulk.matches(session, SegmentMember.profile_id, chunk),
                )
            ).scalars()
        )
    entered, exited = found - current, current - found
    if entered or exited:
        _apply(session, segment, entered, exited, now=now, announce=True)
        _add_to_size(session, segment, len(entered) - len(exited))
        session.add(
            SegmentSize(
                segment_id=segment.id,
                at=now,
                size=segment.size,
                entered=len(entered),
                exited=len(exited),
                kind="incremental",
            )
        )
        session.flush()
    return Change(size=segment.size, entered=len(entered), exited=len(exited))


def forget_merged(session: Session, pairs: list[tuple[int, int]], now: dt.datetime) -> None:
    """Identity hook: an absorbed profile leaves its segments silently (the person lives on in the survivor)."""
    losers = [loser for loser, _ in pairs]
    if not losers:
        return
    counts = session.execute(
        select(SegmentMember.segment_id, func.count())
        .where(SegmentMember.profile_id.in_(losers))
        .group_by(SegmentMember.segment_id)
    ).all()
    if not counts:
        return
    session.execute(delete(SegmentMember).where(SegmentMember.profile_id.in_(losers)))
    for segment_id, n in counts:
        segment = session.get(Segment, segment_id)
        if segment is not None:
            _add_to_size(session, segment, -int(n))


def _add_to_size(session: Session, segment: Segment, delta: int) -> None:
    # In SQL, not read-modify-write: a tag added in the console and an ingest batch may move it at once.
    session.flush()
    new = session.execute(
        sql_update(Segment)
        .where(Segment.id == segment.id)
        .values(size=Segment.size + delta)
        .returning(Segment.size)
    ).scalar_one()
    set_committed_value(segment, "size", new)


def due(session: Session) -> Sequence[Segment]:
    """Segments the schedule must recompute: those not computed yet, failed, or whose rule depends on time."""
    out = []
    for segment in session.execute(select(Segment).order_by(Segment.id)).scalars():
        if segment.status != SegmentStatus.ready:
            out.append(segment)
            continue
        try:
            node = check(segment.rule)
        except rules.RuleError:
            out.append(segment)
            continue
        if rules.time_sensitive(node):
            out.append(segment)
    return out


def members(session: Session, segment: Segment, *, limit: int = 50, after: int = 0) -> Sequence[int]:
    """Profile ids in the segment, in id order, after the cursor."""
    statement = (
        select(SegmentMember.profile_id)
        .where(SegmentMember.segment_id == segment.id, SegmentMember.profile_id > after)
        .order_by(SegmentMember.profile_id)
        .limit(limit)
    )
    return session.execute(statement).scalars().all()


def history(session: Session, segment: Segment, *, limit: int = 500) -> Sequence[SegmentSize]:
    """The segment's size after each computation, oldest first (the last `limit`)."""
    rows = (
        session.execute(
            select(SegmentSize)
            .where(SegmentSize.segment_id == segment.id)
            .order_by(SegmentSize.at.desc(), SegmentSize.id.desc())
            .limit(limit)
        )
        .scalars()
        .all()
    )
    return list(reversed(rows))


def segments_of(session: Session, profile_id: int) -> Sequence[Segment]:
    """The segments a customer is in."""
    statement = (
        select(Segment)
        .join(SegmentMember, SegmentMember.segment_id == Segment.id)
        .where(SegmentMember.profile_id == profile_id)
        .order_by(Segment.name)
    )
    return session.execute(statement).scalars().all()


def stream_csv(segment_id: int) -> Iterator[str]:
    """export_csv on a read session of its own, closed when the stream ends or is dropped.

    A streamed body is read after the request's unit of work has ended: on its session it would open a
    transaction nobody ends (on SQLite, a write lock held until the server restarts).
    """
    with get_read_sessionmaker()() as session:
        segment = session.get(Segment, segment_id)
        if segment is not None:
            yield from export_csv(session, segment)


def export_csv(session: Session, segment: Segment) -> Iterable[str]:
    """The segment's members as CSV text chunks: profile id and when they entered, in id order."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["profile_id", "entered_at"])
    yield buffer.getvalue()
    last = 0
    while True:
        rows = session.execute(
            select(SegmentMember.profile_id, SegmentMember.entered_at)
            .where(SegmentMember.segment_id == segment.id, SegmentMember.profile_id > last)
            .order_by(SegmentMember.profile_id)
            .limit(5000)
        ).all()
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        for pid, entered_at in rows:
            writer.writerow([pid, entered_at.isoformat()])
        last = rows[-1][0]
        yield buffer.getvalue()
