"""Console page "My work": the signed-in user's alerts and tasks, each about one customer."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.auth.models import Role, User
from siyu.auth.principal import NAME_MASKED_ROLES
from siyu.clienteling import service
from siyu.clienteling.models import Alert, Task
from siyu.console.rendering import render
from siyu.console.routes import see_other
from siyu.console.security import ReaderDep, ReadSession, Viewer, WriterDep, WriteSession, flash
from siyu.profiles import service as profiles
from siyu.profiles.masking import mask_content, mask_name
from siyu.profiles.models import Profile

router = APIRouter(include_in_schema=False)


def _user_id(viewer: Viewer) -> int:
    user_id = viewer.principal.user_id
    assert user_id is not None  # the console is always a user
    return user_id


def _names(session: Session, viewer: Viewer, readable: dict[int, int]) -> dict[int, str]:
    """The names of the customers the viewer may open; the others are only their number."""
    if not readable:
        return {}
    rows = session.execute(
        select(Profile.id, Profile.name).where(Profile.id.in_(set(readable.values())))
    ).all()
    masked = viewer.role in NAME_MASKED_ROLES
    live = {pid: (mask_name(name) if masked else name) if name else "" for pid, name in rows}
    return {pid: live.get(target) or f"Customer #{target}" for pid, target in readable.items()}


def _titles(session: Session, viewer: Viewer, items: Sequence[Alert | Task]) -> dict[int, str]:
    """Each item's title as the viewer may read it: rendered text, so phones and emails are masked (PIPL)."""
    mask_names = viewer.role in NAME_MASKED_ROLES
    own = profiles.names_of(session, {i.profile_id for i in items}) if mask_names else {}
    return {
        i.id: mask_content(i.title, mask_names=mask_names, names=own.get(i.profile_id, ())) for i in items
    }


@router.get("/work", response_class=HTMLResponse)
def work_page(request: Request, session: ReadSession, viewer: ReaderDep, done: bool = False) -> Response:
    """Unread alerts first, then the open tasks by due time; `done=true` shows finished tasks too."""
    user_id = _user_id(viewer)
    alerts = service.list_alerts(session, user_id, limit=50)
    tasks = service.list_tasks(session, user_id, open_only=not done)
    # A manager also sees the team's open tasks and whose each is (none is lost when an associate is away).
    team = (
        [t for t in service.list_team_tasks(session, viewer.principal) if t.user_id != user_id]
        if viewer.role in (Role.store_manager, Role.regional_manager)
        else []
    )
    assignees = dict(
        session.execute(
            select(User.id, func.coalesce(User.display_name, User.username)).where(
                User.id.in_({t.user_id for t in team})
            )
        ).all()
    )
    # An alert can name a customer the viewer no longer sees (moved to another store, her advisor removed):
    # it stays in the list, without her name or a link to a 360 that would answer "not found".
    readable = profiles.readable_ids(
        session,
        viewer.principal,
        {a.profile_id for a in alerts} | {t.profile_id for t in tasks} | {t.profile_id for t in team},
    )
    names = _names(session, viewer, readable)
    unread, open_tasks = service.open_counts(session, user_id)
    context = {
        "alerts": alerts,
        "tasks": tasks,
        "names": names,
        "readable": readable,
        "alert_titles": _titles(session, viewer, alerts),
        "task_titles": _titles(session, viewer, [*tasks, *team]),
        "team": team,
        "assignees": assignees,
        "unread": unread,
        "open_tasks": open_tasks,
        "show_done": done,
    }
    return render(request, "work.html", context)


@router.post("/work/alerts/{alert_id:int}/read")
def read_alert(alert_id: int, session: WriteSession, viewer: WriterDep) -> Response:
    """Mark one of my alerts read."""
    service.mark_alert_read(session, _user_id(viewer), alert_id)
    return see_other("/work")


@router.post("/work/tasks/{task_id:int}/done")
def finish_task(request: Request, task_id: int, session: WriteSession, viewer: WriterDep) -> Response:
    """Mark one of my tasks done."""
    task = service.complete_task(session, _user_id(viewer), task_id)
    flash(request, f"Done: {_titles(session, viewer, [task])[task.id]}")
    return see_other("/work")
