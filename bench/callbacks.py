"""Callback benchmark: signed, encrypted Official Account pushes to a running `siyu serve`, against their limit.

For each database (SQLite, PostgreSQL) the benchmark

1. creates a fresh database (a temporary SQLite file; a `siyu_bench_<random>` PostgreSQL database,
   dropped at the end), migrates it and configures an Official Account in safe mode with
   `siyu channels add oa` (the same SIYU_SECRET_KEY as the server: channel secrets are sealed with it);
2. starts `siyu serve` on a free 127.0.0.1 port in a subprocess and waits for /healthz;
3. sends a few warm-up pushes that are not counted, then generates the timed pushes (a mix of
   subscribe, SCAN, CLICK, VIEW, LOCATION and text messages from a population of followers, each push
   unique) signed and encrypted as WeChat does in safe mode (`encrypt_type=aes`, `signature` and
   `msg_signature`), and POSTs them to /wechat/oa/{name}/callback over keep-alive connections (128 by
   default: WeChat pushes without waiting for earlier answers, so at 5,000 pushes/s with 30 ms answers about
   150 are in flight); every answer must be 200 `success`;
4. waits for the ingest processor (a `siyu worker` by default; `--processor after` starts it only once
   every push is answered, to measure the endpoint alone) to store every queued push, and counts the events
   stored. The worker's user/info calls for new followers go to siyu's fake WeChat API in a process of its own;
5. measures the limit in-process: the same pushes only verified, decrypted and parsed
   (`signature_matches`, `xml.parse`, `MessageCrypto.open`, `xml.parse`), on one core.

The server refuses a push whose timestamp is more than 300 s from its clock, so the timed pushes are
signed just before they are sent: a run must answer them all within that window.

It prints one JSON line per database on stdout; progress goes to stderr.

    .venv/bin/python bench/callbacks.py                      # both databases
    .venv/bin/python bench/callbacks.py --db sqlite --pushes 5000
    .venv/bin/python bench/callbacks.py --server-workers 2 --processor after
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg

from siyu.channels import xml
from siyu.channels.crypto import MessageCrypto, signature, signature_matches

# The database, server and measuring helpers are those of the ingest benchmark.
try:  # run as a script, bench/ is on sys.path
    import ingest
except ImportError:  # imported as a module of the bench package
    from bench import ingest  # type: ignore[no-redef]
BenchError = ingest.BenchError
console = ingest.console

TARGET_PUSHES_PER_S = 5_000
TARGET_P99_MS = 50
HTTP_TIMEOUT_S = 30.0
LIMIT_ROUNDS = 3

# The Official Account, as `siyu channels add oa` configures it.
OA_NAME = "bench-oa"
OA_APP_ID = "wxbench0000000001"
OA_TOKEN = "BenchToken1"  # noqa: S105 (a made-up account of a scratch database)
OA_AES_KEY = "ArQAsa8LCuzzTZXPHFN5bxhcvuoOl7i4c+9i5DJw90s"  # 43 characters: 32 bytes in base64
OA_ORIGINAL_ID = "gh_bench"
# Fixed for the run: the CLI seals the account's secrets with it, the server opens them with it.
SECRET_KEY = "siyu-bench-callbacks-secret-key-0123456789abcdef"  # noqa: S105 (scratch only)


# --- the pushes --------------------------------------------------------------------------------


# (share of pushes, kind): what an Official Account of a restaurant brand receives in a day.
MIX = (
    (0.12, "subscribe"),
    (0.10, "subscribe_qr"),
    (0.10, "SCAN"),
    (0.18, "CLICK"),
    (0.12, "VIEW"),
    (0.18, "LOCATION"),
    (0.20, "text"),
)
MIX_WEIGHTS = [share for share, _ in MIX]
MIX_KINDS = [kind for _, kind in MIX]
MENU_KEYS = ("V1001_MENU", "V1002_MEMBER", "V1003_COUPON", "V1004_STORES", "V1005_BOOKING")
VIEW_URLS = (
    "https://shop.example.com/qipao",
    "https://shop.example.com/member/center",
    "https://shop.example.com/mooncake-2026",
    "https://shop.example.com/stores?city=suzhou",
)
SCENES = ("sh01-zhangsan", "sh02-lisi", "sz01-wangwu", "bj03-zhaoliu", "poster-autumn", "table-card")
TEXTS = (
    "你好",
    "今天营业到几点",
    "会员积分怎么查",
    "想预订周六晚上6位",
    "大闸蟹还有货吗",
    "发票怎么开",
    "优惠券用不了",
    "谢谢",
)


@dataclass(slots=True)
class Push:
    """One POST as WeChat sends it: the URL with its signed query, the encrypted body."""

    url: str
    body: bytes
    # For the limit: what the server checks and opens.
    timestamp: str
    nonce: str
    url_signature: str
    msg_signature: str


@dataclass(slots=True)
class PushFactory:
    """Unique pushes from a population of followers; a later push never repeats an earlier one.

    CreateTime advances by one second per push (ending about now), text messages carry increasing
    MsgIds: no push is a retry of another, so every one is stored.
    """

    followers: int
    rng: random.Random
    first_create_time: int
    seq: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def inner(self) -> str:
        """The plaintext XML of the next push."""
        rng = self.rng
        self.seq += 1
        openid = ingest.Person(rng.randrange(self.followers)).openid
        create_time = self.first_create_time + self.seq
        kind = rng.choices(MIX_KINDS, MIX_WEIGHTS)[0]
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        head = (
            f"<xml><ToUserName><![CDATA[{OA_ORIGINAL_ID}]]></ToUserName>"
            f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{create_time}</CreateTime>"
        )
        if kind == "text":
            content = TEXTS[rng.randrange(len(TEXTS))]
            return (
                f"{head}<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{content}]]></Content>"
                f"<MsgId>{24_500_000_000_000_000 + self.seq}</MsgId></xml>"
            )
        event = "subscribe" if kind == "subscribe_qr" else kind
        fields = ""
        if kind == "subscribe_qr":
            fields = (
                f"<EventKey><![CDATA[qrscene_{SCENES[rng.randrange(len(SCENES))]}]]></EventKey>"
                f"<Ticket><![CDATA[gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL{self.seq:08d}]]></Ticket>"
            )
        elif kind == "SCAN":
            fields = (
                f"<EventKey><![CDATA[{SCENES[rng.randrange(len(SCENES))]}]]></EventKey>"
                f"<Ticket><![CDATA[gQH47joAAAAAAAAAASxodHRwOi8vd2VpeGluLnFxLmNvbS9xL{self.seq:08d}]]></Ticket>"
            )
        elif kind == "CLICK":
            fields = f"<EventKey><![CDATA[{MENU_KEYS[rng.randrange(len(MENU_KEYS))]}]]></EventKey>"
        elif kind == "VIEW":
            fields = (
                f"<EventKey><![CDATA[{VIEW_URLS[rng.randrange(len(VIEW_URLS))]}]]></EventKey>"
                "<MenuId>208396993</MenuId>"
            )
        elif kind == "LOCATION":
            fields = (
                f"<Latitude>{31.2 + rng.random() * 0.2:.6f}</Latitude>"
                f"<Longitude>{120.5 + rng.random() * 0.2:.6f}</Longitude>"
                f"<Precision>{rng.uniform(20, 150):.6f}</Precision>"
            )
        return f"{head}<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{fields}</xml>"

    def pushes(self, count: int, crypto: MessageCrypto) -> list[Push]:
        """count pushes signed now (the server refuses them 300 s from now) and encrypted."""
        timestamp = str(int(time.time()))
        out = []
        for _ in range(count):
            nonce = str(self.rng.randrange(10**9))
            encrypted = crypto.encrypt(self.inner())
            url_signature = signature(OA_TOKEN, timestamp, nonce)
            msg_signature = crypto.sign(timestamp, nonce, encrypted)
            query = urllib.parse.urlencode(
                {
                    "signature": url_signature,
                    "timestamp": timestamp,
                    "nonce": nonce,
                    "openid": "o-any",  # WeChat's query openid; the handler reads FromUserName
                    "encrypt_type": "aes",
                    "msg_signature": msg_signature,
                }
            )
            body = (
                f"<xml><ToUserName><![CDATA[{OA_ORIGINAL_ID}]]></ToUserName>"
                f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
            ).encode()
            out.append(
                Push(
                    f"/wechat/oa/{OA_NAME}/callback?{query}",
                    body,
                    timestamp,
                    nonce,
                    url_signature,
                    msg_signature,
                )
            )
        return out


# --- the account and the server ----------------------------------------------------------------

# siyu's fake WeChat API (the one the tests and the demo use), alone in its own process.
FAKE_WECHAT = """
import uvicorn
from siyu.channels.fake import FakeState, create_fake_app
app = create_fake_app(FakeState(apps={{"{app_id}": "s"}}, accept_any_user=True))
uvicorn.run(app, host="127.0.0.1", port={port}, log_level="warning")
"""


def add_account(db: Any, workdir: Path) -> None:
    """The Official Account, configured by `siyu channels add oa` as an operator would."""
    siyu = Path(sys.executable).with_name("siyu")
    cmd = [
        str(siyu),
        "channels",
        "add",
        "oa",
        "--name",
        OA_NAME,
        "--app-id",
        OA_APP_ID,
        "--type",
        "service",
        "--token",
        OA_TOKEN,
        "--aes-key",
        OA_AES_KEY,
        "--secret",
        "s",
    ]
    env = {**os.environ, "SIYU_DATABASE_URL": db.url, "SIYU_SECRET_KEY": SECRET_KEY}
    done = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise BenchError(f"siyu channels add oa failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    console.print(f"  configured Official Account {OA_NAME!r} ({OA_APP_ID}), safe mode")


@contextlib.contextmanager
def running_server(
    db: Any, workdir: Path, workers: int, processor: str
) -> Iterator[tuple[Any, Callable[[], None], Callable[[], None]]]:
    """`siyu serve` with this database and SECRET_KEY; functions that start `siyu worker` and run it once.

    The worker starts at once with --processor worker; everything is stopped on the way out.
    """
    siyu = Path(sys.executable).with_name("siyu")
    if not siyu.exists():
        raise BenchError(f"{siyu} not found: install the project first (make install)")
    port = ingest.free_port()
    fake_port = ingest.free_port()
    env = {
        **os.environ,
        "SIYU_DATABASE_URL": db.url,
        # The worker asks WeChat for each new follower's user/info: here a local fake answers it.
        "SIYU_WECHAT_API_BASE": f"http://127.0.0.1:{fake_port}",
        "SIYU_SECRET_KEY": SECRET_KEY,
        "SIYU_LOG_LEVEL": "WARNING",
        "SIYU_INGEST_PROCESSOR": "true" if processor == "inline" else "false",
    }
    # Outside the scratch folder, so it is still there to read when a run fails.
    log_path = Path(tempfile.gettempdir()) / f"siyu-bench-callbacks-server-{db.kind}.log"
    cmd = [str(siyu), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    # The working directory is the scratch folder, so no ./.env or ./var of a checkout is picked up.
    with log_path.open("wb") as log:
        fake = subprocess.Popen(
            [sys.executable, "-c", FAKE_WECHAT.format(app_id=OA_APP_ID, port=fake_port)],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = subprocess.Popen(
            cmd, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = ingest.Server(proc, port, log_path)
    try:
        ingest.wait_healthy(server)
        console.print(
            f"  server pid {proc.pid} on 127.0.0.1:{port} ({workers} worker(s), processor {processor})"
        )

        def start_worker() -> None:
            if server.worker is None:
                server.worker = ingest.start_worker(siyu, env, workdir, log_path)

        def drain() -> None:
            # With --processor after, the warm-up pushes are stored by a worker that stops when done.
            done = subprocess.run(
                [str(siyu), "worker", "--once"], env=env, cwd=workdir, capture_output=True, timeout=300
            )
            if done.returncode != 0:
                raise BenchError(f"siyu worker --once failed: {done.stderr.decode(errors='replace')[-500:]}")

        if processor == "worker":
            start_worker()
        yield server, start_worker, drain
    finally:
        if server.worker is not None:
            ingest.stop(server.worker)
        ingest.stop(proc)
        ingest.stop(fake)


# --- the client --------------------------------------------------------------------------------


def request_bytes(port: int, push: Push) -> bytes:
    """The whole HTTP/1.1 request of a push, as WeChat's servers send it."""
    head = (
        f"POST {push.url} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: text/xml\r\n"
        f"User-Agent: Mozilla/4.0\r\nContent-Length: {len(push.body)}\r\n\r\n"
    )
    return head.encode() + push.body


def send_pushes(
    port: int, pushes: Sequence[Push], concurrency: int, deadline: float, label: str
) -> tuple[float, list[float]]:
    """POST every push from `concurrency` keep-alive connections; (wall seconds, latencies).

    The client is an asyncio loop writing prepared requests, so that it costs the two cores as little
    as it can: http.client in threads took about 0.2 ms of CPU a push, a core at 5,000 pushes/s.
    """
    requests = [request_bytes(port, push) for push in pushes]
    latencies = [0.0] * len(pushes)
    counter = itertools.count()

    async def connection(done: list[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while (i := next(counter)) < len(pushes):
                if time.monotonic() > deadline:
                    raise BenchError("out of time (see --max-seconds)")
                started = time.perf_counter()
                writer.write(requests[i])
                status, data = await asyncio.wait_for(ingest.read_answer(reader), HTTP_TIMEOUT_S)
                latencies[i] = time.perf_counter() - started
                if status != 200 or data != b"success":
                    raise BenchError(answer_problem(i, status, data, pushes[i]))
                done[0] += 1
        finally:
            writer.close()

    return ingest.drive(label, len(pushes), concurrency, connection), latencies


def answer_problem(index: int, status: int, data: bytes, push: Push) -> str:
    text = f"push {index}: HTTP {status}, expected 200 'success': {data[:400]!r}"
    if status == 403 and b"stale" in data:
        age = time.time() - int(push.timestamp)
        text += (
            f"\n(the push was signed {age:.0f} s ago and the server refuses timestamps more than 300 s "
            "from now: lower --pushes so the run fits the window)"
        )
    return text


# --- the limit ---------------------------------------------------------------------------------


def measure_limit(pushes: Sequence[Push]) -> float:
    """Pushes per second verified, decrypted and parsed in this process (best of LIMIT_ROUNDS rounds).

    The work of `oa.open_push` without HTTP, the database and the freshness check: the URL signature,
    the envelope XML, msg_signature and AES, the inner XML.
    """
    crypto = MessageCrypto(OA_TOKEN, OA_AES_KEY, OA_APP_ID)
    best = 0.0
    for _ in range(LIMIT_ROUNDS):
        started = time.perf_counter()
        for push in pushes:
            if not signature_matches(push.url_signature, OA_TOKEN, push.timestamp, push.nonce):
                raise BenchError("the limit: a URL signature does not match")
            envelope = xml.parse(push.body)["Encrypt"]
            msg = xml.parse(crypto.open(push.msg_signature, push.timestamp, push.nonce, envelope))
            if not msg.get("FromUserName"):
                raise BenchError("the limit: a push without FromUserName")
        best = max(best, len(pushes) / (time.perf_counter() - started))
    return best


# --- one database ------------------------------------------------------------------------------


def run_one(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + args.max_seconds
    crypto = MessageCrypto(OA_TOKEN, OA_AES_KEY, OA_APP_ID)
    # The same seed for every database: the same pushes, signed at the time each run sends them.
    factory = PushFactory(
        args.followers,
        random.Random(args.seed),
        int(time.time()) - args.pushes - args.warmup,
    )
    with tempfile.TemporaryDirectory(prefix=f"siyu-bench-callbacks-{kind}-") as tmp:
        workdir = Path(tmp)
        console.rule(f"[bold]{kind}")
        busy = ingest.machine_busy()
        if busy is not None:
            note = "  [yellow](other work is running: figures will be low)[/yellow]" if busy > 0.15 else ""
            console.print(f"  machine busy before the run: {busy:.0%} of {os.cpu_count()} cores{note}")
        with ingest.fresh_database(kind, args.pg_admin_dsn, workdir) as db:
            add_account(db, workdir)
            with running_server(db, workdir, args.server_workers, args.processor) as (
                server,
                start_worker,
                drain,
            ):
                try:
                    if args.warmup:
                        warm = factory.pushes(args.warmup, crypto)
                        console.print(f"  warm-up: {len(warm)} push(es)")
                        send_pushes(server.port, warm, args.concurrency, deadline, "warm-up")
                        if args.processor == "after":
                            drain()
                        ingest.wait_drained(db, deadline)
                    after_id = int(ingest.db_scalar(db, "SELECT coalesce(max(id), 0) FROM events"))
                    generated = time.perf_counter()
                    kinds_before = dict(factory.kinds)
                    pushes = factory.pushes(args.pushes, crypto)
                    generated = time.perf_counter() - generated
                    kinds = {k: v - kinds_before.get(k, 0) for k, v in factory.kinds.items()}
                    body_bytes = sum(len(p.body) + len(p.url) for p in pushes) / len(pushes)
                    console.print(
                        f"  generated {len(pushes)} pushes in {generated:.2f} s "
                        f"({len(pushes) / generated:,.0f}/s): "
                        f"{', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}; "
                        f"{body_bytes:.0f} bytes of URL and body per push"
                    )
                    console.print(f"  timed: {len(pushes)} pushes, concurrency {args.concurrency}")
                    spy = Path(f"{args.py_spy}-{kind}.txt") if args.py_spy else None
                    cpu_before = ingest.server_cpu_seconds(server)
                    serve_before = ingest.process_cpu_seconds(server.proc.pid)
                    client_before = time.process_time()
                    busy_mark = ingest.cpu_ticks()
                    started = time.perf_counter()
                    with ingest.py_spy(server.proc.pid, spy, gil=args.py_spy_gil):
                        wall, latencies = send_pushes(
                            server.port, pushes, args.concurrency, deadline, "pushes"
                        )
                        client_cpu = time.process_time() - client_before
                        cpu_answered = ingest.server_cpu_seconds(server)
                        serve_answered = ingest.process_cpu_seconds(server.proc.pid)
                        machine_answered = ingest.busy_between(busy_mark, ingest.cpu_ticks())
                        backlog = int(
                            ingest.db_scalar(db, "SELECT coalesce(sum(event_count), 0) FROM ingest_queue")
                        )
                        start_worker()
                        ingest.wait_drained(db, deadline)
                    e2e_wall = time.perf_counter() - started
                    cpu_after = ingest.server_cpu_seconds(server)
                except Exception as exc:
                    raise BenchError(
                        f"{type(exc).__name__}: {exc}\nserver log:\n{server.log_tail()}"
                    ) from exc
            # The pushes' events, not the identify events of the worker's user/info calls.
            pushed = f"id > {after_id} AND message_id LIKE 'wx-oa:%'"
            stored = int(ingest.db_scalar(db, f"SELECT count(*) FROM events WHERE {pushed}"))
            total_events = int(ingest.db_scalar(db, "SELECT count(*) FROM events"))
            dead = int(ingest.db_scalar(db, "SELECT count(*) FROM dead_letters"))
            if stored != len(pushes) or dead:
                raise BenchError(
                    f"the timed run stored {stored} events for {len(pushes)} pushes ({dead} dead letters)"
                )
            by_name = ingest.db_rows(
                db, f"SELECT event, count(*) FROM events WHERE {pushed} GROUP BY event ORDER BY 2 DESC"
            )
            console.print("  stored: " + ", ".join(f"{name} {n}" for name, n in by_name))
            quarters = [latencies[i * len(latencies) // 4 : (i + 1) * len(latencies) // 4] for i in range(4)]
            console.print(
                "  p50 latency by quarter of the run: "
                + ", ".join(f"{ingest.percentile(q, 50) * 1000:.1f} ms" for q in quarters if q)
            )
            server_cpu_ms = server_cpu_answer_ms = None
            if cpu_before is not None and cpu_after is not None and cpu_answered is not None:
                server_cpu_ms = (cpu_after - cpu_before) * 1000 / len(pushes)
                server_cpu_answer_ms = (cpu_answered - cpu_before) * 1000 / len(pushes)
                console.print(
                    f"  siyu serve CPU: {server_cpu_ms:.2f} ms per push until stored "
                    f"({server_cpu_answer_ms:.2f} ms while answering; "
                    f"{server_cpu_ms * len(pushes) / 1000 / e2e_wall:.0%} of one core over the run); "
                    f"this client: {client_cpu * 1000 / len(pushes):.2f} ms per push"
                )
            console.print(
                f"  answered in {wall:.1f} s ({len(pushes) / wall:,.0f} pushes/s), all stored after "
                f"{e2e_wall:.1f} s ({len(pushes) / e2e_wall:,.0f} pushes/s); {backlog:,} pushes were queued "
                "when the last one was answered"
            )
    console.print("  limit: the same pushes verified, decrypted and parsed in-process")
    limit = measure_limit(pushes)
    pushes_per_s = len(pushes) / wall
    p99_ms = ingest.percentile(latencies, 99) * 1000
    return {
        "bench": "callbacks",
        "db": kind,
        "pushes": len(pushes),
        "concurrency": args.concurrency,
        "server_workers": args.server_workers,
        "processor": args.processor,
        "pushes_per_s": round(pushes_per_s),
        "p50_ms": round(ingest.percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(p99_ms, 1),
        "max_ms": round(max(latencies) * 1000, 1),
        "end_to_end_per_s": round(len(pushes) / e2e_wall),
        "stored_events": stored,
        "events_table_rows": total_events,
        "backlog_pushes_at_last_answer": backlog,
        "limit_pushes_per_s": round(limit),
        "ratio": round(pushes_per_s / limit, 3),
        "target_pushes_per_s": TARGET_PUSHES_PER_S,
        "target_p99_ms": TARGET_P99_MS,
        "target_met": pushes_per_s >= TARGET_PUSHES_PER_S and p99_ms < TARGET_P99_MS,
        "server_cpu_ms_per_push": round(server_cpu_ms, 3) if server_cpu_ms is not None else None,
        "server_cpu_ms_per_push_answering": (
            round(server_cpu_answer_ms, 3) if server_cpu_answer_ms is not None else None
        ),
        "serve_cpu_ms_per_push_answering": (
            round((serve_answered - serve_before) * 1000 / len(pushes), 3)
            if serve_answered is not None and serve_before is not None
            else None
        ),
        "machine_busy_answering": round(machine_answered, 2) if machine_answered is not None else None,
        "client_cpu_ms_per_push": round(client_cpu * 1000 / len(pushes), 3),
        "machine_busy_before": round(busy, 2) if busy is not None else None,
        "cpu": f"{os.cpu_count()} cores",
        "python": platform.python_version(),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pushes", type=int, default=20_000, help="timed pushes (default 20,000)")
    parser.add_argument(
        "--warmup", type=int, default=200, help="pushes sent first and not counted (default 200)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=128,
        help="client connections sending at once (default 128: WeChat does not wait for one answer to push again)",
    )
    parser.add_argument("--followers", type=int, default=5_000, help="distinct openids (default 5,000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--server-workers", type=int, default=1, help="`siyu serve --workers` (default 1)")
    parser.add_argument(
        "--processor",
        choices=["inline", "worker", "after"],
        default="worker",
        help="ingest processor in a `siyu worker` process (worker, the default), in the server process "
        "(inline), or in a worker started once every push is answered (after: the endpoint alone)",
    )
    parser.add_argument(
        "--pg-admin-dsn",
        default=os.environ.get("SIYU_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="where to create the scratch PostgreSQL database (default: $SIYU_TEST_PG_DSN or local postgres)",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=600, help="time bound per database (default 600)"
    )
    parser.add_argument(
        "--py-spy", metavar="PREFIX", help="record the server with py-spy into PREFIX-<db>.txt"
    )
    parser.add_argument(
        "--py-spy-gil", action="store_true", help="with --py-spy: only the thread holding the GIL"
    )
    args = parser.parse_args(argv)
    if args.pushes < 1 or args.concurrency < 1 or args.followers < 1 or args.warmup < 0:
        parser.error("--pushes, --concurrency and --followers must be positive, --warmup not negative")
    if args.py_spy and ingest.py_spy_executable() is None:
        parser.error("--py-spy needs py-spy (pip install py-spy into the virtualenv)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so the server is stopped and the scratch database dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
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
