"""Segments, who is in them, and how their size moved."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK, EnumText, JSONType, UTCDateTime, utcnow


class SegmentStatus(enum.StrEnum):
    building = "building"  # created; the first full computation has not finished
    ready = "ready"
    failed = "failed"  # the last computation failed: `error` says why, memberships are the last good ones


class Segment(Base):
    """A named rule (docs/segments.md) and the state of its memberships."""

    __tablename__ = "segments"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    rule: Mapped[dict[str, Any]] = mapped_column(JSONType)
    # Bumped when the rule changes: cached compilations are keyed by it.
    version: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[SegmentStatus] = mapped_column(EnumText(SegmentStatus, 16), default=SegmentStatus.building)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    size: Mapped[int] = mapped_column(Integer, default=0)
    computed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(120), default="system")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class SegmentMember(Base):
    """One customer in one segment, since when."""

    __tablename__ = "segment_members"
    __table_args__ = (Index(None, "profile_id"),)

    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"), primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), primary_key=True)
    entered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class SegmentSize(Base):
    """The size of a segment after a computation, with how many entered and left since the last one."""

    __tablename__ = "segment_sizes"
    __table_args__ = (Index(None, "segment_id", "at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    size: Mapped[int] = mapped_column(Integer)
    entered: Mapped[int] = mapped_column(Integer, default=0)
    exited: Mapped[int] = mapped_column(Integer, default=0)
    # full: a computation over everyone; incremental: the profiles an ingest batch touched; schedule: time moved.
    kind: Mapped[str] = mapped_column(String(16))


class WechatTagLink(Base):
    """A segment mirrored as an Official Account user tag: its members' openids are kept tagged."""

    __tablename__ = "segment_wechat_tags"
    __table_args__ = (UniqueConstraint("segment_id", "account_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("channel_accounts.id"))
    tag_name: Mapped[str] = mapped_column(String(30))
    # Filled by the first sync (tags/create); the tag then keeps its id even if renamed on WeChat.
    tag_id: Mapped[int | None] = mapped_column(Integer, default=None)
    tagged: Mapped[int] = mapped_column(Integer, default=0)
    synced_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class WechatTagged(Base):
    """An openid siyu has put on a link's tag (what a sync compares the members with)."""

    __tablename__ = "segment_wechat_tagged"

    link_id: Mapped[int] = mapped_column(ForeignKey("segment_wechat_tags.id"), primary_key=True)
    openid: Mapped[str] = mapped_column(String(128), primary_key=True)
