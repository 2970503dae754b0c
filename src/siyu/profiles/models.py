"""The unified customer profile: one row per person, with traits and counters."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK, EnumText, JSONType, UTCDateTime, utcnow


class Profile(Base):
    """One customer: a connected component of the identity graph.

    Counters are maintained incrementally at ingest and recomputed from events on merge and
    unmerge, so they never count an event twice.
    """

    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when this profile was absorbed by a merge; reads follow it to the survivor.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("profiles.id"), default=None, index=True)
    name: Mapped[str | None] = mapped_column(String(120), default=None, index=True)
    traits: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"), default=None, index=True)
    owner_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None, index=True)
    events_count: Mapped[int] = mapped_column(Integer, default=0)
    orders_count: Mapped[int] = mapped_column(Integer, default=0)
    revenue_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    first_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    first_order_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_order_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    # Set when her personal data was erased (PIPL): the row stays so counts and the ledger still add up.
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)


class Consent(Base):
    """A person's consent (PIPL basis) for one purpose, with where and when it was given or withdrawn."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("profile_id", "purpose", "message_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), index=True)
    # What it covers: phone_number (collection of the phone), marketing_wechat, marketing_sms, …
    purpose: Mapped[str] = mapped_column(String(40))
    granted: Mapped[bool] = mapped_column(Boolean)
    # Where: e.g. "miniprogram:wx…" for WeChat's phone-number authorisation.
    source: Mapped[str] = mapped_column(String(120))
    # The event that carried it: the evidence.
    message_id: Mapped[str] = mapped_column(String(255))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    recorded_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class TagSource(enum.StrEnum):
    manual = "manual"  # put on by a person (console, API) and only removed by one
    rule = "rule"  # kept up to date by an automatic tag rule as events arrive


class Tag(Base):
    """A label on a customer: manual, or maintained by an automatic rule (`rule` names which)."""

    __tablename__ = "profile_tags"
    __table_args__ = (UniqueConstraint("profile_id", "name"), Index(None, "name", "profile_id"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"))
    name: Mapped[str] = mapped_column(String(80))
    source: Mapped[TagSource] = mapped_column(EnumText(TagSource, 16), default=TagSource.manual)
    rule: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(120), default="system")
