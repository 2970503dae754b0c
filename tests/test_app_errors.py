"""Errors every endpoint shares."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from tests import factories

BEYOND_64_BITS = "99999999999999999999"


@pytest.mark.parametrize(
    "path",
    [
        f"/api/v1/segments/{BEYOND_64_BITS}/history",
        f"/api/v1/profiles/{BEYOND_64_BITS}",
        f"/api/v1/journeys/{BEYOND_64_BITS}",
        f"/api/v1/loyalty/members/{BEYOND_64_BITS}",
    ],
)
def test_an_id_beyond_64_bits_is_a_422_not_a_server_error(
    client: TestClient, session: Session, path: str
) -> None:
    admin = factories.auth(factories.api_key(session, Role.admin))
    r = client.get(path, headers=admin)
    assert r.status_code == 422 and "out of range" in r.json()["detail"], r.text


def test_a_number_beyond_64_bits_in_a_body_is_a_422(client: TestClient, session: Session) -> None:
    admin = factories.auth(factories.api_key(session, Role.admin))
    r = client.post("/api/v1/loyalty/members", json={"profile_id": 10**20}, headers=admin)
    assert r.status_code == 422 and "out of range" in r.json()["detail"]
    r = client.post(
        f"/api/v1/loyalty/members/{BEYOND_64_BITS}/postings",
        json={"kind": "earn", "points": 1, "reason": "x"},
        headers={**admin, "Idempotency-Key": "k"},
    )
    assert r.status_code == 422
