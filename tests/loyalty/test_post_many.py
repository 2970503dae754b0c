"""post_many, the ledger's group path, against earn / spend / adjust called one at a time.

The same random requests go to two identical members: one by one through the single-posting functions
(each in a savepoint, as each API request had its own transaction), and in random groups through
post_many. Every answer, posting, lot, draw and balance must come out the same.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.errors import Conflict, SiyuError
from siyu.loyalty import service
from siyu.loyalty.models import Lot, LotDraw, Member, MemberStatus, Posting, PostingKind
from siyu.profiles.models import Profile

NOW = dt.datetime(2026, 6, 18, 4, 0, tzinfo=dt.UTC)
MISSING = -1


@dataclass(frozen=True)
class Op:
    member: int  # 0 or 1: which of the pair's members; MISSING: no such member
    kind: PostingKind
    points: int
    key: int
    reason: str


ops_strategy = st.lists(
    st.builds(
        Op,
        member=st.sampled_from([0, 0, 0, 1, MISSING]),
        kind=st.sampled_from([PostingKind.earn, PostingKind.spend, PostingKind.spend, PostingKind.adjust]),
        points=st.integers(-60, 400),
        key=st.integers(0, 25),  # repeats: replays, and keys reused for another posting
        reason=st.sampled_from(["", "store counter"]),
    ),
    min_size=1,
    max_size=30,
)


def member(session: Session, *, lots: list[tuple[int, int]], debt: bool, status: MemberStatus) -> int:
    """A member holding lots (points, days to expiry), a pending lot, owing 40 points when debt."""
    profile = Profile()
    session.add(profile)
    session.flush()
    m, _ = service.enrol(session, profile.id, now=NOW - dt.timedelta(days=60))
    earlier = NOW - dt.timedelta(days=30)
    if debt:
        service.earn(session, m.id, 40, key=f"s{m.id}-d1", order_id="D", now=earlier)
        service.spend(session, m.id, 40, key=f"s{m.id}-d2", now=earlier)
        service.reverse_order(session, m.id, "D", key=f"s{m.id}-d3", now=earlier)
    for i, (points, days) in enumerate(lots):
        expires = NOW + dt.timedelta(days=days)
        service.earn(session, m.id, points, key=f"s{m.id}-{i}", expires_at=expires, now=earlier)
    pending = NOW + dt.timedelta(days=5)
    service.earn(session, m.id, 70, key=f"s{m.id}-p", order_id="P", pending_until=pending, now=earlier)
    m.status = status
    session.flush()
    return m.id


def outcome(result: service.PostingResult | SiyuError) -> tuple[Any, ...]:
    if isinstance(result, SiyuError):
        # A member is named by its number, which differs between the two.
        return (
            type(result).__name__,
            result.status_code,
            re.sub(r"member \w+ is", "member <n> is", result.message),
        )
    p = result.posting
    return (result.replayed, p.kind, p.points, p.balance_change, p.balance_after, p.reason, p.actor)


def one_by_one(session: Session, members: list[int], ops: list[Op], prefix: str) -> list[tuple[Any, ...]]:
    out = []
    for op in ops:
        member_id = members[op.member] if op.member != MISSING else MISSING
        args: dict[str, Any] = {"key": f"{prefix}{op.key}", "reason": op.reason, "now": NOW}
        try:
            with session.begin_nested():
                if op.kind is PostingKind.earn:
                    result = service.earn(session, member_id, op.points, **args)
                elif op.kind is PostingKind.spend:
                    result = service.spend(session, member_id, op.points, **args)
                else:
                    result = service.adjust(session, member_id, op.points, actor="t", **args)
        except SiyuError as exc:
            out.append(outcome(exc))
        else:
            out.append(outcome(result))
    return out


def grouped(
    session: Session, members: list[int], ops: list[Op], sizes: list[int], prefix: str
) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    start = 0
    for size in [*sizes, len(ops)]:
        group = ops[start : start + size]
        start += size
        if not group:
            continue
        posting_ops = [
            service.PostingOp(
                members[op.member] if op.member != MISSING else MISSING,
                op.kind,
                op.points,
                f"{prefix}{op.key}",
                reason=op.reason,
                actor="t" if op.kind is PostingKind.adjust else "",
            )
            for op in group
        ]
        out.extend(outcome(r) for r in service.post_many(session, posting_ops, now=NOW))
    return out


def named(session: Session, outcomes: list[tuple[Any, ...]], members: list[int], prefix: str) -> list[Any]:
    """outcomes with the postings their messages name by id (and key) named by their rank instead."""
    ids = session.execute(select(Posting.id).where(Posting.member_id.in_(members)).order_by(Posting.id))
    rank = {posting_id: i for i, posting_id in enumerate(ids.scalars())}
    out: list[Any] = []
    for o in outcomes:
        if o[0] == "KeyReused":
            message = re.sub(r"#(\d+)", lambda m: f"#{rank.get(int(m[1]), 'not in the ledger')}", o[2])
            o = (*o[:2], message.replace(f"'{prefix}", "'"))
        out.append(o)
    return out


def ledger(session: Session, member_id: int) -> tuple[Any, ...]:
    """Everything the ledger holds for a member, without ids or keys (they differ between the two)."""
    balances = session.execute(
        select(Member.balance, Member.pending, Member.debt).where(Member.id == member_id)
    ).one()
    lots = session.execute(
        select(Lot.id, Lot.points, Lot.remaining, Lot.expires_at, Lot.pending_until, Lot.order_id)
        .where(Lot.member_id == member_id)
        .order_by(Lot.id)
    ).all()
    lot_index = {lot.id: i for i, lot in enumerate(lots)}
    postings = session.execute(
        select(Posting.id, Posting.kind, Posting.points, Posting.balance_change, Posting.balance_after)
        .where(Posting.member_id == member_id)
        .order_by(Posting.id)
    ).all()
    draws = session.execute(
        select(LotDraw.posting_id, LotDraw.lot_id, LotDraw.points)
        .join(Posting, Posting.id == LotDraw.posting_id)
        .where(Posting.member_id == member_id)
        .order_by(LotDraw.posting_id, LotDraw.id)
    ).all()
    posting_index = {p.id: i for i, p in enumerate(postings)}
    return (
        tuple(balances),
        [tuple(lot)[1:] for lot in lots],
        [tuple(p)[1:] for p in postings],
        [(posting_index[d.posting_id], lot_index[d.lot_id], d.points) for d in draws],
    )


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    ops=ops_strategy,
    sizes=st.lists(st.integers(1, 8), max_size=10),
    lots=st.lists(st.tuples(st.integers(1, 300), st.integers(-5, 400)), max_size=4),
    debt=st.booleans(),
    status=st.sampled_from([MemberStatus.active, MemberStatus.active, MemberStatus.suspended]),
)
def test_post_many_answers_and_writes_as_one_posting_at_a_time(
    session: Session,
    ops: list[Op],
    sizes: list[int],
    lots: list[tuple[int, int]],
    debt: bool,
    status: MemberStatus,
) -> None:
    alone = [
        member(session, lots=lots, debt=debt, status=status),
        member(session, lots=[], debt=False, status=MemberStatus.active),
    ]
    many = [
        member(session, lots=lots, debt=debt, status=status),
        member(session, lots=[], debt=False, status=MemberStatus.active),
    ]
    prefix = f"{alone[0]}:"
    expected = one_by_one(session, alone, ops, f"a{prefix}")
    answered = grouped(session, many, ops, sizes, f"b{prefix}")
    session.expire_all()
    # A reused key's 409 names the posting it made, by id: the ids differ, their order must not.
    assert named(session, answered, many, f"b{prefix}") == named(session, expected, alone, f"a{prefix}")
    for a, b in zip(alone, many, strict=True):
        assert ledger(session, b) == ledger(session, a)
        assert service.verify(session, b, now=NOW) == []


def test_a_key_repeated_within_a_group_is_a_replay(session: Session) -> None:
    member_id = member(session, lots=[], debt=False, status=MemberStatus.active)
    earn = service.PostingOp(member_id, PostingKind.earn, 30, "k1")
    results = service.post_many(
        session, [earn, earn, service.PostingOp(member_id, PostingKind.spend, 30, "k1")], now=NOW
    )
    first, again, other = results
    assert isinstance(first, service.PostingResult) and isinstance(again, service.PostingResult)
    assert (first.replayed, again.replayed, again.posting.id) == (False, True, first.posting.id)
    assert isinstance(other, Conflict)
    assert session.execute(select(Member.balance).where(Member.id == member_id)).scalar_one() == 30
