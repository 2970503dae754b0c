"""Journeys benchmark: a broadcast journey to a segment of 1,000,000 customers, caps on, no-op sender.

For each engine (PostgreSQL, SQLite) the benchmark

1. loads a fresh database (bench/ingest.py's scratch databases: a temporary SQLite file or a
   `siyu_bench_<random>` PostgreSQL database, migrated with siyu's Alembic migrations and dropped at the
   end): `--customers` profiles, each with a member id and an Official Account openid the account can
   reach (`message_reach`), an Official Account, one segment holding everyone, an OA template message
   with personalisation (`{{ first_name }}`) and a brand cap of 4 marketing messages a month. Loaded raw
   with `siyu.bulk`; the load time is reported, it is not a target;
2. plan: publishes a journey "segment entry, include existing members -> send the template -> exit"
   (publishing enrols every member with one INSERT ... SELECT) and runs the engine (`engine.run_due`,
   `--batch` enrolments per transaction, as `siyu worker` does, with the garbage collector tuned as the
   worker tunes it: `SIYU_GC_THRESHOLD`) until no one is due: every customer's
   message is rendered, checked against reach, consent and the caps (a cap slot taken per message), and
   queued in the outbox table `messages`. The figure is the wall time from publishing to the last commit
   (target <= 60 s for 1M customers; Mautic took 2.5 days, its issue #2870);
3. send: the sender (`sender.run_once`, `messages_batch_size` per claim) with the channel adapter replaced
   by a no-op that answers "sent" for every message, until nothing is queued: messages per second
   (target >= 10,000/s);
   `--workers N` runs N engine processes side by side (as N `siyu worker` processes would), and N
   senders in step 3;
4. the limit, measured in the same run: the same number of rows inserted raw into `messages` (the
   columns the engine writes) with `siyu.bulk.insert_rows` (COPY on PostgreSQL, executemany on SQLite) in
   one transaction, rolled back.

The run is checked: N messages queued, then N sent, N enrolments completed, N cap slots. It prints one
JSON line per engine on stdout; progress goes to stderr.

    .venv/bin/python bench/journeys.py                                   # 1M customers, both engines
    .venv/bin/python bench/journeys.py --customers 20000 --engines sqlite  # a quick run
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from siyu import bulk, db, runtime
from siyu.channels import service as channels
from siyu.channels.models import ChannelKind, OaType
from siyu.config import get_settings
from siyu.journeys import engine
from siyu.journeys import service as journeys
from siyu.journeys.models import Enrolment, EnrolmentStatus
from siyu.messaging import sender
from siyu.messaging import service as messaging
from siyu.messaging.models import CapPeriod, CapSlot, Channel, Message, MessageStatus
from siyu.segments.models import Segment, SegmentStatus

# The scratch databases and the console are those of the ingest benchmark.
try:  # run as a script, bench/ is on sys.path
    import ingest
except ImportError:  # imported as a module of the bench package
    from bench import ingest  # type: ignore[no-redef]
console = ingest.console
BenchError = ingest.BenchError
TARGET_PLAN_S = 60.0
TARGET_SEND_PER_S = 10_000.0
# The next noon in Shanghai: after the enrolments' due time and outside the default quiet hours, so the
# run measures planning and sending, not waiting.
_now = dt.datetime.now(dt.UTC)
NOON = dt.datetime.combine(_now.date(), dt.time(4, 0), tzinfo=dt.UTC) + dt.timedelta(days=1)


def say(message: str) -> None:
    console.print(message, soft_wrap=True)


def load(factory: sessionmaker[Session], n: int) -> dict[str, int]:
    """The brand and its customers, raw; returns the ids the run needs."""
    with factory() as s:
        oa = channels.create_account(
            s,
            kind=ChannelKind.oa,
            name="bench-oa",
            app_id="wxbench",
            secret="s",  # noqa: S106 (a scratch database)
            token="benchtoken",  # noqa: S106
            oa_type=OaType.service,
        )
        segment = Segment(
            name="Everyone",
            rule={"profile": "events_count", "op": "gte", "value": 0},
            status=SegmentStatus.ready,
            size=n,
        )
        s.add(segment)
        s.flush()
        now = NOON - dt.timedelta(days=30)
        step = 50_000
        with console.status("loading") as status:
            for start in range(1, n + 1, step):
                ids = range(start, min(n, start + step - 1) + 1)
                bulk.insert_rows(
                    s,
                    "profiles",
                    [
                        ("id", "int"),
                        ("created_at", "ts"),
                        ("updated_at", "ts"),
                        ("name", "text"),
                        ("traits", "json"),
                        ("events_count", "int"),
                        ("orders_count", "int"),
                        ("revenue_fen", "int"),
                        ("refunded_fen", "int"),
                    ],
                    [(i, now, now, f"Customer {i}", {"first_name": f"C{i}"}, 1, 0, 0, 0) for i in ids],
                )
                bulk.insert_rows(
                    s,
                    "identifiers",
                    [
                        ("id", "int"),
                        ("type", "text"),
                        ("value", "text"),
                        ("profile_id", "int"),
                        ("first_seen_at", "ts"),
                        ("last_seen_at", "ts"),
                        ("shared", "bool"),
                    ],
                    [
                        r
                        for i in ids
                        for r in (
                            (2 * i - 1, "member_id", f"M{i}", i, now, now, False),
                            (2 * i, "wechat_openid", f"o-{i}", i, now, now, False),
                        )
                    ],
                )
                bulk.insert_rows(
                    s,
                    "message_reach",
                    [
                        ("id", "int"),
                        ("account_id", "int"),
                        ("id_type", "text"),
                        ("address", "text"),
                        ("reachable", "bool"),
                        ("updated_at", "ts"),
                    ],
                    [(i, oa.id, "wechat_openid", f"o-{i}", True, now) for i in ids],
                )
                bulk.insert_rows(
                    s,
                    "segment_members",
                    [("segment_id", "int"), ("profile_id", "int"), ("entered_at", "ts")],
                    [(segment.id, i, now) for i in ids],
                )
                status.update(f"loading: {ids[-1]:,} / {n:,} customers")
        if s.get_bind().dialect.name == "postgresql":
            for table in ("profiles", "identifiers", "message_reach"):
                # The ids were given, not drawn from the sequences: move them past what was loaded.
                s.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                    )
                )
        messaging.create_template(
            s,
            name="Broadcast",
            channel=Channel.oa_template,
            account_id=oa.id,
            external_template_id="TPL",
            body={"data": {"first": "{{ first_name }}, the autumn collection is in", "keyword1": "Autumn"}},
        )
        messaging.create_cap(s, channel=None, period=CapPeriod.month, limit=4)
        s.commit()
        ids_out = {"segment": segment.id, "account": oa.id}
    with factory() as s:
        for table in ("profiles", "identifiers", "message_reach", "segment_members"):
            s.execute(text(f"ANALYZE {table}"))
        s.commit()
    return ids_out


def in_processes(target: Any, workers: int, url: str) -> None:
    """Run target(url) in that many forked processes, as that many `siyu worker` processes would."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=target, args=(url,)) for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode for p in procs):
        raise BenchError(f"a worker process failed: exit codes {[p.exitcode for p in procs]}")


def _plan_worker(url: str) -> None:
    """One `siyu worker` process of the plan phase: moves due enrolments until none is left."""
    eng = db.create_db_engine(url)
    db.set_engine(eng)
    factory = db.get_sessionmaker()
    while True:
        with factory() as s:
            moved = engine.run_due(s, now=NOON)
            s.commit()
        if not moved:
            break
    eng.dispose()


def plan(factory: sessionmaker[Session], segment_id: int, n: int, workers: int = 1, url: str = "") -> float:
    definition = {
        "entry": {"type": "segment", "segment_id": segment_id, "include_existing": True},
        "start": "send",
        "nodes": {
            "send": {"type": "send", "template": "Broadcast", "next": "done"},
            "done": {"type": "exit"},
        },
    }
    started = time.perf_counter()
    with factory() as s:
        journey = journeys.create(s, name="Autumn broadcast", definition=definition)
        published = journeys.publish(s, journey)
        s.commit()
    if published.enrolled != n:
        raise BenchError(f"enrolled {published.enrolled:,}, expected {n:,}")
    say(f"  enrolled {n:,} in {time.perf_counter() - started:.1f} s")
    if workers > 1:
        # Separate processes share the enrolments with SKIP LOCKED.
        in_processes(_plan_worker, workers, url)
        return time.perf_counter() - started
    done = 0
    with console.status("planning") as status:
        while True:
            with factory() as s:
                moved = engine.run_due(s, now=NOON)
                s.commit()
            if not moved:
                break
            done += moved
            status.update(f"planning: {done:,} / {n:,} ({done / (time.perf_counter() - started):,.0f}/s)")
    return time.perf_counter() - started


def noop(clients: sender.Clients, messages: Sequence[sender.Outgoing]) -> dict[int, sender.Result]:
    """A channel that accepts everything at once: what is left is siyu's own cost."""
    return {m.id: sender.Result(MessageStatus.sent, external_id=None) for m in messages}


def _send_worker(url: str) -> None:
    """One sender process: sends until nothing is queued."""
    sender.ADAPTERS[Channel.oa_template] = noop
    eng = db.create_db_engine(url)
    db.set_engine(eng)
    factory = db.get_sessionmaker()
    while sender.run_once(factory, now=NOON + dt.timedelta(minutes=1)).claimed:
        pass
    eng.dispose()


def send(factory: sessionmaker[Session], n: int, workers: int = 1, url: str = "") -> float:
    sender.ADAPTERS[Channel.oa_template] = noop
    started = time.perf_counter()
    if workers > 1:
        in_processes(_send_worker, workers, url)
        return time.perf_counter() - started
    total = 0
    with console.status("sending") as status:
        while True:
            run = sender.run_once(factory, now=NOON + dt.timedelta(minutes=1))
            if not run.claimed:
                break
            total += run.claimed
            status.update(f"sending: {total:,} / {n:,}")
    return time.perf_counter() - started


def limit(factory: sessionmaker[Session], n: int, template_id: int) -> float:
    """The same number of message rows inserted raw, in one transaction (rolled back)."""
    now = NOON
    with factory() as s:
        started = time.perf_counter()
        rows = [
            (
                f"raw:{k}",
                template_id,
                "oa_template",
                1,
                k + 1,
                f"o-{k + 1}",
                None,
                {"data": {"first": f"C{k + 1}, the autumn collection is in", "keyword1": "Autumn"}},
                "queued",
                None,
                0,
                now,
                None,
                None,
                None,
                None,
                now,
            )
            for k in range(n)
        ]
        for start in range(0, n, 50_000):
            bulk.insert_rows(s, "messages", messaging.MESSAGE_COLUMNS, rows[start : start + 50_000])
        elapsed = time.perf_counter() - started
        s.rollback()
    return elapsed


def check(factory: sessionmaker[Session], n: int) -> None:
    with factory() as s:
        statuses = dict(s.execute(select(Message.status, func.count()).group_by(Message.status)).all())
        if statuses != {MessageStatus.sent: n}:
            raise BenchError(f"messages by status: {statuses}")
        done = s.execute(
            select(func.count()).where(Enrolment.status == EnrolmentStatus.completed)
        ).scalar_one()
        slots = s.execute(select(func.count()).select_from(CapSlot)).scalar_one()
        if (done, slots) != (n, n):
            raise BenchError(f"{done:,} enrolments completed and {slots:,} cap slots for {n:,} customers")


def run(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    say(f"[bold]{kind}[/bold]: {args.customers:,} customers")
    os.environ["SIYU_JOURNEYS_BATCH_SIZE"] = str(args.batch)
    get_settings.cache_clear()
    # The garbage collector as `siyu worker` tunes it (the forked workers inherit it).
    runtime.tune(get_settings())
    with ingest.fresh_database(kind, args.pg_admin_dsn, workdir) as database:
        eng = db.create_db_engine(database.url)
        db.set_engine(eng)
        factory = db.get_sessionmaker()
        try:
            t = time.perf_counter()
            ids = load(factory, args.customers)
            load_s = time.perf_counter() - t
            say(f"  loaded in {load_s:.1f} s")
            plan_s = plan(factory, ids["segment"], args.customers, args.workers, database.url)
            say(f"  planned in {plan_s:.1f} s")
            send_s = send(factory, args.customers, args.workers, database.url)
            say(f"  sent in {send_s:.1f} s")
            check(factory, args.customers)
            with factory() as s:
                template_id = s.execute(select(func.min(Message.template_id))).scalar_one()
            limit_s = limit(factory, args.customers, template_id)
        finally:
            db.set_engine(None)
            eng.dispose()
    n = args.customers
    return {
        "bench": "journeys",
        "engine": kind,
        "customers": n,
        "batch": args.batch,
        "workers": args.workers,
        "load_s": round(load_s, 1),
        "plan_s": round(plan_s, 1),
        "plan_per_s": round(n / plan_s),
        "target_plan_s": TARGET_PLAN_S * n / 1_000_000,
        "send_s": round(send_s, 1),
        "send_per_s": round(n / send_s),
        "target_send_per_s": TARGET_SEND_PER_S,
        "limit_rows_per_s": round(n / limit_s),
        "plan_vs_limit": round(plan_s / limit_s, 1),
        "send_vs_limit": round(send_s / limit_s, 1),
        "plan_met": plan_s <= TARGET_PLAN_S * n / 1_000_000,
        "send_met": n / send_s >= TARGET_SEND_PER_S,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--engines", default="postgresql,sqlite")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (engine, then sender)")
    parser.add_argument(
        "--batch",
        type=int,
        default=get_settings().journeys_batch_size,
        help="enrolments per engine transaction",
    )
    parser.add_argument(
        "--pg-admin-dsn",
        default=os.environ.get("SIYU_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args(argv)
    import logging

    import orjson
    import structlog

    # stdout carries the JSON line alone: the sender's and engine's logs stay quiet below warnings.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    with tempfile.TemporaryDirectory(prefix="siyu-bench-journeys-") as tmp:
        for kind in [e.strip() for e in args.engines.split(",") if e.strip()]:
            result = run(kind, args, Path(tmp))
            print(orjson.dumps(result).decode(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
