"""Console page of the membership programme: members by tier, points outstanding, rules, vouchers, boxes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from siyu.console.rendering import render
from siyu.console.security import OperationsDep, ReadSession
from siyu.loyalty import blind_boxes, referrals, rules, tiers
from siyu.loyalty.models import BlindBox, Member, VoucherTemplate

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
    }
    return render(request, "loyalty.html", context)
