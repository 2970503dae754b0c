"""Engine, sessions and the declarative base shared by every domain package."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    create_engine,
    event,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from siyu.config import get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")
# SQL NULL (not JSON null) for None, so "IS NULL" means "absent" on both databases.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC datetime on every database (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class EnumText(TypeDecorator[Any]):
    """A StrEnum stored as its text value and loaded back as the enum member (not a bare str).

    Without it a column annotated Mapped[SomeEnum] loads plain strings, and `value is SomeEnum.x` is
    silently false for rows read back from the database.
    """

    impl = String
    cache_ok = True

    def __init__(self, enum_cls: type[enum.StrEnum], length: int = 16) -> None:
        super().__init__(length)
        self.enum_cls = enum_cls

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else self.enum_cls(value).value

    def process_result_value(self, value: Any, dialect: Any) -> enum.StrEnum | None:
        return None if value is None else self.enum_cls(value)


class Base(DeclarativeBase):
    """Declarative base; constraint names follow NAMING_CONVENTION so migrations are stable."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own transaction handling cannot
    # issue BEGIN IMMEDIATE).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the console read while the ingest API writes; NORMAL is durable across app crashes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # The default 2 MB cache makes every batch re-read index pages of events and identifiers.
    cursor.execute(f"PRAGMA cache_size=-{get_settings().sqlite_cache_mb * 1024}")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # A write transaction takes the write lock up front: two writers that both began by reading
    # would otherwise fail at once with "database is locked" instead of waiting busy_timeout.
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_db_engine(url: str | None = None, **kwargs: Any) -> Engine:
    """An engine for url (default: settings); SQLite gets WAL and foreign keys, its folder is created."""
    url = url or get_settings().database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            json_serializer=_json_dumps,
            json_deserializer=orjson.loads,
            connect_args={"check_same_thread": False, "timeout": 30},
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # Connections beyond pool_size are closed when returned: a pool smaller than the concurrent requests
    # makes every burst open and close PostgreSQL sessions.
    kwargs.setdefault("pool_size", get_settings().db_pool_size)
    kwargs.setdefault("max_overflow", get_settings().db_max_overflow)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, json_serializer=_json_dumps, json_deserializer=orjson.loads, **kwargs)


_engine: Engine | None = None
_sessionmaker: sessionmaker[Session] | None = None
_read_sessionmaker: sessionmaker[Session] | None = None


def get_engine() -> Engine:
    """The process-wide engine, created on first use."""
    if _engine is None:
        set_engine(create_db_engine())
    assert _engine is not None
    return _engine


def set_engine(engine: Engine | None) -> None:
    """Replace the process-wide engine (tests and the CLI bind their own)."""
    global _engine, _sessionmaker, _read_sessionmaker
    _engine = engine
    if engine is None:
        _sessionmaker = _read_sessionmaker = None
        return
    _sessionmaker = sessionmaker(engine, expire_on_commit=False)
    _read_sessionmaker = sessionmaker(
        engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False
    )


def use_sessionmakers(write: sessionmaker[Session], read: sessionmaker[Session]) -> None:
    """Route every unit of work through these factories (tests bind them to one rolled-back connection)."""
    global _sessionmaker, _read_sessionmaker
    _sessionmaker, _read_sessionmaker = write, read


def get_sessionmaker() -> sessionmaker[Session]:
    """The session factory for units of work that write (on SQLite they take the write lock at BEGIN)."""
    if _sessionmaker is None:
        get_engine()
    assert _sessionmaker is not None
    return _sessionmaker


def get_read_sessionmaker() -> sessionmaker[Session]:
    """The session factory for read-only work: on SQLite it does not wait for writers."""
    if _read_sessionmaker is None:
        get_engine()
    assert _read_sessionmaker is not None
    return _read_sessionmaker


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """One transaction: commits when the block succeeds, rolls back when it raises."""
    with transaction(get_sessionmaker()()) as session:
        yield session


@contextmanager
def transaction(session: Session) -> Iterator[Session]:
    """session's transaction: committed when the block succeeds, rolled back when it raises; session closed."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_postgres(session_or_engine: Session | Engine) -> bool:
    """Whether the bound database is PostgreSQL."""
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "postgresql"


@contextmanager
def in_index_order(session: Session) -> Iterator[None]:
    """Plan the statements inside without a sort (PostgreSQL): a queue's claim walks its due index in order.

    A queue's statistics lag behind it: a broadcast queues a million rows between two analyses, and a
    planner that takes them for a few chooses to fetch and sort them all, for every batch claimed.
    The setting is undone after the block, or with the transaction if the block fails.
    """
    if not is_postgres(session):
        yield
        return
    session.execute(text("SET LOCAL enable_sort = off"))
    yield
    session.execute(text("RESET enable_sort"))
