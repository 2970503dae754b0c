"""The demo's fake WeChat API, served by siyu itself at /_fake/wechat, knows siyu's own accounts."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.app import create_app
from siyu.channels.outbound.base import WeChatError
from siyu.channels.outbound.oa import OaClient
from siyu.config import Settings
from tests.channels.wechat import oa_account


def test_mounted_fake_answers_for_configured_accounts(session: Session) -> None:
    account = oa_account(session)
    app = create_app(Settings(fake_wechat=True, ingest_processor=False, secret_key="x"))
    with TestClient(app, base_url="http://testserver/_fake/wechat") as http:
        with OaClient(session, account, http=http) as client:
            # The token was issued (the fake looked the account up), and the demo's fake knows every follower.
            assert client.user_info("o-anyone")["openid"] == "o-anyone"
            with pytest.raises(WeChatError, match="40003"):
                client.user_info("")
        assert account.access_token_sealed is not None


def test_refused_in_production() -> None:
    with pytest.raises(RuntimeError, match="not production"):
        create_app(Settings(fake_wechat=True, environment="production", secret_key="x"))
