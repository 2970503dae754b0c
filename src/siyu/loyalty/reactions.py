"""How the programme reacts to ingested events: sign-ups enrol, orders earn (pending), refunds reverse.

Runs inside the ingest transaction (siyu.ingest.reactors), so an event and its points commit together;
each posting's key is derived from the order id (or the event), so an order that arrives twice, or
through two channels, earns once.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.config import get_settings
from siyu.ingest.reactors import StoredEvent
from siyu.loyalty import service
from siyu.loyalty.models import MemberStatus, Posting, PostingKind

SIGN_UPS = frozenset({"Membership Joined", "Member Signed Up"})
EVENTS = SIGN_UPS | {"Order Completed", "Order Refunded"}


def react(session: Session, events: Sequence[StoredEvent]) -> None:
    """Enrol, earn and reverse for the batch's events, in time order."""
    settings = get_settings()
    for ev in sorted(events, key=lambda e: e.timestamp_iso):
        at = dt.datetime.fromisoformat(ev.timestamp_iso)
        if ev.event in SIGN_UPS:
            channel = str(ev.properties.get("channel") or (ev.context or {}).get("channel") or "event")
            service.enrol(
                session, ev.profile_id, channel=channel, tier=str(ev.properties.get("tier") or ""), now=at
            )
            continue
        member = service.get_member_by_profile(session, ev.profile_id)
        if member is None or member.status != MemberStatus.active:
            continue  # not a member (or suspended): orders earn nothing
        order_id = str(ev.properties.get("order_id") or ev.message_id)
        if ev.event == "Order Completed":
            points = math.floor(ev.amount_fen / 100 * settings.loyalty_points_per_yuan)
            key = f"order:{order_id}"
            if points <= 0 or _posted(session, key):
                continue  # the same order from another channel earned already: the first one counts
            service.earn(
                session,
                member.id,
                points,
                key=key,
                reason="order",
                order_id=order_id,
                message_id=ev.message_id,
                pending_until=at + dt.timedelta(days=settings.loyalty_return_window_days),
                now=at,
            )
            _remember_amount(session, order_id, member.id, ev.amount_fen)
        elif ev.event == "Order Refunded":
            _reverse(session, member.id, order_id, ev)


def _posted(session: Session, key: str) -> bool:
    return session.execute(select(Posting.id).where(Posting.idempotency_key == key)).first() is not None


def _remember_amount(session: Session, order_id: str, member_id: int, amount_fen: int) -> None:
    posting = session.execute(
        select(Posting).where(
            Posting.member_id == member_id, Posting.order_id == order_id, Posting.kind == PostingKind.earn
        )
    ).scalar_one_or_none()
    if posting is not None and "amount_fen" not in posting.detail:
        posting.detail = {**posting.detail, "amount_fen": amount_fen}


def _reverse(session: Session, member_id: int, order_id: str, ev: StoredEvent) -> None:
    earned, amount = 0, 0
    for posting in session.execute(
        select(Posting).where(
            Posting.member_id == member_id, Posting.order_id == order_id, Posting.kind == PostingKind.earn
        )
    ).scalars():
        earned += posting.points
        amount += int(posting.detail.get("amount_fen", 0))
    if not earned:
        return
    # A partial refund takes back the same share of the points; a refund without an amount, all of them.
    share = ev.amount_fen / amount if amount and ev.amount_fen else 1.0
    points = min(earned, math.ceil(earned * min(share, 1.0)))
    # reverse_order caps at what is left to take back, so refunds never reverse more than the order earned.
    service.reverse_order(
        session,
        member_id,
        order_id,
        key=f"refund:{ev.message_id}",
        points=points,
        reason="refund",
        message_id=ev.message_id,
        now=dt.datetime.fromisoformat(ev.timestamp_iso),
    )
