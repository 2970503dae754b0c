"""Console test helpers: logging in through the form, sending events, and a live server for the browser."""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from siyu import db, migrate
from siyu.app import create_app
from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.config import Settings
from siyu.ingest import processor

PASSWORD = "correct horse 1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a console page embeds in its forms."""
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client: TestClient, username: str, password: str = PASSWORD) -> str:
    """Log in through the form; returns the session's CSRF token for later POSTs."""
    token = csrf_of(client.get("/login").text)
    r = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return csrf_of(client.get("/customers").text)


def send(client: Any, write_key: str, *events: dict[str, Any], expect: int = 200) -> dict[str, Any]:
    """POST events to /v1/batch with the write key as HTTP Basic username, then run the ingest processor."""
    r = client.post("/v1/batch", json={"batch": list(events)}, auth=(write_key, ""))
    assert r.status_code == expect, r.text
    body: dict[str, Any] = r.json()
    processor.drain()
    return body


def event(kind: str = "track", **fields: Any) -> dict[str, Any]:
    """A Segment-spec event with a fresh messageId."""
    base: dict[str, Any] = {"type": kind, "messageId": str(uuid.uuid4())}
    if kind == "track":
        base["event"] = "Product Viewed"
    base.update(fields)
    return base


# --- the live server of the browser tests ------------------------------------------------------


@dataclass(frozen=True)
class LiveServer:
    """A uvicorn server on its own migrated SQLite database, with an admin and a write key."""

    url: str
    admin: str
    password: str
    write_key: str


def chromium_or_skip() -> str:
    """Debian's Chromium, or skip (fail under CI): a test tool must never download a browser."""
    if shutil.which(CHROMIUM) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is required in CI (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    return CHROMIUM


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """create_app() served on a free 127.0.0.1 port over a fresh SQLite file; db state restored after."""
    chromium_or_skip()
    path: Path = tmp_path_factory.mktemp("live") / "siyu.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    engine = db.create_db_engine(url)
    db.set_engine(engine)
    with db.unit_of_work() as session:
        admin = auth_service.create_user(
            session, username="zhang.wei", password=PASSWORD, role=Role.admin, display_name="张伟 Zhang Wei"
        )
        _, write_key = auth_service.create_api_key(session, name="Mini Program", role=Role.source)
        username = admin.username
    # Settings given outright: the per-test settings fixture must not change the app under the server.
    app = create_app(Settings(database_url=url, secret_key="live-" + uuid.uuid4().hex))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)
        yield LiveServer(base, username, PASSWORD, write_key)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        db.set_engine(None)
        engine.dispose()


@pytest.fixture(scope="module")
def live_client(live_server: LiveServer) -> Iterator[httpx.Client]:
    """An HTTP client of the live server (for sending events)."""
    with httpx.Client(base_url=live_server.url, timeout=30) as client:
        yield client
