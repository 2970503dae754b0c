"""100 simultaneous spends at a balance that covers one: exactly one succeeds (PostgreSQL row lock; SQLite's
write lock), and the same idempotency key sent 20 times at once posts once."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import func, select

from siyu import db
from siyu.loyalty import service
from siyu.loyalty.models import Member, Posting
from siyu.profiles.models import Profile
from tests.live import fresh_database, require_backend


@contextmanager
def concurrent_database(backend: str, tmp_path: Path) -> Iterator[None]:
    """A fresh database as the process-wide one; on PostgreSQL 40 connections, as a web server would hold."""
    with fresh_database(backend, tmp_path) as url:
        options = {"pool_size": 40, "max_overflow": 0, "pool_timeout": 120} if backend == "postgresql" else {}
        engine = db.create_db_engine(url, **options)
        db.set_engine(engine)
        try:
            yield
        finally:
            db.set_engine(None)
            engine.dispose()


def _fire(n: int, action: object) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(n)

    def run(i: int) -> None:
        barrier.wait()
        try:
            with db.unit_of_work() as session:
                action(session, i)  # type: ignore[operator]
            outcome = "ok"
        except service.Overdraw:
            outcome = "overdraw"
        except Exception as exc:  # pragma: no cover - reported by the assertion
            outcome = f"error: {type(exc).__name__}: {exc}"
        with lock:
            outcomes[outcome] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return outcomes


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_concurrent_spends_never_overdraw(backend: str, tmp_path: Path) -> None:
    require_backend(backend)
    with concurrent_database(backend, tmp_path):
        with db.unit_of_work() as session:
            profile = Profile()
            session.add(profile)
            session.flush()
            member, _ = service.enrol(session, profile.id)
            service.earn(session, member.id, 100, key="seed")
            member_id = member.id
        outcomes = _fire(100, lambda s, i: service.spend(s, member_id, 100, key=f"spend-{i}"))
        assert outcomes == Counter({"ok": 1, "overdraw": 99})
        repeats = _fire(20, lambda s, i: service.earn(s, member_id, 7, key="same-key"))
        assert repeats == Counter({"ok": 20})
        with db.get_read_sessionmaker()() as session:
            balance = session.execute(select(Member.balance).where(Member.id == member_id)).scalar_one()
            assert balance == 7
            assert session.execute(select(func.count()).select_from(Posting)).scalar_one() == 3
            assert service.verify(session, member_id) == []


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_concurrent_redemptions_and_issues(backend: str, tmp_path: Path) -> None:
    """100 tills redeem one code at once: one succeeds. 50 issues at a stock of 10: 10 succeed."""
    from siyu.errors import Conflict
    from siyu.loyalty import vouchers
    from siyu.loyalty.models import Voucher, VoucherKind, VoucherTemplate

    require_backend(backend)
    with concurrent_database(backend, tmp_path):
        with db.unit_of_work() as session:
            profile = Profile()
            session.add(profile)
            session.flush()
            member, _ = service.enrol(session, profile.id)
            gift = VoucherTemplate(name="20 RMB", kind=VoucherKind.amount_off, value=2000, stock=10, issued=0)
            session.add(gift)
            session.flush()
            voucher, _ = vouchers.issue(session, gift.id, member.id, key="first")
            code, member_id, template_id = voucher.code, member.id, gift.id

        def redeem(session: object, i: int) -> None:
            try:
                vouchers.redeem(session, code, key=f"till-{i}", channel="pos", order_total_fen=10000)  # type: ignore[arg-type]
            except Conflict as exc:
                raise service.Overdraw(str(exc)) from exc  # counted as the refused outcome

        assert _fire(100, redeem) == Counter({"ok": 1, "overdraw": 99})

        def issue(session: object, i: int) -> None:
            try:
                vouchers.issue(session, template_id, member_id, key=f"issue-{i}")  # type: ignore[arg-type]
            except Conflict as exc:
                raise service.Overdraw(str(exc)) from exc

        assert _fire(50, issue) == Counter({"ok": 9, "overdraw": 41})  # 1 issued before: stock 10
        with db.get_read_sessionmaker()() as session:
            assert session.execute(select(func.count()).select_from(Voucher)).scalar_one() == 10
            issued = session.execute(select(VoucherTemplate.issued)).scalar_one()
            assert issued == 10


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_concurrent_draws_never_oversell_a_prize(backend: str, tmp_path: Path) -> None:
    """60 members draw at once from a box whose only prize has a stock of 5: 5 win, 55 find it empty."""
    from siyu.errors import Conflict
    from siyu.loyalty import blind_boxes
    from siyu.loyalty.models import BlindBox, BlindBoxPrize

    require_backend(backend)
    with concurrent_database(backend, tmp_path):
        members: list[int] = []
        with db.unit_of_work() as session:
            box = BlindBox(name="Limited", points_cost=10, active=True)
            session.add(box)
            session.flush()
            session.add(
                BlindBoxPrize(box_id=box.id, name="Qipao", weight=1, stock=5, awarded=0, bonus_points=0)
            )
            for _ in range(60):
                profile = Profile()
                session.add(profile)
                session.flush()
                member, _ = service.enrol(session, profile.id)
                service.earn(session, member.id, 10, key=f"seed-{member.id}")
                members.append(member.id)
            box_id = box.id

        def draw(session: object, i: int) -> None:
            try:
                blind_boxes.draw(session, box_id, members[i], key=f"draw-{i}")  # type: ignore[arg-type]
            except Conflict as exc:
                raise service.Overdraw(str(exc)) from exc

        assert _fire(60, draw) == Counter({"ok": 5, "overdraw": 55})
        with db.get_read_sessionmaker()() as session:
            assert session.execute(select(BlindBoxPrize.awarded)).scalar_one() == 5
            # The 55 who found it empty paid nothing.
            balances = session.execute(select(Member.balance)).scalars().all()
            assert sorted(balances) == [0] * 5 + [10] * 55
