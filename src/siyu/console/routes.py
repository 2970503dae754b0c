"""Console pages."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)


def static_files() -> StaticFiles:
    """The console's static files (vendored htmx and ECharts keep their licence files)."""
    STATIC_DIR.mkdir(exist_ok=True)
    return StaticFiles(directory=STATIC_DIR)


@router.get("/")
def index() -> RedirectResponse:
    return RedirectResponse("/docs")
