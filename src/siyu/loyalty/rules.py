"""Earning rules configured without code: which events earn how many points, for whom, how often.

A rule names an event (`Order Completed`, `Product Added to Wishlist`, `Mini Program Opened`, `Product Shared`,
`Checked In`, `Membership Joined`, `Review Submitted`, any event), gives fixed points or points per CNY (with
multipliers per order line's category or SKU), may apply to the first such event only, to some channels or
property values, multiplies by the member's tier, and is capped per day, per member and in total. A rule
with a date window is a campaign; a `multiplier` rule (Membership Day x2) multiplies what the other rules of
its event give inside its window.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.config import Settings
from siyu.db import is_postgres
from siyu.errors import BadRequest, Conflict, NotFound
from siyu.ingest.reactors import StoredEvent
from siyu.loyalty.models import EarningRule, Member, Posting, PostingKind, RuleMode, Tier


@dataclass(frozen=True, slots=True)
class Award:
    """Points a rule gives for one event (after multipliers and caps)."""

    rule: EarningRule | None  # None: the built-in order rule (SIYU_LOYALTY_POINTS_PER_YUAN)
    points: int
    detail: dict[str, Any]


# Far above any real programme (Membership Day doubles, a top tier triples), far below what overflows a ledger:
# a typo of 1e308 would otherwise make every later order of its members fail to be stored.
MAX_AMOUNT = {RuleMode.fixed: 1_000_000, RuleMode.per_yuan: 1_000, RuleMode.multiplier: 100}
MAX_MULTIPLIER = 100
# No one event earns more than this (a trillion points, as a posting: schemas.MAX_POINTS), however the
# multipliers stack.
MAX_AWARD = 10**12
# A campaign's window: no event is older than 2000 (ingest's EARLIEST), and year 9999 is a typo, not a plan.
FIRST_YEAR, LAST_YEAR = 2000, 2999


def validate(rule: EarningRule) -> None:
    """BadRequest naming the field of a rule that cannot work."""
    if not rule.name.strip():
        raise BadRequest("name: required")
    if not rule.event.strip():
        raise BadRequest("event: the event name the rule listens to, e.g. 'Order Completed'")
    if rule.mode not in set(RuleMode):
        raise BadRequest(f"mode: one of {', '.join(RuleMode)}")
    if rule.amount <= 0:
        raise BadRequest("amount: must be more than 0 (points, points per CNY, or a multiplier)")
    most = MAX_AMOUNT.get(RuleMode(rule.mode))
    if most is not None and not rule.amount <= most:  # also NaN
        raise BadRequest(f"amount: at most {most:,} for a {rule.mode} rule, got {rule.amount:g}")
    if rule.mode == RuleMode.fixed and rule.amount != int(rule.amount):
        raise BadRequest("amount: a fixed rule gives whole points")
    for field in ("cap_per_day", "cap_per_member", "cap_total"):
        value = getattr(rule, field)
        if value is not None and value <= 0:
            raise BadRequest(f"{field}: must be more than 0 when set")
    for field in ("starts_at", "ends_at"):
        value = getattr(rule, field)
        if value is not None and not FIRST_YEAR <= value.year <= LAST_YEAR:
            raise BadRequest(f"{field}: a date from {FIRST_YEAR} to {LAST_YEAR}, got {value.year}")
    if rule.starts_at and rule.ends_at and rule.ends_at <= rule.starts_at:
        raise BadRequest("ends_at: must be after starts_at")
    for field in ("tier_multipliers", "item_multipliers"):
        for key, value in (getattr(rule, field) or {}).items():
            if not isinstance(value, int | float) or not 0 <= value <= MAX_MULTIPLIER:
                raise BadRequest(f"{field}.{key}: must be a number from 0 to {MAX_MULTIPLIER}")
    for key in rule.item_multipliers or {}:
        if not key.startswith(("category:", "sku:")):
            raise BadRequest(f"item_multipliers.{key}: keys are 'category:<name>' or 'sku:<sku>'")


@dataclass(frozen=True, slots=True)
class RuleBook:
    """The active rules by event and the tiers' multipliers, read once per batch of events."""

    by_event: dict[str, list[EarningRule]]
    tier_multipliers: dict[str, float]

    @classmethod
    def load(cls, session: Session) -> RuleBook:
        by_event: dict[str, list[EarningRule]] = {}
        for rule in session.execute(
            select(EarningRule).where(EarningRule.active).order_by(EarningRule.id)
        ).scalars():
            by_event.setdefault(rule.event, []).append(rule)
        tiers = {name: multiplier for name, multiplier in session.execute(select(Tier.name, Tier.multiplier))}
        return cls(by_event, tiers)

    def events(self) -> set[str]:
        """Event names some active rule listens to."""
        return set(self.by_event)

    def active(self, event: str, at: dt.datetime) -> list[EarningRule]:
        """The event's rules whose window holds at."""
        return [
            r
            for r in self.by_event.get(event, [])
            if (r.starts_at is None or r.starts_at <= at) and (r.ends_at is None or r.ends_at > at)
        ]


def channel_of(ev: StoredEvent) -> str:
    """The channel an event came through: properties.channel, else context.channel."""
    return str(ev.properties.get("channel") or (ev.context or {}).get("channel") or "")


def matches(rule: EarningRule, ev: StoredEvent) -> bool:
    """Whether the event meets the rule's channel and property conditions."""
    if rule.channels and channel_of(ev) not in rule.channels:
        return False
    for key, wanted in (rule.where or {}).items():
        value = ev.properties.get(key)
        if isinstance(wanted, list):
            if value not in wanted:
                return False
        elif value != wanted:
            return False
    return True


def _order_points(
    rate: float, ev: StoredEvent, multipliers: dict[str, float]
) -> tuple[float, dict[str, Any]]:
    """Points per CNY of an order, line by line when lines have prices and some multiplier applies."""
    total_yuan = ev.amount_fen / 100
    lines = ev.properties.get("products")
    if not multipliers or not isinstance(lines, list):
        return total_yuan * rate, {}
    priced = 0.0
    points = 0.0
    boosted: list[str] = []
    for line in lines:
        if not isinstance(line, dict):
            continue
        try:
            value = float(line.get("price", 0)) * float(line.get("quantity", 1) or 1)
        except (TypeError, ValueError):
            continue
        if not math.isfinite(value) or value < 0:
            continue  # a line priced "inf" or negative is not a price: the order total still earns
        factor = 1.0
        key = _multiplier_key(line, multipliers)
        if key is not None:
            factor = float(multipliers[key])
            boosted.append(key)
        priced += value
        points += value * rate * factor
    # Whatever the lines do not account for (shipping, unpriced lines) earns at the plain rate.
    points += max(total_yuan - priced, 0) * rate
    return points, {"boosted": boosted} if boosted else {}


def _multiplier_key(line: dict[str, Any], multipliers: dict[str, float]) -> str | None:
    """The multiplier that applies to an order line: its SKU's, else its category's, most specific first.

    Categories are paths as Segment's spec writes them ("Qipao/Evening"): `category:qipao` covers every
    qipao collection, `category:qipao/evening` only that one and wins over it. Case does not matter.
    """
    sku = f"sku:{line.get('sku') or line.get('product_id')}"
    if sku in multipliers:
        return sku
    category = line.get("category")
    if not isinstance(category, str) or not category.strip():
        return None
    by_category = {k[9:].strip().lower(): k for k in multipliers if k.startswith("category:")}
    parts = [p.strip() for p in category.lower().split("/") if p.strip()]
    for depth in range(len(parts), 0, -1):
        key = by_category.get("/".join(parts[:depth]))
        if key is not None:
            return key
    return None


def _earned(
    session: Session,
    rule_id: int,
    *,
    member_id: int | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> int:
    statement = select(func.coalesce(func.sum(Posting.points), 0)).where(
        Posting.rule_id == rule_id, Posting.kind == PostingKind.earn
    )
    if member_id is not None:
        statement = statement.where(Posting.member_id == member_id)
    if since is not None:
        statement = statement.where(Posting.created_at >= since)
    if until is not None:
        statement = statement.where(Posting.created_at < until)
    return int(session.execute(statement).scalar_one())


def _local_day(at: dt.datetime, zone: ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    local = at.astimezone(zone)
    start = dt.datetime(local.year, local.month, local.day, tzinfo=zone)
    return start.astimezone(dt.UTC), (start + dt.timedelta(days=1)).astimezone(dt.UTC)


def evaluate(
    session: Session, member: Member, ev: StoredEvent, at: dt.datetime, settings: Settings, book: RuleBook
) -> list[Award]:
    """What each matching rule awards for ev, multiplied and capped; the built-in order rule when none applies."""
    assert ev.event is not None
    rules = book.active(ev.event, at)
    campaign = 1.0
    campaigns: list[str] = []
    for rule in rules:
        if rule.mode == RuleMode.multiplier and matches(rule, ev):
            campaign *= rule.amount
            campaigns.append(rule.name)
    earning = [r for r in rules if r.mode != RuleMode.multiplier]
    awards: list[Award] = []
    # The member's tier multiplier, for rules that do not name the tier themselves (and the built-in one).
    tier_default = book.tier_multipliers.get(member.tier, 1.0)
    if ev.event == "Order Completed" and not any(r.mode == RuleMode.per_yuan for r in earning):
        rate = settings.loyalty_points_per_yuan * tier_default * campaign
        points = math.floor(min(ev.amount_fen / 100 * rate, MAX_AWARD) + 1e-9)
        if points > 0:
            awards.append(Award(None, points, {"campaigns": campaigns} if campaigns else {}))
    zone = ZoneInfo(settings.loyalty_timezone)
    for rule in earning:
        if not matches(rule, ev):
            continue
        if (
            rule.first_only
            and session.execute(
                select(Posting.id).where(Posting.rule_id == rule.id, Posting.member_id == member.id).limit(1)
            ).first()
        ):
            continue
        detail: dict[str, Any] = {}
        if rule.mode == RuleMode.fixed:
            raw = rule.amount
        else:
            raw, detail = _order_points(rule.amount, ev, rule.item_multipliers or {})
        raw *= float((rule.tier_multipliers or {}).get(member.tier, tier_default)) * campaign
        points = math.floor(min(raw, MAX_AWARD) + 1e-9)
        if campaigns:
            detail["campaigns"] = campaigns
        if rule.cap_total is not None:
            if is_postgres(session):
                # Concurrent batches must not both spend the campaign's last points.
                session.execute(select(EarningRule.id).where(EarningRule.id == rule.id).with_for_update())
            points = min(points, rule.cap_total - _earned(session, rule.id))
        if rule.cap_per_member is not None:
            points = min(points, rule.cap_per_member - _earned(session, rule.id, member_id=member.id))
        if rule.cap_per_day is not None:
            start, end = _local_day(at, zone)
            points = min(
                points,
                rule.cap_per_day - _earned(session, rule.id, member_id=member.id, since=start, until=end),
            )
        if points > 0:
            awards.append(Award(rule, points, detail))
    return awards


def create(session: Session, **fields: Any) -> EarningRule:
    """A new earning rule or campaign from its fields (BadRequest naming what is wrong)."""
    rule = EarningRule(**fields)
    validate(rule)
    rule.name = rule.name.strip()
    same = session.execute(
        select(EarningRule.id).where(EarningRule.name == rule.name, EarningRule.active.is_(True))
    ).scalar()
    if same is not None:
        # Two active rules of one name would both earn: a copy of an example must not double the points.
        raise Conflict(f"name: an active rule named {rule.name!r} exists (#{same}); switch it off or rename")
    if rule.tier_multipliers:
        # Tier names are matched exactly when points are earned: a misspelt one would never apply.
        # (Without configured tiers, members carry the tier their events name: nothing to check against.)
        tiers = list(session.execute(select(Tier.name).order_by(Tier.rank)).scalars())
        for name in rule.tier_multipliers:
            if tiers and name not in tiers:
                raise BadRequest(f"tier_multipliers.{name}: no tier {name!r} (tiers: {', '.join(tiers)})")
    session.add(rule)
    session.flush()
    return rule


def set_active(session: Session, rule_id: int, active: bool) -> EarningRule:
    """Switch a rule on or off; NotFound for an unknown id."""
    rule = session.get(EarningRule, rule_id)
    if rule is None:
        raise NotFound(f"no rule {rule_id}")
    rule.active = active
    session.flush()
    return rule


def list_rules(session: Session) -> Sequence[EarningRule]:
    """Every rule, newest first."""
    return session.execute(select(EarningRule).order_by(EarningRule.id.desc())).scalars().all()
