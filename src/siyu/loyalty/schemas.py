"""API shapes of the loyalty programme."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from siyu.loyalty.models import (
    MemberStatus,
    PostingKind,
    ReferralTrigger,
    RuleMode,
    VoucherKind,
    VoucherStatus,
)
from siyu.schemas import Input, Output


class EnrolIn(Input):
    profile_id: int
    channel: str = Field(
        default="", description="Where the customer joined: miniprogram, store, console, import…"
    )


class LotOut(BaseModel):
    id: int
    points: int
    remaining: int
    earned_at: dt.datetime
    expires_at: dt.datetime
    pending_until: dt.datetime | None
    order_id: str | None


class MemberOut(BaseModel):
    profile_id: int
    member_number: str
    invite_code: str | None
    status: MemberStatus
    tier: str
    balance: int = Field(description="Spendable points; negative only after a refund of points already spent")
    pending: int = Field(description="Points waiting for their orders' return window to close")
    debt: int
    joined_at: dt.datetime
    join_channel: str
    lots: list[LotOut]


# A trillion points: far beyond any programme, and within the ledger's 64-bit columns.
MAX_POINTS = 10**12


class PostingIn(Input):
    kind: Literal["earn", "spend", "adjust"]
    points: int = Field(ge=-MAX_POINTS, le=MAX_POINTS, description="Positive; an adjustment may be negative")
    reason: str = Field(default="", description="Kept to its first 2,000 characters")
    order_id: str | None = Field(default=None, max_length=100)


class PostingOut(BaseModel):
    id: int
    kind: PostingKind
    points: int
    balance_change: int
    balance_after: int
    reason: str
    actor: str
    order_id: str | None
    created_at: dt.datetime
    detail: dict[str, object]


class RuleIn(Input):
    name: str
    event: str = Field(
        description="The event name that earns, e.g. 'Order Completed', 'Product Added to Wishlist'"
    )
    mode: RuleMode
    amount: float = Field(description="Points (fixed), points per CNY (per_yuan) or a multiplier (campaign)")
    first_only: bool = False
    channels: list[str] = Field(
        default_factory=list, description="Only events from these channels (empty: any)"
    )
    where: dict[str, Any] = Field(default_factory=dict, description="Property values the event must have")
    tier_multipliers: dict[str, float] = Field(default_factory=dict)
    item_multipliers: dict[str, float] = Field(
        default_factory=dict, description="'category:<name>' or 'sku:<sku>'"
    )
    cap_per_day: int | None = None
    cap_per_member: int | None = None
    cap_total: int | None = None
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    active: bool = True


class RuleOut(RuleIn):
    model_config = Output.model_config

    id: int
    created_at: dt.datetime


class RulePatch(Input):
    active: bool


class VoucherTemplateIn(Input):
    name: str
    kind: VoucherKind
    value: int = Field(default=0, description="amount_off: fen off; percent_off: percent (1 to 100)")
    gift_sku: str | None = None
    min_spend_fen: int = 0
    valid_days: int = 30
    channels: list[str] = Field(
        default_factory=list, description="Where it can be redeemed (empty: anywhere)"
    )
    points_cost: int | None = Field(default=None, description="Set to offer it in the reward catalogue")
    stock: int | None = None
    welcome: bool = Field(default=False, description="Issued to every new member (the welcome benefit)")
    active: bool = True


class VoucherTemplateOut(VoucherTemplateIn):
    model_config = Output.model_config

    id: int
    issued: int


class IssueIn(Input):
    template_id: int


class VoucherOut(BaseModel):
    id: int
    template_id: int
    code: str
    status: VoucherStatus
    issued_at: dt.datetime
    valid_until: dt.datetime
    redeemed_at: dt.datetime | None
    redeemed_channel: str | None
    redeemed_order_id: str | None


class RedeemIn(Input):
    channel: str = Field(description="pos, miniprogram, tmall, …")
    # As an order's total anywhere in siyu: at most 100,000,000 yuan (ingest's MAX_AMOUNT).
    order_total_fen: int = Field(ge=0, le=10_000_000_000)
    order_id: str | None = None


class PrizeIn(Input):
    name: str
    weight: int = Field(description="Odds = weight / total weight of the prizes in stock")
    stock: int | None = None
    voucher_template_id: int | None = None
    bonus_points: int = 0


class BlindBoxIn(Input):
    name: str
    points_cost: int
    prizes: list[PrizeIn]


class BlindBoxOut(BaseModel):
    id: int
    name: str
    points_cost: int
    active: bool


class PrizeStatsOut(BaseModel):
    prize_id: int
    name: str
    weight: int
    configured_odds: float
    draws: int
    observed_share: float
    stock: int | None
    awarded: int


class BlindBoxStatsOut(BaseModel):
    box_id: int
    draws: int
    prizes: list[PrizeStatsOut]
    unverifiable_draws: list[int] = Field(
        description="Draws whose prize does not follow from their roll (should be empty)"
    )


class DrawOut(BaseModel):
    draw_id: int
    prize_id: int
    prize: str
    roll: int
    voucher_id: int | None
    bonus_points: int


class TierIn(Input):
    name: str
    rank: int = Field(description="0 for the entry tier")
    threshold_points: int | None = Field(default=None, description="Points earned in 12 months to reach it")
    threshold_spend_fen: int | None = Field(default=None, description="Or spend in 12 months, in fen")
    multiplier: float = 1.0
    benefits: list[str] = Field(default_factory=list, description="early_access, event_invitations, …")


class TierPatch(Input):
    """What may change in a tier; its rank (its place among the others) may not."""

    name: str | None = None
    threshold_points: int | None = None
    threshold_spend_fen: int | None = None
    multiplier: float | None = None
    benefits: list[str] | None = None


class TierOut(TierIn):
    model_config = Output.model_config

    id: int


class ReferralProgramIn(Input):
    name: str
    trigger: ReferralTrigger = ReferralTrigger.sign_up
    referrer_template_id: int | None = None
    referrer_points: int = 0
    friend_template_id: int | None = None
    friend_points: int = 0
    cap_per_30_days: int = 10
    active: bool = True


class ReferralProgramOut(ReferralProgramIn):
    model_config = Output.model_config

    id: int


class ReferralNodeOut(BaseModel):
    profile_id: int
    member_number: str | None
    status: str
    reason: str
    created_at: dt.datetime
    friends: list[ReferralNodeOut]


class ReferralsOut(BaseModel):
    invite_code: str | None
    stats: dict[str, int]
    friends: list[ReferralNodeOut]
