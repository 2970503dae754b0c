"""API shapes of the loyalty programme."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from siyu.loyalty.models import MemberStatus, PostingKind, RuleMode


class EnrolIn(BaseModel):
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
    status: MemberStatus
    tier: str
    balance: int = Field(description="Spendable points; negative only after a refund of points already spent")
    pending: int = Field(description="Points waiting for their orders' return window to close")
    debt: int
    joined_at: dt.datetime
    join_channel: str
    lots: list[LotOut]


class PostingIn(BaseModel):
    kind: Literal["earn", "spend", "adjust"]
    points: int = Field(description="Positive; an adjustment may be negative")
    reason: str = ""
    order_id: str | None = None


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


class RuleIn(BaseModel):
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
    id: int
    created_at: dt.datetime


class RulePatch(BaseModel):
    active: bool
