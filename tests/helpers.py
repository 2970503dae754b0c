"""Shared test steps: send events through the real API and read profiles back."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.ingest import processor
from siyu.ingest.models import Event
from siyu.profiles.models import Profile
from tests import factories

SHANGHAI = ZoneInfo("Asia/Shanghai")


def clear_of_midnight(now: dt.datetime) -> dt.datetime:
    """now, or an hour before Shanghai's midnight when now is within half an hour of it.

    Tests that place two purchases minutes apart (41.99 and 42 days ago) and expect one calendar day in
    Shanghai failed when run around midnight there (16:00 UTC).
    """
    local = now.astimezone(SHANGHAI)
    nearest = (local + dt.timedelta(hours=12)).replace(hour=0, minute=0, second=0, microsecond=0)
    if abs(local - nearest) >= dt.timedelta(minutes=30):
        return now
    return (nearest - dt.timedelta(hours=1)).astimezone(dt.UTC)


# Events siyu writes itself onto timelines (segment entries): tests about what a source sent leave them out.
SYSTEM_EVENTS = ("Segment Entered", "Segment Exited")


class Api:
    """A client holding a write key and an admin key."""

    def __init__(self, client: TestClient, session: Session) -> None:
        self.client = client
        self.session = session
        self.write_key = factories.api_key(session, Role.source)
        self.admin_key = factories.api_key(session, Role.admin)

    def send(self, *events: dict[str, Any], expect: int = 200, drain: bool = True) -> dict[str, Any]:
        """POST events as one batch with Basic auth, as Segment SDKs do, then run the ingest processor."""
        r = self.client.post("/v1/batch", json={"batch": list(events)}, auth=(self.write_key, ""))
        assert r.status_code == expect, r.text
        body: dict[str, Any] = r.json()
        if drain:
            processor.drain()
        return body

    def lookup(self, id_type: str, value: str, expect: int = 200, key: str | None = None) -> dict[str, Any]:
        r = self.client.get(
            "/api/v1/profiles/lookup",
            params={"type": id_type, "value": value},
            headers=factories.auth(key or self.admin_key),
        )
        assert r.status_code == expect, r.text
        body: dict[str, Any] = r.json()
        return body

    def profile(self, profile_id: int, key: str | None = None, **params: Any) -> dict[str, Any]:
        r = self.client.get(
            f"/api/v1/profiles/{profile_id}", params=params, headers=factories.auth(key or self.admin_key)
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def unmerge(self, profile_id: int, id_type: str, value: str, expect: int = 200) -> dict[str, Any]:
        r = self.client.post(
            f"/api/v1/profiles/{profile_id}/unmerge",
            json={"type": id_type, "value": value},
            headers=factories.auth(self.admin_key),
        )
        assert r.status_code == expect, r.text
        body: dict[str, Any] = r.json()
        return body


def counters_match_events(session: Session) -> None:
    """Every live profile's counters equal what its events add up to, and no event is counted twice."""
    session.expire_all()
    live = session.execute(select(Profile).where(Profile.merged_into_id.is_(None))).scalars().all()
    total_events = session.execute(select(func.count()).select_from(Event)).scalar_one()
    assert sum(p.events_count for p in live) == total_events
    for p in live:
        n, revenue = session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(Event.amount_fen).filter(Event.event == "Order Completed"), 0),
            ).where(Event.profile_id == p.id)
        ).one()
        assert (p.events_count, p.revenue_fen) == (n, revenue), p.id
    absorbed = session.execute(select(Profile).where(Profile.merged_into_id.is_not(None))).scalars().all()
    for p in absorbed:
        assert session.execute(select(func.count()).where(Event.profile_id == p.id)).scalar_one() == 0
