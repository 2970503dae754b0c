"""Templates, their filters and the response headers every console page carries."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from siyu import __version__
from siyu.console.security import Viewer, csrf_token, pop_flashes

TEMPLATES_DIR = Path(__file__).parent / "templates"
# China has kept UTC+8 without daylight saving since 1991, so a fixed offset is exact (and needs no tzdata).
DISPLAY_TZ = dt.timezone(dt.timedelta(hours=8), "CST")
DISPLAY_TZ_LABEL = "China Standard Time (UTC+8)"

# Pages hold personal data: never cached, never framed; scripts only from /static (htmx and ECharts
# need no eval); ECharts' tooltips set inline styles.
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    ),
}


def local_time(value: dt.datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """value in the display time zone, or an em dash when absent."""
    if value is None:
        return "—"
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(DISPLAY_TZ).strftime(fmt)


def iso(value: dt.datetime | None) -> str:
    """value as ISO 8601 in UTC (for <time datetime> and tooltips)."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def cny(fen: int | None) -> str:
    """An amount in fen as yuan: 128050 -> ¥1,280.50."""
    fen = fen or 0
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}¥{yuan:,}.{cents:02d}"


def pretty_json(value: Any) -> str:
    """value as indented JSON, non-ASCII kept readable."""
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True, default=str)


def short(value: Any, limit: int = 80) -> str:
    """A one-line text of at most limit characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def actor_label(actor: str) -> str:
    """`user:3:alice` -> alice, `api_key:7:CRM sync` -> CRM sync (API key), `system` -> system."""
    kind, _, rest = actor.partition(":")
    name = rest.partition(":")[2]
    if kind == "user" and name:
        return name
    if kind == "api_key" and name:
        return f"{name} (API key)"
    return actor


def event_summary(properties: dict[str, Any], limit: int = 4) -> list[tuple[str, str]]:
    """The first few scalar properties of an event, for its one-line summary."""
    items = []
    for key, value in properties.items():
        if isinstance(value, str | int | float | bool) and value != "":
            items.append((key, str(value)))
        if len(items) == limit:
            break
    return items


templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.filters.update(
    local_time=local_time,
    iso=iso,
    cny=cny,
    pretty_json=pretty_json,
    short=short,
    actor=actor_label,
    summary=event_summary,
)
templates.env.globals.update(version=__version__, tz_label=DISPLAY_TZ_LABEL)


def is_htmx(request: Request) -> bool:
    """Whether htmx sent the request (it then wants a fragment, not a page)."""
    return request.headers.get("hx-request") == "true"


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    """The template name rendered with the viewer, its CSRF token and pending messages."""
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    full: dict[str, Any] = {
        "viewer": viewer,
        "csrf_token": csrf_token(request),
        "flashes": [] if is_htmx(request) else pop_flashes(request),
        "nav": request.url.path.strip("/").split("/", 1)[0],
    }
    full.update(context or {})
    return templates.TemplateResponse(
        request, name, full, status_code=status_code, headers={**SECURITY_HEADERS, **(headers or {})}
    )
