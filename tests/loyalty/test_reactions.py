"""Events drive the programme: a sign-up enrols, an order earns pending points, a refund reverses them."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu import db
from siyu.loyalty import service
from siyu.loyalty.tasks import run_scheduled
from tests.factories import event
from tests.helpers import Api


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def member_of(api: Api, member_id: str) -> int:
    return int(api.lookup("member_id", member_id)["id"])


def test_sign_up_order_refund_release(api: Api, session: Session) -> None:
    api.send(
        event(
            userId="M1",
            event="Order Completed",
            properties={"order_id": "O0", "total": 99},
            timestamp="2026-10-01T10:00:00+08:00",
        ),
        event(
            userId="M1",
            event="Membership Joined",
            properties={"tier": "Jade"},
            timestamp="2026-10-24T11:25:00+08:00",
        ),
        event(
            userId="M1",
            event="Order Completed",
            properties={"order_id": "O1", "total": 1280.5},
            timestamp="2026-10-24T11:40:00+08:00",
        ),
    )
    profile_id = member_of(api, "M1")
    member = service.get_member_by_profile_or_raise(session, profile_id)
    assert member.join_channel == "event"
    # The order before joining earns nothing; the one after is pending for its return window.
    assert (member.balance, member.pending) == (0, 1280)
    # The same order again, from the POS export this time: it earns once.
    api.send(
        event(
            anonymousId="x",
            userId="M1",
            event="Order Completed",
            properties={"order_id": "O1", "total": 1280.5},
            timestamp="2026-10-24T11:41:00+08:00",
        )
    )
    api.send(
        event(
            userId="M1",
            event="Order Refunded",
            properties={"order_id": "O1", "total": 640.25},
            timestamp="2026-10-26T09:00:00+08:00",
        )
    )
    session.refresh(member)
    assert (member.balance, member.pending) == (0, 640)
    run_scheduled(db.get_sessionmaker(), now=dt.datetime(2026, 11, 7, 12, 0, tzinfo=dt.UTC))
    session.refresh(member)
    assert (member.balance, member.pending) == (640, 0)
    assert service.verify(session, member.id) == []
    kinds = [p.kind for p in reversed(service.history(session, member.id))]
    assert kinds == ["earn", "reverse", "release"]


def test_refund_after_release_and_spend_goes_negative(api: Api, session: Session) -> None:
    api.send(
        event(userId="M2", event="Membership Joined", timestamp="2026-01-01T10:00:00+08:00"),
        event(
            userId="M2",
            event="Order Completed",
            properties={"order_id": "P1", "total": 500},
            timestamp="2026-01-02T10:00:00+08:00",
        ),
    )
    run_scheduled(db.get_sessionmaker(), now=dt.datetime(2026, 2, 1, tzinfo=dt.UTC))
    member = service.get_member_by_profile_or_raise(session, member_of(api, "M2"))
    service.spend(session, member.id, 450, key="gift", now=dt.datetime(2026, 2, 2, tzinfo=dt.UTC))
    api.send(
        event(
            userId="M2",
            event="Order Refunded",
            properties={"order_id": "P1"},
            timestamp="2026-02-03T10:00:00+08:00",
        )
    )
    session.refresh(member)
    assert (member.balance, member.debt) == (-450, 450)
    assert service.verify(session, member.id) == []
