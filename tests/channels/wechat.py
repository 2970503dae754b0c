"""What WeChat's and WeCom's servers do when they push: sign, optionally encrypt, POST; for the tests."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session

from siyu.channels import service
from siyu.channels.crypto import MessageCrypto, signature
from siyu.channels.models import ChannelAccount, ChannelKind, OaType

OA_TOKEN = "AAAAA"
OA_APP_ID = "wx5823bf96d3bd56c7"
# A 43-character EncodingAESKey (any 32 random bytes in base64 without the final '=').
OA_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
WECOM_TOKEN = "123456"
WECOM_AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
WECOM_CORP_ID = "wx49f0ab532d5d035a"
MP_APP_ID = "wx4f4bc4dec97d474b"


def oa_account(session: Session, name: str = "tos-oa", *, aes: bool = True) -> ChannelAccount:
    """An Official Account configured as the WeChat console would have it."""
    return service.create_account(
        session,
        kind=ChannelKind.oa,
        name=name,
        app_id=OA_APP_ID,
        secret="oa-app-secret",
        token=OA_TOKEN,
        aes_key_text=OA_AES_KEY if aes else None,
        oa_type=OaType.service,
    )


def wecom_account(session: Session, name: str = "tos-wecom", welcome_text: str = "") -> ChannelAccount:
    """A WeCom corp with the customer-contact callback configured."""
    return service.create_account(
        session,
        kind=ChannelKind.wecom,
        name=name,
        app_id=WECOM_CORP_ID,
        secret="wecom-contact-secret",
        token=WECOM_TOKEN,
        aes_key_text=WECOM_AES_KEY,
        welcome_text=welcome_text,
    )


@dataclass
class OaPusher:
    """Pushes to /wechat/oa/{name}/callback the way WeChat does, in a chosen mode."""

    client: TestClient | None = None  # None: only signed() is used
    name: str = "tos-oa"
    token: str = OA_TOKEN
    aes_key: str = OA_AES_KEY
    app_id: str = OA_APP_ID

    def push(
        self,
        body: str,
        *,
        mode: str = "plaintext",
        timestamp: int | None = None,
        nonce: str | None = None,
        forge: str | None = None,
    ) -> Response:
        """POST body in mode plaintext, compat or aes; forge="signature" or "msg_signature" breaks one."""
        params, content = self.signed(body, mode=mode, timestamp=timestamp, nonce=nonce, forge=forge)
        assert self.client is not None
        return self.client.post(f"/wechat/oa/{self.name}/callback", params=params, content=content)

    def signed(
        self,
        body: str,
        *,
        mode: str = "plaintext",
        timestamp: int | None = None,
        nonce: str | None = None,
        forge: str | None = None,
    ) -> tuple[dict[str, str], bytes]:
        """The query parameters and body WeChat would POST for body (see push)."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or str(secrets.randbelow(10**9))
        params: dict[str, str] = {
            "signature": signature(self.token, ts, nonce),
            "timestamp": ts,
            "nonce": nonce,
            "openid": "o-any",
        }
        content = body
        if mode in ("compat", "aes"):
            crypto = MessageCrypto(self.token, self.aes_key, self.app_id)
            encrypted = crypto.encrypt(body)
            params["encrypt_type"] = "aes"
            params["msg_signature"] = crypto.sign(ts, nonce, encrypted)
            envelope = (
                f"<ToUserName><![CDATA[gh_tos]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt>"
            )
            if mode == "compat":
                # Compatible mode sends the plaintext fields and the envelope together.
                content = body.replace("</xml>", f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>")
            else:
                content = f"<xml>{envelope}</xml>"
        if forge:
            params[forge] = "0" * 40
        return params, content.encode()


@dataclass
class WeComPusher:
    """Pushes encrypted customer-contact events to /wechat/wecom/{name}/callback as WeCom does."""

    client: TestClient | None = None  # None: only signed() is used
    name: str = "tos-wecom"
    token: str = WECOM_TOKEN
    aes_key: str = WECOM_AES_KEY
    corp_id: str = WECOM_CORP_ID

    def push(
        self, body: str, *, timestamp: int | None = None, forge: bool = False, corp_id: str | None = None
    ) -> Response:
        """POST body encrypted and signed; forge breaks msg_signature, corp_id encrypts for another corp."""
        params, content = self.signed(body, timestamp=timestamp, forge=forge, corp_id=corp_id)
        assert self.client is not None
        return self.client.post(f"/wechat/wecom/{self.name}/callback", params=params, content=content)

    def signed(
        self, body: str, *, timestamp: int | None = None, forge: bool = False, corp_id: str | None = None
    ) -> tuple[dict[str, str], bytes]:
        """The query parameters and body WeCom would POST for body (see push)."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = str(secrets.randbelow(10**9))
        crypto = MessageCrypto(self.token, self.aes_key, corp_id or self.corp_id)
        encrypted = crypto.encrypt(body)
        params = {
            "msg_signature": "0" * 40 if forge else crypto.sign(ts, nonce, encrypted),
            "timestamp": ts,
            "nonce": nonce,
        }
        envelope = (
            f"<xml><ToUserName><![CDATA[{self.corp_id}]]></ToUserName>"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
        )
        return params, envelope.encode()


def oa_event(event: str, openid: str = "FromUser", create_time: int = 123456789, **fields: str | int) -> str:
    """An Official Account event push in WeChat's documented shape."""
    extra = "".join(
        f"<{k}>{v}</{k}>" if isinstance(v, int) else f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items()
    )
    return (
        f"<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event>{extra}</xml>"
    )


def wecom_change(
    change_type: str, external: str, user: str = "zhangsan", create_time: int = 1403610513, **fields: str
) -> str:
    """A change_external_contact push in WeCom's documented shape."""
    extra = "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in fields.items())
    return (
        "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[change_external_contact]]></Event><ChangeType><![CDATA[{change_type}]]></ChangeType>"
        f"<UserID><![CDATA[{user}]]></UserID><ExternalUserID><![CDATA[{external}]]></ExternalUserID>{extra}</xml>"
    )
