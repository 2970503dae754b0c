"""API shapes of segments."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from siyu.schemas import Input
from siyu.segments.models import SegmentStatus


class SegmentIn(Input):
    name: str = Field(min_length=1, max_length=120)
    description: str = ""
    rule: dict[str, Any] = Field(description="A rule of docs/segments.md")
    compute: bool = Field(default=True, description="Compute the memberships now (else the worker does)")


class SegmentPatch(Input):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    description: str | None = None
    rule: dict[str, Any] | None = None


class SegmentOut(BaseModel):
    id: int
    name: str
    description: str
    rule: dict[str, Any]
    version: int
    status: SegmentStatus
    error: str | None
    size: int
    computed_at: dt.datetime | None
    created_at: dt.datetime
    created_by: str
    updated_at: dt.datetime


class PreviewIn(Input):
    rule: dict[str, Any]
    sample: int = Field(default=10, ge=0, le=100)


class PreviewOut(BaseModel):
    size: int
    sample: list[int]


class ChangeOut(BaseModel):
    size: int
    entered: int
    exited: int


class SizeOut(BaseModel):
    at: dt.datetime
    size: int
    entered: int
    exited: int
    kind: str


class MembersOut(BaseModel):
    profile_ids: list[int]
    next_after: int | None = Field(description="Pass as `after` for the next page; null on the last page")


class WechatTagIn(Input):
    account: str = Field(description="The Official Account's name in siyu (`siyu channels list`)")
    tag_name: str | None = Field(default=None, max_length=30, description="Default: the segment's name")


class WechatTagOut(BaseModel):
    account_id: int
    tag_name: str
    tag_id: int | None = Field(description="WeChat's tag id, once the first sync created it")
    tagged: int
    synced_at: dt.datetime | None
