"""The loyalty admin API contract: enrol, read balance and lots, postings with an Idempotency-Key."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.profiles.models import Profile
from tests import factories


@pytest.fixture
def admin(session: Session) -> dict[str, str]:
    return factories.auth(factories.api_key(session, Role.admin))


@pytest.fixture
def profile_id(session: Session) -> int:
    profile = Profile()
    session.add(profile)
    session.flush()
    return profile.id


def post(
    client: TestClient, headers: dict[str, str], profile_id: int, key: str | None, **body: object
) -> object:
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(
        f"/api/v1/loyalty/members/{profile_id}/postings", json=body, headers={**headers, **extra}
    )


def test_contract(client: TestClient, admin: dict[str, str], profile_id: int) -> None:
    r = client.post("/api/v1/loyalty/members", json={"profile_id": profile_id}, headers=admin)
    assert r.status_code == 201 and r.json()["balance"] == 0
    assert (
        client.post("/api/v1/loyalty/members", json={"profile_id": profile_id}, headers=admin).status_code
        == 200
    )

    earned = post(client, admin, profile_id, "k1", kind="earn", points=120, reason="welcome")
    assert earned.status_code == 201 and earned.json()["balance_after"] == 120  # type: ignore[attr-defined]
    again = post(client, admin, profile_id, "k1", kind="earn", points=120, reason="welcome")
    assert again.status_code == 200 and again.json() == earned.json()  # type: ignore[attr-defined]
    spent = post(client, admin, profile_id, "k2", kind="spend", points=100)
    assert spent.status_code == 201  # type: ignore[attr-defined]
    over = post(client, admin, profile_id, "k3", kind="spend", points=21)
    assert over.status_code == 409 and "balance is 20" in over.json()["detail"]  # type: ignore[attr-defined]
    adjusted = post(client, admin, profile_id, "k4", kind="adjust", points=-5, reason="duplicate welcome")
    assert adjusted.json()["actor"].startswith("api_key:")  # type: ignore[attr-defined]

    member = client.get(f"/api/v1/loyalty/members/{profile_id}", headers=admin).json()
    assert (member["balance"], member["pending"], member["tier"]) == (15, 0, "Jade")
    assert [(lot["points"], lot["remaining"]) for lot in member["lots"]] == [(120, 15)]
    history = client.get(f"/api/v1/loyalty/members/{profile_id}/postings", headers=admin).json()
    assert [p["kind"] for p in history] == ["adjust", "spend", "earn"]


def test_bad_requests(client: TestClient, admin: dict[str, str], profile_id: int, session: Session) -> None:
    client.post("/api/v1/loyalty/members", json={"profile_id": profile_id}, headers=admin)
    missing = post(client, admin, profile_id, None, kind="earn", points=5)
    assert missing.status_code == 400 and "Idempotency-Key" in missing.json()["detail"]  # type: ignore[attr-defined]
    assert post(client, admin, profile_id, "z", kind="earn", points=0).status_code == 400  # type: ignore[attr-defined]
    assert post(client, admin, profile_id, "y", kind="adjust", points=5).status_code == 400  # type: ignore[attr-defined]
    assert post(client, admin, profile_id, "x", kind="gift", points=5).status_code == 422  # type: ignore[attr-defined]
    reused = post(client, admin, profile_id, "w", kind="earn", points=5)
    assert reused.status_code == 201  # type: ignore[attr-defined]
    conflict = post(client, admin, profile_id, "w", kind="spend", points=5)
    assert conflict.status_code == 409  # type: ignore[attr-defined]
    assert "api:" not in conflict.json()["detail"] and "'w'" in conflict.json()["detail"]  # type: ignore[attr-defined]
    # Another caller's "w" is its own request: it posts, and learns nothing of the first caller's posting.
    other = factories.auth(factories.api_key(session, Role.admin))
    theirs = post(client, other, profile_id, "w", kind="earn", points=7)
    assert theirs.status_code == 201 and theirs.json()["id"] != reused.json()["id"]  # type: ignore[attr-defined]
    broken = client.post(
        f"/api/v1/loyalty/members/{profile_id}/postings",
        content=b'{"kind": ',
        headers={**admin, "Idempotency-Key": "v", "Content-Type": "application/json"},
    )
    assert broken.status_code == 400, broken.text
    assert (
        broken.json()["detail"].startswith("malformed JSON") and "at character 9" in broken.json()["detail"]
    )
    assert client.get("/api/v1/loyalty/members/999999", headers=admin).status_code == 404
    stranger = Profile()
    session.add(stranger)
    session.flush()
    assert client.get(f"/api/v1/loyalty/members/{stranger.id}", headers=admin).status_code == 404


def test_roles(client: TestClient, session: Session, admin: dict[str, str], profile_id: int) -> None:
    client.post("/api/v1/loyalty/members", json={"profile_id": profile_id}, headers=admin)
    post(client, admin, profile_id, "seed", kind="earn", points=50)
    marketer = factories.auth(factories.api_key(session, Role.marketer))
    assert post(client, marketer, profile_id, "m1", kind="earn", points=5).status_code == 403  # type: ignore[attr-defined]
    source = factories.auth(factories.api_key(session, Role.source))
    assert client.get(f"/api/v1/loyalty/members/{profile_id}", headers=source).status_code == 403
