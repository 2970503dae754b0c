"""A stateful property test: random earn / spend / refund / release / expire / adjust sequences against a
plain-Python model of the ledger; after every step the ledger and the model agree and its invariants hold."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.orm import Session

from siyu.loyalty import service
from siyu.profiles.models import Profile

T0 = dt.datetime(2026, 1, 5, 2, 0, tzinfo=dt.UTC)


@dataclass
class ModelLot:
    seq: int
    remaining: int
    expires_at: dt.datetime
    pending_until: dt.datetime | None
    order_id: str | None


class LedgerModel:
    """What the ledger should do, written as simply as possible."""

    def __init__(self) -> None:
        self.lots: list[ModelLot] = []
        self.balance = self.pending = self.debt = 0
        self.earned: dict[str, int] = {}
        self.reversed: dict[str, int] = {}
        self.seq = itertools.count()

    def available(self, now: dt.datetime, exclude: str | None = None) -> list[ModelLot]:
        lots = [
            lot
            for lot in self.lots
            if lot.remaining > 0
            and lot.pending_until is None
            and lot.expires_at > now
            and (exclude is None or lot.order_id != exclude)
        ]
        return sorted(lots, key=lambda lot: (lot.expires_at, lot.seq))

    @staticmethod
    def draw(lots: list[ModelLot], points: int) -> int:
        taken = 0
        for lot in lots:
            part = min(lot.remaining, points - taken)
            lot.remaining -= part
            taken += part
        return taken

    def add_lot(
        self, points: int, expires_at: dt.datetime, pending_until: dt.datetime | None, order: str | None
    ) -> None:
        lot = ModelLot(next(self.seq), points, expires_at, pending_until, order)
        self.lots.append(lot)
        if order:
            self.earned[order] = self.earned.get(order, 0) + points
        if pending_until is not None:
            self.pending += points
        else:
            self.balance += points
            self.pay(lot)

    def pay(self, lot: ModelLot) -> None:
        paid = min(lot.remaining, self.debt)
        lot.remaining -= paid
        self.debt -= paid


class LedgerMachine(RuleBasedStateMachine):
    session: Session

    def __init__(self) -> None:
        super().__init__()
        profile = Profile()
        self.session.add(profile)
        self.session.flush()
        self.member, _ = service.enrol(self.session, profile.id, now=T0)
        self.model = LedgerModel()
        self.now = T0
        self.keys = itertools.count()
        self.orders = itertools.count(1)

    def key(self) -> str:
        return f"m{self.member.id}-{next(self.keys)}"

    @rule(
        points=st.integers(1, 500), life=st.integers(3, 90), pending=st.booleans(), with_order=st.booleans()
    )
    def earn(self, points: int, life: int, pending: bool, with_order: bool) -> None:
        order = f"O{self.member.id}-{next(self.orders)}" if with_order or pending else None
        expires = self.now + dt.timedelta(days=life)
        pending_until = self.now + dt.timedelta(days=14) if pending else None
        service.earn(
            self.session,
            self.member.id,
            points,
            key=self.key(),
            order_id=order,
            pending_until=pending_until,
            expires_at=expires,
            now=self.now,
        )
        self.model.add_lot(points, expires, pending_until, order)

    @rule(points=st.integers(1, 600))
    def spend(self, points: int) -> None:
        if self.model.balance < points:
            with pytest.raises(service.Overdraw):
                service.spend(self.session, self.member.id, points, key=self.key(), now=self.now)
            return
        service.spend(self.session, self.member.id, points, key=self.key(), now=self.now)
        self.model.balance -= points
        assert self.model.draw(self.model.available(self.now), points) == points

    @precondition(lambda self: bool(self.model.earned))
    @rule(data=st.data(), partial=st.booleans())
    def refund(self, data: st.DataObject, partial: bool) -> None:
        order = data.draw(st.sampled_from(sorted(self.model.earned)))
        asked = data.draw(st.integers(1, 300)) if partial else None
        result = service.reverse_order(
            self.session, self.member.id, order, key=self.key(), points=asked, now=self.now
        )
        m = self.model
        left = m.earned[order] - m.reversed.get(order, 0)
        wanted = left if asked is None else min(asked, left)
        if wanted <= 0:
            assert result is None
            return
        assert result is not None and result.posting.points == -wanted
        m.reversed[order] = m.reversed.get(order, 0) + wanted
        own = sorted(
            (lot for lot in m.lots if lot.order_id == order and lot.remaining > 0),
            key=lambda lot: (lot.pending_until is None, lot.seq),
        )
        from_pending = min(wanted, sum(lot.remaining for lot in own if lot.pending_until is not None))
        m.pending -= from_pending
        m.balance -= wanted - from_pending
        taken = m.draw(own, wanted)
        taken += m.draw(m.available(self.now, exclude=order), wanted - taken)
        m.debt += wanted - taken

    @rule(points=st.integers(-300, 300).filter(bool))
    def adjust(self, points: int) -> None:
        if points < 0 and self.model.balance < -points:
            with pytest.raises(service.Overdraw):
                service.adjust(
                    self.session,
                    self.member.id,
                    points,
                    key=self.key(),
                    reason="test",
                    actor="t",
                    now=self.now,
                )
            return
        service.adjust(
            self.session, self.member.id, points, key=self.key(), reason="test", actor="t", now=self.now
        )
        if points > 0:
            self.model.add_lot(points, service.expiry_for(self.now, service.get_settings()), None, None)
        else:
            self.model.balance += points
            self.model.draw(self.model.available(self.now), -points)

    @rule(days=st.integers(1, 40))
    def time_passes(self, days: int) -> None:
        self.now += dt.timedelta(days=days)
        service.release_due(self.session, now=self.now)
        service.expire_due(self.session, now=self.now)
        m = self.model
        for lot in sorted(m.lots, key=lambda lot: lot.seq):
            if lot.pending_until is not None and lot.pending_until <= self.now:
                lot.pending_until = None
                m.pending -= lot.remaining
                m.balance += lot.remaining
                m.pay(lot)
        for lot in m.lots:
            if lot.pending_until is None and lot.remaining > 0 and lot.expires_at <= self.now:
                m.balance -= lot.remaining
                lot.remaining = 0

    @invariant()
    def agrees_with_the_model(self) -> None:
        self.session.refresh(self.member)
        m = self.model
        assert (self.member.balance, self.member.pending, self.member.debt) == (m.balance, m.pending, m.debt)
        assert (self.member.balance < 0) == (m.debt > 0)
        assert service.verify(self.session, self.member.id, now=self.now) == []


def test_ledger_agrees_with_its_model(session: Session) -> None:
    LedgerMachine.session = session
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=25, stateful_step_count=25, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )
