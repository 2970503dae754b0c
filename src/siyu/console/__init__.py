"""The web console: server-rendered Jinja2 + HTMX pages, ECharts for charts."""

from __future__ import annotations

from fastapi import FastAPI

from siyu.console.channels import router as channels_router
from siyu.console.journeys import router as journeys_router
from siyu.console.loyalty import router as loyalty_router
from siyu.console.org import router as org_router
from siyu.console.routes import install_error_pages, router, static_files
from siyu.console.segments import router as segments_router
from siyu.console.staff import router as staff_router
from siyu.console.work import router as work_router


def mount(app: FastAPI) -> None:
    """Add the console's pages, static files and error pages to app."""
    app.mount("/static", static_files(), name="static")
    install_error_pages(app)
    app.include_router(router)
    app.include_router(channels_router)
    app.include_router(loyalty_router)
    app.include_router(segments_router)
    app.include_router(journeys_router)
    app.include_router(org_router)
    app.include_router(work_router)
    app.include_router(staff_router)
