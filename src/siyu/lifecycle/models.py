"""Each customer's lifecycle stage and scores, the history of stage changes, and the fitted value models."""

from __future__ import annotations

import datetime as dt
import enum

from sqlalchemy import Date, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from siyu.db import Base, BigIntPK, EnumText, UTCDateTime, utcnow


class Stage(enum.StrEnum):
    """The seven stages of domain.md §3, in order."""

    anonymous = "Anonymous"
    window = "Window"
    first_time = "First-Time"
    repeat = "Repeat"
    loyal = "Loyal"
    indecisive = "Indecisive"
    lapsed = "Lapsed"


class LifecycleState(Base):
    """One customer's current stage, the figures it was decided on, and their RFM and predicted value.

    Rewritten by the ingest reactor for the profiles a batch touched and by the scheduled job for all.
    """

    __tablename__ = "lifecycle_states"
    __table_args__ = (Index(None, "stage"),)

    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"), primary_key=True)
    stage: Mapped[Stage] = mapped_column(EnumText(Stage, 16))
    since: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(200))
    # Purchases are counted as distinct purchase days (the BG/NBD convention).
    purchase_days: Mapped[int] = mapped_column(Integer, default=0)
    purchase_days_365: Mapped[int] = mapped_column(Integer, default=0)
    first_purchase_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    last_purchase_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime, default=None)
    median_gap_days: Mapped[float | None] = mapped_column(Float, default=None)
    intent_actions_30d: Mapped[int] = mapped_column(Integer, default=0)
    recency_score: Mapped[int | None] = mapped_column(Integer, default=None)
    frequency_score: Mapped[int | None] = mapped_column(Integer, default=None)
    monetary_score: Mapped[int | None] = mapped_column(Integer, default=None)
    p_alive: Mapped[float | None] = mapped_column(Float, default=None)
    expected_purchases: Mapped[float | None] = mapped_column(Float, default=None)
    expected_order_value_fen: Mapped[float | None] = mapped_column(Float, default=None)
    clv_fen: Mapped[float | None] = mapped_column(Float, default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class LifecycleChange(Base):
    """A change of stage: when, from what, to what, and why (also written to the timeline)."""

    __tablename__ = "lifecycle_changes"
    __table_args__ = (Index(None, "at"), Index(None, "profile_id", "at"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id"))
    from_stage: Mapped[Stage | None] = mapped_column(EnumText(Stage, 16), default=None)
    to_stage: Mapped[Stage] = mapped_column(EnumText(Stage, 16))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(String(200))


class ValueModel(Base):
    """A BG/NBD + Gamma-Gamma fit on the brand's purchases; the newest is the one customers are scored with."""

    __tablename__ = "lifecycle_models"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    fitted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    time_unit: Mapped[str] = mapped_column(String(8))
    observed_until: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    customers: Mapped[int] = mapped_column(Integer)
    r: Mapped[float] = mapped_column(Float)
    alpha: Mapped[float] = mapped_column(Float)
    a: Mapped[float] = mapped_column(Float)
    b: Mapped[float] = mapped_column(Float)
    log_likelihood: Mapped[float] = mapped_column(Float)
    # Gamma-Gamma: absent when too few customers bought twice to fit it.
    p: Mapped[float | None] = mapped_column(Float, default=None)
    q: Mapped[float | None] = mapped_column(Float, default=None)
    v: Mapped[float | None] = mapped_column(Float, default=None)


class StageCount(Base):
    """How many customers were in each stage on a day (the last full staging of that day): the trend chart."""

    __tablename__ = "lifecycle_stage_counts"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    stage: Mapped[Stage] = mapped_column(EnumText(Stage, 16), primary_key=True)
    customers: Mapped[int] = mapped_column(Integer)
