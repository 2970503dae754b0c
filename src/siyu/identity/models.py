"""The identity graph: typed identifiers, the links between them, merges and their review."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK, EnumText, JSONType, UTCDateTime, utcnow


class IdentifierType(enum.StrEnum):
    """Built-in identifier types; settings may add more for context.externalIds."""

    member_id = "member_id"
    anonymous_id = "anonymous_id"
    phone = "phone"
    email = "email"
    wechat_openid = "wechat_openid"
    wechat_unionid = "wechat_unionid"
    wecom_external_userid = "wecom_external_userid"
    tmall_buyer_id = "tmall_buyer_id"
    jd_buyer_id = "jd_buyer_id"
    pos_card = "pos_card"


class Identifier(Base):
    """A node of the graph: one (type, value), attached to the profile of its component."""

    __tablename__ = "identifiers"
    __table_args__ = (UniqueConstraint("value", "type"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    type: Mapped[str] = mapped_column(String(40))
    value: Mapped[str] = mapped_column(String(255))
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), index=True)
    source_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), default=None)
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    # A device id seen with too many member ids is shared (a store tablet, a family phone): it stops linking.
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    seen_member_ids: Mapped[list[int] | None] = mapped_column(JSONType, default=None)


class IdentityLink(Base):
    """An edge: two identifiers seen together, with the event and rule that linked them."""

    __tablename__ = "identity_links"
    __table_args__ = (UniqueConstraint("a_id", "b_id"), Index(None, "b_id"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    a_id: Mapped[int] = mapped_column(ForeignKey("identifiers.id"))
    b_id: Mapped[int] = mapped_column(ForeignKey("identifiers.id"))
    message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    rule: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # An unmerge deactivates links instead of deleting them: the history stays readable.
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    removed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)


class MergeKind(enum.StrEnum):
    merge = "merge"
    unmerge = "unmerge"


class IdentityMerge(Base):
    """The merge history: who was joined to whom (or split from whom), why and by which event."""

    __tablename__ = "identity_merges"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    kind: Mapped[MergeKind] = mapped_column(EnumText(MergeKind, 16))
    # merge: the survivor; unmerge: the profile that was split.
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), index=True)
    # merge: the absorbed profile; unmerge: the new profile split off.
    other_profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), index=True)
    rule: Mapped[str] = mapped_column(String(40))
    message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    identifier_id: Mapped[int | None] = mapped_column(ForeignKey("identifiers.id"), default=None)
    actor: Mapped[str] = mapped_column(String(120), default="system")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class ReviewStatus(enum.StrEnum):
    open = "open"
    approved = "approved"
    rejected = "rejected"


class MergeReview(Base):
    """A merge the guards refused to make alone: two profiles with different unique identifiers."""

    __tablename__ = "merge_reviews"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    profile_a_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), index=True)
    profile_b_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), index=True)
    identifier_a_id: Mapped[int] = mapped_column(ForeignKey("identifiers.id"))
    identifier_b_id: Mapped[int] = mapped_column(ForeignKey("identifiers.id"))
    message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    reason: Mapped[str] = mapped_column(String(255))
    status: Mapped[ReviewStatus] = mapped_column(
        EnumText(ReviewStatus, 16), default=ReviewStatus.open, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    decided_by: Mapped[str | None] = mapped_column(String(120), default=None)


class BlockedLink(Base):
    """A pair of identifiers that must not be linked again: recorded by unmerge and rejected reviews."""

    __tablename__ = "identity_blocked_links"

    a_id: Mapped[int] = mapped_column(ForeignKey("identifiers.id"), primary_key=True)
    b_id: Mapped[int] = mapped_column(ForeignKey("identifiers.id"), primary_key=True)
    reason: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    merge_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
