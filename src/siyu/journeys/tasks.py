"""Worker jobs of the journeys: step due enrolments, enrol date-triggered customers, call webhooks."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from siyu.config import Settings, get_settings
from siyu.db import utcnow
from siyu.journeys import engine, service
from siyu.journeys.models import Journey, JourneyStatus, JourneyVersion
from siyu.loyalty.models import Lot, Member, MemberStatus
from siyu.messaging import policy
from siyu.outbox import service as outbox
from siyu.profiles.models import Profile
from siyu.schedule import try_lock


def run_engine(
    factory: sessionmaker[Session], settings: Settings | None = None, *, max_batches: int = 100
) -> int:
    """Move due enrolments batch by batch, each batch one transaction; returns how many were moved."""
    settings = settings or get_settings()
    total = 0
    for _ in range(max_batches):
        with factory() as session:
            moved = engine.run_due(session, settings=settings)
            session.commit()
        total += moved
        if moved == 0:
            break
    return total


@outbox.handler(engine.WEBHOOK)
def call_webhook(session: Session, payload: dict[str, Any]) -> None:
    """POST the node's JSON to its URL; a non-2xx answer fails the job, which the outbox retries."""
    settings = get_settings()
    body = payload["body"]
    response = httpx.post(
        str(payload["url"]),
        json=body,
        headers={"Idempotency-Key": str(body.get("idempotency_key", ""))},
        timeout=settings.wechat_http_timeout_seconds,
    )
    response.raise_for_status()


# The local day each version's date entry last ran in this process (by version id and publication time):
# the entry cannot change within a day, so the scan of every birthday or lot runs once a day, not each minute.
_ran_on: dict[tuple[int, dt.datetime], dt.date] = {}


def run_scheduled(factory: sessionmaker[Session], settings: Settings | None = None) -> int:
    """Enrol today's customers of date-triggered journeys once their local time has come; returns how many."""
    settings = settings or get_settings()
    now = utcnow()
    entered = 0
    with factory() as session:
        journeys = [
            j.id
            for j in session.execute(select(Journey).where(Journey.status == JourneyStatus.active)).scalars()
        ]
    for journey_id in journeys:
        with factory() as session:
            if not try_lock(session, f"journey-dates:{journey_id}"):
                continue
            journey = service.get_or_raise(session, journey_id)
            d = service.current_definition(session, journey)
            if d is None or d.entry.kind != "date" or d.entry.attribute is None:
                continue
            zone = policy.zone(settings.timezone)
            local = now.astimezone(zone)
            version = session.get(JourneyVersion, journey.current_version_id)
            assert version is not None
            memo = (version.id, version.published_at)
            if local.time() < d.entry.at or _ran_on.get(memo) == local.date():
                continue
            # The date that is `days_before` days ahead of today (a negative value looks back).
            target = local.date() + dt.timedelta(days=d.entry.days_before)
            pids = due_profiles(session, d.entry.attribute, target, zone)
            key = f"date:{local.date().isoformat()}"
            entered += service.enrol(
                session,
                journey,
                [
                    (pid, key, {"date": {"attribute": d.entry.attribute, "date": target.isoformat()}})
                    for pid in pids
                ],
                now=now,
            )
            session.commit()
            _ran_on[memo] = local.date()
    return entered


def due_profiles(session: Session, attribute: str, target: dt.date, zone: Any) -> list[int]:
    """Customers whose birthday, membership anniversary or points expiry falls on target (local)."""
    if attribute == "birthday":
        month_day = target.strftime("%m-%d")
        birthday = Profile.traits["birthday"].as_string()
        rows = session.execute(
            select(Profile.id).where(
                Profile.merged_into_id.is_(None),
                (birthday == month_day) | (func.substr(birthday, 6, 5) == month_day),
            )
        )
        return [int(r[0]) for r in rows]
    if attribute == "membership_anniversary":
        out = []
        for pid, joined in session.execute(
            select(Member.profile_id, Member.joined_at).where(Member.status == MemberStatus.active)
        ):
            local = joined.astimezone(zone).date()
            if (local.month, local.day) == (target.month, target.day) and local.year < target.year:
                out.append(int(pid))
        return out
    # points_expiry: members with points in a lot that expires on the target day.
    start = dt.datetime.combine(target, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    end = start + dt.timedelta(days=1)
    rows = session.execute(
        select(Member.profile_id)
        .join(Lot, Lot.member_id == Member.id)
        .where(
            Member.status == MemberStatus.active,
            Lot.remaining > 0,
            Lot.expires_at >= start,
            Lot.expires_at < end,
        )
        .distinct()
    )
    return [int(r[0]) for r in rows]
