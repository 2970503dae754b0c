"""Mini Program sign-in and phone authorisation against the local fake WeChat API (real HTTP)."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.channels import service
from siyu.channels.fake import FakeState
from siyu.channels.models import ChannelCall, ChannelKind, MpSession
from siyu.channels.outbound.base import WeChatError
from siyu.channels.outbound.miniprogram import MiniProgramClient
from siyu.config import get_settings
from siyu.identity.models import Identifier
from siyu.ingest import processor
from siyu.ingest.models import Event
from siyu.profiles import service as profiles_service
from tests import factories
from tests.channels.wechat import MP_APP_ID


@pytest.fixture
def key(session: Session) -> str:
    service.create_account(
        session, kind=ChannelKind.miniprogram, name="tos-mp", app_id=MP_APP_ID, secret="mp-secret"
    )
    return factories.api_key(session, Role.source)


def profile_ids(session: Session, *values: str) -> set[int]:
    processor.drain()
    return set(session.execute(select(Identifier.profile_id).where(Identifier.value.in_(values))).scalars())


def test_session_links_openid_and_unionid_and_keeps_the_session_key(
    fake: FakeState, client: TestClient, session: Session, key: str
) -> None:
    fake.login_codes["081Kq"] = {
        "openid": "o16wA0b4AZKzgVJR3MBwoUdTfU_E",
        "unionid": "or4zX05h_Ykt4ju0TUfx3CQsvfTo",
    }
    r = client.post("/mp/v1/session", json={"code": "081Kq"}, auth=(key, ""))
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["openid"] == "o16wA0b4AZKzgVJR3MBwoUdTfU_E" and body["unionid"] == "or4zX05h_Ykt4ju0TUfx3CQsvfTo"
    )
    assert "session_key" not in r.text
    row = session.execute(select(MpSession)).scalar_one()
    assert row.token_hash != body["session"] and row.session_key_sealed
    assert len(profile_ids(session, "o16wA0b4AZKzgVJR3MBwoUdTfU_E", "or4zX05h_Ykt4ju0TUfx3CQsvfTo")) == 1
    logged = session.execute(select(ChannelCall)).scalar_one()
    assert logged.request["params"]["secret"] == "***" and logged.request["params"]["js_code"] == "***"
    assert logged.response is not None and logged.response["session_key"] == "***"
    # A code works once.
    again = client.post("/mp/v1/session", json={"code": "081Kq"}, auth=(key, ""))
    assert again.status_code == 400 and "40029" in again.json()["detail"]


def test_codes_minted_by_the_fake_sign_in_as_a_phone_would(
    fake: FakeState, client: TestClient, session: Session, key: str
) -> None:
    """The demo has no phone to call wx.login(): the fake mints the codes it would give (docs/wechat.md)."""
    base = get_settings().wechat_api_base
    login = httpx.post(f"{base}/_test/wx-login", json={"openid": "o-demo-1", "unionid": "u-demo-1"}).json()
    r = client.post("/mp/v1/session", json={"code": login["code"]}, auth=(key, ""))
    assert r.status_code == 200 and r.json()["unionid"] == "u-demo-1", r.text
    phone = httpx.post(f"{base}/_test/phone-code", json={"phone": "13800000009"}).json()
    r = client.post(
        "/mp/v1/phone", json={"session": r.json()["session"], "code": phone["code"]}, auth=(key, "")
    )
    assert r.status_code == 200 and r.json()["phone"] == "+86138****0009", r.text
    assert httpx.post(f"{base}/_test/wx-login", json={}).status_code == 400


@pytest.mark.parametrize("country", ["86", 86])
def test_phone_authorisation_records_consent(
    fake: FakeState, client: TestClient, session: Session, key: str, country: int | str
) -> None:
    fake.phone_country_code = country  # WeChat has sent it both ways
    fake.login_codes["c1"] = {"openid": "o-nancy-mp"}
    fake.phone_codes["p1"] = "13123456789"
    token = client.post("/mp/v1/session", json={"code": "c1"}, auth=(key, "")).json()["session"]
    r = client.post("/mp/v1/phone", json={"session": token, "code": "p1"}, auth=(key, ""))
    assert r.status_code == 200, r.text
    assert r.json() == {"phone": "+86131****6789", "consent": "recorded"}
    [pid] = profile_ids(session, "o-nancy-mp", "+8613123456789")
    [consent] = profiles_service.consents(session, pid)
    assert (consent.purpose, consent.granted, consent.source) == (
        "phone_number",
        True,
        f"miniprogram:{MP_APP_ID}",
    )
    logged = session.execute(
        select(ChannelCall).where(ChannelCall.api == "/wxa/business/getuserphonenumber")
    ).scalar_one()
    assert "13123456789" not in str(logged.response)
    # She changes her number a moment later (the same second, the same watermark): a second event, kept.
    fake.phone_codes["p2"] = "13987654321"
    r = client.post("/mp/v1/phone", json={"session": token, "code": "p2"}, auth=(key, ""))
    assert r.status_code == 200, r.text
    processor.drain()
    assert (
        session.execute(
            select(func.count()).select_from(Event).where(Event.event == "Phone Number Authorized")
        ).scalar_one()
        == 2
    )


@pytest.mark.parametrize(("errcode", "status"), [(45011, 429), (40226, 403), (-1, 503)])
def test_wechat_errors_are_explained(
    fake: FakeState, client: TestClient, key: str, errcode: int, status: int
) -> None:
    fake.fail(errcode, "from the fake", times=3)
    r = client.post("/mp/v1/session", json={"code": "x"}, auth=(key, ""))
    assert r.status_code == status
    assert str(errcode) in r.json()["detail"]


def test_bad_requests(fake: FakeState, client: TestClient, session: Session, key: str) -> None:
    assert client.post("/mp/v1/session", json={"code": "x"}).status_code == 401
    marketer = factories.api_key(session, Role.marketer)
    assert client.post("/mp/v1/session", json={"code": "x"}, auth=(marketer, "")).status_code == 403
    r = client.post("/mp/v1/session", json={"code": "x", "account": "nope"}, auth=(key, ""))
    assert r.status_code == 400 and "no Mini Program named 'nope'" in r.json()["detail"]
    r = client.post("/mp/v1/phone", json={"session": "forged", "code": "p"}, auth=(key, ""))
    assert r.status_code == 401 and "session" in r.json()["detail"]


def test_subscribe_message(fake: FakeState, session: Session, key: str) -> None:
    account = service.get_account_or_raise(session, ChannelKind.miniprogram, "tos-mp")
    fake.subscriptions.add(("o1", "TPL-ORDER"))
    with MiniProgramClient(session, account) as client:
        client.send_subscribe("o1", "TPL-ORDER", {"thing1": "旗袍 Qipao"}, page="pages/order/1")
        with pytest.raises(WeChatError, match="43101"):
            client.send_subscribe("o1", "TPL-ORDER", {"thing1": "again"})
    [(api, body)] = fake.sent
    assert api == "message/subscribe/send"
    assert body["miniprogram_state"] == "formal" and body["lang"] == "zh_CN"
    assert body["data"] == {"thing1": {"value": "旗袍 Qipao"}}
