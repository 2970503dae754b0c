"""The admin API for API keys and console users: scoped creation, revocation, disabling, password resets."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth import service as auth_service
from siyu.auth.models import AuditLog, Role
from tests import factories
from tests.console.conftest import PASSWORD, login


def test_keys_are_scoped_like_users_and_revoked(client: TestClient, session: Session) -> None:
    admin = factories.auth(factories.api_key(session, Role.admin))
    shop = factories.store(session, "SH01")

    def create(**body: object) -> object:
        return client.post("/api/v1/apikeys", json={"name": "k", **body}, headers=admin)

    missing = create(role="store_manager")
    assert (
        missing.status_code == 400 and "store: a store_manager works in one store" in missing.json()["detail"]
    )
    unknown = create(role="store_manager", store="NOPE")
    assert unknown.status_code == 404 and "NOPE" in unknown.json()["detail"]
    assert create(role="hq", store="SH01").status_code == 400
    assert create(role="source", region=shop.region_id).status_code == 422  # a code is a string
    made = create(role="store_manager", store="SH01")
    assert made.status_code == 201, made.text
    assert (made.json()["store_id"], made.json()["region_id"]) == (shop.id, shop.region_id)
    secret, key_id = made.json()["key"], made.json()["id"]
    assert client.get("/api/v1/profiles?q=x", headers=factories.auth(secret)).status_code == 200

    listed = client.get("/api/v1/apikeys", headers=admin).json()
    assert key_id in [k["id"] for k in listed] and all("key" not in k for k in listed)
    r = client.post(f"/api/v1/apikeys/{key_id}/revoke", headers=admin)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    again = client.post(f"/api/v1/apikeys/{key_id}/revoke", headers=admin)
    assert again.json()["revoked_at"] == r.json()["revoked_at"]
    assert client.get("/api/v1/profiles?q=x", headers=factories.auth(secret)).status_code == 401
    assert client.post("/api/v1/apikeys/99999/revoke", headers=admin).status_code == 404
    actions = session.execute(select(AuditLog.action)).scalars().all()
    assert actions.count("apikey.revoke") == 2 and "apikey.create" in actions


def test_a_key_acting_as_a_user_takes_their_role(client: TestClient, session: Session) -> None:
    admin = factories.auth(factories.api_key(session, Role.admin))
    shop = factories.store(session, "SH02")
    li = factories.user(session, Role.sales_associate, store_id=shop.id, region_id=shop.region_id)
    r = client.post("/api/v1/apikeys", json={"name": "li", "user": li.username}, headers=admin)
    assert r.status_code == 201 and (r.json()["role"], r.json()["user_id"]) == ("sales_associate", li.id)
    wrong = client.post(
        "/api/v1/apikeys", json={"name": "li", "user": li.username, "role": "admin"}, headers=admin
    )
    assert wrong.status_code == 400 and "acts as this sales_associate" in wrong.json()["detail"]


def test_users_are_created_disabled_and_reset(client: TestClient, session: Session) -> None:
    admin = factories.auth(factories.api_key(session, Role.admin))
    factories.store(session, "SH03")
    body = {"username": "li.si", "role": "sales_associate", "store": "SH03", "wecom_userid": "lisi"}
    r = client.post("/api/v1/users", json=body, headers=admin)
    assert r.status_code == 201, r.text
    generated, user_id = r.json()["password"], r.json()["id"]
    assert len(generated) >= 12
    taken = client.post("/api/v1/users", json={**body, "username": "wang.wu"}, headers=admin)
    assert (
        taken.status_code == 409
        and "wecom_userid 'lisi' already belongs to user 'li.si'" in taken.json()["detail"]
    )
    assert client.post("/api/v1/users", json={**body, "store": None}, headers=admin).status_code == 400
    assert (
        client.get("/api/v1/users", headers=factories.auth(factories.api_key(session, Role.hq))).status_code
        == 403
    )
    assert "li.si" in [u["username"] for u in client.get("/api/v1/users", headers=admin).json()]

    # She logs in; a reset ends her session and only the new password works.
    login(client, "li.si", generated)
    assert client.get("/work").status_code == 200
    reset = client.patch(f"/api/v1/users/{user_id}", json={"reset_password": True}, headers=admin)
    assert reset.status_code == 200 and reset.json()["password"] not in (None, generated)
    assert client.get("/work", follow_redirects=False).status_code in (302, 303, 401)
    login(client, "li.si", reset.json()["password"])

    # Disabling ends the session and revokes the keys that act as her.
    key = client.post("/api/v1/apikeys", json={"name": "li", "user": "li.si"}, headers=admin).json()["key"]
    assert client.get("/api/v1/me/tasks", headers=factories.auth(key)).status_code == 200
    off = client.patch(f"/api/v1/users/{user_id}", json={"active": False}, headers=admin)
    assert off.status_code == 200 and off.json()["is_active"] is False and off.json()["password"] is None
    assert client.get("/api/v1/me/tasks", headers=factories.auth(key)).status_code == 401
    assert client.get("/work", follow_redirects=False).status_code in (302, 303, 401)
    assert client.patch("/api/v1/users/99999", json={"active": False}, headers=admin).status_code == 404


def test_a_session_opened_before_a_user_was_disabled_stays_over_when_enabled_again(
    client: TestClient, session: Session
) -> None:
    admin = factories.auth(factories.api_key(session, Role.admin))
    hq = factories.user(session, Role.hq, password=PASSWORD)
    login(client, hq.username, PASSWORD)
    assert client.get("/work").status_code == 200
    assert client.patch(f"/api/v1/users/{hq.id}", json={"active": False}, headers=admin).status_code == 200
    assert client.patch(f"/api/v1/users/{hq.id}", json={"active": True}, headers=admin).status_code == 200
    assert client.get("/work", follow_redirects=False).status_code in (302, 303, 401)
    login(client, hq.username, PASSWORD)  # her password still works: only the old session is over
    assert client.get("/work").status_code == 200


def test_usernames_and_wecom_userids_are_one_person_whatever_their_case(
    client: TestClient, session: Session
) -> None:
    admin = factories.auth(factories.api_key(session, Role.admin))
    factories.store(session, "SH04")
    body = {"username": "Li.Si", "role": "sales_associate", "store": "SH04", "wecom_userid": "LiSi"}
    made = client.post("/api/v1/users", json=body, headers=admin)
    assert made.status_code == 201, made.text
    same_name = client.post(
        "/api/v1/users", json={**body, "username": "li.si", "wecom_userid": "x"}, headers=admin
    )
    assert same_name.status_code == 409 and "(as 'Li.Si')" in same_name.json()["detail"]
    same_wecom = client.post(
        "/api/v1/users", json={**body, "username": "wang.wu", "wecom_userid": "lisi"}, headers=admin
    )
    assert same_wecom.status_code == 409 and "already belongs to user 'Li.Si'" in same_wecom.json()["detail"]
    login(client, "li.si", made.json()["password"])  # she logs in whatever case she types
    assert client.get("/work").status_code == 200


def test_the_last_active_admin_cannot_be_disabled(client: TestClient, session: Session) -> None:
    first = factories.user(session, Role.admin)
    token = factories.auth(factories.api_key(session, Role.admin))  # a key of no user: the demo's, a script's
    r = client.patch(f"/api/v1/users/{first.id}", json={"active": False}, headers=token)
    assert r.status_code == 409 and "last active admin" in r.json()["detail"]
    second = factories.user(session, Role.admin)
    assert client.patch(f"/api/v1/users/{first.id}", json={"active": False}, headers=token).status_code == 200
    assert (
        client.patch(f"/api/v1/users/{second.id}", json={"active": False}, headers=token).status_code == 409
    )


def test_a_disabled_persons_keys_do_not_work_and_none_can_be_made(
    client: TestClient, session: Session
) -> None:
    admin = factories.auth(factories.api_key(session, Role.admin))
    shop = factories.store(session, "SH05")
    li = factories.user(session, Role.store_manager, store_id=shop.id, region_id=shop.region_id)
    key = factories.api_key(session, Role.store_manager, user=li)
    assert client.get("/api/v1/profiles", headers=factories.auth(key)).status_code == 200
    li.is_active = False  # as an older version left it: disabled, the key not revoked
    session.flush()
    assert client.get("/api/v1/profiles", headers=factories.auth(key)).status_code == 401
    posted = client.post(
        "/api/v1/loyalty/members/1/postings",
        json={"kind": "earn", "points": 1, "reason": "x"},
        headers={**factories.auth(key), "Idempotency-Key": "k"},
    )
    assert posted.status_code == 401  # the postings lane looks keys up on its own
    r = client.post("/api/v1/apikeys", json={"name": "li", "user": li.username}, headers=admin)
    assert r.status_code == 409 and "is disabled" in r.json()["detail"]
    # An associate's key acts as her: a key of the role but of nobody would read no customer.
    r = client.post(
        "/api/v1/apikeys", json={"name": "sa", "role": "sales_associate", "store": "SH05"}, headers=admin
    )
    assert r.status_code == 400 and "give user" in r.json()["detail"]


def test_a_key_records_when_it_was_last_used(client: TestClient, session: Session) -> None:
    key, secret = auth_service.create_api_key(session, name="reader", role=Role.hq)
    writer, write_key = auth_service.create_api_key(session, name="site", role=Role.source)
    session.commit()
    assert key.last_used_at is None
    assert client.get("/api/v1/profiles?q=x", headers=factories.auth(secret)).status_code == 200
    sent = client.post("/v1/track", json={"event": "X", "userId": "M1"}, auth=(write_key, ""))
    assert sent.status_code == 200, sent.text
    session.expire_all()
    assert key.last_used_at is not None and writer.last_used_at is not None
    listed = {
        k["id"]: k
        for k in client.get(
            "/api/v1/apikeys", headers=factories.auth(factories.api_key(session, Role.admin))
        ).json()
    }
    assert listed[key.id]["last_used_at"] is not None


def test_an_admin_cannot_lock_themselves_out(client: TestClient, session: Session) -> None:
    me = factories.user(session, Role.admin, password=PASSWORD)
    token = factories.auth(factories.api_key(session, Role.admin, user=me))
    r = client.patch(f"/api/v1/users/{me.id}", json={"active": False}, headers=token)
    assert r.status_code == 403 and "yourself" in r.json()["detail"]
