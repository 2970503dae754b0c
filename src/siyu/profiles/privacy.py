"""A person's rights under PIPL: a copy of everything held about her (export), and erasure.

Erasure anonymises in place rather than deleting rows: the loyalty ledger stays append-only and balanced, a
brand's counts and revenue keep adding up, and every foreign key stays valid. What identifies her goes: her
name and traits, her identifiers' values (so a later event with her phone starts a new, unrelated profile),
her events' payloads, her messages' content and address, her consents, tags, segment memberships, sessions,
the text of alerts and tasks about her, and the refused events (dead letters) that name her by an identifier. Her journeys end. The audit log keeps that it was done, by whom,
and the counts (never the data).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import String, cast, delete, literal, or_, select, update
from sqlalchemy.orm import Session

from siyu.channels.models import ChannelCall, MpSession
from siyu.clienteling.models import Alert, Task
from siyu.db import utcnow
from siyu.errors import Conflict
from siyu.identity.models import Identifier, IdentityMerge, MergeReview
from siyu.ingest.models import DeadLetter, Event
from siyu.journeys.models import Enrolment, EnrolmentStatus
from siyu.lifecycle.models import LifecycleChange
from siyu.loyalty.models import Member, Posting, Voucher
from siyu.messaging.models import Message
from siyu.profiles.models import Consent, Profile, Tag
from siyu.segments.models import SegmentMember

ERASED = "erased"


def _ids(session: Session, profile: Profile) -> list[int]:
    """Her profile and the ones merged into it (their rows were hers too)."""
    merged = session.execute(select(Profile.id).where(Profile.merged_into_id == profile.id)).scalars()
    return [profile.id, *merged]


def _rows(session: Session, model: Any, column: Any, ids: Sequence[int]) -> list[dict[str, Any]]:
    rows = session.execute(select(model).where(column.in_(ids)).order_by(model.id)).scalars()
    return [{c.key: _plain(getattr(r, c.key)) for c in model.__table__.columns} for r in rows]


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, list | dict | str | int | float | bool) or value is None:
        return value
    return str(value)


def export(session: Session, profile: Profile) -> dict[str, Any]:
    """Everything held about her, unmasked, as JSON-ready data (PIPL art. 45: a copy on request)."""
    ids = _ids(session, profile)
    member_ids = list(session.execute(select(Member.id).where(Member.profile_id.in_(ids))).scalars())
    return {
        "exported_at": utcnow().isoformat(),
        "profile_id": profile.id,
        "profiles": _rows(session, Profile, Profile.id, ids),
        "identifiers": _rows(session, Identifier, Identifier.profile_id, ids),
        "consents": _rows(session, Consent, Consent.profile_id, ids),
        "tags": _rows(session, Tag, Tag.profile_id, ids),
        "events": _rows(session, Event, Event.profile_id, ids),
        "messages": _rows(session, Message, Message.profile_id, ids),
        "journeys": _rows(session, Enrolment, Enrolment.profile_id, ids),
        "segments": [
            {"segment_id": sid, "entered_at": _plain(at)}
            for sid, at in session.execute(
                select(SegmentMember.segment_id, SegmentMember.entered_at).where(
                    SegmentMember.profile_id.in_(ids)
                )
            )
        ],
        "lifecycle": _rows(session, LifecycleChange, LifecycleChange.profile_id, ids),
        "membership": _rows(session, Member, Member.profile_id, ids),
        "points": _rows(session, Posting, Posting.member_id, member_ids),
        "vouchers": _rows(session, Voucher, Voucher.member_id, member_ids),
        "alerts": _rows(session, Alert, Alert.profile_id, ids),
        "tasks": _rows(session, Task, Task.profile_id, ids),
    }


def erase(session: Session, profile: Profile) -> dict[str, int]:
    """Anonymise her in place (see the module's docstring); Conflict when she was erased before. Counts."""
    if profile.erased_at is not None:
        raise Conflict(f"profile {profile.id} was erased on {profile.erased_at:%Y-%m-%d}")
    ids = _ids(session, profile)
    now = utcnow()
    done: dict[str, int] = {}

    def run(name: str, statement: Any) -> None:
        result: Any = session.execute(statement)
        done[name] = int(result.rowcount or 0)

    idents = list(session.execute(select(Identifier.id).where(Identifier.profile_id.in_(ids))).scalars())
    values: list[str] = []
    for v in session.execute(select(Identifier.value).where(Identifier.profile_id.in_(ids))).scalars():
        values += [v, v[3:]] if v.startswith("+86") else [v]  # bodies hold phones as typed, often without +86
    values = [v for v in values if len(v) >= 6]  # a short value ("1") would match half the table's bodies
    if values:
        # Refused events are not linked to a profile: the ones that name her by an identifier go too.
        run("dead_letters", delete(DeadLetter).where(or_(*(DeadLetter.payload.contains(v) for v in values))))
    openids = list(
        session.execute(
            select(Identifier.value).where(
                Identifier.profile_id.in_(ids), Identifier.type.in_(("wechat_openid", "wechat_unionid"))
            )
        ).scalars()
    )
    if openids:
        run(
            "mp_sessions",
            delete(MpSession).where(or_(MpSession.openid.in_(openids), MpSession.unionid.in_(openids))),
        )
    # A tombstone keeps the node (events and links point at it) without the value that identified her.
    run(
        "identifiers",
        update(Identifier)
        .where(Identifier.id.in_(idents))
        .values(value=literal(ERASED + ":") + cast(Identifier.id, String), seen_member_ids=None),
    )
    run(
        "events",
        update(Event)
        .where(Event.profile_id.in_(ids))
        .values(properties={}, context={}, traits=None, user_id=None, anonymous_id=None),
    )
    run("messages", update(Message).where(Message.profile_id.in_(ids)).values(content={}, recipient=None))
    run("consents", delete(Consent).where(Consent.profile_id.in_(ids)))
    run("tags", delete(Tag).where(Tag.profile_id.in_(ids)))
    run("segments", delete(SegmentMember).where(SegmentMember.profile_id.in_(ids)))
    run(
        "journeys",
        update(Enrolment)
        .where(Enrolment.profile_id.in_(ids), Enrolment.status == EnrolmentStatus.active)
        .values(
            status=EnrolmentStatus.removed, ended_at=now, end_reason=ERASED, active_key=None, due_at=None
        ),
    )
    run("alerts", update(Alert).where(Alert.profile_id.in_(ids)).values(title="(erased customer)", detail={}))
    run("tasks", update(Task).where(Task.profile_id.in_(ids)).values(title="(erased customer)", detail={}))
    session.execute(update(IdentityMerge).where(IdentityMerge.identifier_id.in_(idents)).values(detail={}))
    session.execute(
        update(MergeReview)
        .where(or_(MergeReview.identifier_a_id.in_(idents), MergeReview.identifier_b_id.in_(idents)))
        .values(reason="identifier erased")
    )
    run(
        "profiles",
        update(Profile)
        .where(Profile.id.in_(ids))
        .values(name=None, traits={}, owner_user_id=None, erased_at=now, updated_at=now),
    )
    session.flush()
    session.expire_all()
    return done


def purge_old_logs(session: Session, *, now: dt.datetime, days: int, batch: int = 10_000) -> dict[str, int]:
    """Delete dead letters and outbound call logs older than `days`, at most `batch` of each a call. Counts."""
    cutoff = now - dt.timedelta(days=days)
    done: dict[str, int] = {}
    for name, model, column in (
        ("dead_letters", DeadLetter, DeadLetter.received_at),
        ("channel_calls", ChannelCall, ChannelCall.created_at),
    ):
        # Oldest first through the primary key: old rows are the low ids, so the scan stops early.
        oldest = select(model.id).where(column < cutoff).order_by(model.id).limit(batch).scalar_subquery()
        result: Any = session.execute(delete(model).where(model.id.in_(oldest)))
        done[name] = int(result.rowcount or 0)
    return done
