"""The web console: server-rendered Jinja2 + HTMX pages, ECharts for charts."""

from __future__ import annotations

from fastapi import FastAPI

from siyu.console.routes import router, static_files


def mount(app: FastAPI) -> None:
    """Add the console's pages and static files to app."""
    app.mount("/static", static_files(), name="static")
    app.include_router(router)
