"""QR codes and 「联系我」 codes: created on the (fake) WeChat API, images, attribution counts end to end."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.channels.fake import FakeState
from siyu.ingest import processor
from siyu.profiles.models import Profile
from tests import factories
from tests.channels.wechat import OaPusher, WeComPusher, oa_account, oa_event, wecom_account, wecom_change


@pytest.fixture
def marketer(session: Session) -> dict[str, str]:
    return factories.auth(factories.api_key(session, Role.marketer))


def test_store_qr_code_from_creation_to_follows(
    fake: FakeState, client: TestClient, session: Session, marketer: dict[str, str]
) -> None:
    oa_account(session)
    store = factories.store(session, code="SH01")
    r = client.post(
        "/api/v1/channels/tos-oa/qr-codes",
        json={"name": "Nanjing Road window", "purpose": "store", "store": "SH01", "scene": "store-sh01"},
        headers=marketer,
    )
    assert r.status_code == 201, r.text
    qr = r.json()
    assert qr["store_id"] == store.id and qr["url"].startswith("http://weixin.qq.com/q/")
    [(api, body)] = fake.sent
    assert api == "qrcode/create"
    assert body == {
        "action_info": {"scene": {"scene_str": "store-sh01"}},
        "action_name": "QR_LIMIT_STR_SCENE",
    }
    svg = client.get(qr["image_svg"], headers=marketer)
    assert (
        svg.status_code == 200
        and svg.headers["content-type"].startswith("image/svg+xml")
        and b"<svg" in svg.content
    )
    png = client.get(qr["image_png"] + "?download=true", headers=marketer)
    assert (
        png.content.startswith(b"\x89PNG")
        and 'filename="qr-store-sh01.png"' in png.headers["content-disposition"]
    )

    pusher = OaPusher(client)
    pusher.push(oa_event("subscribe", openid="o-lizzy", EventKey="qrscene_store-sh01", Ticket="t"))
    pusher.push(oa_event("SCAN", openid="o-nancy", EventKey="store-sh01", Ticket="t"))
    processor.drain()
    [listed] = client.get("/api/v1/channels/tos-oa/qr-codes", headers=marketer).json()
    assert (listed["scans"], listed["follows"]) == (2, 1)


def test_temporary_code(
    fake: FakeState, client: TestClient, session: Session, marketer: dict[str, str]
) -> None:
    oa_account(session)
    r = client.post(
        "/api/v1/channels/tos-oa/qr-codes",
        json={
            "name": "Autumn fair",
            "purpose": "campaign",
            "campaign": "autumn-fair",
            "expire_seconds": 86400,
        },
        headers=marketer,
    )
    assert r.status_code == 201, r.text
    assert r.json()["expires_at"] is not None and r.json()["scene"].startswith("campaign-")
    assert fake.sent[0][1]["action_name"] == "QR_STR_SCENE" and fake.sent[0][1]["expire_seconds"] == 86400


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"name": "x", "purpose": "store"}, 400, "store: required for a store QR code"),
        ({"name": "x", "purpose": "store", "store": "NOPE"}, 400, "no store with code 'NOPE'"),
        (
            {"name": "x", "purpose": "associate", "associate": "ghost"},
            400,
            "no user with WeCom UserID 'ghost'",
        ),
        ({"name": "x", "purpose": "campaign", "campaign": "c", "scene": "has space"}, 400, "scene: 1 to 64"),
        ({"name": "x", "purpose": "campaign", "campaign": "c", "expire_seconds": 10}, 400, "expire_seconds"),
    ],
)
def test_bad_qr_requests(
    fake: FakeState,
    client: TestClient,
    session: Session,
    marketer: dict[str, str],
    body: dict[str, object],
    status: int,
    message: str,
) -> None:
    oa_account(session)
    r = client.post("/api/v1/channels/tos-oa/qr-codes", json=body, headers=marketer)
    assert r.status_code == status and message in r.json()["detail"]
    assert fake.sent == []


def test_duplicate_scene_and_roles(
    fake: FakeState, client: TestClient, session: Session, marketer: dict[str, str]
) -> None:
    oa_account(session)
    body = {"name": "x", "purpose": "campaign", "campaign": "c", "scene": "c1"}
    assert client.post("/api/v1/channels/tos-oa/qr-codes", json=body, headers=marketer).status_code == 201
    again = client.post("/api/v1/channels/tos-oa/qr-codes", json=body, headers=marketer)
    assert again.status_code == 409 and len(fake.sent) == 1
    manager = factories.auth(factories.api_key(session, Role.store_manager))
    assert client.post("/api/v1/channels/tos-oa/qr-codes", json=body, headers=manager).status_code == 403
    assert client.post("/api/v1/channels/nope/qr-codes", json=body, headers=marketer).status_code == 404


def test_contact_way_from_creation_to_owner(
    fake: FakeState, client: TestClient, session: Session, marketer: dict[str, str]
) -> None:
    wecom_account(session)
    store = factories.store(session, code="SH02")
    sa = factories.user(session, Role.sales_associate, wecom_userid="lisi", store_id=store.id)
    r = client.post(
        "/api/v1/channels/tos-wecom/contact-ways",
        json={
            "name": "Li Si counter card",
            "associate": "lisi",
            "campaign": "qipao-week",
            "state": "sh02-lisi",
        },
        headers=marketer,
    )
    assert r.status_code == 201, r.text
    way = r.json()
    assert way["store_id"] == store.id and way["config_id"] and way["qr_url"]
    assert fake.sent[0][1]["user"] == ["lisi"] and fake.sent[0][1]["state"] == "sh02-lisi"
    WeComPusher(client).push(wecom_change("add_external_contact", "wm-new", user="lisi", State="sh02-lisi"))
    processor.drain()
    [listed] = client.get("/api/v1/channels/tos-wecom/contact-ways", headers=marketer).json()
    assert listed["adds"] == 1
    profile = session.query(Profile).one()
    assert (profile.owner_user_id, profile.store_id) == (sa.id, store.id)
    too_long = client.post(
        "/api/v1/channels/tos-wecom/contact-ways",
        json={"name": "x", "associate": "lisi", "state": "s" * 31},
        headers=marketer,
    )
    assert too_long.status_code == 400 and "state: 1 to 30" in too_long.json()["detail"]
