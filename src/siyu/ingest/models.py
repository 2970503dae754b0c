"""Stored events and the dead letters of events that could not be accepted."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK, EnumText, JSONType, UTCDateTime, utcnow

ORDER_WHERE = text("order_id IS NOT NULL")


class Event(Base):
    """One accepted Segment-spec event, attributed to a profile through its primary identifier."""

    __tablename__ = "events"
    __table_args__ = (
        Index(None, "profile_id", "timestamp"),
        Index(None, "received_at"),
        Index(None, "identifier_id"),
        # Only order events carry an order id: the partial index costs the other events nothing.
        Index(None, "order_id", postgresql_where=ORDER_WHERE, sqlite_where=ORDER_WHERE),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(16))
    event: Mapped[str | None] = mapped_column(String(200), default=None)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"))
    # The most specific identifier the event carried: an unmerge re-points events by it.
    identifier_id: Mapped[int] = mapped_column(ForeignKey("identifiers.id"))
    user_id: Mapped[str | None] = mapped_column(String(255), default=None)
    anonymous_id: Mapped[str | None] = mapped_column(String(255), default=None)
    timestamp: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    source_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), default=None)
    # Order value in fen (0.01 CNY) for Order Completed and Order Refunded, else 0.
    amount_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # properties.order_id of Order Completed and Order Refunded: what a refund is checked against.
    order_id: Mapped[str | None] = mapped_column(String(100), default=None)
    properties: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    traits: Mapped[dict[str, Any] | None] = mapped_column(JSONType, default=None)


class DeadLetter(Base):
    """An event refused at ingestion, kept with the reason so nothing sent is ever lost."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    source_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), default=None)
    batch_index: Mapped[int] = mapped_column(Integer, default=0)
    message_id: Mapped[str | None] = mapped_column(String(255), default=None)
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)


class QueueStatus(enum.StrEnum):
    pending = "pending"
    failed = "failed"


class QueuedBatch(Base):
    """A validated batch accepted by the API and waiting for identity resolution and storage.

    The API answers once the batch is here (one small write), so senders never wait for the identity
    graph; the ingest processor drains the queue in order. A batch that keeps failing is parked as
    failed with its error, never dropped.
    """

    __tablename__ = "ingest_queue"
    __table_args__ = (Index(None, "status", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    source_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"), default=None)
    # The accepted events as sent (a JSON array) and the batch's shared context: the processor
    # normalises them again, the same way, with the same received_at.
    events: Mapped[str] = mapped_column(Text)
    batch_context: Mapped[str | None] = mapped_column(Text, default=None)
    event_count: Mapped[int] = mapped_column(Integer)
    status: Mapped[QueueStatus] = mapped_column(EnumText(QueueStatus, 16), default=QueueStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
