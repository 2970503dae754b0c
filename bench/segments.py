"""Segments benchmark: five representative rules on 1M profiles / 20M events, against hand-written SQL.

For each engine (SQLite, PostgreSQL, DuckDB) the benchmark

1. generates a deterministic synthetic brand with numpy (bench/_segments_data.py: `--profiles` profiles,
   `--events-per-profile` x profiles events over two years up to a fixed AS_OF, identifiers, stages, tags,
   consents, stores in three regions) once, and loads it into a fresh database: a temporary SQLite file or
   a `siyu_bench_<random>` PostgreSQL database (dropped at the end, even when the run fails), both migrated
   with siyu's Alembic migrations, loaded by COPY (PostgreSQL) or executemany in one transaction per table
   (SQLite, WAL and synchronous=OFF while loading), then VACUUM (ANALYZE) / ANALYZE; for DuckDB, Parquet
   files written with pyarrow (the columns of `siyu.segments.tables`), registered as views under the table
   names with the JSON columns cast to JSON. The load time is reported, it is not a target;
2. full computation: for each of the five segments (RULES) it runs siyu's compiled SQL
   (`service.to_sql(rule, dialect, AS_OF)`, on DuckDB `ibis.to_sql(compile_rule(...), dialect="duckdb")`)
   and the same audience written by hand in the engine's SQL (`hand_sql`: IN / EXISTS, GROUP BY ...
   HAVING, the engine's JSON operator; on SQLite it groups by `+e.profile_id`, as an engineer does after
   reading the plan, so that SQLite scans events instead of walking an index), on one raw connection with
   the application's settings, one warm-up each then `--runs` runs alternating siyu and hand (one run
   when the warm-up took over 30 s); the figure is the median. Both must return the same set of profile
   ids, or the benchmark fails: that is how we know the hand-written SQL is the same query. ratio = siyu
   / hand. A query running longer than `--timeout` is stopped and reported as a timeout; when siyu's SQL
   is over 1.5x, the plans of both go to stderr and the JSON says so (`note`, and `plan_hint` for the
   causes the benchmark recognises). PostgreSQL runs with the server's settings (`--pg-work-mem` to
   change work_mem for the session), reported in the JSON;
3. incremental membership (PostgreSQL, SQLite): what the ingest reactor (`service.refresh_for`) adds to an
   ingest batch. Per batch, `--batch-profiles` profiles picked by activity each get one new event (a
   qipao view, an order, a follow, a wishlist add...) written with `siyu.bulk` inside a transaction, then
   `service.matching(session, rule, as_of=AS_OF, scope=ids)` runs for the five segments in that same
   transaction (the reactor runs in the ingest transaction, so this is the latency it adds to the batch;
   HTTP is not measured), and the transaction is rolled back. The limit is the five hand-written queries
   restricted to the same ids (`AND profile_id IN (...)`) in the same transaction, with the same answers
   required. p50 / p95 / p99 over `--batches` batches, after 3 warm-up batches.

Targets (from the issue): siyu within 1.5x of the hand-written SQL; a full computation of a segment in
<= 2 s on DuckDB and <= 10 s on PostgreSQL (SQLite: reported, no absolute target); incremental p99 <= 1 s.
Relative windows are evaluated at the fixed AS_OF (never now()), so runs are reproducible.

It prints one JSON line per engine on stdout; progress and notes (plans of slow queries) go to stderr.

    .venv/bin/python bench/segments.py                                          # 1M profiles, 20M events
    .venv/bin/python bench/segments.py --profiles 20000 --engines sqlite,duckdb  # a quick run
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import platform
import re
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import duckdb
import ibis
import numpy as np
import orjson
import psycopg
from rich.markup import escape
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.db import create_db_engine
from siyu.segments import rules, service
from siyu.segments.compiler import compile_rule
from siyu.segments.tables import schemas, tables


def _sibling(name: str) -> ModuleType:
    """bench/<name>.py as a module, whether this file runs as a script or as bench.segments."""
    path = Path(__file__).resolve().with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"siyu_bench_{name}", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# The scratch databases, the console and percentiles are those of the ingest benchmark.
ingest = _sibling("ingest")
data = _sibling("_segments_data")
BenchError = ingest.BenchError
console = ingest.console


def say(message: str) -> None:
    """Progress on stderr, lines never wrapped (plans are long)."""
    console.print(message, soft_wrap=True)


ENGINES = ("sqlite", "postgresql", "duckdb")
AS_OF: dt.datetime = data.AS_OF
TARGET_RATIO = 1.5
TARGET_PG_S = 10.0
TARGET_DUCKDB_S = 2.0
TARGET_INCREMENTAL_P99_MS = 1000.0
INCREMENTAL_WARMUP = 3
SLOW_QUERY_S = 30.0  # a query slower than this (warm-up) is timed once, not --runs times

# --- the five segments: siyu rules ----------------------------------------------------------------------

RULES: dict[str, Any] = {
    # The Hi-Po example: browsing qipao, followed the Official Account for the first time this
    # month, not bought yet, in an East China store.
    "hipo": {
        "all": [
            {"stage": "Window"},
            {"event": "Official Account Followed", "occurrence": "first", "within_days": 30},
            {
                "event": "Product Viewed",
                "where": [{"property": "category", "op": "eq", "value": "qipao"}],
                "count": {"gte": 2},
            },
            {"region": "EAST"},
        ]
    },
    "big_spenders": {
        "event": "Order Completed",
        "sum": {"property": "amount_fen", "gte": 500_000},
        "within_days": 365,
    },
    "lapsed_vips": {
        "all": [{"tag": "vip"}, {"event": "Order Completed", "occurrence": "last", "older_than_days": 180}]
    },
    "shanghai_phone_never_ordered": {
        "all": [
            {"trait": "city", "op": "eq", "value": "Shanghai"},
            {"identifier": "phone"},
            {"not": {"event": "Order Completed", "count": {"gte": 1}}},
        ]
    },
    "engaged_browsers": {
        "all": [
            {
                "any": [
                    {"event": "Product Viewed", "count": {"gte": 5}, "within_days": 30},
                    {"event": "Product Added to Wishlist", "count": {"gte": 2}, "within_days": 30},
                ]
            },
            {"consent": "marketing", "granted": True},
        ]
    },
}

# --- the same five segments, by hand ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the engines in the hand-written SQL: time literals, JSON, the latest consent."""

    ts: Callable[[dt.datetime], str]
    json_text: Callable[[str, str], str]
    latest_consent: str  # ids whose latest `marketing` consent is a grant; {cs} = the scope on c
    # The GROUP BY key of the event aggregates. SQLite otherwise groups by walking the
    # (profile_id, timestamp) index and reads the events in that order, one random row at a time: an
    # engineer who looks at EXPLAIN QUERY PLAN writes `+e.profile_id` (no index for the grouping, a scan
    # and a temporary B-tree instead; the index still serves `profile_id IN (...)`).
    group_key: str = "e.profile_id"


def _tz_literal(moment: dt.datetime) -> str:
    return f"TIMESTAMPTZ '{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}+00'"


DIALECTS = {
    "postgresql": Dialect(
        ts=_tz_literal,
        json_text=lambda column, key: f"{column} ->> '{key}'",
        latest_consent=(
            "SELECT c.profile_id FROM (SELECT DISTINCT ON (profile_id) profile_id, granted FROM consents c"
            " WHERE c.purpose = 'marketing'{cs} ORDER BY profile_id, at DESC, id DESC) c WHERE c.granted"
        ),
    ),
    "sqlite": Dialect(
        # Times are naive UTC text 'YYYY-MM-DD HH:MM:SS.ffffff': compared as text.
        ts=lambda moment: f"'{moment.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}'",
        json_text=lambda column, key: f"json_extract({column}, '$.{key}')",
        latest_consent=(
            "SELECT c.profile_id FROM consents c WHERE c.purpose = 'marketing' AND c.granted{cs}"
            " AND NOT EXISTS (SELECT 1 FROM consents d WHERE d.profile_id = c.profile_id"
            " AND d.purpose = 'marketing' AND (d.at > c.at OR (d.at = c.at AND d.id > c.id)))"
        ),
        group_key="+e.profile_id",
    ),
    "duckdb": Dialect(
        ts=_tz_literal,
        json_text=lambda column, key: f"json_extract_string({column}, '$.{key}')",
        latest_consent=(
            "SELECT c.profile_id FROM consents c WHERE c.purpose = 'marketing'{cs}"
            " QUALIFY row_number() OVER (PARTITION BY c.profile_id ORDER BY c.at DESC, c.id DESC) = 1"
            " AND c.granted"
        ),
    ),
}


def hand_sql(engine: str, segment: str, scope: Sequence[int] | None = None) -> str:
    """The segment as a competent engineer writes it for the engine; scope restricts it to those ids."""
    d = DIALECTS[engine]
    days = {n: d.ts(AS_OF - dt.timedelta(days=n)) for n in (30, 180, 365)}
    ids = ",".join(str(int(i)) for i in scope) if scope is not None else ""

    def within(alias: str) -> str:
        return f" AND {alias}.profile_id IN ({ids})" if scope is not None else ""

    ps = f" AND p.id IN ({ids})" if scope is not None else ""
    live = f"p.merged_into_id IS NULL{ps}"
    if segment == "hipo":
        return f"""
SELECT p.id FROM profiles p
JOIN lifecycle_states l ON l.profile_id = p.id
JOIN stores s ON s.id = p.store_id
JOIN regions r ON r.id = s.region_id
WHERE {live} AND l.stage = 'Window' AND r.code = 'EAST'
  AND p.id IN (SELECT e.profile_id FROM events e WHERE e.event = 'Official Account Followed'{within("e")}
               GROUP BY {d.group_key} HAVING min(e."timestamp") >= {days[30]})
  AND p.id IN (SELECT e.profile_id FROM events e
               WHERE e.event = 'Product Viewed'
                 AND {d.json_text("e.properties", "category")} = 'qipao'{within("e")}
               GROUP BY {d.group_key} HAVING count(*) >= 2)"""
    if segment == "big_spenders":
        return f"""
SELECT p.id FROM profiles p
WHERE {live}
  AND p.id IN (SELECT e.profile_id FROM events e
               WHERE e.event = 'Order Completed' AND e."timestamp" >= {days[365]}{within("e")}
               GROUP BY {d.group_key} HAVING sum(e.amount_fen) >= 500000)"""
    if segment == "lapsed_vips":
        return f"""
SELECT p.id FROM profiles p
WHERE {live}
  AND EXISTS (SELECT 1 FROM profile_tags t WHERE t.profile_id = p.id AND t.name = 'vip')
  AND p.id IN (SELECT e.profile_id FROM events e WHERE e.event = 'Order Completed'{within("e")}
               GROUP BY {d.group_key} HAVING max(e."timestamp") < {days[180]})"""
    if segment == "shanghai_phone_never_ordered":
        return f"""
SELECT p.id FROM profiles p
WHERE {live} AND {d.json_text("p.traits", "city")} = 'Shanghai'
  AND EXISTS (SELECT 1 FROM identifiers i WHERE i.profile_id = p.id AND i.type = 'phone')
  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.profile_id = p.id AND e.event = 'Order Completed')"""
    if segment == "engaged_browsers":
        consent = d.latest_consent.format(cs=within("c"))
        return f"""
SELECT p.id FROM profiles p
WHERE {live}
  AND p.id IN (SELECT e.profile_id FROM events e
               WHERE e.event IN ('Product Viewed', 'Product Added to Wishlist')
                 AND e."timestamp" >= {days[30]}{within("e")}
               GROUP BY {d.group_key}
               HAVING sum(CASE WHEN e.event = 'Product Viewed' THEN 1 ELSE 0 END) >= 5
                   OR sum(CASE WHEN e.event = 'Product Added to Wishlist' THEN 1 ELSE 0 END) >= 2)
  AND p.id IN ({consent})"""
    raise ValueError(f"no hand-written SQL for {segment!r}")


def siyu_sql(engine: str, segment: str) -> str:
    """siyu's compiled SQL for the full computation, as the application renders it."""
    rule = RULES[segment]
    if engine == "duckdb":
        expr = compile_rule(rules.parse(rule), tables("duckdb"), as_of=AS_OF)
        return str(ibis.to_sql(expr, dialect="duckdb"))
    return service.to_sql(rule, "postgres" if engine == "postgresql" else "sqlite", AS_OF)


# --- running queries with a time limit --------------------------------------------------------------------


class QueryTimeout(Exception):
    """The query ran longer than --timeout and was stopped."""


class Runner:
    """One raw connection to an engine's database: run SQL (ids back), with a time limit; its plan."""

    engine: str

    def query(self, sql: str) -> list[int]:
        raise NotImplementedError

    def plan(self, sql: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def timed(self, sql: str) -> tuple[float, list[int]]:
        started = time.perf_counter()
        ids = self.query(sql)
        return time.perf_counter() - started, ids


class PostgresRunner(Runner):
    engine = "postgresql"

    def __init__(self, url: str, timeout_s: float, work_mem: str | None) -> None:
        # The application's engine: its connection settings are those siyu's queries run with.
        self.sa_engine = create_db_engine(url, pool_size=1, max_overflow=0)
        self.conn = self.sa_engine.raw_connection()
        self.dbapi: Any = self.conn.driver_connection
        self.dbapi.autocommit = True
        if work_mem:
            self.dbapi.execute(f"SET work_mem = '{work_mem}'")
        self.dbapi.execute(f"SET statement_timeout = {int(timeout_s * 1000)}")

    def query(self, sql: str) -> list[int]:
        try:
            with self.dbapi.cursor() as cursor:
                cursor.execute(sql)
                return [int(row[0]) for row in cursor.fetchall()]
        except psycopg.errors.QueryCanceled as exc:
            raise QueryTimeout(str(exc)) from exc

    def plan(self, sql: str) -> str:
        with self.dbapi.cursor() as cursor:
            cursor.execute(f"EXPLAIN {sql}")
            return "\n".join(row[0] for row in cursor.fetchall())

    def setting(self, name: str) -> str:
        with self.dbapi.cursor() as cursor:
            cursor.execute(f"SHOW {name}")
            return str(cursor.fetchone()[0])

    def close(self) -> None:
        self.conn.close()
        self.sa_engine.dispose()


class SqliteRunner(Runner):
    engine = "sqlite"

    def __init__(self, url: str, timeout_s: float) -> None:
        self.sa_engine = create_db_engine(url)
        self.conn = self.sa_engine.raw_connection()
        self.dbapi: sqlite3.Connection = self.conn.driver_connection  # type: ignore[assignment]
        self.timeout_s = timeout_s
        self.deadline = 0.0
        self.dbapi.set_progress_handler(lambda: int(time.monotonic() > self.deadline), 100_000)

    def query(self, sql: str) -> list[int]:
        self.deadline = time.monotonic() + self.timeout_s
        try:
            return [int(row[0]) for row in self.dbapi.execute(sql).fetchall()]
        except sqlite3.OperationalError as exc:
            if "interrupted" in str(exc):
                raise QueryTimeout(str(exc)) from exc
            raise

    def plan(self, sql: str) -> str:
        self.deadline = time.monotonic() + self.timeout_s
        rows = self.dbapi.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
        return "\n".join(f"{row[0]:>3} {row[1]:>3} {row[3]}" for row in rows)

    def close(self) -> None:
        self.conn.close()
        self.sa_engine.dispose()


class DuckdbRunner(Runner):
    engine = "duckdb"

    def __init__(self, paths: dict[str, Path], timeout_s: float) -> None:
        self.conn = duckdb.connect()
        self.timeout_s = timeout_s
        self.conn.execute("SET memory_limit = '6GB'")
        for table, path in paths.items():
            casts = [name for name, kind in schemas("duckdb")[table].items() if str(kind) == "json"]
            replace = f" REPLACE ({', '.join(f'CAST({c} AS JSON) AS {c}' for c in casts)})" if casts else ""
            self.conn.execute(f"CREATE VIEW {table} AS SELECT *{replace} FROM read_parquet('{path}')")

    def query(self, sql: str) -> list[int]:
        timer = threading.Timer(self.timeout_s, self.conn.interrupt)
        timer.start()
        try:
            return [int(row[0]) for row in self.conn.execute(sql).fetchall()]
        except duckdb.InterruptException as exc:
            raise QueryTimeout(str(exc)) from exc
        finally:
            timer.cancel()

    def plan(self, sql: str) -> str:
        return "\n".join(str(row[1]) for row in self.conn.execute(f"EXPLAIN {sql}").fetchall())

    def close(self) -> None:
        self.conn.close()


# --- full computation -------------------------------------------------------------------------------------


def full_computation(runner: Runner, runs: int, timeout_s: float) -> dict[str, dict[str, Any]]:
    """Per segment: siyu's SQL and the hand-written SQL, one warm-up then `runs` alternating runs each.

    A query whose warm-up took over SLOW_QUERY_S is timed once more instead of `runs` times.
    """
    out: dict[str, dict[str, Any]] = {}
    for segment in RULES:
        ours, hand = siyu_sql(runner.engine, segment), hand_sql(runner.engine, segment)
        try:
            hand_warm, hand_ids = runner.timed(hand)  # warm-up
        except QueryTimeout as exc:
            raise BenchError(f"{segment}: the hand-written SQL ran over {timeout_s:.0f} s") from exc
        try:
            siyu_warm, siyu_ids = runner.timed(ours)  # warm-up
        except QueryTimeout:
            say(f"  [red]{segment}: siyu's SQL ran over {timeout_s:.0f} s and was stopped[/red]")
            hand_times = [runner.timed(hand)[0] for _ in range(runs if hand_warm <= SLOW_QUERY_S else 1)]
            out[segment] = {
                "siyu_s": None,
                "siyu_timeout_s": timeout_s,
                "hand_s": round(statistics.median(hand_times), 3),
                "ratio": None,
                "members": len(set(hand_ids)),
                "runs": len(hand_times),
                "note": f"siyu's SQL did not finish in {timeout_s:.0f} s (stopped)",
            }
            hint = explain(runner, segment, ours, hand)
            if hint:
                out[segment]["plan_hint"] = hint
            continue
        check_same(runner.engine, segment, siyu_ids, hand_ids)
        n_runs = runs if max(siyu_warm, hand_warm) <= SLOW_QUERY_S else 1
        siyu_times, hand_times = [], []
        for i in range(n_runs):
            first, second = (ours, hand) if i % 2 == 0 else (hand, ours)
            a, a_ids = runner.timed(first)
            b, b_ids = runner.timed(second)
            (siyu_times if first is ours else hand_times).append(a)
            (hand_times if first is ours else siyu_times).append(b)
            if len(a_ids) != len(siyu_ids) or len(b_ids) != len(siyu_ids):
                raise BenchError(f"{segment}: a repeated run returned a different number of members")
        siyu_med, hand_med = statistics.median(siyu_times), statistics.median(hand_times)
        ratio = siyu_med / hand_med if hand_med > 0 else float("inf")
        entry: dict[str, Any] = {
            "siyu_s": round(siyu_med, 3),
            "hand_s": round(hand_med, 3),
            "ratio": round(ratio, 2),
            "members": len(set(siyu_ids)),
            "runs": n_runs,
        }
        say(
            f"  {segment}: siyu {siyu_med:.3f} s, hand-written {hand_med:.3f} s, ratio {ratio:.2f}, "
            f"{entry['members']:,} members ({n_runs} run(s); warm-up {siyu_warm:.3f} s and {hand_warm:.3f} s)"
        )
        if ratio > TARGET_RATIO:
            entry["note"] = f"siyu's SQL is {ratio:.1f}x slower than the hand-written SQL"
            hint = explain(runner, segment, ours, hand)
            if hint:
                entry["plan_hint"] = hint
        out[segment] = entry
    return out


def check_same(engine: str, segment: str, siyu_ids: Sequence[int], hand_ids: Sequence[int]) -> None:
    """Fail loudly when the two queries disagree: the hand-written SQL would not be the same query."""
    ours, hand = set(siyu_ids), set(hand_ids)
    if len(ours) != len(siyu_ids):
        raise BenchError(f"{engine} {segment}: siyu's SQL returned duplicate profile ids")
    if ours != hand:
        only_siyu, only_hand = sorted(ours - hand), sorted(hand - ours)
        raise BenchError(
            f"{engine} {segment}: siyu and the hand-written SQL disagree: {len(ours):,} vs {len(hand):,} "
            f"members; only siyu: {len(only_siyu)} (e.g. {only_siyu[:5]}), "
            f"only hand: {len(only_hand)} (e.g. {only_hand[:5]})"
        )


def explain(runner: Runner, segment: str, ours: str, hand: str) -> str | None:
    """Print the plans of a slow segment on stderr (EXPLAIN, nothing runs); a hint at the cause, if known."""
    plans = {}
    for label, sql in (("siyu", ours), ("hand-written", hand)):
        try:
            plans[label] = runner.plan(sql)
        except Exception as exc:  # a plan is a hint: never fail the run for it
            plans[label] = f"(no plan: {exc})"
        lines = plans[label].splitlines()
        shown = "\n".join(f"      {line}" for line in lines[:80])
        more = f"\n      ... {len(lines) - 80} more lines" if len(lines) > 80 else ""
        say(f"    [dim]{segment}, plan of the {label} SQL:[/dim]\n{escape(shown)}{escape(more)}")
    hint = plan_hint(runner.engine, plans["siyu"], plans["hand-written"])
    if hint:
        say(f"    [yellow]{segment}: {hint}[/yellow]")
    return hint


def plan_hint(engine: str, plan: str, hand_plan: str) -> str | None:
    """What in the plan of siyu's SQL (and not in the hand-written one) explains its time, if known."""
    if engine == "postgresql":
        plain = sorted(set(re.findall(r"\((SubPlan \d+)\)", plan)))
        if plain and not re.search(r"\((SubPlan \d+)\)", hand_plan):
            which = "y" if len(plain) == 1 else "ies"
            return (
                f"PostgreSQL runs {len(plain)} IN subquer{which} as a plain SubPlan, rescanned for every "
                "profile: COALESCE(id IN (subquery), FALSE) is not turned into a semi-join, and the "
                "subquery's rows do not fit in work_mem for a hashed SubPlan"
            )
    walks = (
        r"SCAN \S+ USING (COVERING )?INDEX ix_events_profile_id"
        r"|SEARCH \S+ USING INDEX ix_events_profile_id \(ANY"
    )
    if engine == "sqlite" and re.search(walks, plan) and not re.search(walks, hand_plan):
        return (
            "SQLite reads the events through the index ix_events_profile_id (to group them in index order, "
            "or "
            "skip-scanning it for a time window), one random read of events per row, instead of scanning the "
            "table (the hand-written SQL groups by +e.profile_id)"
        )
    return None


# --- incremental membership -------------------------------------------------------------------------------


INCREMENTAL_EVENTS = [
    ("Product Viewed", '{"category":"qipao","price":1280,"sku":"SKU-00"}', 0),
    ("Product Viewed", '{"category":"dresses","price":690,"sku":"SKU-11"}', 0),
    ("Order Completed", '{"order_id":"OB","total":1280.0,"currency":"CNY"}', 128_000),
    ("Official Account Followed", '{"scene":"qr_store"}', 0),
    ("Product Added to Wishlist", '{"category":"qipao","price":1280,"sku":"SKU-00"}', 0),
]
EVENT_COLUMNS: list[tuple[str, bulk.Kind]] = [
    ("id", "int"),
    ("message_id", "text"),
    ("type", "text"),
    ("event", "text"),
    ("profile_id", "int"),
    ("identifier_id", "int"),
    ("timestamp", "ts"),
    ("received_at", "ts"),
    ("amount_fen", "int"),
    ("properties", "json"),
    ("context", "json"),
]


def incremental(
    engine: str, url: str, brand: Any, batches: int, batch_profiles: int, seed: int, timeout_s: float
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Per ingest batch, the seconds of each scoped rule, and of each scoped hand-written query."""
    rng = np.random.default_rng(seed + 2)
    size = min(batch_profiles, int((brand.weight > 0).sum()))
    options: dict[str, Any] = {}
    if engine == "postgresql":
        options["connect_args"] = {"options": f"-c statement_timeout={int(timeout_s * 1000)}"}
    sa_engine = create_db_engine(url, **options)
    siyu: list[dict[str, float]] = []
    hand: list[dict[str, float]] = []
    try:
        with Session(sa_engine) as session:
            for b in range(INCREMENTAL_WARMUP + batches):
                ids = sorted(
                    int(i) + 1 for i in rng.choice(brand.profiles, size, replace=False, p=brand.weight)
                )
                try:
                    siyu_t, hand_t = one_batch(session, engine, brand, ids, rng, b, flip=b % 2 == 1)
                finally:
                    session.rollback()
                if b < INCREMENTAL_WARMUP:
                    continue
                siyu.append(siyu_t)
                hand.append(hand_t)
                if len(siyu) % 20 == 0:
                    say(
                        f"    {len(siyu)} batches: last siyu {sum(siyu_t.values()) * 1000:.0f} ms, "
                        f"hand-written {sum(hand_t.values()) * 1000:.0f} ms"
                    )
    finally:
        sa_engine.dispose()
    return siyu, hand


def one_batch(
    session: Session,
    engine: str,
    brand: Any,
    ids: list[int],
    rng: np.random.Generator,
    batch: int,
    *,
    flip: bool,
) -> tuple[dict[str, float], dict[str, float]]:
    """Write one event per profile, then time siyu's scoped matching and the hand-written queries (s)."""
    picks = rng.integers(0, len(INCREMENTAL_EVENTS), len(ids))
    ago = rng.integers(1, 600, len(ids))
    new_ids = bulk.allocate_ids(session, "events", len(ids))
    rows = []
    for new_id, pid, pick, seconds in zip(new_ids, ids, picks, ago, strict=True):
        name, properties, amount = INCREMENTAL_EVENTS[pick]
        at = AS_OF - dt.timedelta(seconds=int(seconds))
        rows.append(
            (
                new_id,
                f"bench-inc-{batch}-{new_id}",
                "track",
                name,
                pid,
                int(brand.openid_id[pid - 1]),
                at,
                at,
                amount,
                orjson.loads(properties),
                {},
            )
        )
    bulk.insert_rows(session, "events", EVENT_COLUMNS, rows)
    cursor = bulk.driver_connection(session).cursor()
    hand_queries = {segment: hand_sql(engine, segment, ids) for segment in RULES}

    def run_siyu() -> tuple[dict[str, float], dict[str, set[int]]]:
        times, found = {}, {}
        for segment, rule in RULES.items():
            started = time.perf_counter()
            found[segment] = set(service.matching(session, rule, as_of=AS_OF, scope=ids))
            times[segment] = time.perf_counter() - started
        return times, found

    def run_hand() -> tuple[dict[str, float], dict[str, set[int]]]:
        times, found = {}, {}
        for segment, sql in hand_queries.items():
            started = time.perf_counter()
            cursor.execute(sql)
            found[segment] = {int(r[0]) for r in cursor.fetchall()}
            times[segment] = time.perf_counter() - started
        return times, found

    try:
        if flip:
            hand_t, hand_found = run_hand()
            siyu_t, siyu_found = run_siyu()
        else:
            siyu_t, siyu_found = run_siyu()
            hand_t, hand_found = run_hand()
    finally:
        cursor.close()
    for segment in RULES:
        check_same(
            engine, f"{segment} (incremental)", sorted(siyu_found[segment]), sorted(hand_found[segment])
        )
    return siyu_t, hand_t


# --- one engine -------------------------------------------------------------------------------------------


def percentiles(values: Sequence[float]) -> dict[str, float]:
    return {
        "p50": round(ingest.percentile(values, 50), 1),
        "p95": round(ingest.percentile(values, 95), 1),
        "p99": round(ingest.percentile(values, 99), 1),
        "max": round(max(values), 1),
    }


def run_engine(engine: str, brand: Any, args: argparse.Namespace) -> dict[str, Any]:
    console.rule(f"[bold]{engine}")
    busy = ingest.machine_busy()
    if busy is not None:
        note = "  [yellow](other work is running: figures will be slow)[/yellow]" if busy > 0.15 else ""
        say(f"  machine busy before the run: {busy:.0%} of {os.cpu_count()} cores{note}")
    result: dict[str, Any] = {
        "bench": "segments",
        "engine": engine,
        "profiles": brand.profiles,
        "events": brand.events,
        "seed": brand.seed,
        "as_of": AS_OF.isoformat(),
    }
    with tempfile.TemporaryDirectory(prefix=f"siyu-bench-segments-{engine}-") as tmp:
        workdir = Path(tmp)
        if engine == "duckdb":
            run_duckdb(brand, args, workdir, result)
        else:
            with ingest.fresh_database(engine, args.pg_admin_dsn, workdir) as db:
                run_database(engine, db, brand, args, result)
    result["timeout_s"] = args.timeout
    result["targets"] = targets(engine, result)
    result["machine_busy_before"] = round(busy, 2) if busy is not None else None
    result["cpu"] = f"{os.cpu_count()} cores"
    result["python"] = platform.python_version()
    return result


def run_duckdb(brand: Any, args: argparse.Namespace, workdir: Path, result: dict[str, Any]) -> None:
    say("  writing Parquet files")
    arrow = {t: ibis.schema(s).to_pyarrow() for t, s in schemas("duckdb").items()}
    started = time.perf_counter()
    paths = data.write_parquet(brand, workdir, arrow, say)
    result["load_s"] = round(time.perf_counter() - started, 1)
    result["parquet_mb"] = round(sum(p.stat().st_size for p in paths.values()) / 2**20)
    runner = DuckdbRunner(paths, args.timeout)
    try:
        result["duckdb"] = duckdb.__version__
        say(f"  full computation ({args.runs} runs after a warm-up, median)")
        result["segments"] = full_computation(runner, args.runs, args.timeout)
    finally:
        runner.close()


def run_database(engine: str, db: Any, brand: Any, args: argparse.Namespace, result: dict[str, Any]) -> None:
    say(f"  loading {brand.profiles:,} profiles and {brand.events:,} events")
    started = time.perf_counter()
    if engine == "postgresql":
        data.load_postgresql(brand, db.pg_dsn, say)
    else:
        data.load_sqlite(brand, db.sqlite_path, say)
    result["load_s"] = round(time.perf_counter() - started, 1)
    runner: Runner
    if engine == "postgresql":
        pg = PostgresRunner(db.url, args.timeout, args.pg_work_mem)
        result["postgresql"] = pg.setting("server_version")
        result["pg_settings"] = {
            name: pg.setting(name)
            for name in ("shared_buffers", "work_mem", "max_parallel_workers_per_gather", "jit")
        }
        result["db_mb"] = round(
            int(ingest.db_scalar(db, "SELECT pg_database_size(current_database())")) / 2**20
        )
        runner = pg
    else:
        runner = SqliteRunner(db.url, args.timeout)
        result["sqlite"] = sqlite3.sqlite_version
        result["db_mb"] = round(db.sqlite_path.stat().st_size / 2**20)
    try:
        say(f"  full computation ({args.runs} runs after a warm-up, median)")
        result["segments"] = full_computation(runner, args.runs, args.timeout)
    finally:
        runner.close()
    say(
        f"  incremental: {args.batches} batches of {args.batch_profiles} touched profiles "
        f"(+{INCREMENTAL_WARMUP} warm-up), five segments each"
    )
    siyu, hand = incremental(
        engine, db.url, brand, args.batches, args.batch_profiles, args.seed, args.timeout
    )
    result["incremental_batches"] = args.batches
    result["batch_profiles"] = args.batch_profiles
    result["incremental_ms"] = percentiles([sum(t.values()) * 1000 for t in siyu])
    result["incremental_hand_ms"] = percentiles([sum(t.values()) * 1000 for t in hand])
    result["incremental_p50_by_segment_ms"] = {
        segment: {
            "siyu": round(ingest.percentile([t[segment] * 1000 for t in siyu], 50), 1),
            "hand": round(ingest.percentile([t[segment] * 1000 for t in hand], 50), 1),
        }
        for segment in RULES
    }
    say(
        f"  incremental per batch: siyu p50 {result['incremental_ms']['p50']} ms, "
        f"p99 {result['incremental_ms']['p99']} ms; "
        f"hand-written p50 {result['incremental_hand_ms']['p50']} ms, "
        f"p99 {result['incremental_hand_ms']['p99']} ms"
    )


def targets(engine: str, result: dict[str, Any]) -> dict[str, bool]:
    segments = result.get("segments", {}).values()
    out = {"ratio_le_1_5": all(s["ratio"] is not None and s["ratio"] <= TARGET_RATIO for s in segments)}
    if engine == "postgresql":
        out["pg_le_10s"] = all(s["siyu_s"] is not None and s["siyu_s"] <= TARGET_PG_S for s in segments)
    if engine == "duckdb":
        out["duckdb_le_2s"] = all(
            s["siyu_s"] is not None and s["siyu_s"] <= TARGET_DUCKDB_S for s in segments
        )
    if "incremental_ms" in result:
        out["incremental_p99_le_1s"] = result["incremental_ms"]["p99"] <= TARGET_INCREMENTAL_P99_MS
    return out


# --- command line -----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated (default: all three)")
    parser.add_argument("--profiles", type=int, default=1_000_000, help="default 1,000,000")
    parser.add_argument("--events-per-profile", type=int, default=20, help="default 20")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--runs", type=int, default=3, help="timed runs per query after a warm-up (default 3)"
    )
    parser.add_argument("--batches", type=int, default=100, help="incremental batches (default 100)")
    parser.add_argument("--batch-profiles", type=int, default=200, help="profiles touched per batch (200)")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds before a query is stopped (default 300)"
    )
    parser.add_argument(
        "--pg-work-mem", help="SET work_mem for the PostgreSQL queries (default: the server's setting)"
    )
    parser.add_argument(
        "--pg-admin-dsn",
        default=os.environ.get("SIYU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="where to create the scratch PostgreSQL database (default: $SIYU_TEST_PG_DSN or local postgres)",
    )
    args = parser.parse_args(argv)
    args.engine_list = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(args.engine_list) - set(ENGINES))
    if unknown or not args.engine_list:
        parser.error(f"--engines: unknown {unknown} (choose among {', '.join(ENGINES)})")
    if args.profiles < 100 or args.events_per_profile < 1 or args.runs < 1 or args.batches < 1:
        parser.error("--profiles must be >= 100, --events-per-profile, --runs and --batches >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the scratch database is dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    brand = data.generate(args.profiles, args.events_per_profile, args.seed)
    say(
        f"generated {brand.profiles:,} profiles and {brand.events:,} events (seed {args.seed}) "
        f"in {time.perf_counter() - started:.1f} s; AS_OF {AS_OF.isoformat()}"
    )
    failed = False
    for engine in args.engine_list:
        try:
            result = run_engine(engine, brand, args)
        except (BenchError, psycopg.OperationalError, sqlite3.OperationalError, duckdb.Error) as exc:
            say(f"[red]{engine}: {exc}[/red]")
            failed = True
            continue
        print(orjson.dumps(result).decode(), flush=True)
    say(f"total {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
