"""API keys, users and passwords."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from siyu.auth import service as auth_service
from siyu.auth.models import ApiKey, Role
from siyu.errors import BadRequest, Conflict
from tests import factories


def test_api_key_secret_is_not_stored(session: Session) -> None:
    key, secret = auth_service.create_api_key(session, name="Mini Program", role=Role.source)
    stored = session.get(ApiKey, key.id)
    assert stored is not None and secret not in (stored.key_hash, stored.prefix)
    assert auth_service.get_api_key_by_secret(session, secret) is key
    assert auth_service.get_api_key_by_secret(session, secret + "x") is None


def test_revoked_key_is_refused(session: Session) -> None:
    key, secret = auth_service.create_api_key(session, name="old", role=Role.admin)
    key.revoked_at = key.created_at
    assert auth_service.get_api_key_by_secret(session, secret) is None


def test_password_login(session: Session) -> None:
    user = factories.user(session, Role.hq, password="qipao-2026!")
    assert user.password_hash.startswith("$argon2id$")
    assert auth_service.authenticate(session, user.username, "qipao-2026!") is user
    assert auth_service.authenticate(session, user.username, "wrong-password") is None
    assert auth_service.authenticate(session, "nobody", "qipao-2026!") is None


def test_user_rules(session: Session) -> None:
    factories.user(session, Role.hq)
    with pytest.raises(BadRequest, match="at least 8"):
        auth_service.create_user(session, username="short", password="123", role=Role.hq)
    auth_service.create_user(session, username="nancy", password="12345678", role=Role.hq)
    with pytest.raises(Conflict, match="taken"):
        auth_service.create_user(session, username="nancy", password="12345678", role=Role.hq)
    blank = [
        auth_service.create_user(
            session, username=f"b{i}", password="12345678", role=Role.hq, wecom_userid="  "
        )
        for i in range(2)
    ]
    assert [u.wecom_userid for u in blank] == [None, None]
    with pytest.raises(Conflict, match="taken"):  # full-width letters are the same letters
        auth_service.create_user(session, username="ｎａｎｃｙ", password="12345678", role=Role.hq)
    with pytest.raises(BadRequest, match="has a space"):
        auth_service.create_user(session, username="li si", password="12345678", role=Role.hq)
    with pytest.raises(BadRequest, match="source is for write keys"):
        auth_service.create_user(session, username="site", password="12345678", role=Role.source)
    # A dotless i or a Cyrillic a beside Latin letters passes for "admin" in the staff list and the audit log.
    for lookalike in ("adm\u0131n", "\u0430dmin"):
        with pytest.raises(BadRequest, match="can pass for another user's"):
            auth_service.create_user(session, username=lookalike, password="12345678", role=Role.hq)
    # Accents, Chinese and names wholly in another script are names, not disguises.
    for name in ("jos\u00e9", "\u738b\u5c0f\u660e", "\u0438\u0432\u0430\u043d"):
        assert auth_service.create_user(session, username=name, password="12345678", role=Role.hq).id


def test_api_keys_endpoint_is_admin_only(client, session: Session) -> None:  # type: ignore[no-untyped-def]
    admin, hq = factories.api_key(session, Role.admin), factories.api_key(session, Role.hq)
    r = client.post("/api/v1/apikeys", json={"name": "POS", "role": "source"}, headers=factories.auth(admin))
    assert r.status_code == 201 and r.json()["key"].startswith("sy_")
    assert (
        client.post(
            "/api/v1/apikeys", json={"name": "x", "role": "source"}, headers=factories.auth(hq)
        ).status_code
        == 403
    )
    bad = client.post("/api/v1/apikeys", json={"name": "x", "role": "king"}, headers=factories.auth(admin))
    assert bad.status_code == 422 and "role" in bad.json()["detail"]
