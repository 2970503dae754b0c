"""API shapes of lifecycle stages and the value model."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class FlowOut(BaseModel):
    from_stage: str
    to_stage: str
    customers: int


class StagesOut(BaseModel):
    counts: dict[str, int] = Field(description="Live customers per stage, every stage listed in order")
    flows: list[FlowOut] = Field(description="Moves between stages in the period, largest first")
    since: dt.datetime


class FitIn(BaseModel):
    calibration_end: dt.date | None = Field(
        default=None, description="Fit up to this day (brand time zone) and compare with what came after"
    )
    time_unit: str = Field(default="week", pattern="^(day|week)$")
    penalizer: float = Field(default=0.001, ge=0)


class HoldoutRow(BaseModel):
    repeat_purchases: int = Field(description="In calibration; 7 means 7 or more")
    customers: int
    predicted_mean: float
    actual_mean: float


class HoldoutOut(BaseModel):
    period: float
    customers: int
    predicted: float
    actual: int
    by_frequency: list[HoldoutRow]


class FitOut(BaseModel):
    model_id: int | None = Field(
        description="The saved model (customers are scored with it); null for a holdout fit"
    )
    customers: int
    time_unit: str
    observed_until: dt.datetime
    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    p: float | None
    q: float | None
    v: float | None
    gamma_gamma_error: str | None
    holdout: HoldoutOut | None
