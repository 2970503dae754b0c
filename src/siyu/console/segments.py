"""Console pages of segments (define with a live count while typing, inspect, export) and lifecycle stages."""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy import select

from siyu.auth.principal import NAME_MASKED_ROLES
from siyu.console.rendering import render
from siyu.console.routes import see_other
from siyu.console.security import (
    OperationsDep,
    OperationsWriterDep,
    PageError,
    ReadSession,
    WriteSession,
    flash,
)
from siyu.db import utcnow
from siyu.errors import Conflict
from siyu.lifecycle import predictive
from siyu.lifecycle import service as lifecycle
from siyu.lifecycle.models import Stage
from siyu.profiles.masking import mask_name
from siyu.profiles.models import Profile
from siyu.segments import rules
from siyu.segments import service as segments

router = APIRouter(include_in_schema=False)

EXAMPLE_RULE: dict[str, Any] = {
    "all": [
        {"stage": "Window"},
        {"event": "Official Account Followed", "occurrence": "first", "within_days": 30},
        {
            "event": "Product Viewed",
            "where": [{"property": "category", "op": "eq", "value": "qipao"}],
            "count": {"gte": 2},
        },
        {"region": "EAST"},
    ]
}


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise rules.RuleError("$", f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None


def _names(session: ReadSession, ids: list[int], viewer: OperationsDep) -> list[tuple[int, str]]:
    if not ids:
        return []
    found = dict(session.execute(select(Profile.id, Profile.name).where(Profile.id.in_(ids))).all())
    masked = viewer.role in NAME_MASKED_ROLES
    out = []
    for i in ids:
        name = found.get(i)
        out.append((i, (mask_name(name) if masked else name) if name else "Anonymous"))
    return out


@router.get("/segments", response_class=HTMLResponse)
def segments_page(request: Request, session: ReadSession, viewer: OperationsDep) -> Response:
    """Every segment with its size and state, and the form to define a new one."""
    context = {
        "segments": segments.list_(session),
        "example": json.dumps(EXAMPLE_RULE, indent=2, ensure_ascii=False),
    }
    return render(request, "segments.html", context)


@router.post("/segments/preview", response_class=HTMLResponse)
def preview(
    request: Request, session: WriteSession, viewer: OperationsWriterDep, rule: Annotated[str, Form()] = ""
) -> Response:
    """The live count while the rule is typed (htmx): size and a sample, or where the rule is wrong."""
    context: dict[str, Any] = {}
    try:
        result = segments.preview(session, _parse_json(rule), sample=8)
        context["preview"] = result
        context["sample"] = _names(session, result.sample, viewer)
    except rules.RuleError as exc:
        context["error"] = exc
    session.rollback()  # a preview changes nothing
    return render(request, "_segment_preview.html", context)


@router.post("/segments")
def create(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    name: Annotated[str, Form()],
    rule: Annotated[str, Form()],
    description: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Save and compute the segment, then show it."""
    try:
        segment = segments.create(
            session, name=name, rule=_parse_json(rule), description=description, actor=viewer.principal.actor
        )
    except rules.RuleError as exc:
        raise PageError(422, f"The rule is not valid at {exc.path}: {exc.problem}") from None
    except Conflict as exc:
        raise PageError(409, exc.message) from None
    flash(request, f"Segment “{segment.name}” saved: {segment.size:,} customer(s).")
    return see_other(f"/segments/{segment.id}")


@router.get("/segments/{segment_id:int}", response_class=HTMLResponse)
def segment_page(request: Request, session: ReadSession, viewer: OperationsDep, segment_id: int) -> Response:
    """A segment: its rule, state, size over time and a first page of members."""
    segment = segments.get(session, segment_id)
    if segment is None:
        raise PageError(404, f"No segment #{segment_id}.")
    history = segments.history(session, segment)
    chart = {
        "labels": [h.at.isoformat() for h in history],
        "sizes": [h.size for h in history],
        "entered": [h.entered for h in history],
        "exited": [-h.exited for h in history],
    }
    context = {
        "segment": segment,
        "rule": json.dumps(segment.rule, indent=2, ensure_ascii=False),
        "chart": chart,
        "members": _names(session, list(segments.members(session, segment, limit=50)), viewer),
    }
    return render(request, "segment.html", context)


@router.post("/segments/{segment_id:int}/edit")
def edit(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    segment_id: int,
    name: Annotated[str, Form()],
    rule: Annotated[str, Form()],
    description: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Save a changed rule (a new version: members recomputed, entries and exits announced) or name."""
    segment = segments.get(session, segment_id)
    if segment is None:
        raise PageError(404, f"No segment #{segment_id}.")
    before = segment.version
    try:
        segments.update(session, segment, rule=_parse_json(rule), name=name, description=description)
    except rules.RuleError as exc:
        raise PageError(422, f"The rule is not valid at {exc.path}: {exc.problem}") from None
    except Conflict as exc:
        raise PageError(409, exc.message) from None
    if segment.version != before:
        flash(request, f"Version {segment.version} saved: {segment.size:,} customer(s).")
    else:
        flash(request, "Saved.")
    return see_other(f"/segments/{segment.id}")


@router.post("/segments/{segment_id:int}/delete")
def delete(
    request: Request, session: WriteSession, viewer: OperationsWriterDep, segment_id: int
) -> RedirectResponse:
    """Delete the segment (its members get no exit event)."""
    segment = segments.get(session, segment_id)
    if segment is None:
        raise PageError(404, f"No segment #{segment_id}.")
    name = segment.name
    segments.delete_(session, segment)
    flash(request, f"Segment “{name}” deleted.")
    return see_other("/segments")


@router.post("/segments/{segment_id:int}/refresh")
def refresh(
    request: Request, session: WriteSession, viewer: OperationsWriterDep, segment_id: int
) -> RedirectResponse:
    """Recompute everyone's membership now; a failure is shown on the page, never hidden."""
    segment = segments.get(session, segment_id)
    if segment is None:
        raise PageError(404, f"No segment #{segment_id}.")
    change = segments.refresh(session, segment, kind="full")
    if change is None:
        flash(request, f"The computation failed: {segment.error}", kind="error")
    else:
        flash(
            request,
            f"Recomputed: {change.size:,} customer(s), {change.entered} entered, {change.exited} left.",
        )
    return see_other(f"/segments/{segment.id}")


@router.get("/segments/{segment_id:int}/export.csv")
def export(session: ReadSession, viewer: OperationsDep, segment_id: int) -> StreamingResponse:
    """The members as CSV (profile ids; names stay in siyu)."""
    segment = segments.get(session, segment_id)
    if segment is None:
        raise PageError(404, f"No segment #{segment_id}.")
    return StreamingResponse(
        segments.stream_csv(segment.id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="segment-{segment.id}.csv"'},
    )


@router.get("/lifecycle", response_class=HTMLResponse)
def lifecycle_page(request: Request, session: ReadSession, viewer: OperationsDep) -> Response:
    """Customers per stage now, the moves between stages each week, and the value model in use."""
    now = utcnow()
    counts = lifecycle.counts(session)
    weekly = lifecycle.weekly(session, weeks=12, now=now)
    chart = {
        "stages": [s.value for s in Stage],
        "counts": [counts[s.value] for s in Stage],
        "weeks": [w["week_start"] for w in weekly],
        "entered": {s.value: [w[s.value] for w in weekly] for s in Stage},
        "trend": lifecycle.trend(session, days=90, now=now),
        "flows": [
            {"source": f"{a} ·", "target": f"· {b}", "value": n}
            for a, b, n in lifecycle.flows(session, since=now - dt.timedelta(days=30), until=now)
        ],
    }
    context = {
        "counts": counts,
        "total": sum(counts.values()),
        "chart": chart,
        "flows_week": lifecycle.flows(session, since=now - dt.timedelta(days=7), until=now),
        "flows_month": lifecycle.flows(session, since=now - dt.timedelta(days=30), until=now),
        "model": lifecycle.latest_model(session),
    }
    return render(request, "lifecycle.html", context)


@router.post("/lifecycle/fit")
def refit(request: Request, session: WriteSession, viewer: OperationsWriterDep) -> RedirectResponse:
    """Fit the value model on all purchases now and re-stage everyone with it."""
    try:
        result = lifecycle.fit(session)
    except predictive.FitError as exc:
        flash(request, f"The model could not be fitted: {exc}", kind="error")
        return see_other("/lifecycle")
    run = lifecycle.restage(session)
    flash(request, f"Fitted on {result.customers:,} buyers; {run.changed:,} customer(s) changed stage.")
    return see_other("/lifecycle#model-h")
