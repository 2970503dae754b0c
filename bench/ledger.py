"""Loyalty ledger benchmark: concurrent earn and spend postings over HTTP to a running `siyu serve`.

For each database (PostgreSQL by default; SQLite too with --db sqlite or both) the benchmark

1. creates a fresh database (a `siyu_bench_<random>` PostgreSQL database, dropped at the end even when
   the run fails; a temporary SQLite file), migrates it, starts `siyu serve` on a free 127.0.0.1 port
   with a fixed SIYU_SECRET_KEY and waits for /healthz;
2. creates an admin key and a source write key with `siyu apikeys create`, sends one Segment
   `identify` per member (userId BM<n>) to /v1/batch, waits for the ingest processor to store them,
   reads the profile ids from the `identifiers` table, creates three tiers (Jade, Gold at 5,000 and
   Platinum at 50,000 qualifying points: every earn checks for an upgrade) and enrols every profile with
   POST /api/v1/loyalty/members (none of this is timed);
3. sends warm-up postings (not timed), runs ANALYZE on PostgreSQL (as autovacuum would have on a
   production server; this machine runs with it off), then the timed postings from `--clients` keep-alive
   connections: POST /api/v1/loyalty/members/{profile_id}/postings with a unique Idempotency-Key,
   about 60% earn (1-500 points), 35% spend (1-300 points) and 5% replays of an earlier posting that
   was answered 201 (same key and body). A fifth of the postings go to 1% of the members, so their rows
   are contended. Valid answers: 201 for a new posting, 200 with the first answer's body for a replay,
   409 for a spend beyond the balance (an overdraw: a business answer, counted apart); anything else
   fails the run;
4. checks the ledger: for every member the balance from GET /api/v1/loyalty/members/{profile_id},
   `loyalty_members.balance`, the sum of `loyalty_postings.balance_change` and the balance this client
   expects from the 201 answers must all be equal; the `balance_after` of a member's postings, in id
   order, must be a running sum; the ledger must hold exactly one posting per 201 answer; the remaining
   points of the member's released lots must equal the balance (no debt arises here). Any difference
   fails the run;
5. stops the server and measures the limit on the same database: the same requests, in the same order
   and from the same number of threads, by the fastest raw path - one psycopg (or sqlite3) connection
   per thread, one short transaction per request with hand-written SQL: for a posting answered 201, lock
   the member row (`SELECT ... FOR UPDATE`; `BEGIN IMMEDIATE` on SQLite), update its balance and insert
   the posting into `bench_postings` (the DDL of `loyalty_postings`: columns, keys, indexes, foreign
   keys); for an overdraw, lock and read the row and roll back; for a replay, read the posting by its
   key. It leaves out what the application also does per request (HTTP, authentication, the profile and
   member look-ups, the idempotency check, points lots and their draws), so it is an upper bound.

Talon.One's hosted plans are sized at about 300 requests/s; the target here is 2,000 postings/s with a
p99 under 50 ms on PostgreSQL (SQLite serialises writers: it is reported, not held to the target).
postings_per_s counts every answered timed request (201, 200 and 409) over the wall time.

It prints one JSON line per database on stdout; progress goes to stderr.

    .venv/bin/python bench/ledger.py                          # PostgreSQL
    .venv/bin/python bench/ledger.py --db both --postings 5000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http.client
import itertools
import os
import platform
import random
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
import psycopg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Constraint, Index, Table, create_engine
from sqlalchemy.schema import conv

from siyu.loyalty.models import Posting
from siyu.models import Base

# The database, server and measuring helpers are those of the ingest benchmark.
try:  # run as a script, bench/ is on sys.path
    import ingest
except ImportError:  # imported as a module of the bench package
    from bench import ingest  # type: ignore[no-redef]
BenchError = ingest.BenchError
console = ingest.console

TARGET_POSTINGS_PER_S = 2_000
TARGET_P99_MS = 50
HTTP_TIMEOUT_S = 30.0
LIMIT_ROUNDS = 3
IDENTIFY_BATCH = 500
# Fixed for the run: `siyu apikeys create` and the server see the same settings.
SECRET_KEY = "siyu-bench-ledger-secret-key-0123456789abcdef"  # noqa: S105 (scratch only)

# The mix of the timed postings.
REPLAY_SHARE = 0.05
EARN_SHARE = 0.60  # the rest (about 35%) are spends
EARN_POINTS = (1, 500)
SPEND_POINTS = (1, 300)
HOT_MEMBERS_SHARE = 0.01  # a fifth of the postings go to 1% of the members
HOT_POSTINGS_SHARE = 0.20
FIRST_REPLAY = 50  # no replay among the first postings: there must be something to replay


# --- the postings ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Op:
    """One request: a posting (earn, spend) of points to a member, or a replay of an earlier posting."""

    member: int  # index into the members
    kind: str  # "earn", "spend" or "replay"
    points: int
    key: str
    pick: float  # a replay: which of the postings answered 201 so far it repeats


def make_ops(count: int, members: int, seed: int, run: str) -> list[Op]:
    rng = random.Random(seed)
    hot = max(1, round(members * HOT_MEMBERS_SHARE))
    ops = []
    for i in range(count):
        member = rng.randrange(hot) if rng.random() < HOT_POSTINGS_SHARE else rng.randrange(members)
        roll = rng.random()
        if i >= FIRST_REPLAY and roll < REPLAY_SHARE:
            ops.append(Op(member, "replay", 0, "", rng.random()))
        elif roll < REPLAY_SHARE + EARN_SHARE:
            ops.append(Op(member, "earn", rng.randint(*EARN_POINTS), f"bench-{run}-{i:07d}", 0.0))
        else:
            ops.append(Op(member, "spend", rng.randint(*SPEND_POINTS), f"bench-{run}-{i:07d}", 0.0))
    return ops


@dataclass(slots=True)
class Outcomes:
    """What the server answered, per op (warm-up and timed alike)."""

    ops: list[Op]
    status: list[int]
    answers: list[dict[str, Any] | None]  # the body of a 201
    target: list[int]  # a replay: the op it repeated
    created: list[int] = field(default_factory=list)  # ops answered 201, in answer order

    @classmethod
    def of(cls, ops: list[Op]) -> Outcomes:
        n = len(ops)
        return cls(ops, [0] * n, [None] * n, [-1] * n)


# --- the account, the server and the members -----------------------------------------------------


def server_env(db: Any) -> dict[str, str]:
    return {
        **os.environ,
        "SIYU_DATABASE_URL": db.url,
        "SIYU_SECRET_KEY": SECRET_KEY,
        "SIYU_LOG_LEVEL": "WARNING",
        "SIYU_INGEST_PROCESSOR": "true",
    }


def siyu_executable() -> Path:
    siyu = Path(sys.executable).with_name("siyu")
    if not siyu.exists():
        raise BenchError(f"{siyu} not found: install the project first (make install)")
    return siyu


def create_key(db: Any, workdir: Path, role: str, name: str) -> str:
    """A new API key from `siyu apikeys create`, which prints it alone on its last line."""
    cmd = [str(siyu_executable()), "apikeys", "create", "--role", role, "--name", name]
    done = subprocess.run(
        cmd, env=server_env(db), cwd=workdir, capture_output=True, text=True, timeout=60, check=False
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"siyu apikeys create failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return lines[-1].strip()


@contextlib.contextmanager
def running_server(db: Any, workdir: Path, workers: int) -> Iterator[Any]:
    """`siyu serve` on a free port with this database and SECRET_KEY; stopped on the way out."""
    siyu = siyu_executable()
    port = ingest.free_port()
    # Outside the scratch folder, so it is still there to read when a run fails.
    log_path = Path(tempfile.gettempdir()) / f"siyu-bench-ledger-server-{db.kind}.log"
    cmd = [str(siyu), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    # The working directory is the scratch folder, so no ./.env or ./var of a checkout is picked up.
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, env=server_env(db), cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = ingest.Server(proc, port, log_path)
    try:
        ingest.wait_healthy(server)
        console.print(f"  server pid {proc.pid} on 127.0.0.1:{port} ({workers} worker(s))")
        yield server
    finally:
        ingest.stop(proc)


# --- the client --------------------------------------------------------------------------------


def lane_groups(port: int) -> tuple[float, float]:
    """The posting lane's (postings, transactions) so far, from /metrics (of the process that answers)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        _, data, _ = call(conn, "GET", "/metrics", None, {})
    finally:
        conn.close()
    found = dict(
        re.findall(rb'^siyu_lane_group_requests_(sum|count)\{lane="postings"\} (\S+)$', data, re.MULTILINE)
    )
    return float(found.get(b"sum", 0)), float(found.get(b"count", 0))


def call(
    conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes, float]:
    """One request on a keep-alive connection: (status, body, seconds)."""
    started = time.perf_counter()
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    return response.status, data, time.perf_counter() - started


Step = Callable[[int, http.client.HTTPConnection], float]


def run_parallel(
    port: int, count: int, concurrency: int, deadline: float, label: str, step: Step
) -> tuple[float, list[float]]:
    """step(i, connection) for i in range(count) from `concurrency` keep-alive connections.

    step sends request i, checks the answer (raising BenchError) and returns its latency.
    Returns (wall seconds, latencies by i).
    """
    latencies = [0.0] * count
    counter = itertools.count()
    done = [0] * concurrency  # one slot per connection: counted without a lock
    failed = threading.Event()

    def worker(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
        try:
            while not failed.is_set():
                i = next(counter)
                if i >= count:
                    return
                if time.monotonic() > deadline:
                    raise BenchError("out of time (see --max-seconds)")
                latencies[i] = step(i, conn)
                done[slot] += 1
        except BaseException:
            failed.set()
            raise
        finally:
            conn.close()

    columns = (TextColumn(f"  {label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        task = progress.add_task(label, total=count)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="bench-client") as pool:
            futures = [pool.submit(worker, slot) for slot in range(concurrency)]
            try:
                while not all(f.done() for f in futures):
                    progress.update(task, completed=sum(done))
                    time.sleep(0.1)
                for f in futures:
                    f.result()
            except BaseException:
                failed.set()  # Ctrl-C, SIGTERM or a wrong answer: the other connections stop after theirs
                raise
        wall = time.perf_counter() - started
    return wall, latencies


def admin_headers(key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {key}",
        "Content-Type": "application/json",
        "User-Agent": "siyu-bench/1",
    }


TIERS = (
    {"name": "Jade", "rank": 0},
    {"name": "Gold", "rank": 1, "threshold_points": 5_000, "multiplier": 1.5},
    {"name": "Platinum", "rank": 2, "threshold_points": 50_000, "multiplier": 2},
)


def create_members(
    db: Any, server: Any, workdir: Path, admin: dict[str, str], count: int, concurrency: int, deadline: float
) -> list[int]:
    """count profiles (by `identify` events through /v1/batch), each enrolled; their profile ids."""
    write_key = create_key(db, workdir, "source", "bench-ledger-source")
    auth = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
    source = {"Content-Type": "application/json", "Authorization": auth, "User-Agent": "siyu-bench/1"}
    bodies = []
    for start in range(0, count, IDENTIFY_BATCH):
        events = [
            {"type": "identify", "userId": f"BM{n}", "messageId": f"bm-{n}", "traits": {}}
            for n in range(start, min(start + IDENTIFY_BATCH, count))
        ]
        bodies.append((len(events), orjson.dumps({"batch": events})))

    def identify(i: int, conn: http.client.HTTPConnection) -> float:
        size, body = bodies[i]
        status, data, seconds = call(conn, "POST", "/v1/batch", body, source)
        ingest.check_answer(i, status, data, size)
        return seconds

    started = time.perf_counter()
    run_parallel(server.port, len(bodies), concurrency, deadline, "identify", identify)
    ingest.wait_drained(db, deadline)
    rows = ingest.db_rows(db, "SELECT value, profile_id FROM identifiers WHERE type = 'member_id'")
    by_value = {str(value).upper(): int(profile_id) for value, profile_id in rows}
    try:
        profiles = [by_value[f"BM{n}"] for n in range(count)]
    except KeyError as exc:
        raise BenchError(f"no profile holds member_id {exc.args[0]} after ingest") from exc
    if len(set(profiles)) != count:
        raise BenchError(f"{count} member ids resolved to {len(set(profiles))} profiles")
    console.print(f"  {count} profiles stored in {time.perf_counter() - started:.1f} s")

    # A programme has tiers: every earn then checks whether the member reached a higher one (immediate upgrade).
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for tier in TIERS:
        status, data, _ = call(conn, "POST", "/api/v1/loyalty/tiers", orjson.dumps(tier), admin)
        if status != 201:
            raise BenchError(f"creating tier {tier['name']}: HTTP {status}, expected 201: {data[:400]!r}")
    conn.close()

    started = time.perf_counter()

    def enrol(i: int, conn: http.client.HTTPConnection) -> float:
        body = orjson.dumps({"profile_id": profiles[i], "channel": "bench"})
        status, data, seconds = call(conn, "POST", "/api/v1/loyalty/members", body, admin)
        if status != 201:
            raise BenchError(f"enrolling profile {profiles[i]}: HTTP {status}, expected 201: {data[:400]!r}")
        return seconds

    run_parallel(server.port, count, concurrency, deadline, "enrol", enrol)
    console.print(f"  {count} members enrolled in {time.perf_counter() - started:.1f} s")
    return profiles


def send_postings(
    port: int,
    admin: dict[str, str],
    profiles: Sequence[int],
    out: Outcomes,
    first: int,
    count: int,
    concurrency: int,
    deadline: float,
    label: str,
) -> tuple[float, list[float]]:
    """Ops first..first+count from `concurrency` keep-alive connections, checking every answer;
    (wall seconds, latencies).

    The client is an asyncio loop writing raw HTTP/1.1, as bench/callbacks.py's: it shares the two cores
    with the server and PostgreSQL, and http.client in threads took about 0.25 ms of CPU a posting (half
    a core at 2,000 postings/s) where this takes about a fifth of that.
    """
    ops = out.ops
    head = "".join(
        f"{name}: {value}\r\n" for name, value in admin.items() if name.lower() != "content-length"
    )
    latencies = [0.0] * count
    counter = itertools.count()

    async def replayed(i: int, op: Op) -> int:
        created = out.created
        waited = time.monotonic() + 10
        while not created:  # only when every posting so far was refused or is still in flight
            if time.monotonic() > waited:
                raise BenchError(f"posting {i}: a replay, but no posting was answered 201 yet")
            await asyncio.sleep(0.01)
        return created[int(op.pick * len(created))]

    async def connection(done: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (j := next(counter)) < count:
                if time.monotonic() > deadline:
                    raise BenchError("out of time (see --max-seconds)")
                i = first + j
                op = ops[i]
                if op.kind == "replay":
                    out.target[i] = await replayed(i, op)
                sent = ops[out.target[i]] if op.kind == "replay" else op
                body = orjson.dumps({"kind": sent.kind, "points": sent.points, "reason": "bench"})
                request = (
                    f"POST /api/v1/loyalty/members/{profiles[sent.member]}/postings HTTP/1.1\r\n"
                    f"Host: 127.0.0.1:{port}\r\n{head}Idempotency-Key: {sent.key}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n"
                ).encode() + body
                started = time.perf_counter()
                writer.write(request)
                status, data = await asyncio.wait_for(ingest.read_answer(reader), HTTP_TIMEOUT_S)
                latencies[j] = time.perf_counter() - started
                out.status[i] = status
                check_posting(out, i, sent, status, data)
                done[0] += 1
        finally:
            writer.close()

    return ingest.drive(label, count, concurrency, connection), latencies


def check_posting(out: Outcomes, i: int, sent: Op, status: int, data: bytes) -> None:
    op = out.ops[i]
    where = f"posting {i} ({op.kind} {sent.points} for member #{sent.member}, key {sent.key})"
    if op.kind == "replay":
        first = out.answers[out.target[i]]
        if status != 200 or orjson.loads(data) != first:
            raise BenchError(
                f"{where}: HTTP {status}, expected 200 with the first answer {first}: {data[:600]!r}"
            )
        return
    if status == 201:
        answer = orjson.loads(data)
        change = sent.points if sent.kind == "earn" else -sent.points
        if answer.get("kind") != sent.kind or answer.get("balance_change") != change:
            raise BenchError(f"{where}: answered 201 with {answer}")
        out.answers[i] = answer
        out.created.append(i)
        return
    if status == 409 and op.kind == "spend" and b"balance" in data:
        return  # an overdraw: the balance is smaller than the spend
    raise BenchError(f"{where}: HTTP {status}, expected 201 (or 409 for an overdraw): {data[:600]!r}")


# --- the checks --------------------------------------------------------------------------------


def verify_ledger(
    db: Any,
    port: int,
    admin: dict[str, str],
    profiles: Sequence[int],
    out: Outcomes,
    concurrency: int,
    deadline: float,
) -> dict[str, Any]:
    """Balances by the API, the member rows, the ledger and this client's expectation; the problems found."""
    problems: list[str] = []
    expected = [0] * len(profiles)
    chains: dict[int, list[dict[str, Any]]] = {}
    for i in out.created:
        op, answer = out.ops[i], out.answers[i]
        assert answer is not None
        expected[op.member] += op.points if op.kind == "earn" else -op.points
        chains.setdefault(op.member, []).append(answer)
    # Under the member's lock, a member's postings take increasing ids and each balance_after adds up.
    broken_chains = 0
    for member, answers in chains.items():
        balance = 0
        for answer in sorted(answers, key=lambda a: a["id"]):
            balance += answer["balance_change"]
            if answer["balance_after"] != balance:
                broken_chains += 1
                problems.append(
                    f"member #{member}: posting {answer['id']} has balance_after {answer['balance_after']}, "
                    f"the running sum is {balance}"
                )
                break

    api_balance = [0] * len(profiles)

    def get(i: int, conn: http.client.HTTPConnection) -> float:
        status, data, seconds = call(conn, "GET", f"/api/v1/loyalty/members/{profiles[i]}", None, admin)
        if status != 200:
            raise BenchError(f"GET member {profiles[i]}: HTTP {status}: {data[:400]!r}")
        api_balance[i] = int(orjson.loads(data)["balance"])
        return seconds

    run_parallel(port, len(profiles), concurrency, deadline, "balances", get)
    rows = ingest.db_rows(
        db,
        "SELECT m.profile_id, m.balance, m.debt, "
        "(SELECT coalesce(sum(p.balance_change), 0) FROM loyalty_postings p WHERE p.member_id = m.id), "
        "(SELECT coalesce(sum(l.remaining), 0) FROM loyalty_lots l "
        " WHERE l.member_id = m.id AND l.pending_until IS NULL) "
        "FROM loyalty_members m",
    )
    by_profile = {int(r[0]): tuple(int(v) for v in r[1:]) for r in rows}
    mismatched = 0
    for n, profile in enumerate(profiles):
        row_balance, debt, ledger, lots = by_profile.get(profile, (None, None, None, None))
        values = (api_balance[n], row_balance, ledger, expected[n])
        if len(set(values)) != 1 or lots != row_balance or debt != 0:
            mismatched += 1
            if mismatched <= 5:
                problems.append(
                    f"member #{n} (profile {profile}): API balance {api_balance[n]}, row {row_balance}, "
                    f"sum of ledger {ledger}, expected by this client {expected[n]}, lots {lots}, debt {debt}"
                )
    if mismatched > 5:
        problems.append(f"... {mismatched} members differ in all")
    postings = int(ingest.db_scalar(db, "SELECT count(*) FROM loyalty_postings"))
    if postings != len(out.created):
        problems.append(f"the ledger holds {postings} postings for {len(out.created)} answers 201")
    return {
        "problems": problems,
        "members_checked": len(profiles),
        "members_mismatched": mismatched,
        "broken_chains": broken_chains,
        "postings_in_ledger": postings,
        "points_outstanding": sum(expected),
    }


# --- the limit ---------------------------------------------------------------------------------


def scratch_table() -> Table:
    """`bench_postings`: the columns, types, keys, indexes and foreign keys of `loyalty_postings`."""
    existing = Base.metadata.tables.get("bench_postings")
    if existing is not None:
        return existing
    table = cast(Table, Posting.__table__).to_metadata(Base.metadata, name="bench_postings")
    items: list[Constraint | Index] = [*table.constraints, *table.indexes]
    for item in items:
        if isinstance(item.name, str):
            item.name = conv(re.sub("loyalty_postings", "bench_postings", item.name))
    return table


@dataclass(frozen=True, slots=True)
class RawOp:
    kind: str  # "post", "refuse" or "replay"
    member_id: int  # loyalty_members.id
    posting_kind: str
    change: int
    key: str  # a replay: the key of the posting it reads


def raw_ops(db: Any, out: Outcomes, first: int, profiles: Sequence[int]) -> list[RawOp]:
    """The timed requests as the raw path sends them, from what the server answered."""
    member_ids = {int(p): int(m) for p, m in ingest.db_rows(db, "SELECT profile_id, id FROM loyalty_members")}
    # The API stores a request's Idempotency-Key in its caller's scope: "api:k<key id>:<key>" (the one admin key).
    [(admin_key_id,)] = ingest.db_rows(db, "SELECT id FROM api_keys WHERE role = 'admin'")
    ops = []
    for i in range(first, len(out.ops)):
        op, status = out.ops[i], out.status[i]
        if op.kind == "replay":
            t = out.ops[out.target[i]]
            ops.append(
                RawOp("replay", member_ids[profiles[t.member]], t.kind, 0, f"api:k{admin_key_id}:{t.key}")
            )
        elif status == 201:
            change = op.points if op.kind == "earn" else -op.points
            ops.append(RawOp("post", member_ids[profiles[op.member]], op.kind, change, ""))
        else:
            ops.append(RawOp("refuse", member_ids[profiles[op.member]], op.kind, 0, ""))
    return ops


def measure_limit(db: Any, ops: Sequence[RawOp], threads: int) -> float:
    """Requests per second of the raw path (best of LIMIT_ROUNDS rounds, each into a fresh bench_postings).

    It moves the members' balances on: run it after the ledger has been checked.
    """
    table = scratch_table()
    engine = create_engine(db.url)
    best = 0.0
    try:
        for r in range(LIMIT_ROUNDS):
            table.create(engine)
            try:
                elapsed = raw_round(db, ops, threads, f"raw{r}")
                written = int(ingest.db_scalar(db, "SELECT count(*) FROM bench_postings"))
                expected = sum(op.kind == "post" for op in ops)
                if written != expected:
                    raise BenchError(f"the raw path wrote {written} postings, expected {expected}")
            finally:
                table.drop(engine)
            best = max(best, len(ops) / elapsed)
    finally:
        engine.dispose()
    return best


def raw_round(db: Any, ops: Sequence[RawOp], threads: int, tag: str) -> float:
    sqlite = db.sqlite_path is not None
    p = "?" if sqlite else "%s"
    lock = f"SELECT balance FROM loyalty_members WHERE id = {p}" + ("" if sqlite else " FOR UPDATE")
    update = (
        f"UPDATE loyalty_members SET balance = balance + {p}, updated_at = CURRENT_TIMESTAMP WHERE id = {p}"
    )
    insert = (
        "INSERT INTO bench_postings (member_id, kind, points, balance_change, balance_after, "
        "idempotency_key, reason, actor, detail, created_at) "
        f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, 'bench', 'raw', '{{}}', CURRENT_TIMESTAMP)"
    )
    replay = f"SELECT id, balance_after FROM loyalty_postings WHERE idempotency_key = {p}"
    counter = itertools.count()
    failed = threading.Event()

    def connect() -> Any:
        if sqlite:
            conn = sqlite3.connect(db.sqlite_path, isolation_level=None, check_same_thread=False)
            # The pragmas the application's engine sets on every connection.
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
                conn.execute(f"PRAGMA {pragma}")
            return conn
        return psycopg.connect(db.pg_dsn)

    def one(conn: Any, i: int, op: RawOp) -> None:
        if op.kind == "replay":
            row = conn.execute(replay, (op.key,)).fetchone()
            if row is None:
                raise BenchError(f"the raw path: no posting with key {op.key}")
            if not sqlite:
                conn.rollback()  # end the read-only transaction psycopg opened
            return
        if sqlite:
            conn.execute("BEGIN IMMEDIATE")
        (balance,) = conn.execute(lock, (op.member_id,)).fetchone()
        if op.kind == "refuse":
            if sqlite:
                conn.execute("ROLLBACK")
            else:
                conn.rollback()
            return
        conn.execute(update, (op.change, op.member_id))
        values = (op.member_id, op.posting_kind, op.change, op.change, balance + op.change, f"{tag}-{i}")
        conn.execute(insert, values)
        if sqlite:
            conn.execute("COMMIT")
        else:
            conn.commit()

    def worker() -> None:
        conn = connect()
        try:
            while not failed.is_set():
                i = next(counter)
                if i >= len(ops):
                    return
                one(conn, i, ops[i])
        except BaseException:
            failed.set()
            raise
        finally:
            conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bench-raw") as pool:
        futures = [pool.submit(worker) for _ in range(threads)]
        try:
            for f in futures:
                f.result()
        except BaseException:
            failed.set()
            raise
    return time.perf_counter() - started


# --- the machine -------------------------------------------------------------------------------


def machine_cpu_seconds(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """CPU seconds all cores spent busy between two ingest.cpu_ticks() (PostgreSQL's backends included, even
    those that exited meanwhile, and whatever else runs on the machine)."""
    if before is None or after is None:
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return (after[0] - before[0]) / tick


def pg_sessions(db: Any) -> int | None:
    """Sessions PostgreSQL has opened on the bench database so far (pg_stat_database, PostgreSQL 14+).

    The statistics lag a little: wait a second before the second reading.
    """
    if db.pg_dsn is None:
        return None
    try:
        return int(
            ingest.db_scalar(db, "SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        )
    except psycopg.Error:
        return None


# --- one database ------------------------------------------------------------------------------


def run_one(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.max_seconds
    ops = make_ops(args.warmup + args.postings, args.members, args.seed, secrets.token_hex(4))
    out = Outcomes.of(ops)
    mix = {k: sum(op.kind == k for op in ops[args.warmup :]) for k in ("earn", "spend", "replay")}
    with tempfile.TemporaryDirectory(prefix=f"siyu-bench-ledger-{kind}-") as tmp:
        workdir = Path(tmp)
        console.rule(f"[bold]{kind}")
        busy = ingest.machine_busy()
        if busy is not None:
            note = "  [yellow](other work is running: figures will be low)[/yellow]" if busy > 0.15 else ""
            console.print(f"  machine busy before the run: {busy:.0%} of {os.cpu_count()} cores{note}")
        with ingest.fresh_database(kind, args.pg_admin_dsn, workdir) as db:
            admin = admin_headers(create_key(db, workdir, "admin", "bench-ledger"))
            with running_server(db, workdir, args.server_workers) as server:
                try:
                    profiles = create_members(
                        db, server, workdir, admin, args.members, args.clients, deadline
                    )
                    if args.warmup:
                        console.print(f"  warm-up: {args.warmup} postings")
                        send_postings(
                            server.port,
                            admin,
                            profiles,
                            out,
                            0,
                            args.warmup,
                            args.clients,
                            deadline,
                            "warm-up",
                        )
                    if db.pg_dsn is not None:
                        # This machine's PostgreSQL runs with autovacuum off; a production server's would
                        # have analysed the tables by now. Without statistics a prepared statement keeps
                        # the plan it chose while the table was small (a scan of the postings per group).
                        with psycopg.connect(db.pg_dsn, autocommit=True) as conn:
                            conn.execute("ANALYZE")
                    console.print(
                        f"  timed: {args.postings} postings ({mix['earn']} earn, {mix['spend']} spend, "
                        f"{mix['replay']} replays) on {args.members} members, {args.clients} clients"
                    )
                    spy = Path(f"{args.py_spy}-{kind}.txt") if args.py_spy else None
                    groups_before = lane_groups(server.port)
                    cpu_before = ingest.server_cpu_seconds(server)
                    sessions_before = pg_sessions(db)
                    ticks_before = ingest.cpu_ticks()
                    client_before = time.process_time()
                    with ingest.py_spy(server.proc.pid, spy, gil=True):
                        wall, latencies = send_postings(
                            server.port,
                            admin,
                            profiles,
                            out,
                            args.warmup,
                            args.postings,
                            args.clients,
                            deadline,
                            "postings",
                        )
                    client_cpu = time.process_time() - client_before
                    ticks_after = ingest.cpu_ticks()
                    busy_during = ingest.busy_between(ticks_before, ticks_after)
                    cpu_after = ingest.server_cpu_seconds(server)
                    machine_cpu = machine_cpu_seconds(ticks_before, ticks_after)
                    groups_after = lane_groups(server.port)
                    time.sleep(1.0 if sessions_before is not None else 0)
                    sessions_after = pg_sessions(db)
                    console.print("  checking the ledger")
                    check = verify_ledger(db, server.port, admin, profiles, out, args.clients, deadline)
                except Exception as exc:
                    raise BenchError(
                        f"{type(exc).__name__}: {exc}\nserver log:\n{server.log_tail()}"
                    ) from exc
            timed = range(args.warmup, len(ops))
            statuses: dict[str, int] = {}
            for i in timed:
                statuses[str(out.status[i])] = statuses.get(str(out.status[i]), 0) + 1
            n = args.postings
            quarters = [latencies[i * n // 4 : (i + 1) * n // 4] for i in range(4)]
            console.print(
                f"  answers: {', '.join(f'{s} {c}' for s, c in sorted(statuses.items()))}; "
                "p50 latency by quarter of the run: "
                + ", ".join(f"{ingest.percentile(q, 50) * 1000:.1f} ms" for q in quarters if q)
            )
            per = {}
            if cpu_before is not None and cpu_after is not None:
                per["server_cpu_ms_per_posting"] = (cpu_after - cpu_before) * 1000 / n
            if machine_cpu is not None:
                per["machine_cpu_ms_per_posting"] = machine_cpu * 1000 / n
            sessions = None
            if sessions_before is not None and sessions_after is not None:
                sessions = sessions_after - sessions_before - 1  # less the connection of the first reading
                console.print(
                    f"  PostgreSQL sessions opened on the bench database during the run: {sessions}"
                )
            per["client_cpu_ms_per_posting"] = client_cpu * 1000 / n
            console.print(
                "  CPU per posting: "
                + ", ".join(f"{k.removesuffix('_cpu_ms_per_posting')} {v:.2f} ms" for k, v in per.items())
                + (f"; machine {busy_during:.0%} busy during the run" if busy_during is not None else "")
            )
            ok = not check["problems"]
            console.print(
                f"  ledger: {check['postings_in_ledger']} postings, {check['members_checked']} members: "
                + ("[green]every balance equals its ledger[/green]" if ok else "[red]MISMATCH[/red]")
            )
            for problem in check["problems"]:
                console.print(f"    [red]{problem}[/red]")
            if ok:
                console.print(
                    f"  limit: the same {n} requests by the raw path ({args.clients} threads, "
                    "one transaction each)"
                )
                limit = measure_limit(db, raw_ops(db, out, args.warmup, profiles), args.clients)
            else:
                limit = None
    postings_per_s = n / wall
    transactions = groups_after[1] - groups_before[1]
    mean_group = (groups_after[0] - groups_before[0]) / transactions if transactions else None
    p99_ms = ingest.percentile(latencies, 99) * 1000
    result = {
        "bench": "ledger",
        "db": kind,
        "postings": n,
        "members": args.members,
        "clients": args.clients,
        "server_workers": args.server_workers,
        "postings_per_s": round(postings_per_s),
        "created_per_s": round(statuses.get("201", 0) / wall),
        "p50_ms": round(ingest.percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(p99_ms, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "status_counts": statuses,
        "overdraws_409": statuses.get("409", 0),
        "replays_200": statuses.get("200", 0),
        "balance_equals_ledger": ok,
        "members_mismatched": check["members_mismatched"],
        "postings_in_ledger": check["postings_in_ledger"],
        "limit_requests_per_s": round(limit) if limit is not None else None,
        "ratio": round(postings_per_s / limit, 3) if limit else None,
        "target_postings_per_s": TARGET_POSTINGS_PER_S,
        "target_p99_ms": TARGET_P99_MS,
        "target_met": postings_per_s >= TARGET_POSTINGS_PER_S and p99_ms < TARGET_P99_MS and ok,
        **{k: round(v, 3) for k, v in per.items()},
        # With several server processes /metrics answers for one of them.
        "postings_per_transaction": round(mean_group, 1) if mean_group else None,
        "pg_sessions_opened": sessions,
        "machine_busy_during": round(busy_during, 2) if busy_during is not None else None,
        "machine_busy_before": round(busy, 2) if busy is not None else None,
        "cpu": f"{os.cpu_count()} cores",
        "python": platform.python_version(),
    }
    if not ok:
        print(orjson.dumps(result).decode(), flush=True)
        raise BenchError("the balances do not equal the ledger (see above)")
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="postgresql")
    parser.add_argument("--clients", type=int, default=16, help="concurrent HTTP clients (default 16)")
    parser.add_argument("--members", type=int, default=2_000, help="enrolled members (default 2,000)")
    parser.add_argument("--postings", type=int, default=40_000, help="timed postings (default 40,000)")
    parser.add_argument(
        "--warmup", type=int, default=1_000, help="postings sent first and not timed (default 1,000)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--server-workers", type=int, default=1, help="`siyu serve --workers` (default 1)")
    parser.add_argument(
        "--pg-admin-dsn",
        default=os.environ.get("SIYU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="where to create the scratch PostgreSQL database (default: $SIYU_TEST_PG_DSN or local postgres)",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=900, help="time bound per database (default 900)"
    )
    parser.add_argument(
        "--py-spy",
        metavar="PREFIX",
        help="record the server with py-spy (from the virtualenv or PATH) into PREFIX-<db>.txt",
    )
    args = parser.parse_args(argv)
    if args.postings < 1 or args.clients < 1 or args.members < 1 or args.warmup < 0:
        parser.error("--postings, --clients and --members must be positive, --warmup not negative")
    if args.py_spy and ingest.py_spy_executable() is None:
        parser.error("--py-spy needs py-spy in the virtualenv or on PATH")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the server is stopped and the scratch database dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kinds = ["postgresql", "sqlite"] if args.db == "both" else [args.db]
    failed = False
    for kind in kinds:
        try:
            result = run_one(kind, args)
        except (BenchError, psycopg.OperationalError) as exc:
            console.print(f"[red]{kind}: {exc}[/red]")
            failed = True
            continue
        print(orjson.dumps(result).decode(), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
