"""Ingest benchmark: batches of events over HTTP to a running `siyu serve`, against its write limit.

For each database (SQLite, PostgreSQL) the benchmark

1. creates a fresh database (a temporary SQLite file; a `siyu_bench_<random>` PostgreSQL database,
   dropped at the end), migrates it and creates a source write key;
2. starts `siyu serve` on a free 127.0.0.1 port in a subprocess and waits for /healthz;
3. sends pre-generated, pre-serialised Segment-spec batches to /v1/batch over keep-alive
   connections with HTTP Basic auth (the write key as username, as the Segment SDKs do), identity
   resolution on, after a few warm-up batches that are not counted; every answer must be 200 with
   every event accepted;
4. stops the server and measures the limit on the same database: the same rows written into
   `bench_events` (the DDL of `events`: same columns, types, keys and indexes) by the fastest raw
   path, sqlite3 `executemany` on SQLite and psycopg `COPY` on PostgreSQL, one transaction per batch.

It prints one JSON line per database on stdout; progress goes to stderr.

    .venv/bin/python bench/ingest.py                     # both databases
    .venv/bin/python bench/ingest.py --db sqlite --batches 50
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import http.client
import itertools
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
import psycopg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Table, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.schema import conv

from siyu import migrate
from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.db import create_db_engine, set_engine, unit_of_work
from siyu.models import Base, Event

TARGET_EVENTS_PER_S = 20_000
TARGET_P99_MS = 100
HTTP_TIMEOUT_S = 30.0
STARTUP_TIMEOUT_S = 30.0
MAX_BATCH_BYTES = 500 * 1024

JSON_COLUMNS = frozenset({"properties", "context", "traits"})

# The tables ingest inserts into (for the rows written per event; dead letters stay empty here).
WRITTEN_TABLES = ("events", "profiles", "identifiers", "identity_links", "identity_merges", "merge_reviews")

# The columns the ingest pipeline writes into `events`, in the order the raw path writes them.
COLUMNS = (
    "message_id",
    "type",
    "event",
    "profile_id",
    "identifier_id",
    "user_id",
    "anonymous_id",
    "timestamp",
    "received_at",
    "source_key_id",
    "amount_fen",
    "properties",
    "context",
    "traits",
)

console = Console(stderr=True, highlight=False)


class BenchError(RuntimeError):
    """The benchmark could not run as specified (a refused batch, a server that does not start...)."""


# --- the events --------------------------------------------------------------------------------


PRODUCTS = [
    ("QP-001", "Crab Roe Soup Dumplings", "dim sum", 38.0),
    ("QP-002", "Pine Nut Mandarin Fish", "hot dishes", 168.0),
    ("QP-003", "Biluochun Green Tea 250g", "tea", 228.0),
    ("QP-004", "Osmanthus Rice Cake", "pastry", 26.0),
    ("QP-005", "Sweet and Sour Spare Ribs", "hot dishes", 58.0),
    ("QP-006", "Su-Style Mooncake Gift Box", "gifts", 128.0),
    ("QP-007", "Shrimp Wonton Soup", "noodles", 32.0),
    ("QP-008", "Yangcheng Lake Hairy Crab x4", "seasonal", 398.0),
]
PAGES = [
    ("Home", "/pages/index/index"),
    ("Menu", "/pages/menu/menu"),
    ("Product", "/pages/product/detail"),
    ("Cart", "/pages/cart/cart"),
    ("Member Centre", "/pages/member/center"),
    ("Store Locator", "/pages/store/list"),
]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚"
PHONE_PREFIXES = ("138", "139", "150", "186", "177", "135", "158", "189")
LIBRARY = {"name": "analytics-miniprogram", "version": "1.4.2"}
SHARED_TABLETS = 20


def _digest(*parts: object) -> str:
    return hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class Person:
    """The identifiers of one customer, derived from their number (so the population costs no memory)."""

    n: int

    @property
    def member_id(self) -> str:
        return f"M{self.n:07d}"

    @property
    def phone(self) -> str:
        return PHONE_PREFIXES[self.n % len(PHONE_PREFIXES)] + f"{self.n:08d}"

    @property
    def openid(self) -> str:
        return "o16wA" + _digest("openid", self.n)[:23]

    @property
    def name(self) -> str:
        return SURNAMES[self.n % len(SURNAMES)] + GIVEN[(self.n // len(SURNAMES)) % len(GIVEN)]

    def device(self, k: int) -> str:
        d = _digest("device", self.n, k)
        return f"{d[:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}"


@dataclass(slots=True)
class Workload:
    """Pre-serialised batch bodies and what went into them."""

    warmup: list[bytes]
    timed: list[bytes]
    events_per_batch: int
    kinds: dict[str, int] = field(default_factory=dict)
    with_both_ids: int = 0
    returning: int = 0
    total: int = 0


class EventFactory:
    """Realistic Mini Program traffic of a brand: people come back, log in on their devices, buy.

    Each event picks a person: 60% of the time anyone of the population, 40% one of the regulars
    (the first tenth), so many events meet identifiers already stored and some tie an anonymous
    device profile to a member profile, which merges them.
    """

    def __init__(self, people: int, seed: int, run: str) -> None:
        self.people = people
        self.regulars = max(1, people // 10)
        self.rng = random.Random(seed)
        self.run = run
        self.seq = 0
        self.clock = dt.datetime(2026, 11, 23, 0, 0, tzinfo=dt.UTC)
        self.seen: set[str] = set()
        self.kinds: dict[str, int] = {}
        self.with_both_ids = 0
        self.returning = 0

    def _person(self) -> Person:
        rng = self.rng
        if rng.random() < 0.4:
            return Person(rng.randrange(self.regulars))
        return Person(rng.randrange(self.people))

    def _base(self, kind: str) -> dict[str, Any]:
        self.seq += 1
        self.clock += dt.timedelta(milliseconds=self.rng.randrange(1, 400))
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        return {
            "messageId": f"bench-{self.run}-{self.seq:08d}",
            "timestamp": self.clock.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "context": {"library": LIBRARY, "ip": f"10.{self.seq % 250}.{self.seq % 199}.7"},
        }

    def _note(self, *identifiers: str) -> None:
        if any(i in self.seen for i in identifiers):
            self.returning += 1
        self.seen.update(identifiers)

    def event(self) -> dict[str, Any]:
        rng = self.rng
        p = self._person()
        roll = rng.random()
        device = p.device(rng.randrange(2))
        if rng.random() < 0.005:
            device = f"store-tablet-{rng.randrange(SHARED_TABLETS)}"  # a shared device: the guard's case
        if roll < 0.25:
            ev = self._base("identify")
            ev |= {"type": "identify", "userId": p.member_id, "traits": {"name": p.name}}
            ev["context"]["traits"] = {"phone": p.phone}
            ids = [p.member_id, p.phone]
            if rng.random() < 0.5:  # a login on a device seen before: ties (and may merge) its profile
                ev["anonymousId"] = device
                ids.append(device)
        elif roll < 0.60:
            ev = self._base("Product Viewed")
            code, name, category, price = PRODUCTS[rng.randrange(len(PRODUCTS))]
            ev |= {
                "type": "track",
                "event": "Product Viewed",
                "anonymousId": device,
                "properties": {"product_id": code, "name": name, "category": category, "price": price},
            }
            ids = [device]
            if rng.random() < 0.2:
                ev["userId"] = p.member_id
                ids.append(p.member_id)
        elif roll < 0.70:
            ev = self._base("Order Completed")
            picked = rng.sample(PRODUCTS, rng.randrange(1, 4))
            lines = [
                {"product_id": code, "name": name, "price": price, "quantity": rng.randrange(1, 3)}
                for code, name, _, price in picked
            ]
            total = round(sum(line["price"] * line["quantity"] for line in lines), 2)
            ev |= {
                "type": "track",
                "event": "Order Completed",
                "userId": p.member_id,
                "properties": {
                    "order_id": f"SO{self.seq:010d}",
                    "total": total,
                    "revenue": round(total * 0.94, 2),
                    "currency": "CNY",
                    "products": lines,
                },
            }
            ids = [p.member_id]
            if rng.random() < 0.5:
                ev["anonymousId"] = device
                ids.append(device)
        else:
            ev = self._base("page")
            page_name, path = PAGES[rng.randrange(len(PAGES))]
            ev |= {
                "type": "page",
                "name": page_name,
                "anonymousId": device,
                "properties": {"path": path, "title": page_name},
            }
            ev["context"]["externalIds"] = [
                {"id": p.openid, "type": "wechat_openid", "collection": "users", "encoding": "none"}
            ]
            ids = [device, p.openid]
        if "userId" in ev and "anonymousId" in ev:
            self.with_both_ids += 1
        self._note(*ids)
        return ev

    def batch(self, size: int) -> bytes:
        events = [self.event() for _ in range(size)]
        sent_at = self.clock.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        body = orjson.dumps({"batch": events, "sentAt": sent_at})
        if len(body) > MAX_BATCH_BYTES:
            raise BenchError(f"a generated batch is {len(body)} bytes, over the 500 KB limit")
        return body


def make_workload(batches: int, warmup: int, size: int, people: int, seed: int) -> Workload:
    factory = EventFactory(people, seed, secrets.token_hex(4))
    warm = [factory.batch(size) for _ in range(warmup)]
    timed = [factory.batch(size) for _ in range(batches)]
    return Workload(
        warmup=warm,
        timed=timed,
        events_per_batch=size,
        kinds=factory.kinds,
        with_both_ids=factory.with_both_ids,
        returning=factory.returning,
        total=factory.seq,
    )


# --- databases ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Database:
    """A fresh database for one run: its SQLAlchemy URL and how to reach it raw."""

    kind: str
    url: str
    sqlite_path: Path | None = None
    pg_dsn: str | None = None


@contextlib.contextmanager
def fresh_database(kind: str, pg_admin_dsn: str, workdir: Path) -> Iterator[Database]:
    """A migrated, empty database, removed afterwards (even when the run fails)."""
    if kind == "sqlite":
        path = workdir / "siyu-bench.db"
        url = f"sqlite:///{path}"
        migrate.upgrade(url)
        yield Database(kind, url, sqlite_path=path)
        return
    name = f"siyu_bench_{secrets.token_hex(5)}"
    with psycopg.connect(pg_admin_dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        admin = make_url(pg_admin_dsn.replace("postgresql+psycopg://", "postgresql://", 1))
        dsn = admin.set(database=name).render_as_string(hide_password=False)
        url = dsn.replace("postgresql://", "postgresql+psycopg://", 1)
        console.print(f"  created database [bold]{name}[/bold]")
        migrate.upgrade(url)
        yield Database(kind, url, pg_dsn=dsn)
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        console.print(f"  dropped database [bold]{name}[/bold]")


def create_write_key(url: str) -> str:
    engine = create_db_engine(url)
    set_engine(engine)
    try:
        with unit_of_work() as session:
            _, secret = auth_service.create_api_key(session, name="bench", role=Role.source)
        return secret
    finally:
        set_engine(None)
        engine.dispose()


def db_scalar(db: Database, sql: str, row: bool = False) -> Any:
    """The first value (or the whole first row) that sql returns."""
    if db.sqlite_path is not None:
        with contextlib.closing(sqlite3.connect(db.sqlite_path)) as conn:
            first = conn.execute(sql).fetchone()
    else:
        assert db.pg_dsn is not None
        with psycopg.connect(db.pg_dsn) as conn:
            first = conn.execute(sql).fetchone()
    assert first is not None
    return first if row else first[0]


# --- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(slots=True)
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    worker: subprocess.Popen[bytes] | None = None

    def pids(self) -> list[int]:
        return [self.proc.pid] + ([self.worker.pid] if self.worker is not None else [])

    def log_tail(self, lines: int = 12) -> str:
        try:
            tail = [line[:300] for line in self.log_path.read_text(errors="replace").splitlines()[-lines:]]
        except OSError:
            tail = []
        return "\n".join([*tail, f"(whole server log: {self.log_path})"])


@contextlib.contextmanager
def running_server(db: Database, workdir: Path, workers: int, processor: str = "inline") -> Iterator[Server]:
    """`siyu serve` on a free port with this database; stopped on the way out, whatever happens."""
    siyu = Path(sys.executable).with_name("siyu")
    if not siyu.exists():
        raise BenchError(f"{siyu} not found: install the project first (make install)")
    port = free_port()
    env = {
        **os.environ,
        "SIYU_DATABASE_URL": db.url,
        "SIYU_SECRET_KEY": "bench-" + secrets.token_hex(16),
        "SIYU_LOG_LEVEL": "WARNING",
        "SIYU_INGEST_PROCESSOR": "true" if processor == "inline" else "false",
    }
    # Outside the scratch folder, so it is still there to read when a run fails.
    log_path = Path(tempfile.gettempdir()) / f"siyu-bench-server-{db.kind}.log"
    cmd = [str(siyu), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    # The working directory is the scratch folder, so no ./.env or ./var of a checkout is picked up.
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(proc, port, log_path)
    try:
        wait_healthy(server)
        console.print(
            f"  server pid {proc.pid} on 127.0.0.1:{port} ({workers} worker(s), processor {processor})"
        )
        if processor == "worker":
            server.worker = start_worker(siyu, env, workdir, log_path)
        yield server
    finally:
        if server.worker is not None:
            stop(server.worker)
        stop(proc)


def start_worker(siyu: Path, env: dict[str, str], workdir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`siyu worker` with the server's environment, logging after the server's log."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(siyu), "worker"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(f"siyu serve exited with {server.proc.returncode}:\n{server.log_tail()}")
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise BenchError(f"siyu serve did not answer /healthz in {STARTUP_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


# --- the client --------------------------------------------------------------------------------


def send_batches(
    port: int, write_key: str, bodies: Sequence[bytes], size: int, concurrency: int, deadline: float
) -> tuple[float, list[float]]:
    """Send every body to /v1/batch from `concurrency` keep-alive connections; (wall seconds, latencies)."""
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": auth, "User-Agent": "siyu-bench/1"}
    latencies = [0.0] * len(bodies)
    counter = itertools.count()
    failed = threading.Event()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
        try:
            while not failed.is_set():
                i = next(counter)
                if i >= len(bodies):
                    return
                if time.monotonic() > deadline:
                    raise BenchError("out of time (see --max-seconds)")
                started = time.perf_counter()
                conn.request("POST", "/v1/batch", body=bodies[i], headers=headers)
                response = conn.getresponse()
                data = response.read()
                latencies[i] = time.perf_counter() - started
                check_answer(i, response.status, data, size)
        except BaseException:
            failed.set()
            raise
        finally:
            conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench-client") as pool:
        futures = [pool.submit(worker) for _ in range(concurrency)]
        try:
            for f in futures:
                f.result()
        except BaseException:
            failed.set()  # Ctrl-C, SIGTERM or a failed batch: the other connections stop after their batch
            raise
    return time.perf_counter() - started, latencies


def check_answer(index: int, status: int, data: bytes, size: int) -> None:
    try:
        answer = orjson.loads(data)
    except orjson.JSONDecodeError:
        answer = None
    ok = (
        status == 200
        and isinstance(answer, dict)
        and answer.get("accepted") == size
        and not answer.get("errors")
        and not answer.get("duplicates")
    )
    if not ok:
        raise BenchError(f"batch {index}: HTTP {status}, expected 200 with accepted={size}: {data[:600]!r}")


def wait_drained(db: Database, deadline: float) -> None:
    """Until the ingest processor has stored every queued batch; fails on a parked one."""
    while True:
        pending, failed = db_scalar(
            db,
            "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'failed') "
            "FROM ingest_queue",
            row=True,
        )
        if failed:
            raise BenchError(f"{failed} queued batch(es) failed: see ingest_queue.last_error")
        if not pending:
            return
        if time.monotonic() > deadline:
            raise BenchError("out of time waiting for the ingest processor (see --max-seconds)")
        time.sleep(0.02)


# --- the limit ---------------------------------------------------------------------------------


def scratch_table() -> Table:
    """`bench_events`: the events table's columns, types, keys and indexes under names of its own."""
    existing = Base.metadata.tables.get("bench_events")
    if existing is not None:
        return existing
    table = cast(Table, Event.__table__).to_metadata(Base.metadata, name="bench_events")
    for item in [*table.constraints, *table.indexes]:
        if isinstance(item.name, str):
            item.name = conv(re.sub(r"^([a-z]+)_events", r"\1_bench_events", item.name))
    return table


LIMIT_ROUNDS = 3


def measure_limit(db: Database, after_id: int, expected: int, size: int) -> float:
    """Rows per second of the raw path writing the rows the timed run stored, one commit per batch.

    The best of LIMIT_ROUNDS rounds, each into a freshly created `bench_events`: the limit is what
    the database can do, so a round slowed down by something else on the machine should not count.
    """
    table = scratch_table()
    engine = create_engine(db.url)
    columns = ", ".join(COLUMNS)
    best = 0.0
    try:
        if db.sqlite_path is not None:
            with contextlib.closing(sqlite3.connect(db.sqlite_path, isolation_level=None)) as conn:
                # The pragmas the application's engine sets on every connection.
                for pragma in (
                    "journal_mode=WAL",
                    "synchronous=NORMAL",
                    "foreign_keys=ON",
                    "busy_timeout=30000",
                ):
                    conn.execute(f"PRAGMA {pragma}")
                rows = conn.execute(
                    f"SELECT {columns} FROM events WHERE id > ? ORDER BY id", (after_id,)
                ).fetchall()
                check_rows(rows, expected)
                insert = f"INSERT INTO bench_events ({columns}) VALUES ({', '.join('?' * len(COLUMNS))})"
                for _ in range(LIMIT_ROUNDS):
                    table.create(engine)
                    started = time.perf_counter()
                    for chunk in chunks(rows, size):
                        conn.execute("BEGIN IMMEDIATE")
                        conn.executemany(insert, chunk)
                        conn.execute("COMMIT")
                    elapsed = time.perf_counter() - started
                    check_written(conn.execute("SELECT count(*) FROM bench_events").fetchone(), expected)
                    table.drop(engine)
                    best = max(best, expected / elapsed)
        else:
            assert db.pg_dsn is not None
            with psycopg.connect(db.pg_dsn) as conn:
                select = ", ".join(f"{c}::text" if c in JSON_COLUMNS else c for c in COLUMNS)
                rows = conn.execute(
                    f"SELECT {select} FROM events WHERE id > %s ORDER BY id", (after_id,)
                ).fetchall()
                check_rows(rows, expected)
                conn.commit()
                copy_sql = f"COPY bench_events ({columns}) FROM STDIN"
                for _ in range(LIMIT_ROUNDS):
                    table.create(engine)
                    started = time.perf_counter()
                    with conn.cursor() as cursor:
                        for chunk in chunks(rows, size):
                            with cursor.copy(copy_sql) as copy:
                                for row in chunk:
                                    copy.write_row(row)
                            conn.commit()
                    elapsed = time.perf_counter() - started
                    check_written(conn.execute("SELECT count(*) FROM bench_events").fetchone(), expected)
                    conn.commit()
                    table.drop(engine)
                    best = max(best, expected / elapsed)
    finally:
        engine.dispose()
    return best


def check_written(row: Any, expected: int) -> None:
    written = row[0] if row else 0
    if written != expected:
        raise BenchError(f"the raw path wrote {written} rows, expected {expected}")


def check_rows(rows: Sequence[Any], expected: int) -> None:
    if len(rows) != expected:
        raise BenchError(f"events holds {len(rows)} rows from the timed run, expected {expected}")


def chunks(rows: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


# --- the machine -------------------------------------------------------------------------------


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores since boot (Linux /proc/stat; None elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def busy_between(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of all cores busy between two cpu_ticks()."""
    if before is None or after is None or after[1] == before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def machine_busy(seconds: float = 1.0) -> float | None:
    """The share of all cores busy over the next `seconds` (Linux /proc/stat; None elsewhere).

    Other work on the machine slows the server down: the figure is printed and kept in the result.
    """
    before = cpu_ticks()
    time.sleep(seconds)
    return busy_between(before, cpu_ticks())


def server_cpu_seconds(server: Server) -> float | None:
    """User + system CPU of the server and worker processes."""
    total = 0.0
    for pid in server.pids():
        seconds = process_cpu_seconds(pid)
        if seconds is None:
            return None
        total += seconds
    return total


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of pid and its direct children (Linux /proc; None elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    try:
        candidates = [p for p in Path("/proc").iterdir() if p.name.isdigit()]
    except OSError:
        return None
    for proc_dir in candidates:
        try:
            fields = (proc_dir / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command name: state, ppid, ... utime is the 12th, stime the 13th.
        if int(proc_dir.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


# --- an asyncio client (bench/callbacks.py, bench/ledger.py) ----------------------------------------


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 answer with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length is None:
        raise BenchError(f"an answer without Content-Length: {head[:400]!r}")
    return status, await reader.readexactly(length)


def drive(
    label: str, total: int, concurrency: int, connection: Callable[[list[int]], Awaitable[None]]
) -> float:
    """Run `concurrency` copies of connection(done) on one asyncio loop, done[0] counting answered requests
    for the progress bar; the wall seconds. The first failure (a wrong answer, a timeout) fails the run.

    One loop writing raw HTTP/1.1 costs the two cores far less than http.client in threads (about 0.25 ms
    of CPU a request), and the client shares them with the server and the database.
    """
    done = [0]

    async def run(progress: Progress, task: Any) -> float:
        started = time.perf_counter()
        senders = asyncio.gather(*(connection(done) for _ in range(concurrency)))
        while not senders.done():
            progress.update(task, completed=done[0])
            await asyncio.wait({senders}, timeout=0.2)
        await senders
        return time.perf_counter() - started

    columns = (TextColumn(f"  {label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(label, total=total)
        return asyncio.run(run(progress, task))


# --- one database ------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@contextlib.contextmanager
def py_spy(pid: int, output: Path | None, *, gil: bool = False) -> Iterator[None]:
    """Sample the server with py-spy while the block runs (--py-spy; py-spy is not a dependency).

    py-spy pauses the server at each sample: the figures of a profiled run are lower, keep them apart.
    With gil, only the thread holding the GIL is sampled (where a one-core server's time goes).
    """
    exe = py_spy_executable() if output is not None else None
    if output is None or exe is None:
        yield
        return
    cmd = [
        str(exe),
        "record",
        "--pid",
        str(pid),
        *(["--gil"] if gil else []),
    ]
    cmd += ["--rate", "200", "--format", "raw", "-o", str(output)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    time.sleep(1.0)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=5)
        if proc.returncode not in (0, -signal.SIGINT):
            console.print(f"  [yellow]py-spy failed:[/yellow] {err.decode(errors='replace').strip()[-500:]}")
        console.print(f"  py-spy samples of the server (collapsed stacks): {output}")


def py_spy_executable() -> Path | None:
    """py-spy in the virtualenv, else on PATH; None when neither has it."""
    venv = Path(sys.executable).with_name("py-spy")
    if venv.exists():
        return venv
    found = shutil.which("py-spy")
    return Path(found) if found else None


def db_rows(db: Database, sql: str) -> list[tuple[Any, ...]]:
    """Every row that sql returns, on a connection of its own."""
    if db.sqlite_path is not None:
        with contextlib.closing(sqlite3.connect(db.sqlite_path)) as conn:
            return conn.execute(sql).fetchall()
    with psycopg.connect(db.pg_dsn) as conn:
        return conn.execute(sql).fetchall()


def run_one(kind: str, args: argparse.Namespace, workload: Workload) -> dict[str, Any]:
    deadline = time.monotonic() + args.max_seconds
    size = workload.events_per_batch
    events = len(workload.timed) * size
    with tempfile.TemporaryDirectory(prefix=f"siyu-bench-{kind}-") as tmp:
        workdir = Path(tmp)
        console.rule(f"[bold]{kind}")
        busy = machine_busy()
        if busy is not None:
            note = "  [yellow](other work is running: figures will be low)[/yellow]" if busy > 0.15 else ""
            console.print(f"  machine busy before the run: {busy:.0%} of {os.cpu_count()} cores{note}")
        with fresh_database(kind, args.pg_admin_dsn, workdir) as db:
            write_key = create_write_key(db.url)
            with running_server(db, workdir, args.server_workers, args.processor) as server:
                try:
                    console.print(f"  warm-up: {len(workload.warmup)} batch(es)")
                    send_batches(server.port, write_key, workload.warmup, size, args.concurrency, deadline)
                    wait_drained(db, deadline)
                    after_id = int(db_scalar(db, "SELECT coalesce(max(id), 0) FROM events"))
                    console.print(
                        f"  timed: {len(workload.timed)} batches of {size}, concurrency {args.concurrency}"
                    )
                    spy = Path(f"{args.py_spy}-{kind}.txt") if args.py_spy else None
                    cpu_before = server_cpu_seconds(server)
                    started = time.perf_counter()
                    with py_spy(server.proc.pid, spy):
                        wall, latencies = send_batches(
                            server.port, write_key, workload.timed, size, args.concurrency, deadline
                        )
                        backlog = int(db_scalar(db, "SELECT coalesce(sum(event_count), 0) FROM ingest_queue"))
                        wait_drained(db, deadline)
                    e2e_wall = time.perf_counter() - started
                    cpu_after = server_cpu_seconds(server)
                except Exception as exc:
                    raise BenchError(
                        f"{type(exc).__name__}: {exc}\nserver log:\n{server.log_tail()}"
                    ) from exc
            stored = int(db_scalar(db, "SELECT count(*) FROM events"))
            if stored != events + len(workload.warmup) * size:
                raise BenchError(
                    f"events holds {stored} rows, expected {events + len(workload.warmup) * size}"
                )
            counts = {t: int(db_scalar(db, f"SELECT count(*) FROM {t}")) for t in WRITTEN_TABLES}
            profiles = int(db_scalar(db, "SELECT count(*) FROM profiles WHERE merged_into_id IS NULL"))
            merges = counts["identity_merges"]
            rows_per_event = sum(counts.values()) / stored
            console.print(
                f"  stored {stored} events, {counts['identifiers']} identifiers, {profiles} live profiles "
                f"({counts['profiles']} created), {merges} merges: {rows_per_event:.2f} rows inserted per event"
            )
            quarters = [latencies[i * len(latencies) // 4 : (i + 1) * len(latencies) // 4] for i in range(4)]
            console.print(
                "  p50 latency by quarter of the run: "
                + ", ".join(f"{percentile(q, 50) * 1000:.0f} ms" for q in quarters if q)
            )
            server_cpu_ms = None
            if cpu_before is not None and cpu_after is not None:
                server_cpu_ms = (cpu_after - cpu_before) * 1000 / len(workload.timed)
                console.print(
                    f"  siyu processes' CPU: {server_cpu_ms:.0f} ms per batch "
                    f"({server_cpu_ms * len(workload.timed) / 1000 / e2e_wall:.0%} of one core over the run)"
                )
            console.print(
                f"  accepted in {wall:.1f} s ({events / wall:,.0f} events/s), all stored after {e2e_wall:.1f} s "
                f"({events / e2e_wall:,.0f} events/s); {backlog:,} events were queued when the last batch "
                "was answered"
            )
            console.print("  limit: the same rows by the raw path")
            limit = measure_limit(db, after_id, events, size)
    events_per_s = events / e2e_wall
    return {
        "bench": "ingest",
        "db": kind,
        "events": events,
        "batch_size": size,
        "concurrency": args.concurrency,
        "server_workers": args.server_workers,
        "processor": args.processor,
        "events_per_s": round(events_per_s),
        "accepted_events_per_s": round(events / wall),
        "backlog_events_at_last_answer": backlog,
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "limit_rows_per_s": round(limit),
        "ratio": round(events_per_s / limit, 3),
        "target_events_per_s": TARGET_EVENTS_PER_S,
        "target_p99_ms": TARGET_P99_MS,
        "target_met": events_per_s >= TARGET_EVENTS_PER_S
        and percentile(latencies, 99) * 1000 < TARGET_P99_MS,
        "profiles": profiles,
        "merges": merges,
        "rows_inserted_per_event": round(rows_per_event, 2),
        "server_cpu_ms_per_batch": round(server_cpu_ms, 1) if server_cpu_ms is not None else None,
        "machine_busy_before": round(busy, 2) if busy is not None else None,
        "cpu": f"{os.cpu_count()} cores",
        "python": platform.python_version(),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--batches", type=int, default=200, help="timed batches (default 200)")
    parser.add_argument("--batch-size", type=int, default=500, help="events per batch (default 500)")
    parser.add_argument(
        "--warmup", type=int, default=5, help="batches sent first and not counted (default 5)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=1, help="client connections sending at once (default 1)"
    )
    parser.add_argument("--people", type=int, default=100_000, help="distinct customers (default 100,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--server-workers", type=int, default=1, help="`siyu serve --workers` (default 1)")
    parser.add_argument(
        "--processor",
        choices=["inline", "worker"],
        default="inline",
        help="ingest processor in the server process (inline, the default) or in a `siyu worker` process",
    )
    parser.add_argument(
        "--pg-admin-dsn",
        default=os.environ.get("SIYU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="where to create the scratch PostgreSQL database (default: $SIYU_TEST_PG_DSN or local postgres)",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=900, help="time bound per database (default 900)"
    )
    parser.add_argument(
        "--py-spy", metavar="PREFIX", help="record the server with py-spy into PREFIX-<db>.txt"
    )
    args = parser.parse_args(argv)
    if args.batches < 1 or args.batch_size < 1 or args.concurrency < 1 or args.warmup < 0:
        parser.error("--batches, --batch-size and --concurrency must be positive, --warmup not negative")
    if args.py_spy and py_spy_executable() is None:
        parser.error("--py-spy needs py-spy (pip install py-spy into the virtualenv)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the server is stopped and the scratch database dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    started = time.perf_counter()
    workload = make_workload(args.batches, args.warmup, args.batch_size, args.people, args.seed)
    body_bytes = sum(map(len, workload.timed)) / len(workload.timed)
    console.print(
        f"generated {workload.total} events in {time.perf_counter() - started:.1f} s: "
        f"{', '.join(f'{k} {v}' for k, v in sorted(workload.kinds.items()))}; "
        f"{workload.returning / workload.total:.0%} meet a stored identifier, "
        f"{workload.with_both_ids / workload.total:.0%} carry userId and anonymousId; "
        f"{body_bytes / 1024:.0f} KB per batch"
    )
    failed = False
    for kind in kinds:
        try:
            result = run_one(kind, args, workload)
        except (BenchError, psycopg.OperationalError) as exc:
            console.print(f"[red]{kind}: {exc}[/red]")
            failed = True
            continue
        print(orjson.dumps(result).decode(), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
