"""Callback endpoints WeChat and WeCom push to, and the admin API of channel accounts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from siyu.auth.models import Role
from siyu.auth.principal import Principal
from siyu.channels import miniprogram, oa, service, wecom
from siyu.channels.models import ChannelAccount, ChannelKind
from siyu.channels.schemas import (
    ChannelAccountCreate,
    ChannelAccountOut,
    PhoneIn,
    PhoneOut,
    SessionIn,
    SessionOut,
)
from siyu.config import get_settings
from siyu.db import unit_of_work, utcnow
from siyu.deps import ReaderDep, SessionDep, principal_from_request
from siyu.errors import BadRequest, Forbidden, NotFound, Unauthorized
from siyu.ingest import processor

callbacks = APIRouter(tags=["wechat callbacks"], include_in_schema=True)
router = APIRouter(prefix="/api/v1/channels", tags=["channels"])


def callback_path(account: ChannelAccount) -> str | None:
    """The path WeChat must be configured to push to, for accounts that receive pushes."""
    if account.kind is ChannelKind.miniprogram:
        return None
    return f"/wechat/{account.kind}/{account.name}/callback"


def _account(kind: ChannelKind, name: str) -> ChannelAccount:
    with unit_of_work() as session:
        account = service.get_account(session, kind, name)
        if account is None:
            raise NotFound(f"no {kind} channel account named {name!r}")
        session.expunge(account)
        return account


def _verify(kind: ChannelKind, name: str, query: dict[str, str]) -> str:
    account = _account(kind, name)
    if kind is ChannelKind.oa:
        return oa.verify_url(account, query, utcnow(), get_settings())
    return wecom.verify_url(account, query)


def _receive(kind: ChannelKind, name: str, query: dict[str, str], body: bytes) -> PlainTextResponse:
    settings = get_settings()
    now = utcnow()
    with unit_of_work() as session:
        account = service.get_account(session, kind, name)
        if account is None:
            raise NotFound(f"no {kind} channel account named {name!r}")
        receive = oa.receive if kind is ChannelKind.oa else wecom.receive
        try:
            receipt = receive(session, account, query, body, now, settings)
        except BadRequest as exc:
            # The dead letter written for an unreadable body commits with this unit of work.
            return PlainTextResponse(exc.message, status_code=400)
    running = processor.current()
    if running is not None and receipt.queued:
        running.wake()
    return PlainTextResponse(receipt.reply)


@callbacks.get("/wechat/oa/{name}/callback", response_class=PlainTextResponse, summary="OA URL verification")
async def oa_verify(name: str, request: Request) -> PlainTextResponse:
    """Answer WeChat's GET with echostr when the signature matches the account's token."""
    return PlainTextResponse(
        await run_in_threadpool(_verify, ChannelKind.oa, name, dict(request.query_params))
    )


@callbacks.post("/wechat/oa/{name}/callback", response_class=PlainTextResponse, summary="OA pushes")
async def oa_push(name: str, request: Request) -> PlainTextResponse:
    """Messages and events of an Official Account, in plaintext, compatible or safe mode."""
    body = await request.body()
    return await run_in_threadpool(_receive, ChannelKind.oa, name, dict(request.query_params), body)


@callbacks.get(
    "/wechat/wecom/{name}/callback", response_class=PlainTextResponse, summary="WeCom URL verification"
)
async def wecom_verify(name: str, request: Request) -> PlainTextResponse:
    """Answer WeCom's GET with the decrypted echostr."""
    return PlainTextResponse(
        await run_in_threadpool(_verify, ChannelKind.wecom, name, dict(request.query_params))
    )


@callbacks.post("/wechat/wecom/{name}/callback", response_class=PlainTextResponse, summary="WeCom pushes")
async def wecom_push(name: str, request: Request) -> PlainTextResponse:
    """Customer-contact changes of a WeCom corp (always encrypted)."""
    body = await request.body()
    return await run_in_threadpool(_receive, ChannelKind.wecom, name, dict(request.query_params), body)


mp = APIRouter(prefix="/mp/v1", tags=["mini program"])


def require_writer(request: Request, session: SessionDep) -> Principal:
    """The Mini Program's write key (a `source` key, as its tracking uses), or an admin key."""
    principal = principal_from_request(request, session)
    if principal is None:
        raise Unauthorized(
            "missing or invalid write key: send it as the HTTP Basic username or a Bearer token"
        )
    if principal.role not in (Role.source, Role.admin):
        raise Forbidden(f"a {principal.role} key cannot call the Mini Program API: use a source write key")
    return principal


WriterDep = Annotated[Principal, Depends(require_writer)]


@mp.post("/session", response_model=SessionOut, summary="Sign in with wx.login()")
def mp_session(body: SessionIn, _writer: WriterDep, session: SessionDep) -> SessionOut:
    """code2session on the server; links the openid to the unionid on the customer's profile."""
    account = miniprogram.pick_account(session, body.account)
    login = miniprogram.login(session, account, body.code, now=utcnow(), settings=get_settings())
    _wake()
    return SessionOut(
        session=login.session, openid=login.openid, unionid=login.unionid, expires_at=login.expires_at
    )


@mp.post("/phone", response_model=PhoneOut, summary="Phone number authorisation")
def mp_phone(body: PhoneIn, _writer: WriterDep, session: SessionDep) -> PhoneOut:
    """getuserphonenumber; the phone goes on the profile with a recorded consent (PIPL)."""
    now = utcnow()
    account = miniprogram.pick_account(session, body.account)
    mp_session_row = miniprogram.get_session_or_raise(session, account, body.session, now)
    masked = miniprogram.authorize_phone(
        session, account, mp_session_row, body.code, now=now, settings=get_settings()
    )
    _wake()
    return PhoneOut(phone=masked)


def _wake() -> None:
    running = processor.current()
    if running is not None:
        running.wake()


def require_admin(principal: ReaderDep) -> Principal:
    """Channel accounts hold the brand's WeChat secrets: admin only."""
    if principal.role is not Role.admin:
        raise Forbidden("channel accounts are managed by admin")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin)]


def account_out(account: ChannelAccount) -> ChannelAccountOut:
    """The public view of an account: whether secrets are set, never their values."""
    return ChannelAccountOut(
        id=account.id,
        kind=account.kind,
        name=account.name,
        app_id=account.app_id,
        oa_type=account.oa_type,
        agent_id=account.agent_id,
        has_aes_key=account.aes_key_sealed is not None,
        callback_path=callback_path(account),
        welcome_text=account.welcome_text,
        created_at=account.created_at,
        disabled_at=account.disabled_at,
    )


@router.post("", response_model=ChannelAccountOut, status_code=201, summary="Configure a channel account")
def create_account(body: ChannelAccountCreate, _admin: AdminDep, session: SessionDep) -> ChannelAccountOut:
    account = service.create_account(
        session,
        kind=body.kind,
        name=body.name,
        app_id=body.app_id,
        secret=body.secret,
        token=body.token,
        aes_key_text=body.aes_key,
        oa_type=body.oa_type,
        agent_id=body.agent_id,
        welcome_text=body.welcome_text,
    )
    return account_out(account)


@router.get("", response_model=list[ChannelAccountOut], summary="Channel accounts")
def list_accounts(_admin: AdminDep, session: SessionDep) -> list[ChannelAccountOut]:
    return [account_out(a) for a in service.list_accounts(session)]
