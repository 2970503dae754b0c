"""The points ledger: lots spent soonest-to-expire first, pending points, refunds, expiry, idempotency."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.errors import BadRequest, Conflict
from siyu.loyalty import service
from siyu.loyalty.models import LotDraw, Member, Posting
from siyu.profiles.models import Profile

T0 = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.UTC)


def member(session: Session) -> Member:
    profile = Profile()
    session.add(profile)
    session.flush()
    created, _ = service.enrol(session, profile.id, channel="test", now=T0)
    return created


def days(n: int) -> dt.datetime:
    return T0 + dt.timedelta(days=n)


def test_enrol_is_idempotent_and_numbers_members(session: Session) -> None:
    profile = Profile()
    session.add(profile)
    session.flush()
    first, created = service.enrol(session, profile.id)
    again, created_again = service.enrol(session, profile.id)
    assert created and not created_again and first.id == again.id
    assert first.member_number == f"M{first.id:08d}" and first.tier == "Jade"


def test_spend_draws_on_the_lots_that_expire_soonest(session: Session) -> None:
    m = member(session)
    late = service.earn(session, m.id, 100, key="e1", expires_at=days(300), now=T0).posting
    soon = service.earn(session, m.id, 50, key="e2", expires_at=days(30), now=T0).posting
    lot_of = {lot.posting_id: lot.id for lot in service.lots(session, m.id, now=T0)}
    spent = service.spend(session, m.id, 80, key="s1", now=days(1)).posting
    draws = session.execute(
        select(LotDraw.lot_id, LotDraw.points).where(LotDraw.posting_id == spent.id).order_by(LotDraw.id)
    ).all()
    assert [tuple(d) for d in draws] == [(lot_of[soon.id], 50), (lot_of[late.id], 30)]
    assert m.balance == 70 and service.verify(session, m.id, now=days(1)) == []


def test_overdraw_is_refused_and_changes_nothing(session: Session) -> None:
    m = member(session)
    service.earn(session, m.id, 10, key="e", now=T0)
    with pytest.raises(service.Overdraw, match="balance is 10 points, 11 asked"):
        service.spend(session, m.id, 11, key="s", now=T0)
    assert m.balance == 10
    assert session.execute(select(Posting).where(Posting.idempotency_key == "s")).first() is None


def test_idempotency_key_returns_the_first_result(session: Session) -> None:
    m = member(session)
    first = service.earn(session, m.id, 10, key="order-1", now=T0)
    again = service.earn(session, m.id, 10, key="order-1", now=T0)
    assert again.replayed and again.posting.id == first.posting.id and m.balance == 10
    with pytest.raises(Conflict, match="used for another posting"):
        service.spend(session, m.id, 5, key="order-1", now=T0)


def test_pending_points_are_not_spendable_until_released(session: Session) -> None:
    m = member(session)
    service.earn(session, m.id, 200, key="o1", order_id="O1", pending_until=days(14), now=T0)
    assert (m.balance, m.pending) == (0, 200)
    with pytest.raises(service.Overdraw):
        service.spend(session, m.id, 1, key="s", now=days(1))
    assert service.release_due(session, now=days(13)) == 0
    assert service.release_due(session, now=days(14)) == 1
    session.refresh(m)
    assert (m.balance, m.pending) == (200, 0) and service.verify(session, m.id, now=days(14)) == []


def test_refund_during_the_return_window_takes_back_pending_points(session: Session) -> None:
    m = member(session)
    service.earn(session, m.id, 50, key="base", now=T0)
    service.earn(session, m.id, 200, key="o1", order_id="O1", pending_until=days(14), now=T0)
    result = service.reverse_order(session, m.id, "O1", key="r1", points=80, now=days(3))
    assert result is not None and result.posting.points == -80 and result.posting.balance_change == 0
    assert (m.balance, m.pending) == (50, 120)
    rest = service.reverse_order(session, m.id, "O1", key="r2", now=days(4))
    assert rest is not None and rest.posting.points == -120
    assert (
        service.reverse_order(session, m.id, "O1", key="r3", now=days(5)) is None
    )  # nothing left to take back
    assert (m.balance, m.pending) == (50, 0) and service.verify(session, m.id, now=days(5)) == []


def test_refund_of_spent_points_goes_negative_visibly_and_new_points_pay_it(session: Session) -> None:
    m = member(session)
    service.earn(session, m.id, 100, key="o1", order_id="O1", now=T0)
    service.spend(session, m.id, 90, key="s1", now=days(1))
    reversal = service.reverse_order(session, m.id, "O1", key="r1", now=days(2))
    assert reversal is not None and reversal.posting.detail == {"debt": 90}
    assert (m.balance, m.debt) == (-90, 90)
    with pytest.raises(service.Overdraw):
        service.spend(session, m.id, 1, key="s2", now=days(3))
    service.earn(session, m.id, 100, key="e2", now=days(4))
    assert (m.balance, m.debt) == (10, 0) and service.verify(session, m.id, now=days(4)) == []


def test_expiry(session: Session) -> None:
    m = member(session)
    service.earn(session, m.id, 30, key="a", expires_at=days(10), now=T0)
    service.earn(session, m.id, 40, key="b", expires_at=days(100), now=T0)
    service.spend(session, m.id, 10, key="s", now=days(1))
    assert service.expire_due(session, now=days(9)) == 0
    assert service.expire_due(session, now=days(10)) == 1
    session.refresh(m)
    assert m.balance == 40
    expired = session.execute(select(Posting).where(Posting.kind == "expire")).scalar_one()
    assert expired.points == -20 and service.verify(session, m.id, now=days(10)) == []


def test_points_past_their_date_are_not_spendable_before_the_expiry_job_runs(session: Session) -> None:
    m = member(session)
    service.earn(session, m.id, 30, key="a", expires_at=days(10), now=T0)
    service.earn(session, m.id, 40, key="b", expires_at=days(100), now=T0)
    # The job has not run: the balance still counts the 30 expired points, but a spend cannot have them.
    with pytest.raises(service.Overdraw, match="balance is 40 points, 50 asked"):
        service.spend(session, m.id, 50, key="s1", now=days(11))
    result = service.adjust(session, m.id, -15, key="s2", reason="correction", actor="ops", now=days(11))
    session.refresh(m)
    assert (result.posting.balance_after, m.balance) == (25, 25)
    kinds = session.execute(select(Posting.kind, Posting.points).order_by(Posting.id)).all()
    assert [tuple(k) for k in kinds][-2:] == [("expire", -30), ("adjust", -15)]
    assert service.verify(session, m.id, now=days(11)) == []


def test_default_expiry_is_the_end_of_the_following_year_in_shanghai(session: Session) -> None:
    m = member(session)
    service.earn(
        session, m.id, 5, key="e", now=dt.datetime(2026, 12, 31, 17, 0, tzinfo=dt.UTC)
    )  # 1 January in Shanghai
    [lot] = service.lots(session, m.id, now=T0)
    # Earned on 1 January 2027 in Shanghai: it lasts to the end of 2028.
    assert lot.expires_at == dt.datetime(2029, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))


def test_adjustments_need_a_reason_and_an_operator_and_cannot_overdraw(session: Session) -> None:
    m = member(session)
    with pytest.raises(BadRequest, match="reason"):
        service.adjust(session, m.id, 10, key="a", reason=" ", actor="ops")
    service.adjust(session, m.id, 10, key="a", reason="goodwill: late delivery", actor="user:1:ops", now=T0)
    with pytest.raises(service.Overdraw):
        service.adjust(session, m.id, -11, key="b", reason="fix", actor="user:1:ops", now=T0)
    posting = service.adjust(session, m.id, -4, key="b", reason="fix", actor="user:1:ops", now=T0).posting
    assert (posting.actor, posting.reason, m.balance) == ("user:1:ops", "fix", 6)


def test_expiry_and_release_runs_lock_members_in_id_order(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Groups of API postings lock their members in id order; a run that took them in another order could
    # wait for a group that waits for it (a deadlock, which PostgreSQL resolves by aborting one side).
    members = [member(session) for _ in range(30)]
    for i, m in enumerate(reversed(members)):
        service.earn(session, m.id, 10, key=f"x{i}", expires_at=days(5 + i % 7), now=T0)
        service.earn(session, m.id, 10, key=f"p{i}", order_id=f"O{i}", pending_until=days(3 + i % 5), now=T0)
    locked: list[int] = []
    real = service.lock

    def recording(s: Session, member_id: int) -> Member:
        locked.append(member_id)
        return real(s, member_id)

    monkeypatch.setattr(service, "lock", recording)
    assert service.release_due(session, now=days(20)) == 30
    assert locked == sorted(locked) and len(set(locked)) == 30
    locked.clear()
    assert service.expire_due(session, now=days(20)) == 30
    assert locked == sorted(locked) and len(set(locked)) == 30
