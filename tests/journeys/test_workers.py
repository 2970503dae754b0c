"""Several workers at once, and workers that die: caps hold, quiet hours hold, nothing is lost or sent
twice. On a real database of each backend (committed transactions, separate connections and processes)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from siyu import db
from siyu.channels import service as channels
from siyu.channels.fake import FakeState
from siyu.channels.models import ChannelKind, OaType
from siyu.config import get_settings
from siyu.ingest.service import ingest_batch
from siyu.journeys import service as journeys
from siyu.journeys import tasks
from siyu.journeys.models import Enrolment, EnrolmentStatus, NodeCount
from siyu.messaging import sender
from siyu.messaging import service as messaging
from siyu.messaging.models import CapPeriod, Channel, Message, MessageLease, MessageStatus
from siyu.profiles.models import Profile
from tests.channels.wechat import OA_APP_ID
from tests.factories import event
from tests.journeys.brand import oa_context
from tests.live import fresh_database, require_backend

CUSTOMERS = 120


@contextmanager
def live(backend: str, tmp_path: Path) -> Iterator[str]:
    with fresh_database(backend, tmp_path) as url:
        engine = db.create_db_engine(url, **({"pool_size": 8} if backend == "postgresql" else {}))
        db.set_engine(engine)
        try:
            yield url
        finally:
            db.set_engine(None)
            engine.dispose()


def seed(fake: FakeState, *, sends: int = 1) -> list[int]:
    """An OA, CUSTOMERS followers, a brand cap of 1 marketing message a day, and two journeys that each
    send every follower one template message: together they ask for two messages per customer."""
    with db.unit_of_work() as s:
        oa = channels.create_account(
            s,
            kind=ChannelKind.oa,
            name="tos-oa",
            app_id=OA_APP_ID,
            secret="oa-app-secret",
            token="t0k3n",
            oa_type=OaType.service,
        )
        events = []
        for i in range(CUSTOMERS):
            fake.users[f"o-{i}"] = {}
            events.append(
                event(userId=f"c{i}", event="Official Account Followed", context=oa_context(f"o-{i}"))
            )
        ingest_batch(s, events, source_key_id=None)
        messaging.create_cap(s, channel=None, period=CapPeriod.day, limit=1)
        pids = sorted(s.execute(select(Profile.id)).scalars())
        for name in ("A", "B"):
            messaging.create_template(
                s,
                name=name,
                channel=Channel.oa_template,
                account_id=oa.id,
                external_template_id="T",
                body={"data": {"first": name}},
            )
            nodes = {f"s{k}": {"type": "send", "template": name, "next": f"s{k + 1}"} for k in range(sends)}
            nodes[f"s{sends}"] = {"type": "exit"}
            journey = journeys.create(
                s, name=f"J{name}", definition={"entry": {"type": "manual"}, "start": "s0", "nodes": nodes}
            )
            journeys.publish(s, journey)
            journeys.enrol(s, journey, [(pid, "k", {}) for pid in pids])
    return pids


def run_workers(n: int) -> list[str]:
    errors: list[str] = []
    barrier = threading.Barrier(n)

    def work() -> None:
        barrier.wait()
        try:
            tasks.run_engine(db.get_sessionmaker())
        except Exception as exc:  # pragma: no cover - reported by the assertion
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return errors


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_workers_step_everyone_once_and_the_cap_holds_across_journeys(
    backend: str, tmp_path: Path, fake: FakeState, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_backend(backend)
    monkeypatch.setenv("SIYU_JOURNEYS_BATCH_SIZE", "20")  # small batches, so the workers interleave
    get_settings.cache_clear()
    with live(backend, tmp_path):
        pids = seed(fake)
        assert run_workers(2) == []
        with db.get_read_sessionmaker()() as s:
            statuses = Counter(s.execute(select(Enrolment.status)).scalars())
            assert statuses == Counter({EnrolmentStatus.completed: 2 * CUSTOMERS})
            # Each enrolment passed its send node and its exit once: no batch was run by both workers.
            paths = s.execute(select(Enrolment.path)).scalars().all()
            assert {tuple(step[0] for step in path) for path in paths} == {("s0", "s1")}
            counts = dict(
                s.execute(select(NodeCount.node, func.sum(NodeCount.n)).group_by(NodeCount.node)).all()
            )
            assert counts == {"s0": 2 * CUSTOMERS, "s1": 2 * CUSTOMERS}
            by_profile: dict[int, Counter[str]] = {}
            for pid, status, rule in s.execute(select(Message.profile_id, Message.status, Message.rule)):
                by_profile.setdefault(pid, Counter())[f"{status}:{rule}"] += 1
            expected = Counter({"queued:None": 1, "suppressed:cap:brand cap 1/day on all channels": 1})
            assert {pid: c for pid, c in by_profile.items() if c != expected} == {}
            assert sorted(by_profile) == pids


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_quiet_hours_hold_under_two_workers(
    backend: str, tmp_path: Path, fake: FakeState, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_backend(backend)
    local = dt.datetime.now(dt.UTC).astimezone(__import__("zoneinfo").ZoneInfo("Asia/Shanghai"))
    start, end = (
        (local - dt.timedelta(hours=1)).strftime("%H:%M"),
        (local + dt.timedelta(hours=2)).strftime("%H:%M"),
    )
    monkeypatch.setenv("SIYU_QUIET_HOURS", f"{start}-{end}")
    monkeypatch.setenv("SIYU_JOURNEYS_BATCH_SIZE", "25")
    get_settings.cache_clear()
    with live(backend, tmp_path):
        seed(fake)
        assert run_workers(2) == []
        with db.get_read_sessionmaker()() as s:
            assert s.execute(select(func.count()).select_from(Message)).scalar_one() == 0
            due = set(s.execute(select(Enrolment.due_at)).scalars())
            assert len(due) == 1
            wake = due.pop()
            assert wake is not None and wake.astimezone(local.tzinfo).strftime("%H:%M") == end


def _die_in(code: str, url: str) -> int:
    """Run code in a child process on url's database; it kills itself (SIGKILL) where code says."""
    env = {**os.environ, "SIYU_DATABASE_URL": url, "SIYU_INGEST_PROCESSOR": "false"}
    done = subprocess.run([sys.executable, "-c", code], env=env, timeout=120, capture_output=True, text=True)
    return done.returncode


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_a_worker_killed_mid_step_loses_nothing_and_sends_nothing_twice(
    backend: str, tmp_path: Path, fake: FakeState, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_backend(backend)
    monkeypatch.setenv("SIYU_MESSAGES_BATCH_SIZE", "50")
    get_settings.cache_clear()
    with live(backend, tmp_path) as url:
        seed(fake, sends=2)
        # The worker queues the first messages and dies at the second send node, before its commit.
        code = (
            "import os, signal\n"
            "from siyu import db\n"
            "from siyu.journeys import engine, tasks\n"
            "send = engine.HANDLERS['send']\n"
            "def die(run, d, node, group):\n"
            "    if node.id == 's1':\n"
            "        os.kill(os.getpid(), signal.SIGKILL)\n"
            "    send(run, d, node, group)\n"
            "engine.HANDLERS['send'] = die\n"
            "tasks.run_engine(db.get_sessionmaker())\n"
        )
        assert _die_in(code, url) == -9
        with db.get_read_sessionmaker()() as s:
            # Nothing of the killed batch is left: no message, no step, everyone still at the start.
            assert s.execute(select(func.count()).select_from(Message)).scalar_one() == 0
            assert set(s.execute(select(Enrolment.node)).scalars()) == {"s0"}
        tasks.run_engine(db.get_sessionmaker())
        with db.get_read_sessionmaker()() as s:
            assert Counter(s.execute(select(Enrolment.status)).scalars()) == Counter(
                {EnrolmentStatus.completed: 2 * CUSTOMERS}
            )
            assert s.execute(select(func.count()).select_from(Message)).scalar_one() == 4 * CUSTOMERS
        # Now the sender dies right after WeChat accepted the first batch of messages.
        code = (
            "import os, signal\n"
            "from siyu import db\n"
            "from siyu.messaging import sender\n"
            "from siyu.messaging.models import Channel\n"
            "real = sender.ADAPTERS[Channel.oa_template]\n"
            "def die(clients, messages):\n"
            "    real(clients, messages)\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            "sender.ADAPTERS[Channel.oa_template] = die\n"
            "sender.run_once(db.get_sessionmaker())\n"
        )
        assert _die_in(code, url) == -9
        delivered = len([a for a, _ in fake.sent if a == "message/template/send"])
        # The brand cap (1 a day) let one of each customer's four messages through; 50 were claimed.
        assert delivered == 50
        factory = db.get_sessionmaker()
        with factory() as s:
            # Its messages are still leased to it: no other sender takes them.
            assert s.execute(select(func.count()).select_from(MessageLease)).scalar_one() == delivered
        # The rest go out; the ones the dead sender held are never sent again, even after their lease.
        while sender.run_once(factory).claimed:
            pass
        with factory() as s:
            later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
            assert sender.expire_leases(s, later) == delivered
            s.commit()
        assert sender.run_once(factory).claimed == 0
        sent = Counter(b["touser"] for a, b in fake.sent if a == "message/template/send")
        assert max(sent.values()) == 1
        with db.get_read_sessionmaker()() as s:
            assert Counter(
                s.execute(select(Message.status).where(Message.status != MessageStatus.suppressed)).scalars()
            ) == Counter({MessageStatus.unknown: delivered, MessageStatus.sent: CUSTOMERS - delivered})
