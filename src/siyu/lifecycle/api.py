"""Lifecycle API: stage counts and flows, and fitting the value model."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query

from siyu.db import utcnow
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import BadRequest
from siyu.lifecycle import predictive, service
from siyu.lifecycle.schemas import FitIn, FitOut, FlowOut, StagesOut
from siyu.segments.api import require_segments

router = APIRouter(prefix="/api/v1/lifecycle", tags=["lifecycle"])


@router.get("/stages", response_model=StagesOut, summary="Customers per stage and the moves between stages")
def stages(
    principal: ReaderDep, session: SessionDep, days: Annotated[int, Query(ge=1, le=366)] = 7
) -> StagesOut:
    require_segments(principal, "the brand-wide lifecycle report")
    since = utcnow() - dt.timedelta(days=days)
    flows = [
        FlowOut(from_stage=a, to_stage=b, customers=n) for a, b, n in service.flows(session, since=since)
    ]
    return StagesOut(counts=service.counts(session), flows=flows, since=since)


@router.post("/fit", response_model=FitOut, summary="Fit BG/NBD and Gamma-Gamma on the brand's purchases")
def fit(body: FitIn, principal: ReaderDep, session: SessionDep) -> FitOut:
    """Without a calibration end the fit is saved and scores customers from now on; 400 when it cannot fit."""
    require_segments(principal, "the brand-wide lifecycle report")
    end = service.end_of_day(body.calibration_end) if body.calibration_end else None
    try:
        result = service.fit(session, calibration_end=end, time_unit=body.time_unit, penalizer=body.penalizer)
    except predictive.FitError as exc:
        raise BadRequest(str(exc)) from None
    return FitOut.of(result)
