"""API shapes of lifecycle stages and the value model."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from siyu.lifecycle import predictive
from siyu.schemas import Input

if TYPE_CHECKING:
    from siyu.lifecycle.service import Fit


class FlowOut(BaseModel):
    from_stage: str
    to_stage: str
    customers: int


class StagesOut(BaseModel):
    counts: dict[str, int] = Field(description="Live customers per stage, every stage listed in order")
    flows: list[FlowOut] = Field(description="Moves between stages in the period, largest first")
    since: dt.datetime


class FitIn(Input):
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
    mean_dropout: float = Field(description="a/(a+b): the mean chance a purchase is a customer's last")
    mean_spend_fen: float | None = Field(description="p·v/(q-1): the mean spend per purchase, in fen")
    notes: list[str] = Field(description="What the parameters mean where they look odd (boundary estimates)")
    holdout: HoldoutOut | None

    @classmethod
    def of(cls, result: Fit) -> FitOut:
        """The API (and `siyu lifecycle fit --json`) shape of a fit."""
        bg, gg, h = result.bgnbd, result.gamma_gamma, result.holdout
        holdout = None
        if h is not None:
            rows = [
                HoldoutRow(repeat_purchases=g, customers=n, predicted_mean=p, actual_mean=a)
                for g, n, p, a in h.by_frequency
            ]
            holdout = HoldoutOut(
                period=h.period,
                customers=h.customers,
                predicted=h.predicted,
                actual=h.actual,
                by_frequency=rows,
            )
        return cls(
            model_id=result.model_id,
            customers=result.customers,
            time_unit=result.time_unit,
            observed_until=result.observed_until,
            r=bg.r,
            alpha=bg.alpha,
            a=bg.a,
            b=bg.b,
            log_likelihood=bg.log_likelihood,
            p=gg.p if gg else None,
            q=gg.q if gg else None,
            v=gg.v if gg else None,
            gamma_gamma_error=result.gamma_gamma_error,
            mean_dropout=predictive.mean_dropout(bg),
            mean_spend_fen=predictive.mean_spend(gg) if gg else None,
            notes=predictive.interpret(bg, gg),
            holdout=holdout,
        )
