"""Two memberships of one person (their profiles merge): the points follow, lot by lot, nothing is rewritten."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.loyalty import service, vouchers
from siyu.loyalty.models import Lot, Member, Posting, VoucherKind, VoucherTemplate
from tests.factories import event
from tests.helpers import Api


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def test_memberships_merge_with_their_lots_debt_and_vouchers(api: Api, session: Session) -> None:
    # The Mini Program member (openid) and the store member (phone) are the same woman, not known yet.
    api.send(
        event(
            event="Membership Joined",
            context={"externalIds": [{"id": "o-mp-1", "type": "wechat_openid"}]},
            timestamp="2026-09-01T10:00:00+08:00",
        ),
        event(
            event="Membership Joined",
            context={"traits": {"phone": "13900001111"}},
            timestamp="2026-09-02T10:00:00+08:00",
        ),
    )
    mp_profile = int(api.lookup("wechat_openid", "o-mp-1")["id"])
    store_profile = int(api.lookup("phone", "+8613900001111")["id"])
    assert mp_profile != store_profile
    a = service.get_member_by_profile_or_raise(session, mp_profile)
    b = service.get_member_by_profile_or_raise(session, store_profile)
    t0 = dt.datetime(2026, 9, 3, tzinfo=dt.UTC)
    service.earn(session, a.id, 300, key="a1", expires_at=dt.datetime(2027, 6, 1, tzinfo=dt.UTC), now=t0)
    service.earn(
        session,
        a.id,
        50,
        key="a2",
        order_id="OA",
        pending_until=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        now=t0,
    )
    service.earn(session, b.id, 100, key="b1", order_id="OB", now=t0)
    service.spend(session, b.id, 80, key="b2", now=t0)
    service.reverse_order(session, b.id, "OB", key="b3", now=t0)  # b owes 80 points
    template = VoucherTemplate(name="Gift", kind=VoucherKind.free_gift, gift_sku="G", issued=0)
    session.add(template)
    session.flush()
    gift, _ = vouchers.issue(session, template.id, a.id, key="v1", now=t0)
    assert (a.balance, a.pending, b.balance, b.debt) == (300, 50, -80, 80)

    # One event names both: the profiles merge, and so do the memberships.
    api.send(
        event(
            event="Product Viewed",
            context={
                "externalIds": [{"id": "o-mp-1", "type": "wechat_openid"}],
                "traits": {"phone": "13900001111"},
            },
        ),
    )
    session.expire_all()
    survivor = service.get_member_by_profile_or_raise(session, mp_profile)
    assert service.get_member_by_profile_or_raise(session, store_profile).id == survivor.id
    closed = next(m for m in session.execute(select(Member)).scalars() if m.id != survivor.id)
    assert closed.status == "closed" and (closed.balance, closed.pending, closed.debt) == (0, 0, 0)
    # 300 + (-80): the debt is paid from the merged points at once; the pending 50 stays pending.
    assert (survivor.balance, survivor.pending, survivor.debt) == (220, 50, 0)
    expiries = sorted(lot.expires_at for lot in service.lots(session, survivor.id, now=t0))
    assert dt.datetime(2027, 6, 1, tzinfo=dt.UTC) in expiries  # the lot kept its expiry
    assert session.get(type(gift), gift.id).member_id == survivor.id  # type: ignore[union-attr]
    # The store membership held no points, only its 80-point debt: that is what moved.
    transfers = session.execute(
        select(Posting.points, Posting.balance_change).where(Posting.kind == "transfer").order_by(Posting.id)
    ).all()
    assert [tuple(t) for t in transfers] == [(0, 80), (0, -80)]
    for member in session.execute(select(Member)).scalars():
        assert service.verify(session, member.id, now=t0) == [], member.id
    assert session.execute(select(Lot).where(Lot.remaining < 0)).first() is None


def test_the_absorbed_membership_brings_its_lots(api: Api, session: Session) -> None:
    api.send(
        event(
            event="Membership Joined",
            context={"externalIds": [{"id": "o-mp-2", "type": "wechat_openid"}]},
            timestamp="2026-09-01T10:00:00+08:00",
        ),
        event(
            event="Membership Joined",
            context={"traits": {"phone": "13900002222"}},
            timestamp="2026-09-02T10:00:00+08:00",
        ),
    )
    older = service.get_member_by_profile_or_raise(session, int(api.lookup("wechat_openid", "o-mp-2")["id"]))
    younger = service.get_member_by_profile_or_raise(
        session, int(api.lookup("phone", "+8613900002222")["id"])
    )
    t0 = dt.datetime(2026, 9, 3, tzinfo=dt.UTC)
    expiry = dt.datetime(2027, 3, 1, tzinfo=dt.UTC)
    service.earn(session, younger.id, 200, key="y1", expires_at=expiry, now=t0)
    service.earn(
        session,
        younger.id,
        50,
        key="y2",
        order_id="OY",
        pending_until=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        now=t0,
    )
    api.send(
        event(
            event="Product Viewed",
            context={
                "externalIds": [{"id": "o-mp-2", "type": "wechat_openid"}],
                "traits": {"phone": "13900002222"},
            },
        )
    )
    session.expire_all()
    survivor = session.get_one(Member, older.id)
    assert (survivor.balance, survivor.pending) == (200, 50)
    lots = service.lots(session, survivor.id, now=t0)
    assert sorted(
        (lot.remaining, lot.expires_at == expiry, lot.pending_until is not None) for lot in lots
    ) == [
        (50, False, True),
        (200, True, False),
    ]
    transfers = session.execute(
        select(Posting.points, Posting.balance_change).where(Posting.kind == "transfer").order_by(Posting.id)
    ).all()
    assert [tuple(t) for t in transfers] == [(-250, -200), (250, 200)]
    # Refunding the order later still finds its points, now on the survivor's membership.
    reversal = service.reverse_order(session, survivor.id, "OY", key="r", now=t0)
    assert reversal is not None and reversal.posting.points == -50
    session.refresh(survivor)
    assert survivor.pending == 0
    for member_id in (older.id, younger.id):
        assert service.verify(session, member_id, now=t0) == []
