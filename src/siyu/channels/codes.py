"""Attribution codes: Official Account parametric QR codes and WeCom 「联系我」 channel codes.

Creating one calls WeChat (qrcode/create, add_contact_way) through the outbound client, with an
idempotency key, so a retried request creates one code. The image is rendered locally from the URL
WeChat answers with (the QR encodes that URL), in SVG or PNG.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import secrets
from collections.abc import Sequence

import segno
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.auth.models import User
from siyu.channels.models import ChannelAccount, ChannelKind, ContactWay, QrPurpose, WechatQrCode
from siyu.channels.outbound.oa import OaClient
from siyu.channels.outbound.wecom import WeComClient
from siyu.clienteling.models import Store
from siyu.config import Settings
from siyu.db import utcnow
from siyu.errors import BadRequest, Conflict, NotFound

SCENE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
STATE_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,30}$")
MAX_TEMPORARY_SECONDS = 30 * 86400  # WeChat's limit for a temporary code


def _store_id(session: Session, code: str | None) -> int | None:
    if not code:
        return None
    store_id = session.execute(
        select(Store.id).where(func.upper(Store.code) == code.strip().upper())
    ).scalar_one_or_none()
    if store_id is None:
        raise BadRequest(f"store: no store with code {code!r}")
    return store_id


def _associate(session: Session, wecom_userid: str | None) -> User | None:
    if not wecom_userid:
        return None
    user = session.execute(select(User).where(User.wecom_userid == wecom_userid)).scalar_one_or_none()
    if user is None:
        raise BadRequest(f"associate: no user with WeCom UserID {wecom_userid!r}")
    return user


def create_qr_code(
    session: Session,
    account: ChannelAccount,
    *,
    name: str,
    purpose: QrPurpose,
    scene: str | None = None,
    store: str | None = None,
    associate: str | None = None,
    campaign: str | None = None,
    placement: str | None = None,
    expire_seconds: int | None = None,
    settings: Settings | None = None,
) -> WechatQrCode:
    """A parametric QR code of the Official Account, created on WeChat and stored with its attribution."""
    if account.kind != ChannelKind.oa:
        raise BadRequest("account: QR codes belong to an Official Account")
    if not name.strip():
        raise BadRequest("name: required")
    required = {"store": store, "associate": associate, "campaign": campaign, "placement": placement}[purpose]
    if not required:
        raise BadRequest(f"{purpose}: required for a {purpose} QR code")
    scene = scene or f"{purpose}-{secrets.token_hex(5)}"
    if not SCENE_RE.match(scene):
        raise BadRequest("scene: 1 to 64 letters, digits, '_', '-', '.', ':'")
    if expire_seconds is not None and not 60 <= expire_seconds <= MAX_TEMPORARY_SECONDS:
        raise BadRequest(f"expire_seconds: between 60 and {MAX_TEMPORARY_SECONDS} (30 days)")
    if session.execute(
        select(WechatQrCode.id).where(WechatQrCode.account_id == account.id, WechatQrCode.scene == scene)
    ).first():
        raise Conflict(f"scene: {scene!r} is already used by a QR code of this account")
    store_id = _store_id(session, store)
    sa = _associate(session, associate)
    with OaClient(session, account, settings=settings) as client:
        answer = client.create_qr(
            scene, expire_seconds=expire_seconds, idempotency_key=f"qr:{account.id}:{scene}"
        )
    now = utcnow()
    qr = WechatQrCode(
        account_id=account.id,
        scene=scene,
        name=name.strip()[:120],
        purpose=purpose,
        store_id=store_id if store_id is not None else (sa.store_id if sa else None),
        user_id=sa.id if sa else None,
        campaign=campaign,
        placement=placement,
        expires_at=now + _seconds(answer.get("expire_seconds")) if expire_seconds else None,
        ticket=str(answer.get("ticket") or ""),
        url=str(answer.get("url") or ""),
    )
    session.add(qr)
    session.flush()
    return qr


def _seconds(value: object) -> dt.timedelta:
    return dt.timedelta(seconds=int(str(value or 0)))


def list_qr_codes(session: Session, account_id: int | None = None) -> Sequence[WechatQrCode]:
    """QR codes, newest first (of one account when given)."""
    statement = select(WechatQrCode).order_by(WechatQrCode.id.desc())
    if account_id is not None:
        statement = statement.where(WechatQrCode.account_id == account_id)
    return session.execute(statement).scalars().all()


def get_qr_code_or_raise(session: Session, qr_id: int) -> WechatQrCode:
    """The QR code with that id, or NotFound."""
    qr = session.get(WechatQrCode, qr_id)
    if qr is None:
        raise NotFound(f"no QR code {qr_id}")
    return qr


def qr_image(url: str, fmt: str = "svg", scale: int = 8) -> bytes:
    """The QR code of url as an SVG or PNG image."""
    if fmt not in ("svg", "png"):
        raise BadRequest("format: svg or png")
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind=fmt, scale=scale, border=2)
    return out.getvalue()


def create_contact_way(
    session: Session,
    account: ChannelAccount,
    *,
    name: str,
    associate: str,
    store: str | None = None,
    campaign: str | None = None,
    state: str | None = None,
    settings: Settings | None = None,
) -> ContactWay:
    """A 「联系我」 code for one sales associate; each add through it is attributed to its store and campaign."""
    if account.kind != ChannelKind.wecom:
        raise BadRequest("account: 「联系我」 codes belong to a WeCom corp")
    if not name.strip():
        raise BadRequest("name: required")
    sa = _associate(session, associate)
    assert sa is not None
    state = state or f"cw-{secrets.token_hex(6)}"
    if not STATE_RE.match(state):
        raise BadRequest("state: 1 to 30 letters, digits, '_', '-', '.', ':' (WeCom's limit)")
    if session.execute(
        select(ContactWay.id).where(ContactWay.account_id == account.id, ContactWay.state == state)
    ).first():
        raise Conflict(f"state: {state!r} is already used by a contact code of this account")
    store_id = _store_id(session, store) if store else sa.store_id
    with WeComClient(session, account, settings=settings) as client:
        answer = client.add_contact_way(
            [associate], state, remark=name, idempotency_key=f"contact-way:{account.id}:{state}"
        )
    way = ContactWay(
        account_id=account.id,
        state=state,
        name=name.strip()[:120],
        config_id=str(answer.get("config_id") or ""),
        user_id=sa.id,
        store_id=store_id,
        campaign=campaign,
        qr_url=str(answer.get("qr_code") or ""),
    )
    session.add(way)
    session.flush()
    return way


def list_contact_ways(session: Session, account_id: int | None = None) -> Sequence[ContactWay]:
    """Contact codes, newest first."""
    statement = select(ContactWay).order_by(ContactWay.id.desc())
    if account_id is not None:
        statement = statement.where(ContactWay.account_id == account_id)
    return session.execute(statement).scalars().all()
