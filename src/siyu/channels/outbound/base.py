"""The part of every outbound call that is the same: token, retries, idempotency, the call log.

Tokens are cached on the account row (sealed), so every worker shares one; WeChat invalidates the
previous token when a new one is fetched. An answer 40001 / 42001 / 40014 (token invalid or expired)
refreshes it and retries once; -1 (busy) and the rate-limit codes are retried with exponential
back-off up to `wechat_max_attempts`; any other errcode is raised as WeChatError. Every call is written
to `channel_calls` in the caller's transaction; a call with an idempotency key that already succeeded
returns the recorded answer and is not sent again.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from typing import Any, Self

import httpx
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu import vault
from siyu.channels import service
from siyu.channels.models import ChannelAccount, ChannelCall, ChannelKind
from siyu.config import Settings, get_settings
from siyu.db import utcnow
from siyu.errors import SiyuError

log = structlog.get_logger()
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
RETRY_ERRORS = frozenset({-1, 45009, 45011, 45033})
# Never written to the call log: credentials, single-use codes, session keys, phone numbers.
REDACTED = frozenset(
    {
        "secret",
        "corpsecret",
        "js_code",
        "code",
        "session_key",
        "access_token",
        "phoneNumber",
        "purePhoneNumber",
    }
)
# Refresh a little before WeChat's stated expiry, so a token never dies mid-call.
TOKEN_MARGIN = dt.timedelta(seconds=300)


def redact(value: Any) -> Any:
    """value with the REDACTED keys' values replaced, at any depth."""
    if isinstance(value, dict):
        return {k: "***" if k in REDACTED else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


class WeChatError(SiyuError):
    """WeChat answered an errcode other than 0; errcode and errmsg as sent."""

    status_code = 502

    def __init__(self, api: str, errcode: int, errmsg: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(f"{api}: errcode {errcode} ({errmsg})")
        self.api = api
        self.errcode = errcode
        self.errmsg = errmsg
        # The whole answer: some errors carry data (45065 carries the existing job's msg_id).
        self.detail = detail or {}
        # The call-log row of the failed call, for a caller whose transaction rolls back (the outbox).
        self.call: dict[str, Any] | None = None


@functools.lru_cache(maxsize=16)
def shared_http(base_url: str, timeout: float) -> httpx.Client:
    """The process's HTTP client for an API base: every call reuses its TLS context and open connections.

    A client per call cost a TLS context per call (loading the CA bundle, about 10 ms of CPU) and a
    handshake with WeChat per call. httpx's client is safe to share between threads.
    """
    return httpx.Client(base_url=base_url, timeout=timeout)


class ApiClient:
    """Calls one account's API; `http` may be given (tests, closed with this client), else the shared one."""

    def __init__(
        self,
        session: Session,
        account: ChannelAccount,
        *,
        settings: Settings | None = None,
        http: httpx.Client | None = None,
        sleep: Any = time.sleep,
    ) -> None:
        self.session = session
        self.account = account
        self.settings = settings or get_settings()
        base = (
            self.settings.wecom_api_base
            if account.kind == ChannelKind.wecom
            else self.settings.wechat_api_base
        )
        self._owns_http = http is not None
        self.http = http or shared_http(base, self.settings.wechat_http_timeout_seconds)
        self._sleep = sleep

    def close(self) -> None:
        """Close the HTTP client given to this one; the shared client stays open for the next call."""
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- access token -------------------------------------------------------------------------
    def token(self, *, refresh: bool = False) -> str:
        """The account's access token: the cached one while valid, else a new one (stored sealed)."""
        account = self.account
        now = utcnow()
        if (
            not refresh
            and account.access_token_sealed
            and account.access_token_expires_at is not None
            and account.access_token_expires_at - TOKEN_MARGIN > now
        ):
            return vault.unseal(account.access_token_sealed)
        creds = service.credentials(account)
        if account.kind == ChannelKind.wecom:
            params = {"corpid": creds.app_id, "corpsecret": creds.secret}
            path = "/cgi-bin/gettoken"
        else:
            params = {"grant_type": "client_credential", "appid": creds.app_id, "secret": creds.secret}
            path = "/cgi-bin/token"
        body = self._send("GET", path, params=params, json=None)
        errcode = int(body.get("errcode", 0) or 0)
        if errcode or "access_token" not in body:
            raise WeChatError(path, errcode, str(body.get("errmsg", "no access_token in the answer")))
        token = str(body["access_token"])
        account.access_token_sealed = vault.seal(token)
        account.access_token_expires_at = now + dt.timedelta(seconds=int(body.get("expires_in", 7200)))
        self.session.flush()
        return token

    # -- calls --------------------------------------------------------------------------------
    def _send(self, method: str, path: str, *, params: dict[str, Any], json: Any) -> dict[str, Any]:
        response = self.http.request(method, path, params=params, json=json)
        response.raise_for_status()
        data = response.json()
        if not isinstance(data, dict):
            raise WeChatError(path, -2, "the answer is not a JSON object")
        return data

    def call(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        idempotency_key: str | None = None,
        auth: str = "access_token",
    ) -> dict[str, Any]:
        """The JSON answer of one API call (errcode 0), with token refresh, retries and the call log.

        auth names the query parameter that carries the token; "" for calls signed otherwise.
        """
        if idempotency_key is not None:
            done = self.session.execute(
                select(ChannelCall).where(ChannelCall.idempotency_key == idempotency_key, ChannelCall.ok)
            ).scalar_one_or_none()
            if done is not None:
                return dict(done.response or {})
        started = time.perf_counter()
        attempts = 0
        refreshed = False
        refresh_now = False
        body: dict[str, Any] = {}
        errcode = 0
        while True:
            attempts += 1
            query = dict(params or {})
            if auth:
                query[auth] = self.token(refresh=refresh_now)
                refresh_now = False
            try:
                body = self._send(method, path, params=query, json=json)
                errcode = int(body.get("errcode", 0) or 0)
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                body, errcode = {"errmsg": f"{type(exc).__name__}: {exc}"}, -1
            if errcode in TOKEN_ERRORS and auth and not refreshed:
                refreshed = refresh_now = True
                log.info("wechat.token_refresh", api=path, errcode=errcode, account=self.account.name)
                continue
            if errcode in RETRY_ERRORS and attempts < self.settings.wechat_max_attempts:
                self._sleep(self.settings.wechat_retry_backoff_seconds * 2 ** (attempts - 1))
                continue
            break
        row = self._record(path, params, json, body, errcode, attempts, started, idempotency_key)
        if errcode:
            error = WeChatError(path, errcode, str(body.get("errmsg", "")), body)
            error.call = row
            raise error
        return body

    def _record(
        self,
        path: str,
        params: dict[str, Any] | None,
        json: Any,
        body: dict[str, Any],
        errcode: int,
        attempts: int,
        started: float,
        idempotency_key: str | None,
    ) -> dict[str, Any]:
        # A failed call keeps no idempotency key, so a later retry of the same job may send it.
        row: dict[str, Any] = {
            "account_id": self.account.id,
            "api": path,
            "idempotency_key": idempotency_key if errcode == 0 else None,
            "request": {"params": redact(params or {}), "json": redact(json)},
            "response": redact(body),
            "errcode": errcode,
            "ok": errcode == 0,
            "attempts": attempts,
            "duration_ms": int((time.perf_counter() - started) * 1000),
            "created_at": utcnow(),
        }
        self.session.add(ChannelCall(**row))
        self.session.flush()
        return row
