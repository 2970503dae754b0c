"""Console page of the membership programme: members by tier, points outstanding, rules, vouchers, boxes."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from siyu.config import get_settings
from siyu.console.rendering import render
from siyu.console.routes import see_other
from siyu.console.security import (
    OperationsDep,
    OperationsWriterDep,
    PageError,
    ReadSession,
    WriteSession,
    flash,
)
from siyu.errors import BadRequest
from siyu.loyalty import blind_boxes, referrals, rules, tiers, vouchers
from siyu.loyalty.api import PROGRAMME_ROLES
from siyu.loyalty.models import BlindBox, EarningRule, Member, RuleMode, VoucherKind, VoucherTemplate

router = APIRouter(include_in_schema=False)


@router.get("/loyalty", response_class=HTMLResponse)
def loyalty(request: Request, session: ReadSession, viewer: OperationsDep) -> Response:
    """The programme at a glance, with each blind box's observed odds against its configured ones."""
    by_tier = dict(session.execute(select(Member.tier, func.count()).group_by(Member.tier)).all())
    totals = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(Member.balance), 0),
            func.coalesce(func.sum(Member.pending), 0),
        )
    ).one()
    boxes = [
        (box, blind_boxes.stats(session, box.id), blind_boxes.verify(session, box.id))
        for box in session.execute(select(BlindBox).order_by(BlindBox.id)).scalars()
    ]
    context = {
        "members": totals[0],
        "balance": totals[1],
        "pending": totals[2],
        "tiers": [(t, by_tier.get(t.name, 0)) for t in tiers.list_tiers(session)],
        "rules": rules.list_rules(session),
        "templates": session.execute(select(VoucherTemplate).order_by(VoucherTemplate.id)).scalars().all(),
        "boxes": boxes,
        "programmes": referrals.list_programs(session),
        "can_edit": viewer.role in PROGRAMME_ROLES,
        "modes": [m.value for m in RuleMode],
        "kinds": [k.value for k in VoucherKind],
    }
    return render(request, "loyalty.html", context)


def _programme_editor(viewer: OperationsWriterDep) -> None:
    if viewer.role not in PROGRAMME_ROLES:
        raise PageError(403, f"The {viewer.role} role cannot change the programme.")


def _int(value: str, field: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"{field}: {value!r} is not a whole number") from None


def _fen(value: str, field: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    try:
        return round(float(value) * 100)
    except ValueError:
        raise BadRequest(f"{field}: {value!r} is not an amount in CNY") from None


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.replace("，", ",").split(",") if v.strip()]


def _day(value: str, field: str, *, end: bool = False) -> dt.datetime | None:
    value = value.strip()
    if not value:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{field}: {value!r} is not a date (YYYY-MM-DD)") from None
    zone = ZoneInfo(get_settings().loyalty_timezone)
    # An end date includes its whole day.
    return dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time(), zone).astimezone(dt.UTC)


@router.post("/loyalty/rules")
def create_rule(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    name: Annotated[str, Form()],
    event: Annotated[str, Form()],
    mode: Annotated[RuleMode, Form()],
    amount: Annotated[float, Form()],
    first_only: Annotated[bool, Form()] = False,
    channels: Annotated[str, Form()] = "",
    cap_per_day: Annotated[str, Form()] = "",
    cap_per_member: Annotated[str, Form()] = "",
    cap_total: Annotated[str, Form()] = "",
    starts: Annotated[str, Form()] = "",
    ends: Annotated[str, Form()] = "",
) -> Response:
    """Create an earning rule or a campaign from the Loyalty page."""
    _programme_editor(viewer)
    rule = rules.create(
        session,
        name=name.strip(),
        event=event.strip(),
        mode=mode,
        amount=amount,
        first_only=first_only,
        channels=_list(channels),
        cap_per_day=_int(cap_per_day, "cap per day"),
        cap_per_member=_int(cap_per_member, "cap per member"),
        cap_total=_int(cap_total, "cap in total"),
        starts_at=_day(starts, "starts"),
        ends_at=_day(ends, "ends", end=True),
    )
    flash(request, f"Rule “{rule.name}” created and switched on.")
    return see_other("/loyalty#rules-h")


@router.post("/loyalty/rules/{rule_id:int}/toggle")
def toggle_rule(
    request: Request, session: WriteSession, viewer: OperationsWriterDep, rule_id: int
) -> Response:
    """Switch a rule on or off."""
    _programme_editor(viewer)
    rule = session.get(EarningRule, rule_id)
    if rule is None:
        raise PageError(404, f"No rule #{rule_id}.")
    rules.set_active(session, rule_id, not rule.active)
    flash(request, f"Rule “{rule.name}” switched {'on' if rule.active else 'off'}.")
    return see_other("/loyalty#rules-h")


@router.post("/loyalty/tiers")
def create_tier(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    name: Annotated[str, Form()],
    rank: Annotated[int, Form()],
    threshold_points: Annotated[str, Form()] = "",
    threshold_spend: Annotated[str, Form()] = "",
    multiplier: Annotated[float, Form()] = 1.0,
    benefits: Annotated[str, Form()] = "",
) -> Response:
    """Define a tier from the Loyalty page."""
    _programme_editor(viewer)
    tier = tiers.create(
        session,
        name=name.strip(),
        rank=rank,
        threshold_points=_int(threshold_points, "points"),
        threshold_spend_fen=_fen(threshold_spend, "spend"),
        multiplier=multiplier,
        benefits=_list(benefits),
    )
    flash(request, f"Tier “{tier.name}” defined.")
    return see_other("/loyalty#tiers-h")


@router.post("/loyalty/voucher-templates")
def create_template(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    name: Annotated[str, Form()],
    kind: Annotated[VoucherKind, Form()],
    value: Annotated[str, Form()] = "",
    gift_sku: Annotated[str, Form()] = "",
    min_spend: Annotated[str, Form()] = "",
    valid_days: Annotated[int, Form()] = 30,
    points_cost: Annotated[str, Form()] = "",
    stock: Annotated[str, Form()] = "",
    welcome: Annotated[bool, Form()] = False,
) -> Response:
    """Create a voucher template (amounts in CNY on the form, stored in fen)."""
    _programme_editor(viewer)
    amount = (_fen(value, "value") if kind is VoucherKind.amount_off else _int(value, "value")) or 0
    template = vouchers.create_template(
        session,
        name=name.strip(),
        kind=kind,
        value=amount,
        gift_sku=gift_sku.strip() or None,
        min_spend_fen=_fen(min_spend, "minimum spend") or 0,
        valid_days=valid_days,
        points_cost=_int(points_cost, "points cost"),
        stock=_int(stock, "stock"),
        welcome=welcome,
    )
    flash(request, f"Voucher “{template.name}” created.")
    return see_other("/loyalty#vouchers-h")
