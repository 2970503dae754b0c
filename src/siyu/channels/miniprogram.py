"""Mini Program sign-in and phone authorisation; the session_key never leaves the server."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu import vault
from siyu.channels import callbacks
from siyu.channels.models import ChannelAccount, ChannelKind, MpSession
from siyu.channels.outbound.base import WeChatError
from siyu.channels.outbound.miniprogram import MiniProgramClient
from siyu.config import Settings
from siyu.errors import BadRequest, Forbidden, SiyuError, Unauthorized
from siyu.profiles.masking import mask_phone

SESSION_DAYS = 30


class TooManyRequests(SiyuError):
    status_code = 429


class Unavailable(SiyuError):
    status_code = 503


def _explain(exc: WeChatError, what: str) -> SiyuError:
    """The HTTP answer for the Mini Program of a WeChat error (wechat-protocol.md §2)."""
    if exc.errcode in (40029, 40163):
        return BadRequest(f"{what}: invalid, expired or already used (WeChat {exc.errcode})")
    if exc.errcode == 45011:
        return TooManyRequests("WeChat rate limit (45011): try again in a minute")
    if exc.errcode == 40226:
        return Forbidden("WeChat flags this user as high-risk (40226)")
    if exc.errcode == -1:
        return Unavailable("WeChat is busy (-1): try again")
    return exc


def pick_account(session: Session, name: str | None) -> ChannelAccount:
    """The Mini Program account named, or the only one; BadRequest otherwise."""
    statement = select(ChannelAccount).where(
        ChannelAccount.kind == ChannelKind.miniprogram, ChannelAccount.disabled_at.is_(None)
    )
    if name:
        statement = statement.where(ChannelAccount.name == name)
    accounts = session.execute(statement).scalars().all()
    if len(accounts) == 1:
        return accounts[0]
    if name or not accounts:
        raise BadRequest(
            f"account: no Mini Program named {name!r}" if name else "account: no Mini Program configured"
        )
    raise BadRequest("account: several Mini Programs are configured, name one")


@dataclass(frozen=True, slots=True)
class Login:
    """What the Mini Program gets back: an opaque session token and its own ids."""

    session: str
    openid: str
    unionid: str | None
    expires_at: dt.datetime


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _ids(openid: str, unionid: str | None) -> list[dict[str, str]]:
    ids = [{"id": openid, "type": "wechat_openid"}]
    if unionid:
        ids.append({"id": unionid, "type": "wechat_unionid"})
    return ids


def login(
    session: Session, account: ChannelAccount, code: str, *, now: dt.datetime, settings: Settings
) -> Login:
    """Exchange a wx.login() code for a siyu session, and link the openid to the unionid."""
    if not code:
        raise BadRequest("code: required (from wx.login())")
    try:
        with MiniProgramClient(session, account, settings=settings) as client:
            answer = client.code2session(code)
    except WeChatError as exc:
        raise _explain(exc, "code") from exc
    openid = str(answer["openid"])
    unionid = str(answer["unionid"]) if answer.get("unionid") else None
    token = secrets.token_urlsafe(32)
    expires_at = now + dt.timedelta(days=SESSION_DAYS)
    session.add(
        MpSession(
            account_id=account.id,
            token_hash=_hash(token),
            openid=openid,
            unionid=unionid,
            session_key_sealed=vault.seal(str(answer.get("session_key", ""))),
            created_at=now,
            expires_at=expires_at,
        )
    )
    event: dict[str, Any] = {
        "type": "identify",
        # One identify per openid / unionid pair is enough to link them.
        "messageId": f"wx-mp-login:{account.app_id}:{openid}:{unionid or ''}",
        "context": {"channel": "miniprogram", "externalIds": _ids(openid, unionid)},
    }
    callbacks.enqueue(session, [event], now, settings)
    session.flush()
    return Login(session=token, openid=openid, unionid=unionid, expires_at=expires_at)


def get_session_or_raise(
    session: Session, account: ChannelAccount, token: str, now: dt.datetime
) -> MpSession:
    """The live session of token on account, or Unauthorized."""
    row = session.execute(
        select(MpSession).where(MpSession.token_hash == _hash(token), MpSession.account_id == account.id)
    ).scalar_one_or_none()
    if row is None or row.expires_at <= now:
        raise Unauthorized("session: unknown or expired, call /mp/v1/session again")
    return row


def authorize_phone(
    session: Session,
    account: ChannelAccount,
    mp_session: MpSession,
    code: str,
    *,
    now: dt.datetime,
    settings: Settings,
) -> str:
    """Fetch the phone the user agreed to share, record the consent with it; returns it masked."""
    if not code:
        raise BadRequest("code: required (from the getPhoneNumber button)")
    try:
        with MiniProgramClient(session, account, settings=settings) as client:
            answer = client.phone_number(code)
    except WeChatError as exc:
        raise _explain(exc, "code") from exc
    info = answer.get("phone_info") or {}
    pure = str(info.get("purePhoneNumber") or info.get("phoneNumber") or "")
    country = str(info.get("countryCode") or "86")  # sent as 86 or "86"
    if not pure:
        raise Unavailable("WeChat answered no phone number")
    phone = f"+{country}{pure}"
    stamp = (info.get("watermark") or {}).get("timestamp") or int(now.timestamp())
    event = {
        "type": "track",
        "event": "Phone Number Authorized",
        # Each getPhoneNumber code is used once: two authorisations in one second are still two events.
        "messageId": f"wx-mp-phone:{account.app_id}:{hashlib.sha256(code.encode()).hexdigest()[:32]}",
        "timestamp": callbacks.iso(stamp, now),
        "properties": {"purpose": "phone_number", "source": f"miniprogram:{account.app_id}"},
        "context": {
            "channel": "miniprogram",
            "externalIds": _ids(mp_session.openid, mp_session.unionid),
            "traits": {"phone": phone},
        },
    }
    result = callbacks.enqueue(session, [event], now, settings)
    if result.errors:
        raise BadRequest(f"phone: {result.errors[0].reason}")
    return mask_phone(phone)
