"""Alerts and tasks for sales associates and their managers; flushes, never commits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from siyu.auth.models import Role, User
from siyu.auth.principal import Principal
from siyu.clienteling.models import Alert, Store, Task
from siyu.db import is_postgres, utcnow
from siyu.errors import Forbidden, NotFound
from siyu.ingest.reactors import StoredEvent


def add_alerts(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert alerts; one that exists for the same user, kind and source event is skipped."""
    if not rows:
        return
    insert = pg_insert if is_postgres(session) else sqlite_insert
    session.execute(
        insert(Alert)
        .values(list(rows))
        .on_conflict_do_nothing(index_elements=["user_id", "kind", "message_id"])
    )


def raise_churn_alerts(session: Session, events: Sequence[StoredEvent]) -> None:
    """Reactor: a customer who deleted their associate on WeCom alerts the associate and the store manager."""
    churned = [
        e for e in events if e.event == "WeCom Contact Deleted" and e.properties.get("by") == "customer"
    ]
    codes = {str(e.properties.get("associate")) for e in churned if e.properties.get("associate")}
    if not codes:
        return
    associates = {
        u.wecom_userid: u
        for u in session.execute(select(User).where(User.wecom_userid.in_(codes), User.is_active)).scalars()
    }
    store_ids = {u.store_id for u in associates.values() if u.store_id is not None}
    managers: dict[int, list[User]] = {}
    if store_ids:
        for m in session.execute(
            select(User).where(User.store_id.in_(store_ids), User.role == Role.store_manager, User.is_active)
        ).scalars():
            managers.setdefault(m.store_id or 0, []).append(m)
    now = utcnow()
    rows: list[dict[str, Any]] = []
    for ev in churned:
        sa = associates.get(str(ev.properties.get("associate")))
        if sa is None:
            continue
        detail = {"associate": sa.wecom_userid, "event_id": ev.id, "at": ev.timestamp_iso}
        sa_name = sa.display_name or sa.username
        rows.append(
            {
                "user_id": sa.id,
                "profile_id": ev.profile_id,
                "kind": "wecom_deleted_by_customer",
                "title": "A customer removed you on WeCom",
                "detail": detail,
                "message_id": ev.message_id,
                "created_at": now,
            }
        )
        for manager in managers.get(sa.store_id or 0, []):
            rows.append(
                {
                    "user_id": manager.id,
                    "profile_id": ev.profile_id,
                    "kind": "wecom_deleted_by_customer",
                    "title": f"A customer removed {sa_name} on WeCom",
                    "detail": detail,
                    "message_id": ev.message_id,
                    "created_at": now,
                }
            )
    add_alerts(session, rows)


def list_alerts(
    session: Session, user_id: int, *, unread_only: bool = False, limit: int = 50
) -> Sequence[Alert]:
    """A user's alerts, newest first."""
    statement = select(Alert).where(Alert.user_id == user_id)
    if unread_only:
        statement = statement.where(Alert.read_at.is_(None))
    return session.execute(statement.order_by(Alert.id.desc()).limit(limit)).scalars().all()


def mark_alert_read(session: Session, user_id: int, alert_id: int) -> Alert:
    """The user's alert, marked read (once: a second call keeps the first time); NotFound for another's."""
    alert = session.get(Alert, alert_id)
    if alert is None or alert.user_id != user_id:
        raise NotFound(f"alert {alert_id} not found")
    if alert.read_at is None:
        alert.read_at = utcnow()
        session.flush()
    return alert


def list_tasks(session: Session, user_id: int, *, open_only: bool = True, limit: int = 100) -> Sequence[Task]:
    """A user's tasks: open ones by due time (undated last), or all, newest first."""
    return _tasks(session, Task.user_id == user_id, open_only=open_only, limit=limit)


def _tasks(session: Session, whose: ColumnElement[bool], *, open_only: bool, limit: int) -> Sequence[Task]:
    statement = select(Task).where(whose)
    if open_only:
        statement = statement.where(Task.done_at.is_(None)).order_by(
            Task.due_at.asc().nulls_last(), Task.id.asc()
        )
    else:
        statement = statement.order_by(Task.id.desc())
    return session.execute(statement.limit(limit)).scalars().all()


def list_team_tasks(
    session: Session, principal: Principal, *, open_only: bool = True, limit: int = 100
) -> Sequence[Task]:
    """The tasks of the people principal manages, ordered as list_tasks: a store manager's store, a regional
    manager's region, everyone's for admin and hq; Forbidden for anyone else."""
    team = select(User.id)
    if principal.role is Role.store_manager:
        team = team.where(User.store_id == principal.store_id)
    elif principal.role is Role.regional_manager:
        team = team.where(User.store_id.in_(select(Store.id).where(Store.region_id == principal.region_id)))
    elif principal.role not in (Role.admin, Role.hq):
        raise Forbidden(f"a {principal.role} has no team: their own tasks are at /api/v1/me/tasks")
    return _tasks(session, Task.user_id.in_(team), open_only=open_only, limit=limit)


def complete_task(session: Session, user_id: int, task_id: int) -> Task:
    """The user's task, marked done (once); NotFound for another's."""
    task = session.get(Task, task_id)
    if task is None or task.user_id != user_id:
        raise NotFound(f"task {task_id} not found")
    if task.done_at is None:
        task.done_at = utcnow()
        session.flush()
    return task


def open_counts(session: Session, user_id: int) -> tuple[int, int]:
    """(unread alerts, open tasks) of a user."""
    alerts = session.execute(
        select(func.count()).where(Alert.user_id == user_id, Alert.read_at.is_(None))
    ).scalar_one()
    tasks = session.execute(
        select(func.count()).where(Task.user_id == user_id, Task.done_at.is_(None))
    ).scalar_one()
    return int(alerts), int(tasks)
