"""The outbox: side effects written in the same transaction as the change that causes them."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK, EnumText, JSONType, UTCDateTime, utcnow


class OutboxStatus(enum.StrEnum):
    pending = "pending"
    done = "done"
    failed = "failed"


class OutboxMessage(Base):
    """A job for `siyu worker`; its idempotency key makes a repeated enqueue a no-op."""

    __tablename__ = "outbox"
    __table_args__ = (Index(None, "status", "available_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    topic: Mapped[str] = mapped_column(String(80))
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    status: Mapped[OutboxStatus] = mapped_column(EnumText(OutboxStatus, 16), default=OutboxStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    available_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
