"""Stages follow the customer as events arrive and as time passes, each change recorded with its reason."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.config import get_settings
from siyu.db import utcnow
from siyu.lifecycle import service
from siyu.lifecycle.models import LifecycleChange, Stage, ValueModel
from tests.factories import event
from tests.helpers import Api, clear_of_midnight

NOW = clear_of_midnight(utcnow())


def ago(days: float) -> str:
    return (NOW - dt.timedelta(days=days)).isoformat()


def order(user: str, days_ago: float, total: float = 100, **kw: object) -> dict[str, object]:
    return event(
        userId=user,
        event="Order Completed",
        properties={"order_id": f"{user}-{days_ago}", "total": total},
        timestamp=ago(days_ago),
        **kw,
    )


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def stage_of(api: Api, session: Session, user: str) -> Stage:
    state = service.get_state(session, int(api.lookup("member_id", user)["id"]))
    assert state is not None
    return state.stage


def test_lizzy_follows_and_becomes_a_window_customer(api: Api, session: Session) -> None:
    # Seed 001: "Lizzy is now a window customer" once she follows the brand without buying.
    api.send(event(anonymousId="lizzy-phone", event="Product Viewed", timestamp=ago(2)))
    pid = int(api.lookup("anonymous_id", "lizzy-phone")["id"])
    # An anonymous visitor has no stage row; she counts as Anonymous.
    assert service.get_state(session, pid) is None
    assert service.counts(session)["Anonymous"] == 1
    api.send(event(anonymousId="lizzy-phone", event="Official Account Followed", timestamp=ago(1)))
    state = service.get_state(session, pid)
    assert state is not None and state.stage is Stage.window
    assert state.reason == "known and engaged, no purchase yet"
    assert service.counts(session)["Anonymous"] == 0
    changes = service.changes_of(session, pid)
    assert [(c.from_stage, c.to_stage) for c in changes] == [(None, Stage.window)]
    assert changes[0].reason == "known and engaged, no purchase yet"


def test_purchases_move_a_customer_up(api: Api, session: Session) -> None:
    api.send(event("identify", userId="ann", traits={"name": "Ann"}, timestamp=ago(100)))
    assert stage_of(api, session, "ann") is Stage.window
    api.send(order("ann", 50))
    assert stage_of(api, session, "ann") is Stage.first_time
    # Two orders on the same day are one purchase day.
    api.send(order("ann", 50 - 0.01), order("ann", 30))
    state = service.get_state(session, int(api.lookup("member_id", "ann")["id"]))
    assert state is not None and state.purchase_days == 2 and state.stage is Stage.repeat
    api.send(order("ann", 20), order("ann", 10))
    state = service.get_state(session, int(api.lookup("member_id", "ann")["id"]))
    assert state is not None and state.stage is Stage.loyal
    assert state.reason == "4 purchase days in 365 days (≥ 4)"
    assert state.median_gap_days == pytest.approx(10, abs=0.1)


def test_time_alone_makes_a_customer_wavering_then_lapsed(api: Api, session: Session) -> None:
    api.send(order("bob", 30), order("bob", 20), order("bob", 10))
    pid = int(api.lookup("member_id", "bob")["id"])
    assert stage_of(api, session, "bob") is Stage.repeat
    # 10 days between purchases; 30 days after the last one, he is wavering.
    service.restage(session, as_of=NOW + dt.timedelta(days=20))
    state = service.get_state(session, pid)
    assert state is not None and state.stage is Stage.indecisive
    assert "over 2× the usual 10" in state.reason
    service.restage(session, as_of=NOW + dt.timedelta(days=370))
    state = service.get_state(session, pid)
    assert state is not None and state.stage is Stage.lapsed and "no purchase for 380 days" in state.reason
    # A new purchase reactivates him.
    api.send(order("bob", 0))
    assert stage_of(api, session, "bob") in (Stage.repeat, Stage.loyal)


def test_window_customer_with_high_intent_is_indecisive(api: Api, session: Session) -> None:
    api.send(
        event(userId="cat", event="Product Added to Wishlist", timestamp=ago(3)),
        event(userId="cat", event="Product Added", timestamp=ago(2)),
        event(userId="cat", event="Product Added", timestamp=ago(1)),
    )
    assert stage_of(api, session, "cat") is Stage.indecisive


def test_p_alive_decides_when_a_model_is_fitted(api: Api, session: Session) -> None:
    session.add(
        ValueModel(
            time_unit="week",
            observed_until=NOW,
            customers=1000,
            r=0.243,
            alpha=4.414,
            a=0.793,
            b=2.426,
            log_likelihood=-9582.4,
            p=6.25,
            q=3.74,
            v=15.44,
        )
    )
    session.flush()
    # Frequent buyer who then stopped for 25 weeks: the model thinks she has probably left.
    api.send(*[order("dee", 200 - 7 * i) for i in range(8)])
    state = service.get_state(session, int(api.lookup("member_id", "dee")["id"]))
    assert state is not None and state.p_alive is not None and state.p_alive < 0.15
    assert state.stage is Stage.lapsed and state.reason.startswith("P(alive)")
    assert state.expected_purchases is not None and state.clv_fen is not None


def test_thresholds_are_settings(api: Api, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIYU_LIFECYCLE_LOYAL_PURCHASES_365", "2")
    get_settings.cache_clear()
    api.send(order("eve", 30), order("eve", 10))
    assert stage_of(api, session, "eve") is Stage.loyal


def test_full_run_ranks_rfm_and_counts_flows(api: Api, session: Session) -> None:
    api.send(order("f1", 300, 50), order("f2", 10, 900), order("f2", 5, 900), order("f3", 100, 300))
    run = service.restage(session)
    assert run.profiles >= 3
    best = service.get_state(session, int(api.lookup("member_id", "f2")["id"]))
    worst = service.get_state(session, int(api.lookup("member_id", "f1")["id"]))
    assert best is not None and worst is not None
    assert best.recency_score is not None and worst.recency_score is not None
    assert best.recency_score > worst.recency_score
    counts = service.counts(session)
    assert list(counts) == [s.value for s in Stage]
    assert sum(counts.values()) == run.profiles
    # A full run leaves the day's counts for the trend chart.
    [today] = service.trend(session)
    assert {k: v for k, v in today.items() if k != "day"} == counts
    service.restage(session, as_of=NOW + dt.timedelta(days=400))
    flows = service.flows(session, since=NOW - dt.timedelta(days=1), until=NOW + dt.timedelta(days=401))
    assert ("Repeat", "Lapsed", 1) in flows
    assert session.execute(select(LifecycleChange).where(LifecycleChange.to_stage == Stage.lapsed)).first()
