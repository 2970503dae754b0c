"""Tiers: qualification over a rolling 12 months, immediate upgrade, one-step downgrade at the anniversary.

Qualifying points are the points earned (earn postings, pending or not, less what refunds reversed) in the
last 365 days; qualifying spend is the member's completed orders less refunds in that window. A tier is
reached by either threshold. A change of tier is written to the customer's timeline as `Tier Changed`
(from, to, reason) through the ingest pipeline, where alerts and journeys can react to it.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, func, literal_column, select
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.db import is_postgres, utcnow
from siyu.errors import BadRequest, Conflict, NotFound
from siyu.ingest.models import Event
from siyu.ingest.service import enqueue_for_profiles
from siyu.loyalty.models import Member, Posting, PostingKind, Tier

WINDOW = dt.timedelta(days=365)
# A top tier earns two or three times; a typo of 1e308 would overflow every later earning of its members.
MAX_MULTIPLIER = 100


def validate(tier: Tier) -> None:
    """BadRequest naming what cannot work in a tier."""
    if not tier.name.strip():
        raise BadRequest("name: required")
    if tier.rank < 0:
        raise BadRequest("rank: 0 for the entry tier, higher for higher tiers")
    if tier.rank > 0 and tier.threshold_points is None and tier.threshold_spend_fen is None:
        raise BadRequest(
            "threshold_points or threshold_spend_fen: a tier above the entry one needs a threshold"
        )
    if not 0 < tier.multiplier <= MAX_MULTIPLIER:  # also NaN
        raise BadRequest(f"multiplier: more than 0 and at most {MAX_MULTIPLIER}")


def create(session: Session, **fields: Any) -> Tier:
    """A new tier (BadRequest for bad thresholds, Conflict for a taken name or rank)."""
    tier = Tier(**fields)
    validate(tier)
    existing = list_tiers(session)
    for other in existing:
        if other.name == tier.name:
            raise Conflict(f"a tier named {tier.name!r} exists (rank {other.rank})")
        if other.rank == tier.rank:
            raise Conflict(f"tier {other.name!r} has rank {tier.rank}")
    _check_thresholds_rise([*existing, tier])
    session.add(tier)
    session.flush()
    return tier


def update(session: Session, tier: Tier, **changes: Any) -> Tier:
    """Change a tier's name, thresholds, multiplier or benefits (BadRequest/Conflict as create).

    Members keep their tier: a higher threshold applies at their next anniversary review, a lower one at
    their next earning.
    """
    others = [t for t in list_tiers(session) if t.id != tier.id]  # read before the change is flushed
    if "name" in changes and any(t.name == changes["name"] for t in others):
        raise Conflict(f"a tier named {changes['name']!r} exists")
    for field, value in changes.items():
        setattr(tier, field, value)
    validate(tier)
    _check_thresholds_rise([*others, tier])
    session.flush()
    return tier


def get_or_raise(session: Session, tier_id: int) -> Tier:
    """The tier with this id, or NotFound."""
    tier = session.get(Tier, tier_id)
    if tier is None:
        raise NotFound(f"no tier #{tier_id}")
    return tier


def _check_thresholds_rise(tiers: Sequence[Tier]) -> None:
    """BadRequest unless each threshold is higher than the same threshold of every lower tier."""
    ordered = sorted(tiers, key=lambda t: t.rank)
    for field, what in (("threshold_points", "points"), ("threshold_spend_fen", "spend")):
        below: Tier | None = None
        for tier in ordered:
            value = getattr(tier, field)
            if value is None or tier.rank == 0:
                continue
            if below is not None and value <= getattr(below, field):
                raise BadRequest(
                    f"{field}: {tier.name!r} (rank {tier.rank}) needs more {what} than {below.name!r} "
                    f"(rank {below.rank}, {getattr(below, field):,}), got {value:,}"
                )
            below = tier


def list_tiers(session: Session) -> Sequence[Tier]:
    """Tiers from the entry one up."""
    return session.execute(select(Tier).order_by(Tier.rank)).scalars().all()


@functools.cache
def points_by_member(postgres: bool) -> Select[*tuple[Any, ...]]:
    """Each member's qualifying points from `since` to `now`: earned less reversed (members `ids`, a bulk
    parameter). Built once: the posting lane reads it with every group that earns."""
    c = cast(Table, Posting.__table__).c
    return (
        select(c.member_id, func.sum(c.points).label("points"))
        .where(
            bulk.among(c.member_id, "ids", postgres=postgres),
            # Literals: bulk.fetch_all binds named parameters only, not an expanding IN list.
            c.kind.in_([literal_column(f"'{k.value}'") for k in (PostingKind.earn, PostingKind.reverse)]),
            c.created_at > bindparam("since", type_=c.created_at.type),
            c.created_at <= bindparam("now", type_=c.created_at.type),
        )
        .group_by(c.member_id)
    )


def qualifying(session: Session, member: Member, now: dt.datetime) -> tuple[int, int]:
    """(points earned, spend in fen) over the last 12 months."""
    since = now - WINDOW
    postgres = is_postgres(session)
    session.flush()  # bulk.fetch reads past the session: the postings just made count
    ids = bulk.among_value(Posting.member_id, [member.id], postgres=postgres)
    rows = bulk.fetch(session, points_by_member(postgres), {"ids": ids, "since": since, "now": now})
    points = rows[0].points if rows else 0
    spend = session.execute(
        select(
            func.coalesce(func.sum(Event.amount_fen).filter(Event.event == "Order Completed"), 0)
            - func.coalesce(func.sum(Event.amount_fen).filter(Event.event == "Order Refunded"), 0)
        ).where(Event.profile_id == member.profile_id, Event.timestamp > since, Event.timestamp <= now)
    ).scalar_one()
    return int(points), int(spend)


def _reached(tiers: Sequence[Tier], points: int, spend: int) -> Tier | None:
    best: Tier | None = None
    for tier in tiers:
        by_points = tier.threshold_points is not None and points >= tier.threshold_points
        by_spend = tier.threshold_spend_fen is not None and spend >= tier.threshold_spend_fen
        if tier.rank == 0 or by_points or by_spend:
            best = tier
    return best


def _next_anniversary(joined: dt.datetime, now: dt.datetime) -> dt.datetime:
    years = max(now.year - joined.year, 1)
    while True:
        try:
            candidate = joined.replace(year=joined.year + years)
        except ValueError:  # 29 February
            candidate = joined.replace(year=joined.year + years, day=28)
        if candidate > now:
            return candidate
        years += 1


def upgrade(
    session: Session, member: Member, *, now: dt.datetime | None = None, message_id: str | None = None
) -> bool:
    """Raise the member to the highest tier they qualify for now; True when the tier changed."""
    now = now or utcnow()
    tiers = list_tiers(session)
    if not tiers:
        return False
    rank = {t.name: t.rank for t in tiers}
    points, spend = qualifying(session, member, now)
    reached = _reached(tiers, points, spend)
    if reached is None or reached.rank <= rank.get(member.tier, -1):
        return False
    _change(
        session,
        member,
        reached.name,
        f"qualified with {points} points, {spend / 100:.2f} CNY in 12 months",
        now,
        message_id,
    )
    return True


def review_due(session: Session, *, now: dt.datetime | None = None, limit: int = 500) -> int:
    """At each member's anniversary, lower by one tier a member who no longer qualifies; returns reviews done.

    Qualifying is judged over the 12 months before the anniversary, even when the review runs late.
    """
    now = now or utcnow()
    tiers = list_tiers(session)
    by_rank = {t.rank: t for t in tiers}
    members = list(
        session.execute(
            select(Member)
            .where(Member.tier_review_at.is_not(None), Member.tier_review_at <= now)
            .limit(limit)
        ).scalars()
    )
    for member in members:
        current = next((t for t in tiers if t.name == member.tier), None)
        review_at = member.tier_review_at
        member.tier_review_at = _next_anniversary(member.joined_at, now)
        if current is None or current.rank == 0:
            continue
        # The year under review is the one that ended at the anniversary, however late the worker runs; a
        # member who has since qualified again (an order after the anniversary) keeps the tier as well.
        points, spend = qualifying(session, member, review_at or now)
        reached = _reached(tiers, points, spend)
        if reached is not None and reached.rank >= current.rank:
            continue
        if review_at is not None and review_at < now:
            now_reached = _reached(tiers, *qualifying(session, member, now))
            if now_reached is not None and now_reached.rank >= current.rank:
                continue
        lower = max((r for r in by_rank if r < current.rank), default=None)
        if lower is None:
            continue
        stamp = review_at.isoformat() if review_at else now.isoformat()
        _change(
            session,
            member,
            by_rank[lower].name,
            f"anniversary review: {points} points, {spend / 100:.2f} CNY in 12 months",
            now,
            f"tier-review:{member.id}:{stamp}",
        )
    session.flush()
    return len(members)


def _change(
    session: Session, member: Member, tier: str, reason: str, now: dt.datetime, message_id: str | None
) -> None:
    previous = member.tier
    member.tier = tier
    member.tier_since = now
    if member.tier_review_at is None:
        member.tier_review_at = _next_anniversary(member.joined_at, now)
    session.flush()
    _timeline(
        session,
        member,
        previous,
        tier,
        reason,
        now,
        message_id or f"tier:{member.id}:{tier}:{now.isoformat()}",
    )


def _timeline(
    session: Session, member: Member, previous: str, tier: str, reason: str, now: dt.datetime, key: str
) -> None:
    # The event goes through the pipeline on one of the customer's identifiers, like any other event.
    event = {
        "type": "track",
        "event": "Tier Changed",
        "messageId": f"loyalty:{key}"[:255],
        "timestamp": now.isoformat(),
        "properties": {"from": previous, "to": tier, "reason": reason, "member_number": member.member_number},
    }
    enqueue_for_profiles(session, [(member.profile_id, event)], channel="loyalty")
