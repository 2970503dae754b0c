"""Members and the points ledger: append-only postings, earning lots with expiry, and the draws on them.

Invariants the service keeps in every transaction (and the tests check):
* `balance` = the remaining points of the member's available, unexpired lots - `debt`;
* `balance` = the sum of the postings that move the balance (earn once released, spend, adjust, reverse,
  expire); `pending` = the remaining points of lots not released yet;
* `balance` goes below zero only through a reversal (a refund of points already spent), and then `debt`
  says by how much; new points pay the debt first.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK, EnumText, JSONType, UTCDateTime, utcnow


class MemberStatus(enum.StrEnum):
    active = "active"
    suspended = "suspended"
    closed = "closed"


class Member(Base):
    """A customer enrolled in the programme; the row is locked for every posting (no concurrent overdraw)."""

    __tablename__ = "loyalty_members"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), unique=True)
    member_number: Mapped[str] = mapped_column(String(32), unique=True)
    # The code friends enter (or the link carries) to be referred by this member.
    invite_code: Mapped[str | None] = mapped_column(String(16), unique=True, default=None)
    status: Mapped[MemberStatus] = mapped_column(EnumText(MemberStatus, 16), default=MemberStatus.active)
    tier: Mapped[str] = mapped_column(String(40), default="")
    join_channel: Mapped[str] = mapped_column(String(40), default="")
    join_store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"), default=None)
    joined_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    tier_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # The next membership anniversary, when the tier is reviewed (and lowered by one if not requalified).
    tier_review_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    pending: Mapped[int] = mapped_column(BigInteger, default=0)
    debt: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PostingKind(enum.StrEnum):
    earn = "earn"  # points earned (pending until released when the order's return window is open)
    release = "release"  # pending points becoming spendable
    spend = "spend"
    adjust = "adjust"  # a manual correction, with a reason and the operator
    reverse = "reverse"  # a refund taking back what an order earned
    expire = "expire"
    transfer = "transfer"  # points moved between two memberships of one person (their profiles merged)


class Posting(Base):
    """One movement of points; never updated or deleted. `points` is signed (+ earn, - spend)."""

    __tablename__ = "loyalty_postings"
    __table_args__ = (
        Index(None, "member_id", "id"),
        Index(None, "order_id"),
        Index(None, "rule_id", "member_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("loyalty_members.id"))
    kind: Mapped[PostingKind] = mapped_column(EnumText(PostingKind, 16))
    points: Mapped[int] = mapped_column(BigInteger)
    # What the posting did to the spendable balance (0 for an earn that is pending).
    balance_change: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    actor: Mapped[str] = mapped_column(String(120), default="")
    order_id: Mapped[str | None] = mapped_column(String(100), default=None)
    message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    # The earning rule that gave these points (caps and first-only rules count by it).
    rule_id: Mapped[int | None] = mapped_column(ForeignKey("loyalty_rules.id"), default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Lot(Base):
    """Points earned together, spent in order of expiry; `remaining` goes down as spends draw on it."""

    __tablename__ = "loyalty_lots"
    __table_args__ = (Index(None, "member_id", "expires_at"), Index(None, "order_id"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("loyalty_members.id"))
    posting_id: Mapped[int] = mapped_column(ForeignKey("loyalty_postings.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    earned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # Until then the points are pending (an order's return window); None once released.
    pending_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    order_id: Mapped[str | None] = mapped_column(String(100), default=None)


class LotDraw(Base):
    """Which lots a spend, expiry or reversal took its points from."""

    __tablename__ = "loyalty_lot_draws"
    __table_args__ = (Index(None, "lot_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    posting_id: Mapped[int] = mapped_column(ForeignKey("loyalty_postings.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("loyalty_lots.id"))
    points: Mapped[int] = mapped_column(Integer)


class RuleMode(enum.StrEnum):
    fixed = "fixed"  # `amount` points per matching event
    per_yuan = "per_yuan"  # `amount` points per CNY of the order (item multipliers apply per line)
    multiplier = (
        "multiplier"  # a campaign: multiplies what the other rules give for the event (Membership Day x2)
    )


class EarningRule(Base):
    """An earning rule configured without code; a campaign is a rule with a date window."""

    __tablename__ = "loyalty_rules"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    event: Mapped[str] = mapped_column(String(200))
    mode: Mapped[RuleMode] = mapped_column(EnumText(RuleMode, 16))
    amount: Mapped[float] = mapped_column(Float)
    # Only the member's first such event earns (first Mini Program visit, sign-up).
    first_only: Mapped[bool] = mapped_column(Boolean, default=False)
    # Conditions: the event's channel (context.channel or properties.channel) and property values.
    channels: Mapped[list[str]] = mapped_column(JSONType, default=list)
    where: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    tier_multipliers: Mapped[dict[str, float]] = mapped_column(JSONType, default=dict)
    # "category:<name>" or "sku:<sku>" -> multiplier, for order lines.
    item_multipliers: Mapped[dict[str, float]] = mapped_column(JSONType, default=dict)
    cap_per_day: Mapped[int | None] = mapped_column(BigInteger, default=None)
    cap_per_member: Mapped[int | None] = mapped_column(BigInteger, default=None)
    cap_total: Mapped[int | None] = mapped_column(BigInteger, default=None)
    starts_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    ends_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class VoucherKind(enum.StrEnum):
    amount_off = "amount_off"  # value: fen off
    percent_off = "percent_off"  # value: percent off (1 to 100)
    free_gift = "free_gift"  # gift_sku


class VoucherTemplate(Base):
    """What a voucher gives and when it can be used; with a points cost it is in the reward catalogue."""

    __tablename__ = "loyalty_voucher_templates"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[VoucherKind] = mapped_column(EnumText(VoucherKind, 16))
    value: Mapped[int] = mapped_column(BigInteger, default=0)
    gift_sku: Mapped[str | None] = mapped_column(String(100), default=None)
    min_spend_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    valid_days: Mapped[int] = mapped_column(Integer, default=30)
    channels: Mapped[list[str]] = mapped_column(JSONType, default=list)
    points_cost: Mapped[int | None] = mapped_column(BigInteger, default=None)
    stock: Mapped[int | None] = mapped_column(BigInteger, default=None)
    issued: Mapped[int] = mapped_column(BigInteger, default=0)
    # Issued to every new member (the welcome benefit, e.g. 10% off the first purchase).
    welcome: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class VoucherStatus(enum.StrEnum):
    issued = "issued"
    redeemed = "redeemed"
    void = "void"


class Voucher(Base):
    """One member's voucher with a unique code; redeemed exactly once (its row is locked to redeem it)."""

    __tablename__ = "loyalty_vouchers"
    __table_args__ = (Index(None, "member_id", "status"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("loyalty_voucher_templates.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("loyalty_members.id"))
    code: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[VoucherStatus] = mapped_column(EnumText(VoucherStatus, 16), default=VoucherStatus.issued)
    issue_key: Mapped[str] = mapped_column(String(255), unique=True)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    valid_until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    redeem_key: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    redeemed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    redeemed_channel: Mapped[str | None] = mapped_column(String(40), default=None)
    redeemed_order_id: Mapped[str | None] = mapped_column(String(100), default=None)
    # The spend that paid for it, when it was bought from the reward catalogue.
    posting_id: Mapped[int | None] = mapped_column(ForeignKey("loyalty_postings.id"), default=None)


class BlindBox(Base):
    """A draw paid with points; its row is locked for each draw, so prize stock is never oversold."""

    __tablename__ = "loyalty_blind_boxes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    points_cost: Mapped[int] = mapped_column(BigInteger)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class BlindBoxPrize(Base):
    """A prize with its weight (odds = weight / total weight of prizes in stock) and stock."""

    __tablename__ = "loyalty_blind_box_prizes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    box_id: Mapped[int] = mapped_column(ForeignKey("loyalty_blind_boxes.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    weight: Mapped[int] = mapped_column(Integer)
    stock: Mapped[int | None] = mapped_column(BigInteger, default=None)  # None: unlimited
    awarded: Mapped[int] = mapped_column(BigInteger, default=0)
    # What the winner gets: a voucher of a template, bonus points, or nothing ("thank you").
    voucher_template_id: Mapped[int | None] = mapped_column(
        ForeignKey("loyalty_voucher_templates.id"), default=None
    )
    bonus_points: Mapped[int] = mapped_column(BigInteger, default=0)


class BlindBoxDraw(Base):
    """One draw, with the roll and the weights in force: anyone can recompute the prize from them."""

    __tablename__ = "loyalty_blind_box_draws"
    __table_args__ = (Index(None, "box_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    box_id: Mapped[int] = mapped_column(ForeignKey("loyalty_blind_boxes.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("loyalty_members.id"), index=True)
    prize_id: Mapped[int] = mapped_column(ForeignKey("loyalty_blind_box_prizes.id"))
    # A uniform integer in [0, total weight): the prize is the one whose cumulative weight band holds it.
    roll: Mapped[int] = mapped_column(BigInteger)
    # [[prize_id, weight], …] of the prizes in stock at the draw, in prize id order.
    weights: Mapped[list[list[int]]] = mapped_column(JSONType)
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    posting_id: Mapped[int] = mapped_column(ForeignKey("loyalty_postings.id"))
    voucher_id: Mapped[int | None] = mapped_column(ForeignKey("loyalty_vouchers.id"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class Tier(Base):
    """A membership tier: reached by qualifying points or spend over a rolling 12 months."""

    __tablename__ = "loyalty_tiers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(40), unique=True)
    rank: Mapped[int] = mapped_column(Integer, unique=True)
    # Points earned (not the balance) or spend in fen over the last 12 months; either qualifies.
    threshold_points: Mapped[int | None] = mapped_column(BigInteger, default=None)
    threshold_spend_fen: Mapped[int | None] = mapped_column(BigInteger, default=None)
    # Earning multiplier for rules that do not name this tier themselves.
    multiplier: Mapped[float] = mapped_column(Float, default=1.0)
    # What the tier gives beyond points: early_access, event_invitations, … (shown to members, used by journeys).
    benefits: Mapped[list[str]] = mapped_column(JSONType, default=list)


class ReferralTrigger(enum.StrEnum):
    sign_up = "sign_up"  # the friend joins the programme
    first_purchase = "first_purchase"  # the friend's first order


class ReferralProgram(Base):
    """How referrals are rewarded (one active programme): "invite a friend, both get 20 RMB" (seed 001)."""

    __tablename__ = "loyalty_referral_programs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    trigger: Mapped[ReferralTrigger] = mapped_column(
        EnumText(ReferralTrigger, 16), default=ReferralTrigger.sign_up
    )
    referrer_template_id: Mapped[int | None] = mapped_column(
        ForeignKey("loyalty_voucher_templates.id"), default=None
    )
    referrer_points: Mapped[int] = mapped_column(BigInteger, default=0)
    friend_template_id: Mapped[int | None] = mapped_column(
        ForeignKey("loyalty_voucher_templates.id"), default=None
    )
    friend_points: Mapped[int] = mapped_column(BigInteger, default=0)
    # Rewards a referrer can receive per 30 days (a guard against farming).
    cap_per_30_days: Mapped[int] = mapped_column(Integer, default=10)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReferralStatus(enum.StrEnum):
    pending = "pending"  # the friend arrived with the code; the trigger has not happened yet
    rewarded = "rewarded"
    rejected = "rejected"  # a fraud guard stopped it; `reason` says which


class Referral(Base):
    """A friend who arrived with a member's invite code; one referrer per friend."""

    __tablename__ = "loyalty_referrals"
    __table_args__ = (Index(None, "referrer_member_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    referrer_member_id: Mapped[int] = mapped_column(ForeignKey("loyalty_members.id"))
    friend_profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), unique=True)
    code: Mapped[str] = mapped_column(String(16))
    status: Mapped[ReferralStatus] = mapped_column(
        EnumText(ReferralStatus, 16), default=ReferralStatus.pending
    )
    reason: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    rewarded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
