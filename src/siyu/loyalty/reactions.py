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

from siyu import bulk
from siyu.config import Settings, get_settings
from siyu.ingest.reactors import StoredEvent
from siyu.loyalty import referrals, rules, service, tiers
from siyu.loyalty.models import Member, MemberStatus, Posting, PostingKind, ReferralTrigger
from siyu.profiles import service as profiles_service

SIGN_UPS = frozenset({"Membership Joined", "Member Signed Up"})
EVENTS = SIGN_UPS | {"Order Completed", "Order Refunded"}


def react(session: Session, events: Sequence[StoredEvent]) -> None:
    """Enrol, earn and reverse for the batch's events, in time order."""
    book = rules.RuleBook.load(session)
    wanted = EVENTS | book.events()
    relevant = [ev for ev in events if ev.event in wanted or ev.properties.get("referral_code")]
    if not relevant:
        return
    settings = get_settings()
    # Looked up for the whole batch, not per event: an import's batch is 2,000 orders, mostly from
    # customers who are not members, and three look-ups each were most of the import's time.
    profiles = {ev.profile_id for ev in relevant}
    live: dict[int, int] = bulk.read_all(session, profiles_service.live_ids_read(session, profiles))[0]
    # The batch's members are locked in id order first: a group of API postings may hold some of them.
    members = service.lock_members_of(session, profiles | set(live.values()))
    program = referrals.active_program(session)
    referred = referrals.pending_friends(session, live.values()) if program is not None else set()

    def live_of(profile_id: int) -> int:
        return live.get(profile_id, profile_id)

    def member_of(profile_id: int) -> Member | None:
        # As service.get_member_by_profile: the profile's own membership, else its survivor's.
        return members.get(profile_id) or members.get(live_of(profile_id))

    def advance(profile_id: int, happened: ReferralTrigger, at: dt.datetime) -> None:
        if program is not None and program.trigger == happened and live_of(profile_id) in referred:
            referrals.advance(session, profile_id, happened, program, now=at)

    for ev in sorted(relevant, key=lambda e: e.timestamp_iso):
        at = dt.datetime.fromisoformat(ev.timestamp_iso)
        code = ev.properties.get("referral_code")
        # A member sharing their own code ("Referral Sent") is the referrer, not a referred friend.
        if isinstance(code, str) and code and ev.event != "Referral Sent":
            # Recorded before a sign-up in the same event, so "already a member" means before it.
            referrals.record(session, ev.profile_id, code, message_id=ev.message_id, now=at)
            referred.add(live_of(ev.profile_id))
        if ev.event in SIGN_UPS:
            channel = rules.channel_of(ev) or "event"
            enrolled, _ = service.enrol(
                session,
                ev.profile_id,
                channel=channel,
                tier=str(ev.properties.get("tier") or ""),
                invite_code=str(ev.properties.get("invite_code") or "") or None,
                now=at,
            )
            members[enrolled.profile_id] = enrolled
            advance(ev.profile_id, ReferralTrigger.sign_up, at)
        elif ev.event == "Order Completed":
            advance(ev.profile_id, ReferralTrigger.first_purchase, at)
        member = member_of(ev.profile_id)
        if member is None or member.status != MemberStatus.active:
            continue  # not a member (or suspended): nothing to earn
        if ev.event == "Order Refunded":
            _reverse(session, member.id, str(ev.properties.get("order_id") or ev.message_id), ev)
            continue
        _earn(session, member, ev, at, settings, book)


def _earn(
    session: Session,
    member: Member,
    ev: StoredEvent,
    at: dt.datetime,
    settings: Settings,
    book: rules.RuleBook,
) -> None:
    is_order = ev.event == "Order Completed"
    order_id = str(ev.properties.get("order_id") or ev.message_id) if is_order else None
    for award in rules.evaluate(session, member, ev, at, settings, book):
        # One award per rule and order (or event): the same order from another channel earns once.
        subject = order_id or ev.message_id
        key = f"rule:{award.rule.id}:{subject}" if award.rule else f"order:{subject}"
        if _posted(session, key):
            continue
        detail = {**award.detail, "amount_fen": ev.amount_fen} if is_order else award.detail
        service.earn(
            session,
            member.id,
            award.points,
            key=key,
            reason=award.rule.name if award.rule else "order",
            order_id=order_id,
            message_id=ev.message_id,
            pending_until=at + dt.timedelta(days=settings.loyalty_return_window_days) if is_order else None,
            rule_id=award.rule.id if award.rule else None,
            detail=detail,
            now=at,
        )
    # Qualifying points count from the moment they are earned: an upgrade is immediate.
    tiers.upgrade(session, member, now=at, message_id=f"tier-up:{ev.message_id}")


def _posted(session: Session, key: str) -> bool:
    return session.execute(select(Posting.id).where(Posting.idempotency_key == key)).first() is not None


def _reverse(session: Session, member_id: int, order_id: str, ev: StoredEvent) -> None:
    earned, amount = 0, 0
    for posting in session.execute(
        select(Posting).where(
            # The order may have earned on a membership merged into this one since.
            Posting.member_id.in_(service.person_members(session, member_id)),
            Posting.order_id == order_id,
            Posting.kind == PostingKind.earn,
        )
    ).scalars():
        earned += posting.points
        # Every rule that rewarded the order recorded the same order amount.
        amount = max(amount, int(posting.detail.get("amount_fen", 0)))
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
