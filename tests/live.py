"""A real HTTP server over a fresh database, for clients that need a socket (SDKs, browsers)."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn

from siyu import db, migrate
from siyu.app import create_app
from siyu.config import get_settings

PG_ADMIN_DSN = os.environ.get("SIYU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@contextmanager
def fresh_database(backend: str, tmp: Path) -> Iterator[str]:
    """The URL of a new migrated database of backend, dropped afterwards."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp / f'live-{uuid.uuid4().hex[:6]}.db'}"
        migrate.upgrade(url)
        yield url
        return
    name = f"siyu_live_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
        migrate.upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def require_backend(backend: str) -> None:
    """Skip a PostgreSQL test when no server answers (fail instead in CI, where it is mandatory)."""
    if backend != "postgresql":
        return
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return
    except psycopg.OperationalError:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is not reachable at {PG_ADMIN_DSN}")
        pytest.skip("PostgreSQL not reachable")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def live_server(url: str) -> Iterator[str]:
    """Serve siyu over url's database on a free loopback port; yields the base URL."""
    engine = db.create_db_engine(url)
    db.set_engine(engine)
    port = free_port()
    # As `siyu serve` runs: with the ingest processor storing what the API queues.
    app = create_app(get_settings().model_copy(update={"ingest_processor": True}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        db.set_engine(None)
        engine.dispose()
