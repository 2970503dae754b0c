"""Referrals: invite codes, "invite a friend, both get 20 RMB", fraud guards, the referral tree.

A friend is referred when an event of theirs carries `properties.referral_code` (the invite link or the
code typed at sign-up). The first referrer wins. Guards reject a referral of oneself, of an existing member,
and of a friend seen on a device the referrer used; a referrer is rewarded at most `cap_per_30_days`
times in 30 days. The reward goes out when the programme's trigger happens (the friend's sign-up or first
purchase), once, with idempotency keys derived from the referral.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.db import utcnow
from siyu.identity.models import Identifier
from siyu.ingest.models import Event
from siyu.loyalty import service, vouchers
from siyu.loyalty.models import Member, Referral, ReferralProgram, ReferralStatus, ReferralTrigger
from siyu.profiles.service import live_id


def active_program(session: Session) -> ReferralProgram | None:
    """The programme in force (the newest active one)."""
    return session.execute(
        select(ReferralProgram).where(ReferralProgram.active).order_by(ReferralProgram.id.desc()).limit(1)
    ).scalar_one_or_none()


def _shared_device(session: Session, friend_profile_id: int, referrer_profile_id: int) -> bool:
    referrer_devices = select(Identifier.value).where(
        Identifier.type == "anonymous_id", Identifier.profile_id == referrer_profile_id
    )
    return (
        session.execute(
            select(Event.id)
            .where(Event.profile_id == friend_profile_id, Event.anonymous_id.in_(referrer_devices))
            .limit(1)
        ).first()
        is not None
    )


def record(
    session: Session, friend_profile_id: int, code: str, *, message_id: str, now: dt.datetime | None = None
) -> Referral | None:
    """The friend's referral by the member whose invite code this is (None for an unknown code)."""
    now = now or utcnow()
    friend_profile_id = live_id(session, friend_profile_id)
    existing = session.execute(
        select(Referral).where(Referral.friend_profile_id == friend_profile_id)
    ).scalar_one_or_none()
    if existing is not None:
        return existing  # one referrer per friend: the first one
    referrer = session.execute(
        select(Member).where(Member.invite_code == code.strip().upper())
    ).scalar_one_or_none()
    if referrer is None:
        return None
    referral = Referral(
        referrer_member_id=referrer.id,
        friend_profile_id=friend_profile_id,
        code=referrer.invite_code or code,
        status=ReferralStatus.pending,
        message_id=message_id,
        created_at=now,
    )
    friend_member = service.get_member_by_profile(session, friend_profile_id)
    if live_id(session, referrer.profile_id) == friend_profile_id:
        _reject(referral, "self-referral: the friend is the referrer's own profile")
    elif friend_member is not None and friend_member.joined_at < now - dt.timedelta(minutes=5):
        _reject(referral, f"the friend was already a member ({friend_member.member_number})")
    elif _shared_device(session, friend_profile_id, referrer.profile_id):
        _reject(referral, "same device: the friend used a device the referrer used")
    session.add(referral)
    session.flush()
    return referral


def _reject(referral: Referral, reason: str) -> None:
    referral.status = ReferralStatus.rejected
    referral.reason = reason


def pending_friends(session: Session, profile_ids: Iterable[int]) -> set[int]:
    """Which of profile_ids are the friend of a pending referral (the ones advance may reward)."""
    asked = sorted(set(profile_ids))
    if not asked:
        return set()
    return set(
        session.execute(
            select(Referral.friend_profile_id).where(
                bulk.matches(session, Referral.friend_profile_id, asked),
                Referral.status == ReferralStatus.pending,
            )
        ).scalars()
    )


def advance(
    session: Session,
    friend_profile_id: int,
    happened: ReferralTrigger,
    program: ReferralProgram | None,
    *,
    now: dt.datetime | None = None,
) -> Referral | None:
    """Reward the friend's pending referral when `happened` is the trigger of program (active_program)."""
    now = now or utcnow()
    if program is None or program.trigger != happened:
        return None
    referral = session.execute(
        select(Referral).where(
            Referral.friend_profile_id == live_id(session, friend_profile_id),
            Referral.status == ReferralStatus.pending,
        )
    ).scalar_one_or_none()
    if referral is None:
        return None
    recent = session.execute(
        select(func.count()).where(
            Referral.referrer_member_id == referral.referrer_member_id,
            Referral.status == ReferralStatus.rewarded,
            Referral.rewarded_at > now - dt.timedelta(days=30),
        )
    ).scalar_one()
    if recent >= program.cap_per_30_days:
        _reject(referral, f"the referrer reached the cap of {program.cap_per_30_days} rewards in 30 days")
        session.flush()
        return referral
    key = f"referral:{referral.id}"
    friend = service.get_member_by_profile(session, referral.friend_profile_id)
    # Both members locked in id order before either is touched (see service.lock_all).
    service.lock_all(session, [referral.referrer_member_id, *([friend.id] if friend is not None else [])])
    if program.referrer_template_id is not None:
        vouchers.issue(
            session, program.referrer_template_id, referral.referrer_member_id, key=f"{key}:referrer", now=now
        )
    if program.referrer_points:
        service.earn(
            session,
            referral.referrer_member_id,
            program.referrer_points,
            key=f"{key}:referrer-points",
            reason="referral",
            now=now,
        )
    if friend is not None:
        if program.friend_template_id is not None:
            vouchers.issue(session, program.friend_template_id, friend.id, key=f"{key}:friend", now=now)
        if program.friend_points:
            service.earn(
                session,
                friend.id,
                program.friend_points,
                key=f"{key}:friend-points",
                reason="referred by a friend",
                now=now,
            )
    referral.status = ReferralStatus.rewarded
    referral.rewarded_at = now
    session.flush()
    return referral


@dataclass
class Node:
    profile_id: int
    member_number: str | None
    status: str
    reason: str
    created_at: dt.datetime
    friends: list[Node] = field(default_factory=list)


def tree(session: Session, member: Member, depth: int = 3) -> list[Node]:
    """The member's referrals and, for friends who became members, theirs, down to depth levels."""
    nodes: list[Node] = []
    for referral in session.execute(
        select(Referral).where(Referral.referrer_member_id == member.id).order_by(Referral.id)
    ).scalars():
        friend = service.get_member_by_profile(session, referral.friend_profile_id)
        node = Node(
            referral.friend_profile_id,
            friend.member_number if friend else None,
            referral.status,
            referral.reason,
            referral.created_at,
        )
        if friend is not None and depth > 1:
            node.friends = tree(session, friend, depth - 1)
        nodes.append(node)
    return nodes


def stats(session: Session, member_id: int) -> dict[str, Any]:
    """Referrals by status for one referrer."""
    counts = dict(
        session.execute(
            select(Referral.status, func.count())
            .where(Referral.referrer_member_id == member_id)
            .group_by(Referral.status)
        ).all()
    )
    return {status.value: int(counts.get(status, 0)) for status in ReferralStatus}


def list_programs(session: Session) -> Sequence[ReferralProgram]:
    return session.execute(select(ReferralProgram).order_by(ReferralProgram.id.desc())).scalars().all()
