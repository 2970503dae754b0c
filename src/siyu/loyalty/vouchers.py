"""Vouchers: templates, issuance with unique codes, redemption exactly once, rewards bought with points.

Issuing locks the template (stock is never oversold); redeeming locks the voucher (a code is redeemed once,
even when the till and the Mini Program try at the same moment). Both carry idempotency keys: a retry
returns the first result.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.db import is_postgres, utcnow
from siyu.errors import BadRequest, Conflict, NotFound
from siyu.loyalty import service
from siyu.loyalty.models import Member, Voucher, VoucherKind, VoucherStatus, VoucherTemplate

# Without 0/O and 1/I/L: codes are read out at the till.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_code(length: int = 10) -> str:
    """A random voucher code (31^10, about 8e14 codes)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


# Ten years: longer than any voucher, short enough to add to today (a typo of 9999999999 days would make
# every issue of the template fail).
MAX_VALID_DAYS = 3660


def validate_template(t: VoucherTemplate) -> None:
    """BadRequest naming the field of a template that cannot work."""
    if not t.name.strip():
        raise BadRequest("name: required")
    if t.kind == VoucherKind.amount_off and t.value <= 0:
        raise BadRequest("value: the amount off, in fen, must be more than 0")
    if t.kind == VoucherKind.percent_off and not 1 <= t.value <= 100:
        raise BadRequest("value: the percent off must be between 1 and 100")
    if t.kind == VoucherKind.free_gift and not t.gift_sku:
        raise BadRequest("gift_sku: the SKU of the free gift is required")
    if not 0 < t.valid_days <= MAX_VALID_DAYS:
        raise BadRequest(f"valid_days: more than 0 and at most {MAX_VALID_DAYS:,} (ten years)")
    if t.points_cost is not None and t.points_cost <= 0:
        raise BadRequest("points_cost: must be more than 0 when set")
    if t.stock is not None and t.stock < 0:
        raise BadRequest("stock: must be 0 or more when set")


def create_template(session: Session, **fields: Any) -> VoucherTemplate:
    """A new voucher template (BadRequest naming what is wrong)."""
    template = VoucherTemplate(**fields, issued=0)
    validate_template(template)
    session.add(template)
    session.flush()
    return template


def _lock_template(session: Session, template_id: int) -> VoucherTemplate:
    statement = (
        select(VoucherTemplate)
        .where(VoucherTemplate.id == template_id)
        .execution_options(populate_existing=True)
    )
    if is_postgres(session):
        statement = statement.with_for_update()
    template = session.execute(statement).scalar_one_or_none()
    if template is None:
        raise NotFound(f"no voucher template {template_id}")
    return template


def issue(
    session: Session, template_id: int, member_id: int, *, key: str, now: dt.datetime | None = None
) -> tuple[Voucher, bool]:
    """A voucher of the template for the member; (voucher, replayed). Conflict when out of stock."""
    now = now or utcnow()
    template = _lock_template(session, template_id)
    first = session.execute(select(Voucher).where(Voucher.issue_key == key)).scalar_one_or_none()
    if first is not None:
        if first.template_id != template_id or first.member_id != member_id:
            raise Conflict(f"Idempotency-Key {key!r} was used for another voucher")
        return first, True
    if not template.active:
        raise Conflict(f"voucher template {template.name!r} is not active")
    if template.stock is not None and template.issued >= template.stock:
        raise Conflict(f"voucher template {template.name!r} is out of stock")
    template.issued += 1
    voucher = Voucher(
        template_id=template.id,
        member_id=member_id,
        code=new_code(),
        status=VoucherStatus.issued,
        issue_key=key,
        issued_at=now,
        valid_until=now + dt.timedelta(days=template.valid_days),
    )
    session.add(voucher)
    session.flush()
    return voucher, False


def buy_reward(
    session: Session,
    template_id: int,
    member_id: int,
    *,
    key: str,
    actor: str = "",
    now: dt.datetime | None = None,
) -> tuple[Voucher, bool]:
    """Spend the template's points cost and issue the voucher, in one transaction (both or neither)."""
    now = now or utcnow()
    template = session.get(VoucherTemplate, template_id)
    if template is None:
        raise NotFound(f"no voucher template {template_id}")
    if template.points_cost is None:
        raise BadRequest(f"voucher template {template.name!r} is not in the reward catalogue")
    existing = session.execute(select(Voucher).where(Voucher.issue_key == key)).scalar_one_or_none()
    if existing is not None:
        return existing, True
    paid = service.spend(
        session,
        member_id,
        template.points_cost,
        key=f"reward:{key}",
        reason=f"reward: {template.name}",
        actor=actor,
        now=now,
    )
    voucher, _ = issue(session, template_id, member_id, key=key, now=now)
    voucher.posting_id = paid.posting.id
    session.flush()
    return voucher, False


def redeem(
    session: Session,
    code: str,
    *,
    key: str,
    channel: str,
    order_total_fen: int,
    order_id: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[Voucher, bool]:
    """Redeem a code once; (voucher, replayed). Conflict if used, expired, wrong channel or below the minimum."""
    now = now or utcnow()
    statement = (
        select(Voucher).where(Voucher.code == code.strip().upper()).execution_options(populate_existing=True)
    )
    if is_postgres(session):
        statement = statement.with_for_update()
    voucher = session.execute(statement).scalar_one_or_none()
    if voucher is None:
        raise NotFound(f"no voucher {code!r}")
    if voucher.redeem_key == key:
        return voucher, True
    if voucher.status == VoucherStatus.redeemed:
        raise Conflict(
            f"voucher {voucher.code} was already redeemed at {voucher.redeemed_at:%Y-%m-%d %H:%M} UTC"
        )
    if voucher.status != VoucherStatus.issued:
        raise Conflict(f"voucher {voucher.code} is {voucher.status}")
    if voucher.valid_until <= now:
        raise Conflict(f"voucher {voucher.code} expired on {voucher.valid_until:%Y-%m-%d}")
    template = session.get_one(VoucherTemplate, voucher.template_id)
    if template.channels and channel not in template.channels:
        raise Conflict(f"voucher {voucher.code} is valid on {', '.join(template.channels)}, not {channel}")
    if order_total_fen < template.min_spend_fen:
        raise Conflict(
            f"voucher {voucher.code} needs a minimum spend of {template.min_spend_fen / 100:.2f} CNY"
        )
    voucher.status = VoucherStatus.redeemed
    voucher.redeem_key = key
    voucher.redeemed_at = now
    voucher.redeemed_channel = channel[:40]
    voucher.redeemed_order_id = order_id
    session.flush()
    return voucher, False


def member_vouchers(session: Session, member_id: int) -> Sequence[Voucher]:
    """A member's vouchers, newest first."""
    return (
        session.execute(select(Voucher).where(Voucher.member_id == member_id).order_by(Voucher.id.desc()))
        .scalars()
        .all()
    )


def issue_welcome(session: Session, member: Member, *, now: dt.datetime | None = None) -> list[Voucher]:
    """The welcome vouchers of a new member (templates marked welcome), once each."""
    issued: list[Voucher] = []
    for template_id in session.execute(
        select(VoucherTemplate.id)
        .where(VoucherTemplate.welcome, VoucherTemplate.active)
        .order_by(VoucherTemplate.id)
    ).scalars():
        try:
            voucher, _ = issue(
                session, template_id, member.id, key=f"welcome:{member.id}:{template_id}", now=now
            )
        except Conflict:
            continue  # out of stock: the member joins all the same
        issued.append(voucher)
    return issued
