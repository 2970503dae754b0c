"""Channel accounts: configured by admins, validated, secrets sealed and never shown again."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu import vault
from siyu.auth.models import Role
from siyu.channels.models import ChannelAccount
from tests import factories
from tests.channels.wechat import OA_AES_KEY, WECOM_AES_KEY

OA = {
    "kind": "oa",
    "name": "tos-oa",
    "app_id": "wx5823bf96d3bd56c7",
    "secret": "s3cret-app",
    "token": "AAAAA",
    "aes_key": OA_AES_KEY,
    "oa_type": "service",
}


def test_create_and_list_never_show_secrets(client: TestClient, session: Session) -> None:
    key = factories.api_key(session, Role.admin)
    r = client.post("/api/v1/channels", json=OA, headers=factories.auth(key))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["callback_path"] == "/wechat/oa/tos-oa/callback" and body["has_aes_key"] is True
    listed = client.get("/api/v1/channels", headers=factories.auth(key))
    for text in (r.text, listed.text):
        assert "s3cret-app" not in text and OA_AES_KEY not in text and "AAAAA" not in text
    row = session.execute(select(ChannelAccount)).scalar_one()
    assert "s3cret-app" not in row.secret_sealed
    assert vault.unseal(row.secret_sealed) == "s3cret-app"


def test_a_changed_secret_key_is_a_clear_error(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    from siyu.config import get_settings

    token = vault.seal("s3cret")
    monkeypatch.setenv("SIYU_SECRET_KEY", "another-key")
    get_settings.cache_clear()
    with pytest.raises(vault.VaultError, match="SIYU_SECRET_KEY changed"):
        vault.unseal(token)


@pytest.mark.parametrize("role", [Role.hq, Role.marketer, Role.source])
def test_only_admin(client: TestClient, session: Session, role: Role) -> None:
    key = factories.api_key(session, role)
    assert client.post("/api/v1/channels", json=OA, headers=factories.auth(key)).status_code == 403
    assert client.get("/api/v1/channels", headers=factories.auth(key)).status_code == 403


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"name": "Bad Name"}, 400, "name: lowercase"),
        ({"oa_type": None}, 400, "oa_type: service or subscription"),
        ({"token": None}, 400, "token: required"),
        ({"token": "to"}, 400, "token: 3 to 32"),
        ({"aes_key": "short"}, 400, "aes_key: EncodingAESKey must be 43 characters"),
        ({"kind": "wecom", "oa_type": None, "aes_key": None}, 400, "aes_key: required"),
        (
            {"kind": "miniprogram", "token": None, "aes_key": None},
            400,
            "oa_type: only for an Official Account",
        ),
        ({"kind": "wechat"}, 422, "kind"),
    ],
)
def test_bad_input(
    client: TestClient, session: Session, change: dict[str, Any], status: int, message: str
) -> None:
    key = factories.api_key(session, Role.admin)
    r = client.post("/api/v1/channels", json={**OA, **change}, headers=factories.auth(key))
    assert r.status_code == status
    assert message in r.json()["detail"]
    assert session.execute(select(ChannelAccount)).first() is None


def test_duplicates(client: TestClient, session: Session) -> None:
    key = factories.api_key(session, Role.admin)
    assert client.post("/api/v1/channels", json=OA, headers=factories.auth(key)).status_code == 201
    r = client.post("/api/v1/channels", json=OA, headers=factories.auth(key))
    assert r.status_code == 409 and "named 'tos-oa' exists" in r.json()["detail"]
    r = client.post("/api/v1/channels", json={**OA, "name": "tos-oa-2"}, headers=factories.auth(key))
    assert r.status_code == 409 and "already configured" in r.json()["detail"]
    wecom = {
        "kind": "wecom",
        "name": "tos-wecom",
        "app_id": "ww1a2b3c4d5e6f7a8b",
        "secret": "x",
        "token": "abc",
        "aes_key": WECOM_AES_KEY,
    }
    assert client.post("/api/v1/channels", json=wecom, headers=factories.auth(key)).status_code == 201
    r = client.post(
        "/api/v1/channels",
        json={**wecom, "name": "typo", "app_id": "ww1a2b 3c4d5e6f"},
        headers=factories.auth(key),
    )
    assert r.status_code == 400 and "'ww1a2b 3c4d5e6f' is not an app id or a corp id" in r.json()["detail"]
