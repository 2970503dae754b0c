"""File import benchmark: order rows per second from a large POS export, against the same file only parsed.

The benchmark first writes one CSV (before any clock starts; the same file serves every database):
realistic POS order rows in the columns of the `pos` preset (order_id, member_card, member_id, phone,
amount, refund_amount, time, store, associate, status, skus). Every order id is unique; the rows come
from a population of customers whose card, member id and phone stay the same from row to row (so
rows meet identifiers already stored and tie them together); about 3% are refunded, 1% void (skipped,
not orders) and 0.5% deliberately bad (an amount "abc", an impossible time, no order id, nobody named,
an invalid phone), so the error report path runs too.

Then, for each database (SQLite, PostgreSQL), it

1. creates a fresh database (a temporary SQLite file; a `siyu_bench_<random>` PostgreSQL database,
   dropped at the end, even when the run fails) and migrates it;
2. measures the limit in the same run: the same file only parsed (`readers.open_sheet`, every row
   read), and a second figure, the file parsed and converted to events (`RowConverter.convert`), with
   no database;
3. imports the file with `run_import` (kind orders, source pos, the preset mapping) and times it: rows
   read divided by the wall time of `run_import`; the events stored are counted in the bench database
   and must be exactly the events of the rows that were not refused;
4. imports the same file again: every row is a duplicate, so the re-run must store nothing (the run
   fails if the events count changes), and reports its speed too.

`run_import` runs in this process, not through `siyu import` in a subprocess: the CLI adds only a
progress bar and a row count around the same call. It is pointed at the bench database the way the CLI
finds its database: SIYU_DATABASE_URL, the settings cache cleared and the process-wide engine reset,
with the scratch folder as the working directory (no ./.env or ./var of a checkout is picked up).
Error reports go to the scratch folder.

It prints one JSON line per database on stdout; progress goes to stderr.

    .venv/bin/python bench/import.py                          # both databases, 1,000,000 rows
    .venv/bin/python bench/import.py --db sqlite --rows 20000
"""

from __future__ import annotations

import argparse
import array
import contextlib
import csv
import datetime as dt
import os
import platform
import random
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from siyu import db as siyu_db
from siyu.channels.imports import mappings, readers
from siyu.channels.imports.service import ImportResult, RowConverter, RowError, Skip, run_import
from siyu.config import get_settings

# The database and machine helpers are those of the ingest benchmark.
try:  # run as a script, bench/ is on sys.path
    import ingest
except ImportError:  # imported as a module of the bench package
    from bench import ingest  # type: ignore[no-redef]
BenchError = ingest.BenchError
console = ingest.console

TARGET_ROWS_PER_S = 50_000
KIND = "orders"

HEADER = (
    "order_id",
    "member_card",
    "member_id",
    "phone",
    "amount",
    "refund_amount",
    "time",
    "store",
    "associate",
    "status",
    "skus",
)

# (code, name) of the brand's stores; each has a few associates.
STORES = (
    ("SZ01", "苏州观前街店"),
    ("SZ02", "苏州金鸡湖店"),
    ("SZ03", "苏州石路店"),
    ("SH01", "上海南京西路店"),
    ("SH02", "上海徐家汇店"),
    ("HZ01", "杭州湖滨店"),
    ("NJ01", "南京新街口店"),
    ("WX01", "无锡崇安寺店"),
)
ASSOCIATE_NAMES = ("张三", "李四", "王五", "赵六", "钱七", "孙八", "周九", "吴十", "郑一", "陈二")
SKUS = ("QP-001", "QP-002", "QP-003", "QP-004", "QP-005", "QP-006", "QP-007", "QP-008")
# Mainland mobile prefixes (13x, 15x but 154, 18x) that phonenumbers accepts as valid.
PHONE_PREFIXES = ("138", "139", "135", "136", "150", "151", "158", "159", "186", "188", "189", "180")
BAD_KINDS = ("amount", "time", "order_id", "nobody", "phone")

# Drawn independently per row; a row that drew none gets the card, so about 70% carry a card.
SHARE_CARD = 0.50
SHARE_PHONE = 0.50
SHARE_MEMBER_ID = 0.20
SHARE_VOID = 0.01
SHARE_REFUNDED = 0.03
SHARE_PARTIAL_REFUND = 0.01  # of paid rows: a partial refund written on the order
SHARE_BAD = 0.005


# --- the file ----------------------------------------------------------------------------------


def card(n: int) -> str:
    return f"88{n:08d}"


def member_id(n: int) -> str:
    return f"M{n:07d}"


def phone(n: int) -> str:
    """A valid mainland mobile number, the same for customer n every time, different for each n."""
    return PHONE_PREFIXES[n % len(PHONE_PREFIXES)] + f"{(n * 7919 + 1_234_567) % 100_000_000:08d}"


@dataclass(slots=True)
class FileStats:
    """What went into the generated file."""

    rows: int = 0
    bytes: int = 0
    seconds: float = 0.0
    with_card: int = 0
    with_phone: int = 0
    with_member_id: int = 0
    paid: int = 0
    refunded: int = 0
    partial_refunds: int = 0
    void: int = 0
    bad: dict[str, int] = field(default_factory=dict)


def generate_csv(path: Path, rows: int, customers: int, seed: int) -> FileStats:
    """rows POS order rows, in time order over 2025 (imports refuse future times), written to path (UTF-8, as a POS exports)."""
    rng = random.Random(seed)
    stats = FileStats(rows=rows)
    regulars = max(1, customers // 10)
    associates = {code: [f"{name}{i + 1}" for i in range(4)] for code, name in STORES}
    start = dt.datetime(2025, 1, 1, 8, 0, 0)
    span = 365 * 86_400 - 14 * 3600
    started = time.perf_counter()
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for i in range(rows):
            # 40% of rows are the regulars (the first tenth of the customers), 60% anyone.
            n = rng.randrange(regulars) if rng.random() < 0.4 else rng.randrange(customers)
            # Customers mostly buy at their home store.
            code, store = STORES[n % len(STORES)] if rng.random() < 0.8 else rng.choice(STORES)
            associate = associates[code][rng.randrange(4)] if rng.random() < 0.7 else ""
            when = start + dt.timedelta(seconds=span * i // rows + rng.randrange(60))
            cents = rng.randrange(2_000, 500_001)
            amount = f"{cents // 100}.{cents % 100:02d}"
            the_card = card(n) if rng.random() < SHARE_CARD else ""
            the_phone = phone(n) if rng.random() < SHARE_PHONE else ""
            the_member = member_id(n) if rng.random() < SHARE_MEMBER_ID else ""
            if not (the_card or the_phone or the_member):
                the_card = card(n)  # a POS order row names its member somehow
            roll = rng.random()
            refund = ""
            if roll < SHARE_VOID:
                status = "void"
                stats.void += 1
            elif roll < SHARE_VOID + SHARE_REFUNDED:
                status = "refunded"
                stats.refunded += 1
                if rng.random() < 0.5:  # else the whole amount, as the status says
                    part = rng.randrange(1, cents + 1)
                    refund = f"{part // 100}.{part % 100:02d}"
            else:
                status = "paid"
                stats.paid += 1
                if rng.random() < SHARE_PARTIAL_REFUND:
                    part = rng.randrange(1, cents + 1)
                    refund = f"{part // 100}.{part % 100:02d}"
                    stats.partial_refunds += 1
            skus = ";".join(rng.sample(SKUS, rng.randrange(1, 4)))
            order_id = f"{code}{when:%y%m%d}{i + 1:08d}"
            when_text = f"{when:%Y-%m-%d %H:%M:%S}"
            if status == "paid" and rng.random() < SHARE_BAD / 0.96:
                bad = BAD_KINDS[rng.randrange(len(BAD_KINDS))]
                stats.bad[bad] = stats.bad.get(bad, 0) + 1
                if bad == "amount":
                    amount = "abc"
                elif bad == "time":
                    when_text = "2026-13-45 25:61:00"
                elif bad == "order_id":
                    order_id = ""
                elif bad == "nobody":
                    the_card = the_phone = the_member = ""
                else:
                    the_phone = "1380013"  # too short: the pipeline refuses the row's events
            stats.with_card += bool(the_card)
            stats.with_phone += bool(the_phone)
            stats.with_member_id += bool(the_member)
            writer.writerow(
                (
                    order_id,
                    the_card,
                    the_member,
                    the_phone,
                    amount,
                    refund,
                    when_text,
                    store,
                    associate,
                    status,
                    skus,
                )
            )
    stats.seconds = time.perf_counter() - started
    stats.bytes = path.stat().st_size
    return stats


# --- the limit ---------------------------------------------------------------------------------


def measure_parse(path: Path) -> tuple[int, float]:
    """(rows, rows per second) of the file only parsed: `open_sheet` and every row read."""
    started = time.perf_counter()
    sheet = readers.open_sheet(path)
    rows = 0
    for _number, _values in sheet.rows:
        rows += 1
    return rows, rows / (time.perf_counter() - started)


@dataclass(slots=True)
class Converted:
    """The file parsed and converted to events, without a database."""

    rows: int
    rows_per_s: float
    events: int
    failed: int
    skipped: int
    events_per_row: array.array[int]  # by row number: 0 for a refused or skipped row


def measure_convert(path: Path, source: str, mapping: mappings.Mapping) -> Converted:
    """The file parsed and every row converted to events by `RowConverter`, as `run_import` does."""
    events_per_row: array.array[int] = array.array("b")
    started = time.perf_counter()
    sheet = readers.open_sheet(path)
    converter = RowConverter(KIND, source, mapping, sheet.header, path.name)
    rows = events = failed = skipped = 0
    for number, values in sheet.rows:
        rows += 1
        try:
            made = len(converter.convert(number, values).events)
        except RowError:
            failed += 1
            made = 0
        except Skip:
            skipped += 1
            made = 0
        events += made
        if len(events_per_row) <= number:
            events_per_row.extend([0] * (number + 1 - len(events_per_row)))
        events_per_row[number] = made
    return Converted(rows, rows / (time.perf_counter() - started), events, failed, skipped, events_per_row)


# --- the import --------------------------------------------------------------------------------


@contextlib.contextmanager
def siyu_bound_to(url: str, workdir: Path) -> Iterator[None]:
    """siyu's settings and process-wide engine on url while the block runs, then as they were."""
    previous_cwd = Path.cwd()
    previous_url = os.environ.get("SIYU_DATABASE_URL")
    engine = None
    try:
        os.environ["SIYU_DATABASE_URL"] = url
        os.chdir(workdir)
        get_settings.cache_clear()
        siyu_db.set_engine(None)
        engine = siyu_db.get_engine()  # built from the settings, as the CLI's is
        if engine.url.render_as_string(hide_password=False) != url:
            raise BenchError(f"siyu's engine is on {engine.url!r}, not the bench database")
        yield
    finally:
        if engine is not None:
            engine.dispose()
        siyu_db.set_engine(None)
        if previous_url is None:
            os.environ.pop("SIYU_DATABASE_URL", None)
        else:
            os.environ["SIYU_DATABASE_URL"] = previous_url
        get_settings.cache_clear()
        os.chdir(previous_cwd)


@contextlib.contextmanager
def progress_reporter(label: str, total: int, deadline: float) -> Iterator[Callable[[int], None]]:
    """A `progress` callback for run_import: a bar on a terminal, a line per tenth otherwise.

    It raises BenchError past the deadline, which stops the import (recorded as failed).
    """
    columns = (TextColumn(f"  {label}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=total)
        done = 0
        next_line = total // 10
        started = time.perf_counter()

        def advance(n: int) -> None:
            nonlocal done, next_line
            done += n
            bar.advance(task, n)
            if not console.is_terminal and done >= next_line > 0:
                elapsed = time.perf_counter() - started
                console.print(f"  {label}: {done:,} rows in {elapsed:.1f} s ({done / elapsed:,.0f} rows/s)")
                next_line += max(1, total // 10)
            if time.monotonic() > deadline:
                raise BenchError(f"out of time after {done:,} rows (see --max-seconds)")

        yield advance


def timed_import(
    path: Path,
    source: str,
    mapping: mappings.Mapping,
    chunk_rows: int,
    report: Path,
    label: str,
    total: int,
    deadline: float,
) -> tuple[ImportResult, float]:
    """run_import on the bound database; (its result, its wall seconds)."""
    with progress_reporter(label, total, deadline) as advance:
        started = time.perf_counter()
        result = run_import(
            path,
            kind=KIND,
            source=source,
            mapping=mapping,
            actor="bench",
            chunk_rows=chunk_rows,
            error_report=report,
            progress=advance,
        )
        wall = time.perf_counter() - started
    return result, wall


# --- one database ------------------------------------------------------------------------------


def set_up_organisation() -> None:
    """The brand's stores and associates, as a brand sets them up before importing (not timed).

    An order row naming a store or an associate siyu does not know is refused, as it should be.
    """
    from siyu.auth import service as auth_service
    from siyu.auth.models import Role
    from siyu.clienteling import org

    with siyu_db.unit_of_work() as session:
        org.create_region(session, code="EAST", name="East China")
        for code, name in STORES:
            store = org.create_store(session, code=code, name=name, region="EAST")
            for i in range(4):
                auth_service.create_user(
                    session,
                    username=f"{name}{i + 1}",
                    password=secrets.token_urlsafe(12),
                    role=Role.sales_associate,
                    region_id=store.region_id,
                    store_id=store.id,
                )


def run_one(kind: str, args: argparse.Namespace, path: Path, stats: FileStats) -> dict[str, Any]:
    deadline = time.monotonic() + args.max_seconds
    mapping = mappings.load(KIND, args.source)
    with tempfile.TemporaryDirectory(prefix=f"siyu-bench-import-{kind}-") as tmp:
        workdir = Path(tmp)
        console.rule(f"[bold]{kind}")
        busy = ingest.machine_busy()
        if busy is not None:
            note = "  [yellow](other work is running: figures will be low)[/yellow]" if busy > 0.15 else ""
            console.print(f"  machine busy before the run: {busy:.0%} of {os.cpu_count()} cores{note}")

        console.print("  limit: the same file only parsed, then parsed and converted to events (no database)")
        parsed_rows, limit = measure_parse(path)
        converted = measure_convert(path, args.source, mapping)
        console.print(
            f"  parsed {parsed_rows:,} rows at {limit:,.0f} rows/s; converted at {converted.rows_per_s:,.0f} "
            f"rows/s into {converted.events:,} events ({converted.failed:,} refused, "
            f"{converted.skipped:,} skipped)"
        )
        if parsed_rows != stats.rows or converted.rows != stats.rows:
            raise BenchError(f"read {parsed_rows} / {converted.rows} rows, the file has {stats.rows}")

        with ingest.fresh_database(kind, args.pg_admin_dsn, workdir) as db, siyu_bound_to(db.url, workdir):
            set_up_organisation()
            console.print(f"  timed: run_import of {stats.rows:,} rows, chunks of {args.chunk_rows:,}")
            first, wall = timed_import(
                path,
                args.source,
                mapping,
                args.chunk_rows,
                workdir / "errors-1.csv",
                "import",
                stats.rows,
                deadline,
            )
            stored = int(ingest.db_scalar(db, "SELECT count(*) FROM events"))
            refused_events = sum(converted.events_per_row[f.row] for f in first.failures)
            expected = converted.events - refused_events
            console.print(
                f"  {first.rows_read:,} rows read in {wall:.1f} s ({first.rows_read / wall:,.0f} rows/s): "
                f"{first.rows_imported:,} imported, {first.rows_duplicate:,} already there, "
                f"{first.rows_skipped:,} skipped, {first.rows_failed:,} refused "
                f"(report {first.error_report.name if first.error_report else 'none'}); "
                f"{stored:,} events stored"
            )
            check_first(first, stats, stored, expected)

            console.print("  re-run: the same file again (every row already stored)")
            again, rerun_wall = timed_import(
                path,
                args.source,
                mapping,
                args.chunk_rows,
                workdir / "errors-2.csv",
                "re-run",
                stats.rows,
                deadline,
            )
            stored_after = int(ingest.db_scalar(db, "SELECT count(*) FROM events"))
            console.print(
                f"  {again.rows_read:,} rows read in {rerun_wall:.1f} s "
                f"({again.rows_read / rerun_wall:,.0f} rows/s): {again.rows_imported:,} imported, "
                f"{again.rows_duplicate:,} already there; {stored_after:,} events stored"
            )
            if stored_after != stored or again.rows_imported or again.rows_duplicate != first.rows_imported:
                raise BenchError(
                    f"the re-run was not a no-op: events {stored} -> {stored_after}, "
                    f"{again.rows_imported} rows imported, {again.rows_duplicate} duplicates "
                    f"(expected {first.rows_imported})"
                )
            profiles = int(ingest.db_scalar(db, "SELECT count(*) FROM profiles WHERE merged_into_id IS NULL"))
            identifiers = int(ingest.db_scalar(db, "SELECT count(*) FROM identifiers"))
            merges = int(ingest.db_scalar(db, "SELECT count(*) FROM identity_merges"))
            console.print(f"  {identifiers:,} identifiers, {profiles:,} live profiles, {merges:,} merges")

    rows_per_s = first.rows_read / wall
    return {
        "bench": "import",
        "db": kind,
        "source": args.source,
        "rows": first.rows_read,
        "file_mb": round(stats.bytes / 1e6, 1),
        "chunk_rows": args.chunk_rows,
        "customers": args.customers,
        "seconds": round(wall, 1),
        "rows_per_s": round(rows_per_s),
        "rows_imported": first.rows_imported,
        "rows_failed": first.rows_failed,
        "rows_skipped": first.rows_skipped,
        "events_stored": stored,
        "limit_rows_per_s": round(limit),
        "convert_rows_per_s": round(converted.rows_per_s),
        "ratio": round(rows_per_s / limit, 3),
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "target_met": rows_per_s >= TARGET_ROWS_PER_S,
        "rerun_seconds": round(rerun_wall, 1),
        "rerun_rows_per_s": round(again.rows_read / rerun_wall),
        "rerun_events_unchanged": stored_after == stored,
        "profiles": profiles,
        "identifiers": identifiers,
        "merges": merges,
        "machine_busy_before": round(busy, 2) if busy is not None else None,
        "cpu": f"{os.cpu_count()} cores",
        "python": platform.python_version(),
    }


def check_first(result: ImportResult, stats: FileStats, stored: int, expected: int) -> None:
    """The first import read every row, refused the bad ones, skipped the void ones, stored the rest."""
    problems = []
    if result.rows_read != stats.rows:
        problems.append(f"{result.rows_read} rows read, the file has {stats.rows}")
    if result.rows_duplicate:
        problems.append(f"{result.rows_duplicate} rows counted as already there in a fresh database")
    if result.rows_skipped != stats.void:
        problems.append(f"{result.rows_skipped} rows skipped, the file has {stats.void} void rows")
    if result.rows_failed != sum(stats.bad.values()):
        problems.append(f"{result.rows_failed} rows refused, the file has {sum(stats.bad.values())} bad rows")
    if stored != expected:
        problems.append(
            f"events holds {stored} rows, expected {expected} (the bench database is not written?)"
        )
    if problems:
        raise BenchError("; ".join(problems))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="order rows in the file (default 1,000,000)"
    )
    parser.add_argument(
        "--customers", type=int, default=200_000, help="distinct customers in the file (default 200,000)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--source", choices=["pos"], default="pos", help="the built-in mapping the file follows (default pos)"
    )
    parser.add_argument(
        "--chunk-rows", type=int, default=2000, help="rows per transaction of run_import (default 2000)"
    )
    parser.add_argument(
        "--pg-admin-dsn",
        default=os.environ.get("SIYU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="where to create the scratch PostgreSQL database (default: $SIYU_TEST_PG_DSN or local postgres)",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=3600, help="time bound per database (default 3600)"
    )
    args = parser.parse_args(argv)
    if args.rows < 1 or args.customers < 1 or args.chunk_rows < 1:
        parser.error("--rows, --customers and --chunk-rows must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the scratch database is dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    failed = False
    with tempfile.TemporaryDirectory(prefix="siyu-bench-import-") as tmp:
        path = Path(tmp) / f"{args.source}-orders.csv"
        stats = generate_csv(path, args.rows, args.customers, args.seed)
        console.print(
            f"generated {stats.rows:,} rows ({stats.bytes / 1e6:.1f} MB) in {stats.seconds:.1f} s: "
            f"{stats.paid:,} paid ({stats.partial_refunds:,} with a partial refund), "
            f"{stats.refunded:,} refunded, {stats.void:,} void; {stats.with_card / stats.rows:.0%} with a card, "
            f"{stats.with_phone / stats.rows:.0%} with a phone, {stats.with_member_id / stats.rows:.0%} with a "
            f"member id; bad rows: {', '.join(f'{k} {v}' for k, v in sorted(stats.bad.items())) or 'none'}"
        )
        for kind in kinds:
            try:
                result = run_one(kind, args, path, stats)
            except (BenchError, psycopg.OperationalError) as exc:
                console.print(f"[red]{kind}: {exc}[/red]")
                failed = True
                continue
            print(orjson.dumps(result).decode(), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
