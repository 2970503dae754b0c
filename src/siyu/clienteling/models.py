"""The brand's organisation (regions, stores; sales associates are users) and the alerts they act on."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK, JSONType, UTCDateTime, utcnow


class Region(Base):
    """A sales region, managed by regional managers."""

    __tablename__ = "regions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))


class Store(Base):
    """A physical store with its team of sales associates."""

    __tablename__ = "stores"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    city: Mapped[str] = mapped_column(String(60), default="")
    region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"), index=True)


class Alert(Base):
    """Something a sales associate or manager should act on about one customer (domain.md §6).

    One row per recipient; the source event's messageId makes a replayed event raise nothing twice.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("user_id", "kind", "message_id"),
        Index(None, "user_id", "read_at", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    title: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    message_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)


class Task(Base):
    """Something a sales associate should do for one customer, by a due time (a journey's task node, …).

    `source_key` makes the creating step idempotent: a retried step creates the task once.
    """

    __tablename__ = "tasks"
    __table_args__ = (Index(None, "user_id", "done_at", "due_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), index=True)
    title: Mapped[str] = mapped_column(String(200))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    source: Mapped[str] = mapped_column(String(80))
    source_key: Mapped[str] = mapped_column(String(255), unique=True)
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
