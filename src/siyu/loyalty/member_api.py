"""The member-facing API for the Mini Program: own balance, vouchers, invite code, catalogue, redemption.

Authorised twice: the Mini Program's write key (as all its calls) and the customer's Mini Program session
(`X-Siyu-Session`, from `POST /mp/v1/session`), which names the openid, hence the customer. A customer
only ever sees and spends their own membership.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from pydantic import BaseModel
from sqlalchemy import select

from siyu.channels import miniprogram
from siyu.channels.api import WriterDep
from siyu.db import utcnow
from siyu.deps import SessionDep
from siyu.errors import NotFound, Unauthorized
from siyu.identity.models import Identifier
from siyu.loyalty import service, vouchers
from siyu.loyalty.api import require_key
from siyu.loyalty.models import Member, VoucherTemplate
from siyu.loyalty.schemas import IssueIn, LotOut, VoucherOut, VoucherTemplateOut
from siyu.profiles.service import live_id

router = APIRouter(prefix="/mp/v1/loyalty", tags=["mini program"])
SessionHeader = Annotated[str | None, Header(alias="X-Siyu-Session")]


class MeOut(BaseModel):
    member_number: str
    tier: str
    balance: int
    pending: int
    invite_code: str | None
    lots: list[LotOut]
    vouchers: list[VoucherOut]


def _profile_id(session: SessionDep, token: str | None, account: str | None) -> int:
    if not token:
        raise Unauthorized("X-Siyu-Session: send the session from /mp/v1/session")
    mp_account = miniprogram.pick_account(session, account)
    mp = miniprogram.get_session_or_raise(session, mp_account, token, utcnow())
    profile_id = session.execute(
        select(Identifier.profile_id).where(Identifier.type == "wechat_openid", Identifier.value == mp.openid)
    ).scalar_one_or_none()
    if profile_id is None:
        raise NotFound("your profile is not ready yet: try again in a moment")
    return live_id(session, profile_id)


def _me(session: SessionDep, token: str | None, account: str | None) -> Member:
    member = service.get_member_by_profile(session, _profile_id(session, token, account))
    if member is None:
        raise NotFound("not a member yet: join with POST /mp/v1/loyalty/join")
    return member


def _out(session: SessionDep, member: Member) -> MeOut:
    return MeOut(
        member_number=member.member_number,
        tier=member.tier,
        balance=member.balance,
        pending=member.pending,
        invite_code=member.invite_code,
        lots=[LotOut.model_validate(lot, from_attributes=True) for lot in service.lots(session, member.id)],
        vouchers=[
            VoucherOut.model_validate(v, from_attributes=True)
            for v in vouchers.member_vouchers(session, member.id)
        ],
    )


@router.post("/join", response_model=MeOut, summary="Join the programme from the Mini Program")
def join(
    _writer: WriterDep,
    session: SessionDep,
    response: Response,
    x_siyu_session: SessionHeader = None,
    account: str | None = None,
) -> MeOut:
    """201 for a new member, 200 if already one."""
    member, created = service.enrol(
        session, _profile_id(session, x_siyu_session, account), channel="miniprogram"
    )
    response.status_code = 201 if created else 200
    return _out(session, member)


@router.get("/me", response_model=MeOut, summary="My balance, lots, invite code and vouchers")
def me(
    _writer: WriterDep, session: SessionDep, x_siyu_session: SessionHeader = None, account: str | None = None
) -> MeOut:
    return _out(session, _me(session, x_siyu_session, account))


@router.get("/catalogue", response_model=list[VoucherTemplateOut], summary="Rewards bought with points")
def catalogue(_writer: WriterDep, session: SessionDep) -> list[VoucherTemplateOut]:
    rows = session.execute(
        select(VoucherTemplate)
        .where(VoucherTemplate.active, VoucherTemplate.points_cost.is_not(None))
        .order_by(VoucherTemplate.points_cost)
    ).scalars()
    return [VoucherTemplateOut.model_validate(t, from_attributes=True) for t in rows]


@router.post("/rewards", response_model=VoucherOut, summary="Buy a reward with my points")
def buy(
    body: IssueIn,
    _writer: WriterDep,
    session: SessionDep,
    response: Response,
    x_siyu_session: SessionHeader = None,
    idempotency_key: Annotated[str | None, Header()] = None,
    account: str | None = None,
) -> VoucherOut:
    """201 with the voucher; a retry with the same Idempotency-Key answers 200 with it; 409 without enough points."""
    member = _me(session, x_siyu_session, account)
    key = require_key(idempotency_key, scope=f"mp:{member.id}")
    voucher, replayed = vouchers.buy_reward(session, body.template_id, member.id, key=key, actor="member")
    response.status_code = 200 if replayed else 201
    return VoucherOut.model_validate(voucher, from_attributes=True)
