"""Test harness: every test runs on SQLite and on PostgreSQL, on a schema built by Alembic.

Each database is created for the session and dropped after it; each test runs inside a transaction
that is rolled back, and the application's own commits become savepoints inside it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from siyu import db, migrate
from siyu.app import create_app
from siyu.channels.fake import FakeState
from siyu.config import get_settings
from tests.channels.fake_server import serve_fake
from tests.channels.wechat import MP_APP_ID, OA_APP_ID, WECOM_CORP_ID

PG_ADMIN_DSN = os.environ.get("SIYU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = [b for b in os.environ.get("SIYU_TEST_BACKENDS", "sqlite,postgresql").split(",") if b]


def _pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


@pytest.fixture(scope="session", params=BACKENDS)
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A migrated database of each backend, dropped at the end of the session."""
    backend: str = request.param
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'siyu.db'}"
        migrate.upgrade(url)
        eng = db.create_db_engine(url)
        yield eng
        eng.dispose()
        return
    if not _pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and is not reachable at {PG_ADMIN_DSN}")
        pytest.skip("PostgreSQL not reachable")
    name = f"siyu_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    try:
        migrate.upgrade(url)
        eng = db.create_db_engine(url, pool_size=2)
        yield eng
        eng.dispose()
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session in a transaction rolled back after the test; the app's units of work share it."""
    connection = engine.connect()
    transaction = connection.begin()
    factory = sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    db.use_sessionmakers(factory, factory)
    s = factory()
    try:
        yield s
    finally:
        s.close()
        transaction.rollback()
        connection.close()
        db.set_engine(None)


@pytest.fixture(autouse=True)
def _settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fresh settings per test; the secret key and ./var go to a temporary folder."""
    monkeypatch.setenv("SIYU_SECRET_KEY", "test-secret-" + uuid.uuid4().hex)
    # Tests drain the ingest queue themselves (tests/helpers.py), on the test's own connection.
    monkeypatch.setenv("SIYU_INGEST_PROCESSOR", "false")
    monkeypatch.setenv("SIYU_IMPORT_DIR", str(tmp_path / "imports"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def client(session: Session) -> Iterator[TestClient]:
    """The application over the test transaction."""
    with TestClient(create_app()) as c:
        yield c


@pytest.fixture(scope="session")
def fake_server() -> Iterator[tuple[str, FakeState]]:
    """The local fake WeChat API over real HTTP, one per test session."""
    with serve_fake() as served:
        yield served


@pytest.fixture
def fake(fake_server: tuple[str, FakeState], monkeypatch: pytest.MonkeyPatch) -> FakeState:
    """The fake, emptied, knowing the test accounts' secrets; siyu's API bases point at it."""
    base, state = fake_server
    state.__init__()  # type: ignore[misc]
    state.register(OA_APP_ID, "oa-app-secret")
    state.register(WECOM_CORP_ID, "wecom-contact-secret")
    state.register(MP_APP_ID, "mp-secret")
    monkeypatch.setenv("SIYU_WECHAT_API_BASE", base)
    monkeypatch.setenv("SIYU_WECOM_API_BASE", base)
    monkeypatch.setenv("SIYU_WECHAT_RETRY_BACKOFF_SECONDS", "0")
    get_settings.cache_clear()
    return state
