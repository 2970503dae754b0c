"""API shapes of the customer 360."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from siyu.schemas import Input


class IdentityOut(BaseModel):
    id: int
    type: str
    value: str = Field(description="Phones and emails are masked unless revealed")
    source: str | None = Field(description="The API key (source) that first sent it")
    first_seen_at: dt.datetime
    last_seen_at: dt.datetime
    shared: bool


class Counters(BaseModel):
    events: int
    orders: int
    revenue_fen: int = Field(description="Gross order value, in fen (0.01 CNY)")
    refunded_fen: int
    first_seen_at: dt.datetime | None
    last_seen_at: dt.datetime | None
    first_order_at: dt.datetime | None
    last_order_at: dt.datetime | None


class MergeOut(BaseModel):
    id: int
    kind: str
    profile_id: int
    other_profile_id: int
    rule: str
    message_id: str | None
    identifier_id: int | None
    actor: str
    created_at: dt.datetime
    detail: dict[str, Any]


class ProfileOut(BaseModel):
    id: int
    requested_id: int = Field(description="The id asked for; differs from id when it was merged into id")
    name: str | None
    traits: dict[str, Any]
    store_id: int | None
    store: str | None = Field(default=None, description="The home store's code and name")
    owner_user_id: int | None
    owner: str | None = Field(default=None, description="The sales associate who owns the customer")
    created_at: dt.datetime
    counters: Counters
    identities: list[IdentityOut]
    merges: list[MergeOut]
    revealed: bool
    erased_at: dt.datetime | None = Field(
        default=None, description="When her personal data was erased (PIPL)"
    )
    tags: list[TagOut] = Field(default_factory=list)
    lifecycle: LifecycleOut | None = Field(
        default=None, description="null: Anonymous (visitors get no stage row)"
    )
    stage_changes: list[StageChangeOut] = Field(default_factory=list, description="Newest first, the last 20")
    segments: list[SegmentRefOut] = Field(default_factory=list)
    journeys: list[JourneyRefOut] = Field(default_factory=list, description="Newest first, the last 10")
    messages: list[MessageRefOut] = Field(
        default_factory=list, description="Newest first, the last 10: what was sent or stopped, and why"
    )


class JourneyRefOut(BaseModel):
    journey_id: int
    name: str
    node: str
    status: str
    entered_at: dt.datetime
    end_reason: str | None


class MessageRefOut(BaseModel):
    id: int
    channel: str
    status: str
    rule: str | None
    journey_id: int | None
    node: str | None
    created_at: dt.datetime


class ProfileSummary(BaseModel):
    id: int
    name: str | None
    orders: int
    revenue_fen: int
    last_seen_at: dt.datetime | None


class TimelineEvent(BaseModel):
    id: int
    message_id: str
    type: str
    event: str | None
    timestamp: dt.datetime
    received_at: dt.datetime
    amount_fen: int
    properties: dict[str, Any]
    context: dict[str, Any]
    traits: dict[str, Any] | None


class TimelinePage(BaseModel):
    items: list[TimelineEvent]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page")


class UnmergeIn(Input):
    type: str = Field(description="Identifier type, e.g. wechat_openid")
    value: str


class UnmergeOut(BaseModel):
    profile_id: int
    new_profile_id: int
    identifier_ids: list[int]
    events_moved: int


class EraseIn(Input):
    confirm: int = Field(description="The profile id again: erasure cannot be undone")


class EraseOut(BaseModel):
    profile_id: int
    erased: dict[str, int] = Field(description="Rows emptied or removed, per kind")


class TagIn(Input):
    name: str = Field(min_length=1, max_length=80)


class TagOut(BaseModel):
    name: str
    source: str = Field(description="manual, or rule: kept up to date by an automatic rule")
    rule: str | None
    created_at: dt.datetime
    created_by: str


class LifecycleOut(BaseModel):
    stage: str
    since: dt.datetime
    reason: str
    purchase_days: int
    recency_score: int | None
    frequency_score: int | None
    monetary_score: int | None
    p_alive: float | None
    expected_purchases: float | None
    expected_order_value_fen: float | None
    clv_fen: float | None


class StageChangeOut(BaseModel):
    from_stage: str | None
    to_stage: str
    at: dt.datetime
    reason: str


class SegmentRefOut(BaseModel):
    id: int
    name: str
