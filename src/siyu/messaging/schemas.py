"""API shapes of messaging."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from siyu.messaging.models import AssetKind, CapPeriod, Channel, MessageStatus, Purpose
from siyu.schemas import Input, Output


class TemplateIn(Input):
    name: str = Field(min_length=1, max_length=120)
    channel: Channel
    purpose: Purpose = Purpose.marketing
    account_id: int | None = None
    external_template_id: str | None = None
    body: dict[str, Any]


class TemplatePatch(Input):
    purpose: Purpose | None = None
    account_id: int | None = None
    external_template_id: str | None = None
    body: dict[str, Any] | None = None


class TemplateOut(BaseModel):
    id: int
    name: str
    channel: Channel
    purpose: Purpose
    account_id: int | None
    external_template_id: str | None
    body: dict[str, Any]
    created_at: dt.datetime
    updated_at: dt.datetime


class PreviewIn(Input):
    profile_id: int


class AssetIn(Input):
    key: str = Field(min_length=1, max_length=80, pattern=r"^[a-z0-9][a-z0-9\-_]*$")
    kind: AssetKind
    title: str = Field(min_length=1, max_length=200)
    url: str = ""
    description: str = ""
    media_id: str | None = None
    appid: str | None = None
    page: str | None = None


class AssetOut(AssetIn):
    model_config = Output.model_config

    id: int
    created_at: dt.datetime


class CapIn(Input):
    channel: Channel | None = Field(default=None, description="None: every channel together")
    period: CapPeriod
    limit: int = Field(ge=0)


class CapPatch(Input):
    active: bool


class CapOut(BaseModel):
    id: int
    channel: Channel | None
    period: CapPeriod
    limit: int
    active: bool


class MessageOut(BaseModel):
    id: int
    template_id: int
    channel: Channel
    profile_id: int
    recipient: str | None
    sender: str | None
    content: dict[str, Any]
    status: MessageStatus
    rule: str | None
    error: str | None
    attempts: int
    journey_id: int | None
    node: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None
    delivered_at: dt.datetime | None
    clicked_at: dt.datetime | None
