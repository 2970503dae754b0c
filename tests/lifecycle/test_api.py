"""The lifecycle API: stage counts and flows, fitting the value model (saved, or against a holdout)."""

from __future__ import annotations

import datetime as dt

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.db import utcnow
from siyu.lifecycle import service
from siyu.lifecycle.models import ValueModel
from tests import factories
from tests.factories import event
from tests.helpers import Api


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def order(user: str, days_ago: float) -> dict[str, object]:
    at = (utcnow() - dt.timedelta(days=days_ago)).isoformat()
    return event(
        userId=user,
        event="Order Completed",
        properties={"order_id": f"{user}-{days_ago}", "total": 50},
        timestamp=at,
    )


def test_stages_and_fit(api: Api, session: Session) -> None:
    headers = factories.auth(api.admin_key)
    # 40 customers: some buy again, at different rhythms.
    api.send(
        *[order(f"u{i}", 200 - i) for i in range(40)],
        *[order(f"u{i}", 100 - i) for i in range(0, 40, 2)],
        *[order(f"u{i}", 30) for i in range(0, 40, 5)],
    )
    body = api.client.get("/api/v1/lifecycle/stages", headers=headers).json()
    assert sum(body["counts"].values()) == 40 and list(body["counts"])[0] == "Anonymous"
    r = api.client.post(
        "/api/v1/lifecycle/fit",
        json={"calibration_end": (utcnow() - dt.timedelta(days=60)).date().isoformat()},
        headers=headers,
    )
    assert r.status_code == 200, r.text
    held = r.json()
    assert held["model_id"] is None and held["holdout"]["actual"] == 8
    r = api.client.post("/api/v1/lifecycle/fit", json={}, headers=headers)
    assert r.status_code == 200 and r.json()["customers"] == 40
    assert session.get(ValueModel, r.json()["model_id"]) is not None
    service.restage(session)
    assert service.get_state(session, int(api.lookup("member_id", "u0")["id"])).p_alive is not None  # type: ignore[union-attr]


def test_fit_without_purchases_is_a_clear_error(api: Api) -> None:
    r = api.client.post("/api/v1/lifecycle/fit", json={}, headers=factories.auth(api.admin_key))
    assert r.status_code == 400 and "no purchases" in r.json()["detail"]
    r = api.client.post(
        "/api/v1/lifecycle/fit", json={"time_unit": "month"}, headers=factories.auth(api.admin_key)
    )
    assert r.status_code == 422
    # With orders, but a calibration end before the first: say so, and when the first order was.
    api.send(
        event(
            userId="c1",
            event="Order Completed",
            properties={"order_id": "c1", "total": 10},
            timestamp="2026-03-01T04:00:00Z",
        )
    )
    r = api.client.post(
        "/api/v1/lifecycle/fit", json={"calibration_end": "2026-01-31"}, headers=factories.auth(api.admin_key)
    )
    assert r.status_code == 400
    assert r.json()["detail"] == (
        "no purchases up to the calibration end 2026-01-31: choose a later day (the first order is on 2026-03-01)"
    )


def test_store_roles_are_refused(api: Api, session: Session) -> None:
    key = factories.api_key(session, Role.store_manager)
    r = api.client.get("/api/v1/lifecycle/stages", headers=factories.auth(key))
    assert r.status_code == 403
    assert r.json()["detail"] == "a store_manager cannot use the brand-wide lifecycle report"
