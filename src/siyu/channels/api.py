"""Callback endpoints WeChat and WeCom push to, and the admin API of channel accounts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, Response

from siyu.auth.models import Role
from siyu.auth.principal import Principal
from siyu.channels import codes, miniprogram, oa, service, wecom
from siyu.channels.models import ChannelAccount, ChannelKind, ContactWay, WechatQrCode
from siyu.channels.schemas import (
    ChannelAccountCreate,
    ChannelAccountOut,
    ContactWayCreate,
    ContactWayOut,
    PhoneIn,
    PhoneOut,
    QrCodeCreate,
    QrCodeOut,
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
    if account.kind == ChannelKind.miniprogram:
        return None
    return f"/wechat/{account.kind}/{account.name}/callback"


def _account(kind: ChannelKind, name: str) -> ChannelAccount:
    with unit_of_work() as session:
        account = service.get_account_or_raise(session, kind, name)
        session.expunge(account)
        return account


def _verify(kind: ChannelKind, name: str, query: dict[str, str]) -> str:
    account = _account(kind, name)
    if kind == ChannelKind.oa:
        return oa.verify_url(account, query, utcnow(), get_settings())
    return wecom.verify_url(account, query)


@callbacks.get("/wechat/oa/{name}/callback", response_class=PlainTextResponse, summary="OA URL verification")
async def oa_verify(name: str, request: Request) -> PlainTextResponse:
    """Answer WeChat's GET with echostr when the signature matches the account's token."""
    return PlainTextResponse(
        await run_in_threadpool(_verify, ChannelKind.oa, name, dict(request.query_params))
    )


@callbacks.get(
    "/wechat/wecom/{name}/callback", response_class=PlainTextResponse, summary="WeCom URL verification"
)
async def wecom_verify(name: str, request: Request) -> PlainTextResponse:
    """Answer WeCom's GET with the decrypted echostr."""
    return PlainTextResponse(
        await run_in_threadpool(_verify, ChannelKind.wecom, name, dict(request.query_params))
    )


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
    processor.wake()
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
    processor.wake()
    return PhoneOut(phone=masked)


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


MARKETING_ROLES = frozenset({Role.admin, Role.hq, Role.marketer})


def require_marketing(principal: ReaderDep) -> Principal:
    """Attribution codes are made by HQ and marketing."""
    if principal.role not in MARKETING_ROLES:
        raise Forbidden("QR and contact codes are managed by admin, hq and marketer")
    return principal


MarketingDep = Annotated[Principal, Depends(require_marketing)]


def qr_out(qr: WechatQrCode) -> QrCodeOut:
    """A QR code with the links to its image."""
    return QrCodeOut(
        id=qr.id,
        scene=qr.scene,
        name=qr.name,
        purpose=qr.purpose,
        store_id=qr.store_id,
        user_id=qr.user_id,
        campaign=qr.campaign,
        placement=qr.placement,
        url=qr.url,
        expires_at=qr.expires_at,
        scans=qr.scans,
        follows=qr.follows,
        image_svg=f"/api/v1/qr-codes/{qr.id}/image.svg",
        image_png=f"/api/v1/qr-codes/{qr.id}/image.png",
    )


@router.post(
    "/{name}/qr-codes", response_model=QrCodeOut, status_code=201, summary="Create a parametric QR code"
)
def create_qr_code(name: str, body: QrCodeCreate, _who: MarketingDep, session: SessionDep) -> QrCodeOut:
    account = service.get_account_or_raise(session, ChannelKind.oa, name)
    qr = codes.create_qr_code(session, account, **body.model_dump())
    return qr_out(qr)


@router.get("/{name}/qr-codes", response_model=list[QrCodeOut], summary="QR codes with scans and follows")
def list_qr_codes(name: str, _who: MarketingDep, session: SessionDep) -> list[QrCodeOut]:
    account = service.get_account_or_raise(session, ChannelKind.oa, name)
    return [qr_out(qr) for qr in codes.list_qr_codes(session, account.id)]


qr_images = APIRouter(prefix="/api/v1/qr-codes", tags=["channels"])


@qr_images.get("/{qr_id}/image.{fmt}", summary="The QR code as an SVG or PNG image")
def qr_image(
    qr_id: int, fmt: str, _who: MarketingDep, session: SessionDep, download: bool = False
) -> Response:
    qr = codes.get_qr_code_or_raise(session, qr_id)
    if not qr.url:
        raise NotFound("this QR code has no URL")
    media = {"svg": "image/svg+xml", "png": "image/png"}.get(fmt)
    if media is None:
        raise BadRequest("format: svg or png")
    headers = {"Content-Disposition": f'attachment; filename="qr-{qr.scene}.{fmt}"'} if download else None
    return Response(codes.qr_image(qr.url, fmt), media_type=media, headers=headers)


def way_out(way: ContactWay) -> ContactWayOut:
    return ContactWayOut.model_validate(way, from_attributes=True)


@router.post(
    "/{name}/contact-ways", response_model=ContactWayOut, status_code=201, summary="Create a 「联系我」 code"
)
def create_contact_way(
    name: str, body: ContactWayCreate, _who: MarketingDep, session: SessionDep
) -> ContactWayOut:
    account = service.get_account_or_raise(session, ChannelKind.wecom, name)
    return way_out(codes.create_contact_way(session, account, **body.model_dump()))


@router.get(
    "/{name}/contact-ways", response_model=list[ContactWayOut], summary="「联系我」 codes with their adds"
)
def list_contact_ways(name: str, _who: MarketingDep, session: SessionDep) -> list[ContactWayOut]:
    account = service.get_account_or_raise(session, ChannelKind.wecom, name)
    return [way_out(w) for w in codes.list_contact_ways(session, account.id)]
