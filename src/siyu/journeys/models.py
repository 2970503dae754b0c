"""Journeys: definitions with their published versions, the customers in them and every step they took."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK, EnumText, JSONType, UTCDateTime, utcnow


class JourneyStatus(enum.StrEnum):
    draft = "draft"  # never published
    active = "active"  # enrols and runs
    paused = "paused"  # enrols no one; in-flight customers wait where they are
    archived = "archived"


class Journey(Base):
    """A journey: the draft being edited and the version customers run (`current_version_id`)."""

    __tablename__ = "journeys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[JourneyStatus] = mapped_column(EnumText(JourneyStatus, 16), default=JourneyStatus.draft)
    draft: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("journey_versions.id", use_alter=True), default=None
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(120), default="")


class JourneyVersion(Base):
    """A published definition; never edited, so in-flight customers always know the graph they are in."""

    __tablename__ = "journey_versions"
    __table_args__ = (UniqueConstraint("journey_id", "number"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    journey_id: Mapped[int] = mapped_column(ForeignKey("journeys.id"))
    number: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_by: Mapped[str] = mapped_column(String(120), default="")
    # What happened to customers in flight on the previous version: "keep" or "migrate", with counts.
    migration: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


class TriggerKind(enum.StrEnum):
    entry = "entry"
    goal = "goal"
    wait = "wait"


class JourneyTrigger(Base):
    """An event name a running version listens for: the ingest reactor's index of what to look at."""

    __tablename__ = "journey_triggers"
    __table_args__ = (Index(None, "event"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    journey_id: Mapped[int] = mapped_column(ForeignKey("journeys.id"), index=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("journey_versions.id"))
    kind: Mapped[TriggerKind] = mapped_column(EnumText(TriggerKind, 8))
    event: Mapped[str] = mapped_column(String(200))
    node: Mapped[str | None] = mapped_column(String(64), default=None)


class EnrolmentStatus(enum.StrEnum):
    active = "active"  # due at `due_at`, or waiting for `wait_event` until then
    completed = "completed"  # reached an exit
    converted = "converted"  # met a goal
    removed = "removed"  # taken out by an operator


PATH_LIMIT = 100
# "status = 'active'" written as a literal, so the planner can use the partial indexes below even with
# a prepared statement's generic plan (a bound parameter would hide that the predicate holds).
ACTIVE = "journey_enrolments.status = 'active'"


class Enrolment(Base):
    """One customer's pass through a journey: where they are and when they are next due.

    `active_key` is the profile id while the enrolment is active and NULL after: the unique key on it
    keeps one active enrolment per customer and journey, whatever the re-entry policy and however many
    workers enrol at once. `entry_key` names the entry (the trigger's message id, "once" when the journey
    is never re-entered), so a replayed trigger enrols no one twice.
    """

    __tablename__ = "journey_enrolments"
    __table_args__ = (
        # Partial: an ended enrolment (active_key NULL) has no entry to write, so ending a broadcast's million
        # updates one index fewer per customer.
        Index(
            "ix_journey_enrolments_active_key",
            "journey_id",
            "active_key",
            unique=True,
            postgresql_where=text("active_key IS NOT NULL"),
            sqlite_where=text("active_key IS NOT NULL"),
        ),
        UniqueConstraint("journey_id", "profile_id", "entry_key"),
        # Only active enrolments are claimed or woken: ended ones leave these indexes (partial indexes).
        Index(
            "ix_journey_enrolments_due",
            "due_at",
            "id",
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        Index(
            "ix_journey_enrolments_active_profile",
            "profile_id",
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # No foreign keys: each would lock its parent row (FOR KEY SHARE, a write to the customer's row) once
    # per enrolment, and a broadcast writes a million (decision 0011). Journeys, versions and profiles
    # are never deleted (archived, merged).
    journey_id: Mapped[int] = mapped_column(BigIntPK)
    version_id: Mapped[int] = mapped_column(BigIntPK)
    profile_id: Mapped[int] = mapped_column(BigIntPK)
    node: Mapped[str] = mapped_column(String(64))
    status: Mapped[EnrolmentStatus] = mapped_column(EnumText(EnrolmentStatus, 16))
    due_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    wait_event: Mapped[str | None] = mapped_column(String(200), default=None)
    # The awaited event came (True) rather than its timeout.
    woken: Mapped[bool] = mapped_column(default=False)
    variant: Mapped[str | None] = mapped_column(String(40), default=None)
    steps: Mapped[int] = mapped_column(Integer, default=0)
    entry_key: Mapped[str] = mapped_column(String(255))
    active_key: Mapped[int | None] = mapped_column(BigInteger, default=None)
    context: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # The nodes passed, newest last: [node, outcome, ISO time] (the last PATH_LIMIT of them).
    path: Mapped[list[list[str]]] = mapped_column(JSONType, default=list)
    entered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    end_reason: Mapped[str | None] = mapped_column(String(80), default=None)


class NodeCount(Base):
    """How many customers left a node with an outcome (sent, suppressed:cap:…, yes, variant B, goal:…).

    One row per version, node and outcome, added to once per engine batch: a broadcast to a million
    customers writes a handful of rows here, not millions (decision 0011). Each customer's own path is on
    the enrolment (`Enrolment.path`).
    """

    __tablename__ = "journey_node_counts"
    __table_args__ = (UniqueConstraint("version_id", "node", "outcome"), Index(None, "journey_id"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    journey_id: Mapped[int] = mapped_column(ForeignKey("journeys.id"))
    version_id: Mapped[int] = mapped_column(ForeignKey("journey_versions.id"))
    node: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(80))
    n: Mapped[int] = mapped_column(BigInteger, default=0)
