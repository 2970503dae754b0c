"""Users, API keys and the audit log."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK, EnumText, JSONType, UTCDateTime, utcnow


class Role(enum.StrEnum):
    """The roles of domain.md §1; `source` keys may only send events."""

    admin = "admin"
    hq = "hq"
    regional_manager = "regional_manager"
    store_manager = "store_manager"
    sales_associate = "sales_associate"
    marketer = "marketer"
    source = "source"


class User(Base):
    """A person who logs into the console; scoped roles carry their region or store."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(120), default="")
    role: Mapped[Role] = mapped_column(EnumText(Role, 32))
    password_hash: Mapped[str] = mapped_column(String(255))
    # The WeCom UserID of a sales associate: how WeCom callbacks name them.
    wecom_userid: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"), default=None)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"), default=None)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Console sessions opened before this are over (set when the user is disabled): see session_stamp.
    sessions_ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)


class ApiKey(Base):
    """A bearer secret; only its SHA-256 is stored. A `source` key is an ingestion write key."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    role: Mapped[Role] = mapped_column(EnumText(Role, 32))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), default=None)
    region_id: Mapped[int | None] = mapped_column(ForeignKey("regions.id"), default=None)
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)


class AuditLog(Base):
    """Who did or saw what: every reveal of personal data and every identity change."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(120))
    action: Mapped[str] = mapped_column(String(64))
    subject_type: Mapped[str] = mapped_column(String(32))
    subject_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
