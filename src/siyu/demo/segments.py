"""The demo brand's lifecycle history, value model and segments (Taste of Su's audiences, seed 001)."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from siyu.db import utcnow
from siyu.lifecycle import predictive
from siyu.lifecycle import service as lifecycle
from siyu.lifecycle.models import LifecycleChange, LifecycleState
from siyu.segments import service as segments
from siyu.segments.models import Segment

QIPAO = {"property": "category", "op": "contains", "value": "Qipao"}

SEGMENTS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    (
        "Hi-Po young professionals",
        "Window customers who followed in the last 60 days and looked at qipao twice, in East China stores' catchment",
        {
            "all": [
                {"stage": "Window"},
                {"event": "Official Account Followed", "occurrence": "first", "within_days": 60},
                {"event": "Product Viewed", "where": [QIPAO], "count": {"gte": 2}},
                {"any": [{"region": "EAST"}, {"trait": "city", "op": "eq", "value": "Shanghai"}]},
            ]
        },
    ),
    (
        "Wavering buyers",
        "Buyers the model or their own rhythm says are slipping away: a win-back audience",
        {"stage": ["Indecisive", "Lapsed"]},
    ),
    (
        "Big spenders this year",
        "Over 5,000 CNY of orders in the last 365 days",
        {"event": "Order Completed", "sum": {"property": "amount_fen", "gte": 500000}, "within_days": 365},
    ),
    (
        "Store shoppers never online",
        "Bought in a store, never in the Mini Program: candidates for the post-purchase online promotion",
        {
            "all": [
                {
                    "event": "Order Completed",
                    "where": [{"property": "channel", "op": "eq", "value": "store"}],
                },
                {
                    "not": {
                        "event": "Order Completed",
                        "where": [{"property": "channel", "op": "eq", "value": "mini_program"}],
                    }
                },
            ]
        },
    ),
    (
        "Price-sensitive members",
        "Members who mostly buy with a discount",
        {"all": [{"tag": "price-sensitive"}, {"identifier": "member_id"}]},
    ),
)


def replay_lifecycle(session: Session, *, weeks: int = 12, now: dt.datetime | None = None) -> lifecycle.Run:
    """Stage everyone week by week over the last `weeks` weeks, as a running siyu would have, then now.

    The demo's history is generated in one go, so without this every stage change would be dated today.
    """
    now = now or utcnow()
    session.execute(delete(LifecycleChange))
    session.execute(delete(LifecycleState))
    for back in range(weeks, 0, -1):
        lifecycle.restage(session, as_of=now - dt.timedelta(weeks=back))
    # Too few repeat buyers in a tiny demo cannot be fitted: stages then fall back to the recency rules.
    with contextlib.suppress(predictive.FitError):
        lifecycle.fit(session, now=now)
    return lifecycle.restage(session, as_of=now)


def ensure_segments(session: Session) -> list[Segment]:
    """The demo's segments, created (and computed) once; existing ones are left as they are."""
    out = []
    for name, description, rule in SEGMENTS:
        existing = session.execute(select(Segment).where(Segment.name == name)).scalar_one_or_none()
        out.append(
            existing or segments.create(session, name=name, rule=rule, description=description, actor="demo")
        )
    return out
