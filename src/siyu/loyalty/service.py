"""The points ledger; flushes, never commits. Every posting locks its member's row first.

On PostgreSQL the lock is `SELECT … FOR UPDATE`; on SQLite every write transaction already holds the
database's write lock (`BEGIN IMMEDIATE`). Under the lock the idempotency key is checked, so a retried
request returns the first result, and the balance is checked, so concurrent spends cannot overdraw.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Select, Table, bindparam, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.config import Settings, get_settings
from siyu.db import is_postgres, utcnow
from siyu.errors import BadRequest, Conflict, NotFound, SiyuError
from siyu.loyalty import tiers
from siyu.loyalty.models import Lot, LotDraw, Member, MemberStatus, Posting, PostingKind, Tier
from siyu.profiles.models import Profile
from siyu.profiles.service import live_id

BALANCE_KINDS = frozenset(
    {
        PostingKind.earn,
        PostingKind.release,
        PostingKind.spend,
        PostingKind.adjust,
        PostingKind.reverse,
        PostingKind.expire,
    }
)


EXPIRED = "points expired"


class Overdraw(Conflict):
    """A spend or a negative adjustment larger than the spendable balance."""


@dataclass(frozen=True, slots=True)
class PostingResult:
    """The posting, and whether it is the first result of an earlier request with the same key."""

    posting: Posting
    replayed: bool


# --- members -------------------------------------------------------------------------------------


def enrol(
    session: Session,
    profile_id: int,
    *,
    channel: str = "",
    store_id: int | None = None,
    tier: str = "",
    invite_code: str | None = None,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
) -> tuple[Member, bool]:
    """The profile's member, created when it has none, with its welcome vouchers; (member, created)."""
    settings = settings or get_settings()
    now = now or utcnow()
    if session.get(Profile, profile_id) is None:
        raise NotFound(f"no profile {profile_id}")
    profile_id = live_id(session, profile_id)
    existing = get_member_by_profile(session, profile_id)
    if existing is not None:
        return existing, False
    insert = pg_insert if is_postgres(session) else sqlite_insert
    # Two enrolments of one customer at once (the Mini Program and a store): one row, no error.
    session.execute(
        insert(Member)
        .values(
            profile_id=profile_id,
            member_number=f"pending-{profile_id}",
            status=MemberStatus.active,
            tier=_starting_tier(session, tier) or settings.loyalty_default_tier,
            join_channel=channel[:40],
            join_store_id=store_id,
            joined_at=now,
            balance=0,
            pending=0,
            debt=0,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["profile_id"])
    )
    member = get_member_by_profile(session, profile_id)
    assert member is not None
    created = member.member_number.startswith("pending-")
    if created:
        member.member_number = f"{settings.loyalty_member_prefix}{member.id:08d}"
        # A code the brand already gave the customer (migrated from its old programme) is kept if free.
        wanted = (invite_code or "").strip().upper()[:16]
        taken = wanted and session.execute(select(Member.id).where(Member.invite_code == wanted)).first()
        member.invite_code = wanted if wanted and not taken else new_invite_code()
        session.flush()
        from siyu.loyalty import vouchers  # here: vouchers builds on this module

        vouchers.issue_welcome(session, member, now=now)
    return member, created


def _starting_tier(session: Session, asked: str) -> str | None:
    """asked when it is a defined tier (or no tiers are defined), else the entry tier."""
    names = list(session.execute(select(Tier.name).order_by(Tier.rank)).scalars())
    if not names:
        return asked or None
    return asked if asked in names else names[0]


def new_invite_code() -> str:
    """An 8-character invite code (no 0/O/1/I/L: people type it from a friend's message)."""
    return "".join(secrets.choice("23456789ABCDEFGHJKMNPQRSTUVWXYZ") for _ in range(8))


def get_member_by_profile(session: Session, profile_id: int) -> Member | None:
    """The member of a profile (following merges to the surviving profile)."""
    # A membership closed by a merge answers for nobody: the survivor's membership does.
    member = session.execute(
        select(Member).where(Member.profile_id == profile_id, Member.status != MemberStatus.closed)
    ).scalar_one_or_none()
    if member is None:
        survivor = live_id(session, profile_id)
        if survivor != profile_id:
            member = session.execute(
                select(Member).where(Member.profile_id == survivor, Member.status != MemberStatus.closed)
            ).scalar_one_or_none()
    return member


def lock_members_of(session: Session, profile_ids: Iterable[int]) -> dict[int, Member]:
    """The open membership of each of profile_ids that has one, locked in id order (as lock_all), fresh.

    No merge is followed: ask for the profiles' live ids too (get_member_by_profile looks at both).
    """
    asked = sorted(set(profile_ids))
    if not asked:
        return {}
    statement = (
        select(Member)
        .where(bulk.matches(session, Member.profile_id, asked), Member.status != MemberStatus.closed)
        .order_by(Member.id)
        .execution_options(populate_existing=True)
    )
    if is_postgres(session):
        statement = statement.with_for_update()
    return {member.profile_id: member for member in session.execute(statement).scalars()}


def member_ids_read(session: Session, profile_ids: Iterable[int]) -> bulk.Read[dict[int, int]]:
    """The member id of each of these live profiles with an open membership (a read for bulk.read_all)."""
    asked = sorted(set(profile_ids))
    postgres = is_postgres(session)
    value = bulk.among_value(Member.profile_id, asked, postgres=postgres)
    query = bulk.Query(_members_of_profiles(postgres), {"ids": value})
    return bulk.Read(
        query if asked else None, lambda rows: {profile_id: member_id for profile_id, member_id in rows}
    )


# The statements of the posting lane's groups are built once: building one costs more than running it.
@functools.cache
def _members_of_profiles(postgres: bool) -> Select[int, int]:
    return select(Member.profile_id, Member.id).where(
        bulk.among(Member.profile_id, "ids", postgres=postgres), Member.status != MemberStatus.closed
    )


def get_member_by_profile_or_raise(session: Session, profile_id: int) -> Member:
    """The member of a profile, or NotFound."""
    member = get_member_by_profile(session, profile_id)
    if member is None:
        raise NotFound(f"profile {profile_id} is not a member")
    return member


def lock_all(session: Session, member_ids: Iterable[int]) -> None:
    """Lock these members' rows in id order, before a transaction that touches several of them.

    Every transaction that locks more than one member takes them in id order (a group of postings, the
    expiry and release runs, an ingest batch's rewards, a referral): two of them never wait for each
    other in a cycle. PostgreSQL would detect one and abort a side, which costs a retry.
    """
    _lock_many(session, set(member_ids))


def lock(session: Session, member_id: int) -> Member:
    """The member row, locked until the transaction ends, with fresh values."""
    statement = select(Member).where(Member.id == member_id).execution_options(populate_existing=True)
    if is_postgres(session):
        statement = statement.with_for_update()
    member = session.execute(statement).scalar_one_or_none()
    if member is None:
        raise NotFound(f"no member {member_id}")
    return member


# --- postings ------------------------------------------------------------------------------------


def _check_key(key: str) -> None:
    if not key or len(key) > 255:
        raise BadRequest("Idempotency-Key: required, at most 255 characters")


class KeyReused(Conflict):
    """An Idempotency-Key sent again for another posting than the one it first made."""

    def __init__(self, key: str, first: Posting) -> None:
        # The ledger key is scoped to its caller ("api:k12:…", "mp:<member>:…"): the caller knows the header
        # they sent, and the posting it made is theirs (another caller's key never meets it).
        sent = re.sub(r"^(?:api:[a-z]\d+|api|mp:\d+):", "", key)
        super().__init__(f"Idempotency-Key {sent!r} was used for another posting (#{first.id})")
        self.key, self.first = key, first


def _replayed(first: Posting, member_id: int, key: str, kind: PostingKind, points: int) -> PostingResult:
    """first as the answer to a repeat of its request; KeyReused (409) when the key was used for another one."""
    if first.member_id != member_id or first.kind != kind or abs(first.points) != abs(points):
        raise KeyReused(key, first)
    return PostingResult(first, replayed=True)


def _replay(
    session: Session, member: Member, key: str, kind: PostingKind, points: int
) -> PostingResult | None:
    _check_key(key)
    first = session.execute(select(Posting).where(Posting.idempotency_key == key)).scalar_one_or_none()
    return None if first is None else _replayed(first, member.id, key, kind, points)


def _post(
    session: Session,
    member: Member,
    kind: PostingKind,
    points: int,
    balance_change: int,
    *,
    key: str,
    reason: str,
    actor: str,
    order_id: str | None,
    message_id: str | None,
    now: dt.datetime,
    detail: dict[str, Any] | None = None,
) -> Posting:
    member.balance += balance_change
    member.updated_at = now
    posting = _new_posting(
        member.id, kind, points, balance_change, member.balance, key, reason, actor, order_id, message_id, now
    )
    posting.detail = detail or {}  # a rare extra: the group path never has one
    session.add(posting)
    session.flush()
    return posting


def _new_posting(
    member_id: int,
    kind: PostingKind,
    points: int,
    balance_change: int,
    balance_after: int,
    key: str,
    reason: str,
    actor: str,
    order_id: str | None,
    message_id: str | None,
    now: dt.datetime,
) -> Posting:
    """A new posting, not yet in the session."""
    return Posting(
        member_id=member_id,
        kind=kind,
        points=points,
        balance_change=balance_change,
        balance_after=balance_after,
        idempotency_key=key,
        reason=reason[:2000],
        actor=actor[:120],
        order_id=order_id,
        message_id=message_id,
        rule_id=None,
        detail={},
        created_at=now,
    )


def expiry_for(earned_at: dt.datetime, settings: Settings) -> dt.datetime:
    """When points earned at earned_at expire: the end of the following year (Shanghai time) or N days."""
    policy = settings.loyalty_expiry_policy
    if policy.startswith("days:"):
        return earned_at + dt.timedelta(days=int(policy.split(":", 1)[1]))
    zone = ZoneInfo(settings.loyalty_timezone)
    local = earned_at.astimezone(zone)
    return dt.datetime(local.year + 2, 1, 1, tzinfo=zone).astimezone(dt.UTC)


def _positive(points: int) -> None:
    if points <= 0:
        raise BadRequest("points: must be a positive whole number")


def _check_adjustment(points: int, reason: str, actor: str) -> None:
    if points == 0:
        raise BadRequest("points: an adjustment is a non-zero whole number")
    if not reason.strip():
        raise BadRequest("reason: say why the points are adjusted")
    if not actor:
        raise BadRequest("actor: the operator's name is required")


def earn(
    session: Session,
    member_id: int,
    points: int,
    *,
    key: str,
    reason: str = "",
    actor: str = "",
    order_id: str | None = None,
    message_id: str | None = None,
    pending_until: dt.datetime | None = None,
    expires_at: dt.datetime | None = None,
    rule_id: int | None = None,
    detail: dict[str, Any] | None = None,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
) -> PostingResult:
    """Add points as a new lot; pending until pending_until when given (an order's return window)."""
    _positive(points)
    settings = settings or get_settings()
    now = now or utcnow()
    member = lock(session, member_id)
    replay = _replay(session, member, key, PostingKind.earn, points)
    if replay is not None:
        return replay
    _active(member)
    pending = pending_until is not None and pending_until > now
    posting = _post(
        session,
        member,
        PostingKind.earn,
        points,
        0 if pending else points,
        key=key,
        reason=reason,
        actor=actor,
        order_id=order_id,
        message_id=message_id,
        now=now,
        detail=detail,
    )
    posting.rule_id = rule_id
    lot = Lot(
        member_id=member.id,
        posting_id=posting.id,
        points=points,
        remaining=points,
        earned_at=now,
        expires_at=expires_at or expiry_for(now, settings),
        pending_until=pending_until if pending else None,
        order_id=order_id,
    )
    session.add(lot)
    if pending:
        member.pending += points
    else:
        _pay_debt(member, lot)
    session.flush()
    return PostingResult(posting, replayed=False)


class _Account(Protocol):
    member_number: str
    status: MemberStatus
    debt: int


class _Holding(Protocol):
    remaining: int


H = TypeVar("H", bound=_Holding)


def _check_spendable(balance: int, kind: PostingKind, points: int) -> None:
    """Overdraw when a spend of points, or an adjustment by points, takes more than balance."""
    if kind is PostingKind.spend and balance < points:
        raise Overdraw(f"balance is {balance} points, {points} asked")
    if kind is PostingKind.adjust and points < 0 and balance < -points:
        raise Overdraw(f"balance is {balance} points, an adjustment of {points} would overdraw it")


def _active(member: _Account) -> None:
    if member.status != MemberStatus.active:
        raise Conflict(f"member {member.member_number} is {member.status}")


def _pay_debt(member: _Account, lot: _Holding) -> None:
    # Points that arrive while the member owes points (after a refund of spent points) pay that first.
    paid = min(lot.remaining, member.debt)
    lot.remaining -= paid
    member.debt -= paid


def _available(
    session: Session, member_id: int, now: dt.datetime, *, exclude_order: str | None = None
) -> list[Lot]:
    statement = (
        select(Lot)
        .where(
            Lot.member_id == member_id, Lot.remaining > 0, Lot.pending_until.is_(None), Lot.expires_at > now
        )
        .order_by(Lot.expires_at, Lot.id)
    )
    if exclude_order is not None:
        statement = statement.where((Lot.order_id.is_(None)) | (Lot.order_id != exclude_order))
    return list(session.execute(statement).scalars())


def _take(lots: Iterable[H], points: int) -> list[tuple[H, int]]:
    """Take up to points from lots in order, lowering their remaining; each lot drawn and how much."""
    taken = 0
    parts: list[tuple[H, int]] = []
    for lot in lots:
        if taken == points:
            break
        part = min(lot.remaining, points - taken)
        if part <= 0:
            continue
        lot.remaining -= part
        taken += part
        parts.append((lot, part))
    return parts


def _draw(session: Session, posting: Posting, lots: Sequence[Lot], points: int) -> int:
    """Take up to points from lots in order; record the draws; returns how many were taken."""
    parts = _take(lots, points)
    session.add_all(LotDraw(posting_id=posting.id, lot_id=lot.id, points=part) for lot, part in parts)
    session.flush()
    return sum(part for _, part in parts)


def spend(
    session: Session,
    member_id: int,
    points: int,
    *,
    key: str,
    reason: str = "",
    actor: str = "",
    order_id: str | None = None,
    now: dt.datetime | None = None,
) -> PostingResult:
    """Take points from the lots that expire soonest; Overdraw (409) beyond the spendable balance."""
    _positive(points)
    now = now or utcnow()
    member = lock(session, member_id)
    replay = _replay(session, member, key, PostingKind.spend, points)
    if replay is not None:
        return replay
    _active(member)
    # Points past their date are not spendable, even before the expiry job has taken them.
    _expire_lots(session, member, now)
    _check_spendable(member.balance, PostingKind.spend, points)
    posting = _post(
        session,
        member,
        PostingKind.spend,
        -points,
        -points,
        key=key,
        reason=reason,
        actor=actor,
        order_id=order_id,
        message_id=None,
        now=now,
    )
    taken = _draw(session, posting, _available(session, member.id, now), points)
    if taken != points:  # the balance said yes but the lots disagree: the invariant is broken
        raise RuntimeError(f"member {member.id}: balance {member.balance + points} but lots hold {taken}")
    return PostingResult(posting, replayed=False)


def adjust(
    session: Session,
    member_id: int,
    points: int,
    *,
    key: str,
    reason: str,
    actor: str,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
) -> PostingResult:
    """A manual correction with a reason and the operator: + makes a lot, - draws like a spend (no overdraw)."""
    _check_adjustment(points, reason, actor)
    settings = settings or get_settings()
    now = now or utcnow()
    member = lock(session, member_id)
    replay = _replay(session, member, key, PostingKind.adjust, points)
    if replay is not None:
        return replay
    if points < 0:
        _expire_lots(session, member, now)
    _check_spendable(member.balance, PostingKind.adjust, points)
    posting = _post(
        session,
        member,
        PostingKind.adjust,
        points,
        points,
        key=key,
        reason=reason,
        actor=actor,
        order_id=None,
        message_id=None,
        now=now,
    )
    if points > 0:
        lot = Lot(
            member_id=member.id,
            posting_id=posting.id,
            points=points,
            remaining=points,
            earned_at=now,
            expires_at=expiry_for(now, settings),
            pending_until=None,
            order_id=None,
        )
        session.add(lot)
        _pay_debt(member, lot)
        session.flush()
    else:
        _draw(session, posting, _available(session, member.id, now), -points)
    return PostingResult(posting, replayed=False)


# --- postings in groups --------------------------------------------------------------------------

_MEMBERS = cast(Table, Member.__table__)
_POSTINGS = cast(Table, Posting.__table__)
_LOTS = cast(Table, Lot.__table__)
_DRAWS = cast(Table, LotDraw.__table__)
_POSTING_COLUMNS: bulk.Columns = (
    ("id", "int"),
    ("member_id", "int"),
    ("kind", "text"),
    ("points", "int"),
    ("balance_change", "int"),
    ("balance_after", "int"),
    ("idempotency_key", "text"),
    ("reason", "text"),
    ("actor", "text"),
    ("order_id", "text"),
    ("message_id", "text"),
    ("rule_id", "int"),
    ("detail", "json"),
    ("created_at", "ts"),
)
_LOT_COLUMNS: bulk.Columns = (
    ("id", "int"),
    ("member_id", "int"),
    ("posting_id", "int"),
    ("points", "int"),
    ("remaining", "int"),
    ("earned_at", "ts"),
    ("expires_at", "ts"),
    ("pending_until", "ts"),
    ("order_id", "text"),
)
_DRAW_COLUMNS: bulk.Columns = (("posting_id", "int"), ("lot_id", "int"), ("points", "int"))


@dataclass(frozen=True, slots=True)
class PostingOp:
    """The arguments of one call of earn, spend or adjust, for post_many."""

    member_id: int
    kind: PostingKind
    points: int
    key: str
    reason: str = ""
    actor: str = ""
    order_id: str | None = None


@dataclass(slots=True)
class _Locked:
    """A member row as post_many reads it, changes it and writes it back."""

    id: int
    member_number: str
    status: MemberStatus
    balance: int
    debt: int
    changed: bool = False
    tier: str | None = None


@dataclass(slots=True)
class _OpenLot:
    """A lot a spend may draw on: read from the database, or made by this group (posting set)."""

    # Spends draw in (expires_at, id) order; a new lot comes after every stored one, in creation order.
    order: tuple[dt.datetime, int, int]
    remaining: int
    id: int | None = None
    posting: Posting | None = None


def _lock_many(session: Session, member_ids: set[int]) -> dict[int, _Locked]:
    if not member_ids:
        return {}
    postgres = is_postgres(session)
    value = bulk.among_value(_MEMBERS.c.id, sorted(member_ids), postgres=postgres)
    return {
        row.id: _Locked(row.id, row.member_number, MemberStatus(row.status), row.balance, row.debt)
        for row in bulk.fetch(session, _lock_members(postgres), {"ids": value})
    }


@functools.cache
def _lock_members(postgres: bool) -> Select[*tuple[Any, ...]]:
    m = _MEMBERS.c
    statement = (
        select(m.id, m.member_number, m.status, m.balance, m.debt, m.tier)
        .where(bulk.among(m.id, "ids", postgres=postgres))
        .order_by(m.id)  # in id order, as every multi-member transaction (lock_all)
    )
    return statement.with_for_update() if postgres else statement


@functools.cache
def _open_lots(postgres: bool) -> Select[*tuple[Any, ...]]:
    """The members' lots past their date (`now`), and their spendable lots, soonest first, up to `need` points.

    A group draws at most `need` points from any one member's stored lots, so the lots after those
    are left in the database: a member earning for years holds hundreds.
    """
    c = _LOTS.c
    now = bindparam("now", type_=c.expires_at.type)
    spendable = c.expires_at > now
    before = (
        func.sum(c.remaining)
        .filter(spendable)
        .over(partition_by=c.member_id, order_by=(c.expires_at, c.id), rows=(None, -1))
    )
    lots = (
        select(
            c.id, c.member_id, c.remaining, c.expires_at, spendable.label("spendable"), before.label("before")
        )
        .where(bulk.among(c.member_id, "ids", postgres=postgres), c.remaining > 0, c.pending_until.is_(None))
        .subquery()
    )
    return (
        select(lots.c.id, lots.c.member_id, lots.c.remaining, lots.c.expires_at)
        .where(or_(~lots.c.spendable, func.coalesce(lots.c.before, 0) < bindparam("need")))
        .order_by(lots.c.member_id, lots.c.expires_at, lots.c.id)
    )


@functools.cache
def _tier_thresholds() -> Select[*tuple[Any, ...]]:
    t = cast(Table, Tier.__table__).c
    return select(t.name, t.rank, t.threshold_points)


@functools.cache
def _postings_by_key(postgres: bool) -> Select[*tuple[Any, ...]]:
    return select(*_POSTINGS.c).where(bulk.among(_POSTINGS.c.idempotency_key, "keys", postgres=postgres))


def _check_op(op: PostingOp) -> None:
    if op.kind is PostingKind.adjust:
        _check_adjustment(op.points, op.reason, op.actor)
    elif op.kind in (PostingKind.earn, PostingKind.spend):
        _positive(op.points)
    else:
        raise BadRequest(f"kind: {op.kind} is not posted by a request")


def post_many(
    session: Session,
    ops: Sequence[PostingOp],
    *,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
) -> list[PostingResult | SiyuError]:
    """What earn, spend and adjust give for each op in turn, each refused op changing nothing; a few statements.

    The API's postings arrive in groups (`loyalty.lane`): the members are locked in one statement, the
    keys and the lots read in one each, and the postings, lots, draws and balances written in one each.
    """
    settings = settings or get_settings()
    now = now or utcnow()
    results: list[PostingResult | SiyuError | None] = [None] * len(ops)
    for index, op in enumerate(ops):
        try:
            _check_op(op)
        except SiyuError as exc:
            results[index] = exc
    todo = [index for index, result in enumerate(results) if result is None]
    group = _Group(session, [ops[index] for index in todo], now, expiry_for(now, settings))
    for index in todo:
        try:
            results[index] = group.post(ops[index])
        except SiyuError as exc:
            results[index] = exc
    group.write(session)
    # Tier upgrades are immediate (domain §4), for points posted through the API as for orders' points.
    for member_id in group.upgrades():
        tiers.upgrade(session, session.get_one(Member, member_id), now=now)
    # A key reused within the group names a posting whose id was drawn only by the write.
    return [KeyReused(r.key, r.first) if isinstance(r, KeyReused) else r for r in results if r is not None]


class _Group:
    """The state of the members a group of postings touches, read once, changed in memory, written once."""

    def __init__(self, session: Session, ops: list[PostingOp], now: dt.datetime, expires_at: dt.datetime):
        self.now, self.expires_at = now, expires_at
        postgres = is_postgres(session)
        members = sorted({op.member_id for op in ops})
        keys = sorted({op.key for op in ops if 0 < len(op.key) <= 255})
        drawn: dict[int, int] = {}  # the points each member's postings in the group may draw
        for op in ops:
            if _draws(op.kind, op.points):
                drawn[op.member_id] = drawn.get(op.member_id, 0) + abs(op.points)
        drawing = sorted(drawn)
        need = max(drawn.values(), default=0)  # the most any member's stored lots give in this group
        # One round trip on PostgreSQL: the lots are read once the members' locks are held.
        among = functools.partial(bulk.among_value, postgres=postgres)
        # Enough ids for every posting (each op's, and an expiry per member that draws) and every new lot.
        creating = sum(1 for op in ops if op.points > 0 and op.kind is not PostingKind.spend)
        reserved = bulk.reserve_ids(
            session, {"loyalty_postings": len(ops) + len(drawing), "loyalty_lots": creating}
        )
        queries = [
            bulk.Query(_lock_members(postgres), {"ids": among(_MEMBERS.c.id, members)}),
            bulk.Query(_postings_by_key(postgres), {"keys": among(Posting.idempotency_key, keys)}),
            bulk.Query(
                _open_lots(postgres), {"ids": among(_LOTS.c.member_id, drawing), "now": now, "need": need}
            ),
        ]
        # Who earns may reach a higher tier: the tiers and their qualifying points, in the same round trip.
        earning = sorted({op.member_id for op in ops if op.kind is PostingKind.earn})
        if earning:
            queries.append(bulk.Query(_tier_thresholds(), {}))
            queries.append(
                bulk.Query(
                    tiers.points_by_member(postgres),
                    {"ids": among(_POSTINGS.c.member_id, earning), "since": now - tiers.WINDOW, "now": now},
                )
            )
        if reserved.query is not None:
            queries.append(reserved.query)
        fetched = bulk.fetch_all(session, queries) if ops else [[], [], []]
        locked, firsts, lots = fetched[:3]
        thresholds, qualifying = fetched[3:5] if earning else ([], [])
        self.ids = reserved.take(fetched[-1] if reserved.query is not None else None)
        self.accounts = {
            row.id: _Locked(
                row.id, row.member_number, MemberStatus(row.status), row.balance, row.debt, tier=row.tier
            )
            for row in locked
        }
        # (rank, points) of the tiers a member reaches by points, and each earner's points over 12 months.
        self.rank = {row.name: row.rank for row in thresholds}
        self.by_points = [(row.rank, row.threshold_points) for row in thresholds if row.threshold_points]
        self.qualifying: dict[int, int] = dict.fromkeys(earning, 0)
        self.qualifying.update({row.member_id: int(row.points) for row in qualifying})
        self.earned: set[int] = set()
        # Transient copies: a replay is only read (for its answer and the conflict check).
        self.firsts: dict[str, Posting] = {row.idempotency_key: Posting(**row._asdict()) for row in firsts}
        self.spendable: dict[int, list[_OpenLot]] = {member_id: [] for member_id in drawing}
        self.due: dict[int, list[_OpenLot]] = {member_id: [] for member_id in drawing}
        # Each member's spendable lots, and those past their date that the expiry job has not taken yet.
        for row in lots:
            lot = _OpenLot((row.expires_at, 0, row.id), row.remaining, id=row.id)
            (self.spendable if row.expires_at > now else self.due)[row.member_id].append(lot)
        self.postings: list[Posting] = []
        self.new_lots: list[_OpenLot] = []
        self.draws: list[tuple[Posting, _OpenLot, int]] = []

    def post(self, op: PostingOp) -> PostingResult:
        """op's result, as earn, spend or adjust would give it here; SiyuError (and no change) if refused."""
        account = self.accounts.get(op.member_id)
        if account is None:
            raise NotFound(f"no member {op.member_id}")
        _check_key(op.key)
        first = self.firsts.get(op.key)
        if first is not None:
            return _replayed(first, account.id, op.key, op.kind, op.points)
        if op.kind is not PostingKind.adjust:
            _active(account)
        # As spend and adjust do: points past their date are expired first (if the posting goes ahead).
        due = self.due.get(account.id, []) if _draws(op.kind, op.points) else []
        expiring = sum(lot.remaining for lot in due)
        _check_spendable(account.balance - expiring, op.kind, op.points)
        if expiring:
            key = _expiry_key(account.id, due[-1].id or 0, self.now)
            expiry = self._posting(account, PostingKind.expire, -expiring, key, EXPIRED, "", None)
            self.draws.extend((expiry, lot, part) for lot, part in _take(due, expiring))
            self.due[account.id] = []
        change = -op.points if op.kind is PostingKind.spend else op.points
        order_id = None if op.kind is PostingKind.adjust else op.order_id
        posting = self._posting(account, op.kind, change, op.key, op.reason, op.actor, order_id)
        self.firsts[op.key] = posting  # a repeat of the key later in the group is a replay of this one
        if op.kind is PostingKind.earn:
            self.qualifying[account.id] += change
            self.earned.add(account.id)
        lots = self.spendable.get(account.id)
        if change > 0:
            lot = _OpenLot((self.expires_at, 1, len(self.new_lots)), change, posting=posting)
            _pay_debt(account, lot)
            self.new_lots.append(lot)
            if lots is not None and self.expires_at > self.now:
                bisect.insort(lots, lot, key=lambda open_lot: open_lot.order)
        else:
            parts = _take(lots or [], -change)
            taken = sum(part for _, part in parts)
            if taken != -change:  # the balance said yes but the lots disagree: the invariant is broken
                raise RuntimeError(f"member {account.id}: balance {account.balance - change}, lots {taken}")
            self.draws.extend((posting, lot, part) for lot, part in parts)
        return PostingResult(posting, replayed=False)

    def _posting(
        self,
        account: _Locked,
        kind: PostingKind,
        change: int,
        key: str,
        reason: str,
        actor: str,
        order_id: str | None,
    ) -> Posting:
        account.balance += change
        account.changed = True
        posting = _new_posting(
            account.id, kind, change, change, account.balance, key, reason, actor, order_id, None, self.now
        )
        self.postings.append(posting)
        return posting

    def upgrades(self) -> list[int]:
        """The members whose points earned in the group reach a tier above theirs (upgraded after the write)."""
        return [
            member_id
            for member_id in sorted(self.earned)
            if any(
                rank > self.rank.get(self.accounts[member_id].tier or "", -1)
                and self.qualifying[member_id] >= need
                for rank, need in self.by_points
            )
        ]

    def write(self, session: Session) -> None:
        """Write what the group posted: a statement per table."""
        changed = [account for account in self.accounts.values() if account.changed]
        _write_many(session, changed, self.postings, self.new_lots, self.draws, self.now, self.ids)


def _draws(kind: PostingKind, points: int) -> bool:
    """Whether a posting takes points from lots (a spend, a negative adjustment)."""
    return kind is PostingKind.spend or (kind is PostingKind.adjust and points < 0)


def _write_many(
    session: Session,
    accounts: list[_Locked],
    postings: list[Posting],
    new_lots: list[_OpenLot],
    draws: list[tuple[Posting, _OpenLot, int]],
    now: dt.datetime,
    ids: dict[str, list[int]],
) -> None:
    # The ids were reserved first, so every table's rows go in together (one statement on PostgreSQL).
    if not postings:
        return
    if len(postings) > len(ids["loyalty_postings"]) or len(new_lots) > len(ids["loyalty_lots"]):
        raise RuntimeError(f"{len(postings)} postings, {len(new_lots)} lots: more than the ids reserved")
    for posting, posting_id in zip(postings, ids["loyalty_postings"], strict=False):
        posting.id = posting_id
    lot_rows = []
    for lot, lot_id in zip(new_lots, ids["loyalty_lots"], strict=False):
        lot.id = lot_id
        made = lot.posting
        assert made is not None
        lot_rows.append(
            (
                lot_id,
                made.member_id,
                made.id,
                made.points,
                lot.remaining,
                now,
                lot.order[0],
                None,
                made.order_id,
            )
        )
    # New lots are inserted with what the group left in them; stored ones are updated.
    stored = {lot.id: lot.remaining for _, lot, _ in draws if lot.posting is None}
    bulk.write(
        session,
        [
            bulk.Rows(
                "loyalty_postings",
                _POSTING_COLUMNS,
                [tuple(getattr(posting, name) for name, _ in _POSTING_COLUMNS) for posting in postings],
            ),
            bulk.Rows("loyalty_lots", _LOT_COLUMNS, lot_rows),
            bulk.Rows("loyalty_lot_draws", _DRAW_COLUMNS, [(p.id, lot.id, part) for p, lot, part in draws]),
            bulk.Rows("loyalty_lots", (("id", "int"), ("remaining", "int")), list(stored.items()), key="id"),
            bulk.Rows(
                "loyalty_members",
                (("id", "int"), ("balance", "int"), ("debt", "int"), ("updated_at", "ts")),
                [(account.id, account.balance, account.debt, now) for account in accounts],
                key="id",
            ),
        ],
    )


def reverse_order(
    session: Session,
    member_id: int,
    order_id: str,
    *,
    key: str,
    points: int | None = None,
    reason: str = "refund",
    message_id: str | None = None,
    now: dt.datetime | None = None,
) -> PostingResult | None:
    """Take back what an order earned (all of it, or `points` for a partial refund); None if nothing is left.

    From the order's own lots first (pending ones without touching the balance), then from the lots that
    expire soonest; what the member has already spent becomes debt, and the balance goes negative, visibly.
    """
    now = now or utcnow()
    member = lock(session, member_id)
    earned, reversed_ = session.execute(
        select(
            func.coalesce(func.sum(Posting.points).filter(Posting.kind == PostingKind.earn), 0),
            func.coalesce(-func.sum(Posting.points).filter(Posting.kind == PostingKind.reverse), 0),
        ).where(Posting.member_id.in_(person_members(session, member.id)), Posting.order_id == order_id)
    ).one()
    left = int(earned) - int(reversed_)
    wanted = left if points is None else min(points, left)
    replay = session.execute(select(Posting).where(Posting.idempotency_key == key)).scalar_one_or_none()
    if replay is not None:
        return PostingResult(replay, replayed=True)
    if wanted <= 0:
        return None
    own = list(
        session.execute(
            select(Lot)
            .where(Lot.member_id == member.id, Lot.order_id == order_id, Lot.remaining > 0)
            .order_by(Lot.pending_until.is_(None), Lot.id)  # pending lots first
        ).scalars()
    )
    from_pending = min(wanted, sum(lot.remaining for lot in own if lot.pending_until is not None))
    posting = _post(
        session,
        member,
        PostingKind.reverse,
        -wanted,
        -(wanted - from_pending),
        key=key,
        reason=reason,
        actor="",
        order_id=order_id,
        message_id=message_id,
        now=now,
    )
    member.pending -= from_pending
    taken = _draw(session, posting, own, wanted)
    taken += _draw(
        session, posting, _available(session, member.id, now, exclude_order=order_id), wanted - taken
    )
    short = wanted - taken
    if short:
        member.debt += short
        posting.detail = {"debt": short}
    session.flush()
    return PostingResult(posting, replayed=False)


def release_due(session: Session, *, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Release pending lots whose return window has closed; returns how many were released."""
    now = now or utcnow()
    due = session.execute(
        select(Lot.id, Lot.member_id)
        .where(Lot.pending_until.is_not(None), Lot.pending_until <= now)
        .order_by(Lot.member_id, Lot.id)  # members locked in id order, as every multi-member transaction
        .limit(limit)
    ).all()
    for lot_id, member_id in due:
        member = lock(session, member_id)
        lot = session.execute(
            select(Lot).where(Lot.id == lot_id).execution_options(populate_existing=True)
        ).scalar_one()
        if lot.pending_until is None:
            continue  # released by another worker meanwhile
        amount = lot.remaining
        member.pending -= amount
        lot.pending_until = None
        _post(
            session,
            member,
            PostingKind.release,
            amount,
            amount,
            key=f"release:{lot.id}",
            reason="return window closed",
            actor="",
            order_id=lot.order_id,
            message_id=None,
            now=now,
            detail={"lot_id": lot.id},
        )
        _pay_debt(member, lot)
    session.flush()
    return len(due)


def expire_due(session: Session, *, now: dt.datetime | None = None, limit: int = 500) -> int:
    """Expire the remaining points of lots past their date, one posting per member; returns the postings."""
    now = now or utcnow()
    members = list(
        session.execute(
            select(Lot.member_id)
            .where(Lot.remaining > 0, Lot.pending_until.is_(None), Lot.expires_at <= now)
            .distinct()
            .order_by(Lot.member_id)  # members locked in id order, as every multi-member transaction
            .limit(limit)
        ).scalars()
    )
    for member_id in members:
        _expire_lots(session, lock(session, member_id), now)
    return len(members)


def _expire_lots(session: Session, member: Member, now: dt.datetime) -> None:
    """Expire the member's lots past their date: one posting for all of them (the member is locked)."""
    lots = list(
        session.execute(
            select(Lot)
            .where(
                Lot.member_id == member.id,
                Lot.remaining > 0,
                Lot.pending_until.is_(None),
                Lot.expires_at <= now,
            )
            .order_by(Lot.expires_at, Lot.id)
            .execution_options(populate_existing=True)
        ).scalars()
    )
    total = sum(lot.remaining for lot in lots)
    if not total:
        return
    posting = _post(
        session,
        member,
        PostingKind.expire,
        -total,
        -total,
        key=_expiry_key(member.id, lots[-1].id, now),
        reason=EXPIRED,
        actor="",
        order_id=None,
        message_id=None,
        now=now,
    )
    _draw(session, posting, lots, total)


def _expiry_key(member_id: int, last_lot_id: int, now: dt.datetime) -> str:
    return f"expire:{member_id}:{last_lot_id}:{now.isoformat()}"


# --- reading -------------------------------------------------------------------------------------


def lots(session: Session, member_id: int, *, now: dt.datetime | None = None) -> Sequence[Lot]:
    """The member's lots that still hold points (pending or spendable), soonest to expire first."""
    now = now or utcnow()
    return (
        session.execute(
            select(Lot)
            .where(Lot.member_id == member_id, Lot.remaining > 0, Lot.expires_at > now)
            .order_by(Lot.expires_at, Lot.id)
        )
        .scalars()
        .all()
    )


def history(
    session: Session, member_id: int, *, limit: int = 50, before_id: int | None = None
) -> Sequence[Posting]:
    """The member's postings, newest first."""
    statement = select(Posting).where(Posting.member_id == member_id)
    if before_id is not None:
        statement = statement.where(Posting.id < before_id)
    return session.execute(statement.order_by(Posting.id.desc()).limit(limit)).scalars().all()


def verify(session: Session, member_id: int, *, now: dt.datetime | None = None) -> list[str]:
    """What is wrong with a member's ledger (empty when its invariants hold)."""
    now = now or utcnow()
    member = session.get_one(Member, member_id)
    problems: list[str] = []
    postings = session.execute(
        select(func.coalesce(func.sum(Posting.balance_change), 0)).where(Posting.member_id == member_id)
    ).scalar_one()
    if postings != member.balance:
        problems.append(f"balance {member.balance} != sum of postings {postings}")
    spendable = session.execute(
        select(func.coalesce(func.sum(Lot.remaining), 0)).where(
            Lot.member_id == member_id, Lot.pending_until.is_(None)
        )
    ).scalar_one()
    if spendable - member.debt != member.balance:
        problems.append(f"balance {member.balance} != spendable lots {spendable} - debt {member.debt}")
    pending = session.execute(
        select(func.coalesce(func.sum(Lot.remaining), 0)).where(
            Lot.member_id == member_id, Lot.pending_until.is_not(None)
        )
    ).scalar_one()
    if pending != member.pending:
        problems.append(f"pending {member.pending} != pending lots {pending}")
    if member.debt and spendable:
        problems.append(f"debt {member.debt} while lots still hold {spendable}")
    negative = session.execute(
        select(func.count()).select_from(Lot).where(Lot.member_id == member_id, Lot.remaining < 0)
    ).scalar_one()
    if negative:
        problems.append(f"{negative} lot(s) with negative remaining points")
    return problems


# --- merges --------------------------------------------------------------------------------------


def person_members(session: Session, member_id: int) -> list[int]:
    """member_id and the memberships merged into it (and into those): one person's ledger history."""
    found = [member_id]
    frontier = [member_id]
    while frontier:
        sources = [
            int(key.split(":")[1])
            for key in session.execute(
                select(Posting.idempotency_key).where(
                    Posting.kind == PostingKind.transfer,
                    or_(*[Posting.idempotency_key.like(f"transfer:%:{m}:out") for m in frontier]),
                )
            ).scalars()
        ]
        frontier = [m for m in sources if m not in found]
        found.extend(frontier)
    return found


def merge_memberships(session: Session, pairs: list[tuple[int, int]], now: dt.datetime) -> None:
    """Identity hook: when a member's profile is merged into another, the membership follows the person.

    If the surviving profile has no member, the member simply moves to it. If both are members, the absorbed
    one's points move to the survivor as `transfer` postings on both sides, lot by lot (keeping each lot's
    expiry and pending state), with its debt and its vouchers; the absorbed membership is closed and the
    survivor keeps the higher tier. Postings stay append-only: nothing is rewritten.
    """
    # One look-up for the batch: most absorbed profiles were made moments ago and are no members.
    members = set(
        session.execute(
            select(Member.profile_id).where(
                bulk.matches(session, Member.profile_id, [loser for loser, _ in pairs])
            )
        ).scalars()
    )
    for loser_profile, winner_profile in pairs:
        if loser_profile not in members:
            continue
        members.add(winner_profile)  # a survivor absorbed in turn later in pairs hands its membership on
        loser = session.execute(select(Member).where(Member.profile_id == loser_profile)).scalar_one_or_none()
        if loser is None or loser.status == MemberStatus.closed:
            continue
        winner = session.execute(
            select(Member).where(Member.profile_id == winner_profile)
        ).scalar_one_or_none()
        if winner is None:
            loser.profile_id = winner_profile
            session.flush()
            continue
        _transfer(session, loser.id, winner.id, now)


def _transfer(session: Session, from_id: int, to_id: int, now: dt.datetime) -> None:
    # Lock both rows in id order, so two merges of the same pair cannot deadlock.
    first, second = sorted((from_id, to_id))
    locked = {first: lock(session, first), second: lock(session, second)}
    source, target = locked[from_id], locked[to_id]
    lots_ = list(
        session.execute(
            select(Lot).where(Lot.member_id == source.id, Lot.remaining > 0).order_by(Lot.expires_at, Lot.id)
        ).scalars()
    )
    spendable = sum(lot.remaining for lot in lots_ if lot.pending_until is None)
    pending = sum(lot.remaining for lot in lots_ if lot.pending_until is not None)
    debt = source.debt
    detail = {
        "from_member": source.member_number,
        "to_member": target.member_number,
        "debt": debt,
        "pending": pending,
    }
    out = _post(
        session,
        source,
        PostingKind.transfer,
        -(spendable + pending),
        -(spendable - debt),
        key=f"transfer:{source.id}:{target.id}:out",
        reason=f"merged into {target.member_number}",
        actor="",
        order_id=None,
        message_id=None,
        now=now,
        detail=detail,
    )
    into = _post(
        session,
        target,
        PostingKind.transfer,
        spendable + pending,
        spendable - debt,
        key=f"transfer:{source.id}:{target.id}:in",
        reason=f"merged from {source.member_number}",
        actor="",
        order_id=None,
        message_id=None,
        now=now,
        detail=detail,
    )
    for lot in lots_:
        session.add(LotDraw(posting_id=out.id, lot_id=lot.id, points=lot.remaining))
        session.add(
            Lot(
                member_id=target.id,
                posting_id=into.id,
                points=lot.remaining,
                remaining=lot.remaining,
                earned_at=lot.earned_at,
                expires_at=lot.expires_at,
                pending_until=lot.pending_until,
                order_id=lot.order_id,
            )
        )
        lot.remaining = 0
    source.pending -= pending
    target.pending += pending
    source.debt = 0
    target.debt += debt
    session.flush()
    if target.debt:
        # Debt is paid from points as soon as there are any: settle it from the merged lots.
        paid = _draw(session, into, _available(session, target.id, now), target.debt)
        target.debt -= paid
    source.status = MemberStatus.closed
    tiers_ = {t.name: t.rank for t in session.execute(select(Tier)).scalars()}
    if tiers_.get(source.tier, -1) > tiers_.get(target.tier, -1):
        target.tier = source.tier
    from siyu.loyalty.models import Voucher, VoucherStatus

    for voucher in session.execute(
        select(Voucher).where(Voucher.member_id == source.id, Voucher.status == VoucherStatus.issued)
    ).scalars():
        voucher.member_id = target.id
    session.flush()
