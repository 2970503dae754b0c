"""Message templates, the brand's asset library, the messages themselves, frequency caps and reach."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK, EnumText, JSONType, UTCDateTime, utcnow


class Channel(enum.StrEnum):
    """Where a message goes; each has its own template shape, recipient and platform rules."""

    oa_template = "oa_template"  # Official Account template message (service notifications)
    oa_kefu = "oa_kefu"  # Official Account customer-service message, inside the 48-hour window
    oa_mass = (
        "oa_mass"  # Official Account mass push (4 a month per follower; 1 a day on a subscription account)
    )
    mp_subscribe = "mp_subscribe"  # Mini Program subscribe message (one per acceptance)
    wecom_1to1 = "wecom_1to1"  # a WeCom message from the customer's associate, confirmed by them
    wecom_mass = "wecom_mass"  # a WeCom company mass message, confirmed by the associate
    sms = "sms"


WECOM_CHANNELS = frozenset({Channel.wecom_1to1, Channel.wecom_mass})
# The identifier type of the addresses whose reach each kind of account tracks (`Reach.id_type`).
REACH_ID_TYPE = {"oa": "wechat_openid", "wecom": "wecom_external_userid"}


class Purpose(enum.StrEnum):
    """Marketing messages need marketing consent and obey caps and quiet hours; service ones do not."""

    marketing = "marketing"
    service = "service"


class MessageTemplate(Base):
    """What to send on a channel, with Jinja placeholders; `body`'s keys depend on the channel.

    oa_template / mp_subscribe: `data` (field -> text), `url` or `page`; the others: `text`, and for
    WeCom `attachments` (asset keys, 9 at most).
    """

    __tablename__ = "message_templates"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    channel: Mapped[Channel] = mapped_column(EnumText(Channel, 16))
    purpose: Mapped[Purpose] = mapped_column(EnumText(Purpose, 16), default=Purpose.marketing)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("channel_accounts.id"), default=None)
    # WeChat's template id (template and subscribe messages).
    external_template_id: Mapped[str | None] = mapped_column(String(128), default=None)
    body: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(120), default="")


class AssetKind(enum.StrEnum):
    article = "article"
    image = "image"
    link = "link"
    miniprogram = "miniprogram"
    video = "video"


class Asset(Base):
    """A piece of the brand's content library (a story, a product link, a Mini Program page)."""

    __tablename__ = "message_assets"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    key: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[AssetKind] = mapped_column(EnumText(AssetKind, 16))
    title: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(1000), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    # WeChat's media id (images, videos) or Mini Program app id and page.
    media_id: Mapped[str | None] = mapped_column(String(128), default=None)
    appid: Mapped[str | None] = mapped_column(String(64), default=None)
    page: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class MessageStatus(enum.StrEnum):
    queued = "queued"  # waiting for a sender (or in one's hands: see MessageLease)
    created = "created"  # WeCom: waiting for the associate to confirm it
    sent = "sent"  # accepted by the platform
    delivered = "delivered"  # the platform reported delivery (TEMPLATESENDJOBFINISH, WeCom sent)
    failed = "failed"
    suppressed = "suppressed"  # never sent: `rule` says which rule stopped it
    unknown = "unknown"  # a sender died mid-call; not retried, so it cannot arrive twice


# "status = 'queued'" as a literal, so the planner uses the partial index even in a generic plan.
QUEUED = "messages.status = 'queued'"


class Message(Base):
    """One message to one customer; its idempotency key makes a retried step queue it once.

    Written a million at a time by a broadcast, so without foreign keys: each would lock its parent row
    (the customer's, the template's) once per message (decision 0011).
    """

    __tablename__ = "messages"
    __table_args__ = (
        # Only queued messages are claimed: sent ones leave this index (a partial index).
        Index(
            "ix_messages_due",
            "available_at",
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        Index(None, "profile_id", "created_at"),
        # Receipts look messages up by the id the platform gave them; a queued message has none yet, and a
        # broadcast queues a million (a partial index: they are not in it).
        Index(
            None,
            "channel",
            "external_id",
            postgresql_where=text("external_id IS NOT NULL"),
            sqlite_where=text("external_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    template_id: Mapped[int] = mapped_column(BigIntPK)
    channel: Mapped[Channel] = mapped_column(EnumText(Channel, 16))
    account_id: Mapped[int | None] = mapped_column(BigIntPK, default=None)
    profile_id: Mapped[int] = mapped_column(BigIntPK)
    recipient: Mapped[str | None] = mapped_column(String(255), default=None)
    # The associate who sends it (WeCom userid).
    sender: Mapped[str | None] = mapped_column(String(64), default=None)
    content: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[MessageStatus] = mapped_column(EnumText(MessageStatus, 16))
    rule: Mapped[str | None] = mapped_column(String(80), default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    external_id: Mapped[str | None] = mapped_column(String(128), default=None)
    journey_id: Mapped[int | None] = mapped_column(BigIntPK, default=None)
    version_id: Mapped[int | None] = mapped_column(BigIntPK, default=None)
    node: Mapped[str | None] = mapped_column(String(64), default=None)
    enrolment_id: Mapped[int | None] = mapped_column(BigIntPK, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    clicked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)


class MessageLease(Base):
    """A message in a sender's hands, until `until`: taken before WeChat is called, dropped after.

    The primary key is what keeps two senders from taking one message. A lease that outlives its sender
    turns the message `unknown`, never back to queued (decision 0011). A row here, not a status on the
    message, so a claim writes one small row instead of rewriting the message and its indexes.
    """

    __tablename__ = "message_leases"

    message_id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=False)
    until: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class CapPeriod(enum.StrEnum):
    day = "day"
    week = "week"
    month = "month"


class FrequencyCap(Base):
    """The brand's own cap: at most `limit` marketing messages per customer per period (on a channel or all)."""

    __tablename__ = "frequency_caps"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    channel: Mapped[Channel | None] = mapped_column(EnumText(Channel, 16), default=None)
    period: Mapped[CapPeriod] = mapped_column(EnumText(CapPeriod, 8))
    limit: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class CapSlot(Base):
    """One message's use of one cap in one window: the unique key is what holds a cap under many workers.

    A cap of n per window has slots 1..n; taking one is an insert that fails when another worker took it.
    """

    __tablename__ = "message_cap_slots"

    # The slot is the key: no surrogate id, whose sequence and index a broadcast would feed a million times.
    # A counter, not a reference: no foreign key to check for each of a broadcast's slots.
    profile_id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=False)
    cap: Mapped[str] = mapped_column(String(60), primary_key=True)
    window: Mapped[str] = mapped_column(String(16), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    # The message that took it (its idempotency key), so a failed delivery gives the slot back.
    message_key: Mapped[str] = mapped_column(String(200), index=True)


class Reach(Base):
    """Whether a channel address (an OA or Mini Program openid, a WeCom contact) can be messaged.

    Keyed by the address, not the profile: merges and splits move identifiers, and reach follows them.
    `inbound_at` opens the Official Account's 48-hour customer-service window.
    """

    __tablename__ = "message_reach"
    __table_args__ = (UniqueConstraint("account_id", "address"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("channel_accounts.id"))
    id_type: Mapped[str] = mapped_column(String(40))
    address: Mapped[str] = mapped_column(String(255))
    reachable: Mapped[bool] = mapped_column(Boolean, default=True)
    # The WeCom associate (userid) the contact was added by.
    associate: Mapped[str | None] = mapped_column(String(64), default=None)
    inbound_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    inbound_kind: Mapped[str | None] = mapped_column(String(16), default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
