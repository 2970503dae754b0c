"""Channel accounts (Official Accounts, WeCom, Mini Programs) and the codes that attribute customers."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK, EnumText, JSONType, UTCDateTime, utcnow


class ChannelKind(enum.StrEnum):
    oa = "oa"
    wecom = "wecom"
    miniprogram = "miniprogram"


class OaType(enum.StrEnum):
    """Service accounts push 4 mass messages a month to each follower; subscription accounts 1 a day."""

    service = "service"
    subscription = "subscription"


class ChannelAccount(Base):
    """One WeChat account of the brand; its secrets are sealed (siyu.vault) and never shown again."""

    __tablename__ = "channel_accounts"
    __table_args__ = (UniqueConstraint("kind", "app_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # The slug in callback URLs: /wechat/oa/{name}/callback.
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[ChannelKind] = mapped_column(EnumText(ChannelKind, 16))
    # The Official Account's or Mini Program's app id; WeCom's corp id.
    app_id: Mapped[str] = mapped_column(String(64))
    oa_type: Mapped[OaType | None] = mapped_column(EnumText(OaType, 16), default=None)
    # WeCom: the agent id of the self-built app the callbacks are configured on (optional).
    agent_id: Mapped[str | None] = mapped_column(String(32), default=None)
    # The app secret (WeCom: the customer-contact secret), sealed.
    secret_sealed: Mapped[str] = mapped_column(Text)
    # The callback token and EncodingAESKey, sealed; a Mini Program without push has neither.
    token_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    aes_key_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    # WeCom: the welcome message sent with each WelcomeCode (empty: none).
    welcome_text: Mapped[str] = mapped_column(Text, default="")
    # The access token, shared by every process (WeChat invalidates the old one on each refresh).
    access_token_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    access_token_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)


class QrPurpose(enum.StrEnum):
    store = "store"
    associate = "associate"
    campaign = "campaign"
    placement = "placement"


class WechatQrCode(Base):
    """A parametric Official Account QR code: a follow or scan through it is attributed to what it names."""

    __tablename__ = "wechat_qr_codes"
    __table_args__ = (UniqueConstraint("account_id", "scene"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("channel_accounts.id"))
    # The scene string WeChat sends back as EventKey (qrscene_<scene> on a follow).
    scene: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(120))
    purpose: Mapped[QrPurpose] = mapped_column(EnumText(QrPurpose, 16))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"), default=None)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    campaign: Mapped[str | None] = mapped_column(String(120), default=None)
    placement: Mapped[str | None] = mapped_column(String(120), default=None)
    # None: a permanent code; else the time a temporary code stops working.
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    ticket: Mapped[str | None] = mapped_column(String(255), default=None)
    url: Mapped[str | None] = mapped_column(String(500), default=None)
    scans: Mapped[int] = mapped_column(Integer, default=0)
    follows: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ContactWay(Base):
    """A WeCom 「联系我」 channel code; its `state` comes back on each add and attributes the customer."""

    __tablename__ = "wecom_contact_ways"
    __table_args__ = (UniqueConstraint("account_id", "state"), Index(None, "config_id"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("channel_accounts.id"))
    state: Mapped[str] = mapped_column(String(30))
    name: Mapped[str] = mapped_column(String(120))
    config_id: Mapped[str | None] = mapped_column(String(64), default=None)
    # The sales associate customers add through this code, and the store and campaign it counts for.
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"), default=None)
    campaign: Mapped[str | None] = mapped_column(String(120), default=None)
    qr_url: Mapped[str | None] = mapped_column(String(500), default=None)
    adds: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class MenuCategory(enum.StrEnum):
    """The function categories of the WeChat Luxury Index (seed 003): 45 % / 33 % / 22 % of use."""

    ecommerce = "ecommerce"
    information = "information"
    crm = "crm"


class OaMenuItem(Base):
    """An Official Account menu entry: how a CLICK or VIEW is labelled and categorised."""

    __tablename__ = "oa_menu_items"
    __table_args__ = (UniqueConstraint("account_id", "key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("channel_accounts.id"))
    # The EventKey WeChat sends: the key of a click item, the URL of a view item.
    key: Mapped[str] = mapped_column(String(500))
    label: Mapped[str] = mapped_column(String(60))
    # WeChat's button type: click, view, miniprogram, scancode_push, …
    action_type: Mapped[str] = mapped_column(String(32), default="click")
    category: Mapped[MenuCategory] = mapped_column(EnumText(MenuCategory, 16))


class MassSendReceipt(Base):
    """WeChat's MASSSENDJOBFINISH report of one mass push: an account-level fact, not a customer's event."""

    __tablename__ = "oa_mass_send_receipts"
    __table_args__ = (UniqueConstraint("account_id", "msg_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("channel_accounts.id"))
    msg_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(64))
    total_count: Mapped[int] = mapped_column(Integer, default=0)
    filter_count: Mapped[int] = mapped_column(Integer, default=0)
    sent_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class ChannelCall(Base):
    """One outbound WeChat / WeCom API call and its result; a repeated idempotency key is not sent again."""

    __tablename__ = "channel_calls"
    __table_args__ = (Index(None, "account_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("channel_accounts.id"))
    api: Mapped[str] = mapped_column(String(120))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True, default=None)
    # The request body and query without the access token; the response as WeChat sent it.
    request: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)
    errcode: Mapped[int] = mapped_column(Integer, default=0)
    ok: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class MpSession(Base):
    """A Mini Program login: the session_key stays here (sealed); the app holds only an opaque token."""

    __tablename__ = "mp_sessions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("channel_accounts.id"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    unionid: Mapped[str | None] = mapped_column(String(64), default=None)
    session_key_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
