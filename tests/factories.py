"""Small factories for the objects tests need."""

from __future__ import annotations

import datetime as dt
import itertools
import uuid
from typing import Any

from sqlalchemy.orm import Session

from siyu.auth import service as auth_service
from siyu.auth.models import Role, User
from siyu.clienteling.models import Alert, Region, Store, Task
from siyu.profiles.models import Profile

_seq = itertools.count(1)


def api_key(session: Session, role: Role = Role.admin, **kwargs: Any) -> str:
    """A new API key's secret."""
    _, secret = auth_service.create_api_key(session, name=f"{role}-{next(_seq)}", role=role, **kwargs)
    session.flush()
    return secret


def user(session: Session, role: Role = Role.admin, password: str = "correct horse 1", **kwargs: Any) -> User:
    """A new console user."""
    return auth_service.create_user(
        session, username=f"{role}-{next(_seq)}", password=password, role=role, **kwargs
    )


def store(session: Session, code: str | None = None, region_code: str | None = None) -> Store:
    """A new store in a new (or the named) region."""
    n = next(_seq)
    region = Region(code=region_code or f"R{n}", name=f"Region {n}")
    session.add(region)
    session.flush()
    s = Store(code=code or f"S{n}", name=f"Store {n}", city="Shanghai", region_id=region.id)
    session.add(s)
    session.flush()
    return s


def event(kind: str = "track", **fields: Any) -> dict[str, Any]:
    """A Segment-spec event with a fresh messageId; fields override."""
    base: dict[str, Any] = {"type": kind, "messageId": str(uuid.uuid4()), "timestamp": "2026-11-01T10:00:00Z"}
    if kind == "track":
        base["event"] = "Product Viewed"
    base.update(fields)
    return base


def auth(secret: str) -> dict[str, str]:
    """Headers that present secret as a Bearer token."""
    return {"Authorization": f"Bearer {secret}"}


def work_for(session: Session, user: User) -> tuple[Profile, list[Alert], list[Task]]:
    """A customer with two alerts and three tasks (due in 3 days, undated, due in an hour) for user."""
    now = dt.datetime.now(dt.UTC)
    # An associate's alerts are about her own customers (the other roles read every customer or a store's).
    customer = Profile(name="王小明", owner_user_id=user.id if user.role is Role.sales_associate else None)
    session.add(customer)
    session.flush()
    alerts = [
        Alert(
            user_id=user.id,
            profile_id=customer.id,
            kind="churn",
            title=f"alert {i}",
            message_id=f"m{user.id}-{i}",
        )
        for i in range(2)
    ]
    tasks = [
        Task(
            user_id=user.id,
            profile_id=customer.id,
            title=title,
            source="journey:1",
            source_key=f"{user.id}-{title}",
            due_at=due,
        )
        for title, due in (
            ("later", now + dt.timedelta(days=3)),
            ("undated", None),
            ("soon", now + dt.timedelta(hours=1)),
        )
    ]
    session.add_all([*alerts, *tasks])
    session.flush()
    return customer, alerts, tasks
