"""The local fake WeChat API for the channel tests: one server per session, a clean state per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from siyu.channels.fake import FakeState
from siyu.config import get_settings
from tests.channels.fake_server import serve_fake
from tests.channels.wechat import MP_APP_ID, OA_APP_ID, WECOM_CORP_ID


@pytest.fixture(scope="session")
def fake_server() -> Iterator[tuple[str, FakeState]]:
    with serve_fake() as served:
        yield served


@pytest.fixture
def fake(fake_server: tuple[str, FakeState], monkeypatch: pytest.MonkeyPatch) -> FakeState:
    """The fake, emptied, knowing the test accounts' secrets; siyu's API bases point at it."""
    base, state = fake_server
    state.__init__()  # type: ignore[misc]
    state.register(OA_APP_ID, "oa-app-secret")
    state.register(WECOM_CORP_ID, "wecom-contact-secret")
    state.register(MP_APP_ID, "mp-secret")
    monkeypatch.setenv("SIYU_WECHAT_API_BASE", base)
    monkeypatch.setenv("SIYU_WECOM_API_BASE", base)
    monkeypatch.setenv("SIYU_WECHAT_RETRY_BACKOFF_SECONDS", "0")
    get_settings.cache_clear()
    return state
