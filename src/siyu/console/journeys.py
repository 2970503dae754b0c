"""Console pages of journeys (the graph with its numbers, the draft with its problems, publishing) and
of messages (templates with a preview, the brand's caps, what was sent or suppressed and why)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from siyu.channels.models import ChannelAccount
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
from siyu.errors import SiyuError
from siyu.journeys import definition as language
from siyu.journeys import library
from siyu.journeys import service as journeys
from siyu.journeys.models import Journey, JourneyStatus
from siyu.messaging import render as templating
from siyu.messaging import service as messaging
from siyu.messaging.models import CapPeriod, Channel, Purpose
from siyu.segments import service as segments

router = APIRouter(include_in_schema=False)

EXAMPLE: dict[str, Any] = {
    "entry": {"type": "event", "event": "Official Account Followed"},
    "reentry": "never",
    "goals": [{"event": "Order Completed"}],
    "start": "welcome",
    "nodes": {
        "welcome": {"type": "send", "template": "Welcome", "next": "wait"},
        "wait": {"type": "wait", "duration": "1d", "next": "done"},
        "done": {"type": "exit"},
    },
}


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PageError(
            422, f"The definition is not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
        ) from None


def _journey(session: ReadSession | WriteSession, journey_id: int) -> Journey:
    journey = session.get(Journey, journey_id)
    if journey is None:
        raise PageError(404, f"No journey #{journey_id}.")
    return journey


def graph(definition: language.Definition, stats: dict[str, Any]) -> dict[str, Any]:
    """Nodes laid out by depth from the start (left to right) with their numbers, and the branches."""
    depth: dict[str, int] = {definition.start: 0}
    queue = [definition.start]
    while queue:
        current = queue.pop(0)
        for target in definition.nodes[current].branches.values():
            if target in definition.nodes and target not in depth:
                depth[target] = depth[current] + 1
                queue.append(target)
    # Exits stand in the last column, whatever path reaches them first: the graph reads left to right.
    inner = [d for n, d in depth.items() if definition.nodes[n].type != "exit"]
    for n in depth:
        if definition.nodes[n].type == "exit":
            depth[n] = max(inner, default=0) + 1
    rows: dict[int, int] = {}
    nodes = []
    last = max(depth.values(), default=0) + 1
    # By depth, then id: the same picture whatever order the stored JSON keeps (PostgreSQL's JSONB sorts).
    for node_id, node in sorted(definition.nodes.items(), key=lambda kv: (depth.get(kv[0], last), kv[0])):
        d = depth.get(node_id, last)
        row = rows.get(d, 0)
        rows[d] = row + 1
        numbers = stats["nodes"].get(node_id, {})
        sent = sum(v for k, v in numbers.get("messages", {}).items() if k in ("sent", "delivered", "created"))
        lines = [f"{node.type}: {node.params.get('label', node_id)}", f"passed {numbers.get('passed', 0):,}"]
        if numbers.get("waiting"):
            lines.append(f"waiting {numbers['waiting']:,}")
        if node.type == "send":
            suppressed = sum(numbers.get("suppressed", {}).values())
            lines.append(f"sent {sent:,} · suppressed {suppressed:,}")
        if numbers.get("goal"):
            lines.append(f"goal {numbers['goal']:,}")
        nodes.append(
            {"name": node_id, "x": d * 220, "y": row * 110, "label": "\n".join(lines), "type": node.type}
        )
    links = [
        {"source": n.id, "target": t, "label": label if label not in ("next",) else ""}
        for n in definition.nodes.values()
        for label, t in n.branches.items()
        if t in definition.nodes
    ]
    return {"nodes": nodes, "links": links}


@router.get("/journeys", response_class=HTMLResponse)
def journeys_page(request: Request, session: ReadSession, viewer: OperationsDep) -> Response:
    """Every journey with its numbers, the library of ready-made ones, and a form for a new one."""
    every = journeys.list_(session)
    numbers = journeys.totals(session, [j.id for j in every])
    rows = [{"journey": j, "stats": numbers[j.id]} for j in every]
    context = {
        "rows": rows,
        "library": library.entries(),
        "accounts": session.execute(select(ChannelAccount).order_by(ChannelAccount.name)).scalars().all(),
        "segments": segments.list_(session),
        "example": json.dumps(EXAMPLE, indent=2, ensure_ascii=False),
    }
    return render(request, "journeys.html", context)


@router.post("/journeys/check", response_class=HTMLResponse)
def check(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    definition: Annotated[str, Form()] = "",
) -> Response:
    """The problems of a definition while it is typed (htmx)."""
    try:
        problems = journeys.problems(session, json.loads(definition))
        error = None
    except json.JSONDecodeError as exc:
        problems, error = [], f"not JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}"
    session.rollback()
    return render(request, "_journey_problems.html", {"problems": problems, "error": error})


@router.post("/journeys")
def create(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    name: Annotated[str, Form()],
    definition: Annotated[str, Form()],
    description: Annotated[str, Form()] = "",
) -> RedirectResponse:
    try:
        journey = journeys.create(
            session,
            name=name,
            definition=_json(definition),
            description=description,
            actor=viewer.principal.actor,
        )
    except SiyuError as exc:
        raise PageError(exc.status_code, exc.message) from None
    flash(request, f"Journey “{journey.name}” saved as a draft.")
    return see_other(f"/journeys/{journey.id}")


@router.post("/journeys/library/{key}")
def from_library(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    key: str,
    oa: Annotated[str, Form()] = "",
    wecom: Annotated[str, Form()] = "",
    segment_id: Annotated[str, Form()] = "",
) -> RedirectResponse:
    accounts = {k: int(v) for k, v in (("oa", oa), ("wecom", wecom)) if v}
    body = library.InstantiateIn(accounts=accounts, segment_id=int(segment_id) if segment_id else None)
    try:
        journey = library.instantiate(session, key, body, actor=viewer.principal.actor)
    except SiyuError as exc:
        raise PageError(exc.status_code, exc.message) from None
    flash(request, f"“{journey.name}” created as a draft: check it, then publish.")
    return see_other(f"/journeys/{journey.id}")


@router.get("/journeys/{journey_id:int}", response_class=HTMLResponse)
def journey_page(request: Request, session: ReadSession, viewer: OperationsDep, journey_id: int) -> Response:
    """A journey: its graph with the numbers of each node, A/B results, the draft, versions, messages."""
    journey = _journey(session, journey_id)
    stats = journeys.stats(session, journey)
    running = journeys.current_definition(session, journey)
    shown = running or language.parse(journey.draft)
    chart = graph(shown, stats) if shown.start in shown.nodes else None
    order = [n["name"] for n in chart["nodes"]] if chart else list(shown.nodes)
    context = {
        "journey": journey,
        "stats": stats,
        "chart": chart,
        "nodes": [(shown.nodes[i], stats["nodes"].get(i, {})) for i in order],
        "draft": json.dumps(journey.draft, indent=2, ensure_ascii=False),
        "problems": journeys.problems(session, journey.draft),
        "versions": journeys.versions(session, journey.id),
        "messages": messaging.list_messages(session, journey_id=journey.id, limit=20),
        "changed": running is not None
        and journey.draft != journeys.versions(session, journey.id)[-1].definition,
    }
    return render(request, "journey.html", context)


@router.post("/journeys/{journey_id:int}/draft")
def save_draft(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    journey_id: int,
    definition: Annotated[str, Form()],
) -> RedirectResponse:
    journey = _journey(session, journey_id)
    try:
        journeys.update_draft(session, journey, definition=_json(definition))
    except SiyuError as exc:
        raise PageError(exc.status_code, exc.message) from None
    flash(request, "Draft saved. Customers follow it once it is published.")
    return see_other(f"/journeys/{journey.id}")


@router.post("/journeys/{journey_id:int}/publish")
def publish(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    journey_id: int,
    in_flight: Annotated[str, Form()] = "keep",
) -> RedirectResponse:
    journey = _journey(session, journey_id)
    try:
        done = journeys.publish(
            session,
            journey,
            in_flight="migrate" if in_flight == "migrate" else "keep",
            actor=viewer.principal.actor,
        )
    except language.DefinitionError as exc:
        raise PageError(422, f"Not published: {exc.message}") from None
    except SiyuError as exc:
        raise PageError(exc.status_code, exc.message) from None
    parts = [f"Version {done.version.number} published"]
    if done.migrated or done.kept:
        parts.append(f"{done.migrated:,} in flight moved to it, {done.kept:,} kept on their version")
    if done.enrolled:
        parts.append(f"{done.enrolled:,} segment members enrolled")
    flash(request, "; ".join(parts) + ".")
    return see_other(f"/journeys/{journey.id}")


@router.post("/journeys/{journey_id:int}/status")
def set_status(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    journey_id: int,
    status: Annotated[str, Form()],
) -> RedirectResponse:
    journey = _journey(session, journey_id)
    try:
        journeys.set_status(session, journey, JourneyStatus(status))
    except (SiyuError, ValueError) as exc:
        raise PageError(409, str(exc)) from None
    flash(request, f"Journey {journey.status}.")
    return see_other(f"/journeys/{journey.id}")


@router.get("/messages", response_class=HTMLResponse)
def messages_page(request: Request, session: ReadSession, viewer: OperationsDep) -> Response:
    """Templates, the brand's caps, and the latest messages with what became of them."""
    context = {
        "templates": messaging.list_templates(session),
        "caps": messaging.list_caps(session),
        "messages": messaging.list_messages(session, limit=50),
        "accounts": session.execute(select(ChannelAccount).order_by(ChannelAccount.name)).scalars().all(),
        "channels": list(Channel),
        "periods": list(CapPeriod),
        "names": templating.CONTEXT_KEYS,
    }
    return render(request, "messages.html", context)


@router.post("/messages/templates")
def create_template(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    name: Annotated[str, Form()],
    channel: Annotated[str, Form()],
    body: Annotated[str, Form()],
    purpose: Annotated[str, Form()] = "marketing",
    account_id: Annotated[str, Form()] = "",
    external_template_id: Annotated[str, Form()] = "",
) -> RedirectResponse:
    try:
        messaging.create_template(
            session,
            name=name,
            channel=Channel(channel),
            purpose=Purpose(purpose),
            account_id=int(account_id) if account_id else None,
            external_template_id=external_template_id or None,
            body=_json(body),
            actor=viewer.principal.actor,
        )
    except SiyuError as exc:
        raise PageError(exc.status_code, exc.message) from None
    flash(request, f"Template “{name}” saved.")
    return see_other("/messages")


@router.post("/messages/caps")
def create_cap(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    period: Annotated[str, Form()],
    limit: Annotated[int, Form()],
    channel: Annotated[str, Form()] = "",
) -> RedirectResponse:
    try:
        messaging.create_cap(
            session, channel=Channel(channel) if channel else None, period=CapPeriod(period), limit=limit
        )
    except SiyuError as exc:
        raise PageError(exc.status_code, exc.message) from None
    flash(request, "Cap added: it counts marketing messages queued from now on.")
    return see_other("/messages")
