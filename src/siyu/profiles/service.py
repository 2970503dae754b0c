"""Customer 360: scoped reads of profiles, their identities, timeline and merge history.

Every read of a profile goes through `readable_statement`: it is the one place where a role's scope
(region, store, own customers) is enforced.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, delete, false, func, insert, or_, select, update
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.auth.models import Role
from siyu.auth.principal import NAME_MASKED_ROLES, Principal
from siyu.clienteling.models import Store
from siyu.db import is_postgres, utcnow
from siyu.errors import BadRequest, NotFound
from siyu.identity.models import Identifier, IdentifierType, IdentityMerge
from siyu.ingest.models import Event
from siyu.ingest.normalize import normalize_identifier
from siyu.ingest.reactors import StoredEvent
from siyu.loyalty.models import Member
from siyu.profiles.masking import is_name_key
from siyu.profiles.models import Consent, Profile, Tag, TagSource
from siyu.profiles.traits import OrgDirectory, ProfileState

ORDER_COMPLETED = "Order Completed"
ORDER_REFUNDED = "Order Refunded"
# What siyu writes about a customer rather than what she did: on the timeline and counted, but a tier review
# or a segment entry must not make a lapsed customer look recently seen.
STATUS_EVENTS = frozenset({"Segment Entered", "Segment Exited", "Tier Changed"})

_COUNTER_COLUMNS: bulk.Columns = [
    ("events_count", "int"),
    ("orders_count", "int"),
    ("revenue_fen", "int"),
    ("refunded_fen", "int"),
    ("first_seen_at", "ts"),
    ("last_seen_at", "ts"),
    ("first_order_at", "ts"),
    ("last_order_at", "ts"),
    ("updated_at", "ts"),
]
_TRAIT_COLUMNS: bulk.Columns = [
    *_COUNTER_COLUMNS,
    ("traits", "json"),
    ("name", "text"),
    ("store_id", "int"),
    ("owner_user_id", "int"),
]
_STATE_COLUMNS = (
    Profile.id,
    Profile.traits,
    Profile.name,
    Profile.store_id,
    Profile.owner_user_id,
    Profile.events_count,
    Profile.orders_count,
    Profile.revenue_fen,
    Profile.refunded_fen,
    Profile.first_seen_at,
    Profile.last_seen_at,
    Profile.first_order_at,
    Profile.last_order_at,
)


def readable_statement(principal: Principal) -> Select[Profile]:
    """The live profiles principal may read: the single point of access scoping."""
    statement = select(Profile).where(Profile.merged_into_id.is_(None))
    role = principal.role
    if role in (Role.admin, Role.hq, Role.marketer):
        return statement
    if role is Role.regional_manager and principal.region_id is not None:
        return statement.where(
            Profile.store_id.in_(select(Store.id).where(Store.region_id == principal.region_id))
        )
    if role is Role.store_manager and principal.store_id is not None:
        return statement.where(Profile.store_id == principal.store_id)
    if role is Role.sales_associate and principal.user_id is not None:
        return statement.where(Profile.owner_user_id == principal.user_id)
    return statement.where(false())


def live_id(session: Session, profile_id: int) -> int:
    """The id of the profile that profile_id is now part of (itself unless it was merged away)."""
    merged_into = session.execute(select(Profile.merged_into_id).where(Profile.id == profile_id)).scalar()
    return merged_into if merged_into is not None else profile_id


def get_or_raise(session: Session, principal: Principal, profile_id: int) -> Profile:
    """The live profile behind profile_id if principal may read it, else NotFound."""
    target = live_id(session, profile_id)
    profile = session.execute(readable_statement(principal).where(Profile.id == target)).scalar_one_or_none()
    if profile is None:
        raise NotFound(f"profile {profile_id} not found")
    return profile


def readable_ids(session: Session, principal: Principal, profile_ids: Iterable[int]) -> dict[int, int]:
    """For each of profile_ids that principal may read, the live profile it is now part of."""
    (live,) = bulk.read_all(session, live_ids_read(session, profile_ids))
    (readable,) = bulk.read_all(session, readable_read(session, principal, set(live.values())))
    return {pid: target for pid, target in live.items() if target in readable}


def live_ids_read(session: Session, profile_ids: Iterable[int]) -> bulk.Read[dict[int, int]]:
    """For each of profile_ids that exists, the id of the profile it is now part of (live_id in bulk)."""
    asked = sorted(set(profile_ids))
    postgres = is_postgres(session)
    query = bulk.Query(_live_ids(postgres), {"ids": bulk.among_value(Profile.id, asked, postgres=postgres)})
    return bulk.Read(
        query if asked else None,
        lambda rows: {pid: merged_into if merged_into is not None else pid for pid, merged_into in rows},
    )


def readable_read(session: Session, principal: Principal, profile_ids: Iterable[int]) -> bulk.Read[set[int]]:
    """Which of profile_ids (live ids: see live_ids_read) principal may read (get_or_raise in bulk)."""
    asked = sorted(set(profile_ids))
    postgres = is_postgres(session)
    value = bulk.among_value(Profile.id, asked, postgres=postgres)
    query = bulk.Query(_readable_ids(principal, postgres), {"ids": value})
    return bulk.Read(query if asked else None, lambda rows: {row.id for row in rows})


# Built once (per caller for the scoped one): the posting lane checks access for every group of requests.
@functools.cache
def _live_ids(postgres: bool) -> Select[int, int | None]:
    return select(Profile.id, Profile.merged_into_id).where(bulk.among(Profile.id, "ids", postgres=postgres))


@functools.lru_cache(maxsize=1024)
def _readable_ids(principal: Principal, postgres: bool) -> Select[int]:
    scoped = readable_statement(principal).with_only_columns(Profile.id)
    return scoped.where(bulk.among(Profile.id, "ids", postgres=postgres))


def lookup(session: Session, principal: Principal, id_type: str, value: str) -> Profile | None:
    """The readable profile holding the identifier (type, value as a person types it), if any.

    BadRequest for an unknown type or a value that is not one (a phone that is no number).
    """
    value = normalize_identifier(id_type, value)
    statement = readable_statement(principal).where(
        Profile.id.in_(
            select(Identifier.profile_id).where(Identifier.type == id_type, Identifier.value == value)
        )
    )
    return session.execute(statement).scalar_one_or_none()


def search(
    session: Session, principal: Principal, query: str, *, limit: int = 20, offset: int = 0
) -> Sequence[Profile]:
    """Readable profiles by name (a word's start; anywhere for 2+ Chinese characters), identifier or member number.

    Most recently seen first; `offset` pages through the rest.
    """
    query = query.strip()
    if not query:
        return []
    by_identifier = select(Identifier.profile_id).where(Identifier.value.in_(_identifier_candidates(query)))
    # The loyalty member number on her card (M00000123), as an associate reads it out.
    by_member_number = select(Member.profile_id).where(Member.member_number == query.upper())
    # Chinese given names are how associates know customers (小明 in 王小明): two or more Chinese characters
    # also match inside a name. It reads every name, so only queries that cannot be anything else do it.
    # Latin names: a word's start ("Wang" in "Nancy Wang"), any case, for three letters or more.
    if len(query) >= 2 and all("\u4e00" <= ch <= "\u9fff" for ch in query):
        in_name = Profile.name.contains(query, autoescape=True)
    elif len(query) >= 3 and query.replace(" ", "").isalpha() and query.isascii():
        in_name = or_(
            Profile.name.istartswith(query, autoescape=True),
            Profile.name.icontains(" " + query, autoescape=True),
        )
    else:
        in_name = Profile.name.startswith(query, autoescape=True)
    conditions: list[ColumnElement[bool]] = [Profile.id.in_(by_member_number)]
    if principal.role in NAME_MASKED_ROLES:
        # She sees names, phones and emails masked: finding a customer by one would unmask it (decision 0018).
        personal = (IdentifierType.phone.value, IdentifierType.email.value)
        conditions.append(Profile.id.in_(by_identifier.where(Identifier.type.not_in(personal))))
    else:
        conditions += [Profile.id.in_(by_identifier), in_name]
    if query.isdigit() and len(query) < 16:
        conditions.append(Profile.id == int(query))
    statement = (
        readable_statement(principal)
        .where(or_(*conditions))
        .order_by(Profile.last_seen_at.desc().nulls_last(), Profile.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return session.execute(statement).scalars().all()


BRAND_WIDE_ROLES = frozenset({Role.admin, Role.hq, Role.marketer})


def list_readable(
    session: Session, principal: Principal, *, limit: int = 20, offset: int = 0
) -> Sequence[Profile]:
    """The customers principal may read, without a query: a store's or an associate's own book of customers.

    Scoped roles see theirs most recently seen first; brand-wide roles (the whole brand) the newest first,
    which the primary key answers at once where ordering a million profiles by last seen would not.
    """
    statement = readable_statement(principal).where(Profile.erased_at.is_(None))
    if principal.role in BRAND_WIDE_ROLES:
        statement = statement.order_by(Profile.id.desc())
    else:
        statement = statement.order_by(Profile.last_seen_at.desc().nulls_last(), Profile.id.desc())
    return session.execute(statement.limit(limit).offset(offset)).scalars().all()


def _identifier_candidates(query: str) -> list[str]:
    """query as typed, plus its E.164 form when it reads as a mainland phone number."""
    candidates = [query, query.lower()]
    digits = query.replace(" ", "").replace("-", "")
    if digits.startswith("+"):
        candidates.append(digits)
    elif digits.isdigit():
        candidates.append("+86" + digits if len(digits) == 11 else "+" + digits)
    return candidates


def names_of(session: Session, profile_ids: Iterable[int]) -> dict[int, tuple[str, ...]]:
    """Each profile's own names (profile name and name traits): what to mask for roles that see none."""
    ids = set(profile_ids)
    out: dict[int, tuple[str, ...]] = dict.fromkeys(ids, ())
    if not ids:
        return out
    for pid, name, traits in session.execute(
        select(Profile.id, Profile.name, Profile.traits).where(Profile.id.in_(ids))
    ):
        found = [name] if name else []
        found += [v for k, v in (traits or {}).items() if is_name_key(k) and isinstance(v, str)]
        out[pid] = tuple(found)
    return out


def identities(session: Session, profile_id: int) -> Sequence[Identifier]:
    """The identifiers of a profile, oldest first."""
    statement = (
        select(Identifier)
        .where(Identifier.profile_id == profile_id)
        .order_by(Identifier.first_seen_at, Identifier.id)
    )
    return session.execute(statement).scalars().all()


def merge_history(session: Session, profile_id: int) -> Sequence[IdentityMerge]:
    """Merges and unmerges this profile took part in, newest first."""
    absorbed = select(Profile.id).where(Profile.merged_into_id == profile_id)
    statement = (
        select(IdentityMerge)
        .where(
            or_(
                IdentityMerge.profile_id == profile_id,
                IdentityMerge.other_profile_id == profile_id,
                IdentityMerge.profile_id.in_(absorbed),
            )
        )
        .order_by(IdentityMerge.created_at.desc(), IdentityMerge.id.desc())
    )
    return session.execute(statement).scalars().all()


def timeline(
    session: Session, profile_id: int, *, limit: int = 50, before: tuple[dt.datetime, int] | None = None
) -> Sequence[Event]:
    """The profile's events, newest first, from the keyset cursor `before` (timestamp, id)."""
    statement = select(Event).where(Event.profile_id == profile_id)
    if before is not None:
        ts, event_id = before
        statement = statement.where(
            or_(Event.timestamp < ts, and_(Event.timestamp == ts, Event.id < event_id))
        )
    statement = statement.order_by(Event.timestamp.desc(), Event.id.desc()).limit(limit)
    return session.execute(statement).scalars().all()


# --- state used by the ingest pipeline and by merges -------------------------------------------


def load_states(session: Session, profile_ids: Iterable[int]) -> dict[int, ProfileState]:
    """The mutable state of the given profiles, locked for update on PostgreSQL (in id order)."""
    ids = sorted(set(profile_ids))
    states: dict[int, ProfileState] = {}
    for chunk in bulk.chunks(ids):
        statement = (
            select(*_STATE_COLUMNS).where(bulk.matches(session, Profile.id, chunk)).order_by(Profile.id)
        )
        if is_postgres(session):
            statement = statement.with_for_update()
        for row in session.execute(statement):
            states[row.id] = ProfileState(
                id=row.id,
                traits=dict(row.traits or {}),
                name=row.name,
                store_id=row.store_id,
                owner_user_id=row.owner_user_id,
                events_count=row.events_count,
                orders_count=row.orders_count,
                revenue_fen=row.revenue_fen,
                refunded_fen=row.refunded_fen,
                first_seen_at=row.first_seen_at,
                last_seen_at=row.last_seen_at,
                first_order_at=row.first_order_at,
                last_order_at=row.last_order_at,
            )
    return states


def save_states(session: Session, states: Iterable[ProfileState], now: dt.datetime | None = None) -> None:
    """Write counters (and traits where they changed) of the given states back, in one executemany each."""
    now = now or utcnow()
    counters: list[tuple[Any, ...]] = []
    with_traits: list[tuple[Any, ...]] = []
    for s in states:
        row = (
            s.id,
            s.events_count,
            s.orders_count,
            s.revenue_fen,
            s.refunded_fen,
            s.first_seen_at,
            s.last_seen_at,
            s.first_order_at,
            s.last_order_at,
            now,
        )
        if s.traits_changed:
            with_traits.append((*row, s.traits, s.name, s.store_id, s.owner_user_id))
        else:
            counters.append(row)
    bulk.update_rows(session, "profiles", _COUNTER_COLUMNS, counters)
    bulk.update_rows(session, "profiles", _TRAIT_COLUMNS, with_traits)


def add_event(state: ProfileState, name: str | None, timestamp: dt.datetime, amount_fen: int) -> None:
    """Count one event into state (the same arithmetic as `recompute`, one event at a time)."""
    state.events_count += 1
    if name in STATUS_EVENTS:
        return
    if state.first_seen_at is None or timestamp < state.first_seen_at:
        state.first_seen_at = timestamp
    if state.last_seen_at is None or timestamp > state.last_seen_at:
        state.last_seen_at = timestamp
    if name == ORDER_COMPLETED:
        state.orders_count += 1
        state.revenue_fen += amount_fen
        if state.first_order_at is None or timestamp < state.first_order_at:
            state.first_order_at = timestamp
        if state.last_order_at is None or timestamp > state.last_order_at:
            state.last_order_at = timestamp
    elif name == ORDER_REFUNDED:
        state.refunded_fen += amount_fen


def recompute(session: Session, profile_ids: Iterable[int]) -> None:
    """Rebuild counters and traits of the given profiles from their events (after a merge or unmerge)."""
    ids = sorted(set(profile_ids))
    if not ids:
        return
    states = load_states(session, ids)
    for s in states.values():
        s.events_count = s.orders_count = s.revenue_fen = s.refunded_fen = 0
        s.first_seen_at = s.last_seen_at = s.first_order_at = s.last_order_at = None
        s.traits, s.name, s.store_id, s.owner_user_id = {}, None, None, None
        s.traits_changed = True
    is_order = Event.event == ORDER_COMPLETED
    seen_at = case((Event.event.in_(STATUS_EVENTS), None), else_=Event.timestamp)
    for chunk in bulk.chunks(ids):
        aggregate = (
            select(
                Event.profile_id,
                func.count(),
                func.sum(case((is_order, 1), else_=0)),
                func.sum(case((is_order, Event.amount_fen), else_=0)),
                func.sum(case((Event.event == ORDER_REFUNDED, Event.amount_fen), else_=0)),
                func.min(seen_at),
                func.max(seen_at),
                func.min(case((is_order, Event.timestamp))),
                func.max(case((is_order, Event.timestamp))),
            )
            .where(bulk.matches(session, Event.profile_id, chunk))
            .group_by(Event.profile_id)
        )
        for pid, n, orders, revenue, refunded, first, last, first_order, last_order in session.execute(
            aggregate
        ):
            s = states[pid]
            s.events_count, s.orders_count = n, int(orders or 0)
            s.revenue_fen, s.refunded_fen = int(revenue or 0), int(refunded or 0)
            s.first_seen_at, s.last_seen_at = _aware(first), _aware(last)
            s.first_order_at, s.last_order_at = _aware(first_order), _aware(last_order)
        trait_rows = session.execute(
            select(Event.profile_id, Event.traits)
            .where(bulk.matches(session, Event.profile_id, chunk), Event.traits.is_not(None))
            .order_by(Event.timestamp, Event.id)
        ).all()
        org = OrgDirectory.load(session, (t for _, t in trait_rows if t))
        for pid, traits in trait_rows:
            if traits:
                states[pid].apply_traits(traits, org)
    save_states(session, states.values())


def _aware(value: Any) -> Any:
    # Aggregates bypass the column type on SQLite, which returns naive or textual datetimes.
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


CONSENT_EVENTS = frozenset({"Phone Number Authorized", "Consent Granted", "Consent Withdrawn"})


def record_consents(session: Session, events: Sequence[StoredEvent]) -> None:
    """Reactor: a consent given or withdrawn (with its purpose and source) becomes a Consent row."""
    rows = [
        {
            "profile_id": ev.profile_id,
            "purpose": str(ev.properties.get("purpose") or "unspecified")[:40],
            "granted": ev.event != "Consent Withdrawn",
            "source": str(ev.properties.get("source") or "api")[:120],
            "message_id": ev.message_id,
            "at": dt.datetime.fromisoformat(ev.timestamp_iso),
            "recorded_at": utcnow(),
        }
        for ev in events
    ]
    if rows:
        session.execute(insert(Consent), rows)


def consents(session: Session, profile_id: int) -> Sequence[Consent]:
    """The consents of a profile, newest first; found through their events, so they follow merges and unmerges."""
    return (
        session.execute(
            select(Consent)
            .join(Event, Event.message_id == Consent.message_id)
            .where(Event.profile_id == profile_id)
            .order_by(Consent.at.desc(), Consent.id.desc())
        )
        .scalars()
        .all()
    )


# --- tags -------------------------------------------------------------------------------------------------


def tags(session: Session, profile_id: int) -> Sequence[Tag]:
    """The customer's tags, by name."""
    return session.execute(select(Tag).where(Tag.profile_id == profile_id).order_by(Tag.name)).scalars().all()


def add_tag(
    session: Session,
    profile_id: int,
    name: str,
    *,
    source: TagSource = TagSource.manual,
    rule: str | None = None,
    actor: str = "system",
) -> Tag:
    """Put the tag on the customer (a no-op returning the existing tag when it is already there)."""
    name = name.strip()
    if not name or len(name) > 80:
        raise BadRequest("a tag is 1 to 80 characters")
    existing = session.execute(
        select(Tag).where(Tag.profile_id == profile_id, Tag.name == name)
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    tag = Tag(profile_id=profile_id, name=name, source=source, rule=rule, created_by=actor)
    session.add(tag)
    session.flush()
    return tag


def remove_tag(session: Session, profile_id: int, name: str) -> bool:
    """Take the tag off the customer; False when it was not there."""
    result = session.execute(delete(Tag).where(Tag.profile_id == profile_id, Tag.name == name.strip()))
    session.flush()
    return bool(getattr(result, "rowcount", 0))


def merge_tags(session: Session, pairs: list[tuple[int, int]], now: dt.datetime) -> None:
    """Identity hook: an absorbed profile's tags move to the survivor (one of each name)."""
    # One look-up for the batch: most absorbed profiles were made moments ago and hold no tag.
    tagged = set(
        session.execute(
            select(Tag.profile_id)
            .where(bulk.matches(session, Tag.profile_id, [loser for loser, _ in pairs]))
            .distinct()
        ).scalars()
    )
    for loser, winner in pairs:
        if loser not in tagged:
            continue
        tagged.add(winner)  # a survivor absorbed in turn later in pairs hands these on
        held = select(Tag.name).where(Tag.profile_id == winner).scalar_subquery()
        session.execute(
            delete(Tag)
            .where(Tag.profile_id == loser, Tag.name.in_(held))
            .execution_options(synchronize_session=False)
        )
        session.execute(
            update(Tag)
            .where(Tag.profile_id == loser)
            .values(profile_id=winner)
            .execution_options(synchronize_session=False)
        )
