"""Console page "Staff": console users and API keys, for admins (create, disable, reset, revoke; audited).

A new password or key is shown once, on the page the form answers (never in a redirect's flash message,
which would carry it in the session cookie).
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.clienteling import org
from siyu.console.rendering import render
from siyu.console.routes import see_other
from siyu.console.security import (
    PageError,
    ReaderDep,
    ReadSession,
    Viewer,
    WriterDep,
    WriteSession,
    flash,
)

router = APIRouter(include_in_schema=False)


def _require_admin(viewer: Viewer) -> None:
    if viewer.role is not Role.admin:
        raise PageError(403, "Only admins manage staff and API keys.")


def _page(
    request: Request, session: Session, *, shown: dict[str, str] | None = None, status: int = 200
) -> Response:
    stores = org.list_stores(session)
    regions = org.list_regions(session)
    scope = org.scope_namer(session)
    users = auth_service.list_users(session)
    usernames = {u.id: u.username for u in users}

    context: dict[str, Any] = {
        "users": [(u, scope(u.region_id, u.store_id)) for u in users],
        "keys": [
            (
                k,
                f"acts as {usernames.get(k.user_id, k.user_id)}"
                if k.user_id
                else scope(k.region_id, k.store_id),
            )
            for k in auth_service.list_api_keys(session)
        ],
        "roles": [r.value for r in Role if r is not Role.source],
        "stores": stores,
        "regions": regions,
        "shown": shown,
        "nav": "staff",
    }
    return render(request, "staff.html", context, status_code=status)


@router.get("/staff", response_class=HTMLResponse)
def staff_page(request: Request, session: ReadSession, viewer: ReaderDep) -> Response:
    """Console users and API keys with their role and scope."""
    _require_admin(viewer)
    return _page(request, session)


@router.post("/staff/users", response_class=HTMLResponse)
def add_user(
    request: Request,
    session: WriteSession,
    viewer: WriterDep,
    username: Annotated[str, Form()],
    role: Annotated[str, Form()],
    display_name: Annotated[str, Form()] = "",
    store: Annotated[str, Form()] = "",
    region: Annotated[str, Form()] = "",
    wecom_userid: Annotated[str, Form()] = "",
) -> Response:
    """Add a console user with a generated password, shown once on the page this answers."""
    _require_admin(viewer)
    if role not in Role.__members__ or role == Role.source:
        raise PageError(400, f"role: one of {', '.join(r.value for r in Role if r is not Role.source)}")
    password = secrets.token_urlsafe(12)
    user = auth_service.create_user_for(
        session,
        username=username,
        password=password,
        role=Role(role),
        display_name=display_name,
        store=store or None,
        region=region or None,
        wecom_userid=wecom_userid.strip() or None,
    )
    auth_service.audit(session, viewer.principal, "user.create", "user", user.id, {"role": user.role})
    shown = {"what": f"Password for {user.username}", "secret": password}
    return _page(request, session, shown=shown, status=201)


@router.post("/staff/users/{user_id:int}/{action}", response_class=HTMLResponse)
def change_user(
    request: Request, session: WriteSession, viewer: WriterDep, user_id: int, action: str
) -> Response:
    """Disable (signs them out, revokes their keys), enable, or reset a password (shown once)."""
    _require_admin(viewer)
    user = auth_service.get_user_or_raise(session, user_id)
    if action == "disable":
        if user.id == viewer.principal.user_id:
            raise PageError(403, "You cannot disable yourself: ask another admin.")
        auth_service.update_user(session, user, active=False)
        flash(request, f"{user.username} is disabled: signed out, and the keys acting as them are revoked.")
    elif action == "enable":
        auth_service.update_user(session, user, active=True)
        flash(request, f"{user.username} can log in again.")
    elif action == "reset":
        password = secrets.token_urlsafe(12)
        auth_service.update_user(session, user, password=password)
        auth_service.audit(
            session, viewer.principal, "user.update", "user", user.id, {"reset_password": True}
        )
        shown = {
            "what": f"New password for {user.username} (their open sessions have ended)",
            "secret": password,
        }
        return _page(request, session, shown=shown)
    else:
        raise PageError(404, f"no action {action!r}: disable, enable or reset")
    auth_service.audit(
        session, viewer.principal, "user.update", "user", user.id, {"active": action == "enable"}
    )
    return see_other("/staff")


@router.post("/staff/keys", response_class=HTMLResponse)
def add_key(
    request: Request,
    session: WriteSession,
    viewer: WriterDep,
    name: Annotated[str, Form()],
    role: Annotated[str, Form()] = "",
    store: Annotated[str, Form()] = "",
    region: Annotated[str, Form()] = "",
    user: Annotated[str, Form()] = "",
) -> Response:
    """Create an API key: a role (with its store or region) or a user to act as; its secret is shown once."""
    _require_admin(viewer)
    if role not in ("", *Role.__members__):
        raise PageError(400, f"role: one of {', '.join(r.value for r in Role)}")
    # Passed as chosen: a user and a role (or a scope) together is a clear error, not a silent choice.
    key, secret = auth_service.create_api_key_for(
        session,
        name=name,
        role=Role(role) if role else None,
        store=store or None,
        region=region or None,
        username=user or None,
    )
    auth_service.audit(session, viewer.principal, "apikey.create", "api_key", key.id, {"role": key.role})
    shown = {"what": f"API key #{key.id} “{key.name}” ({key.role})", "secret": secret}
    return _page(request, session, shown=shown, status=201)


@router.post("/staff/keys/{key_id:int}/revoke")
def revoke_key(request: Request, session: WriteSession, viewer: WriterDep, key_id: int) -> Response:
    """Revoke an API key at once, for good."""
    _require_admin(viewer)
    key = auth_service.revoke_api_key(session, auth_service.get_api_key_or_raise(session, key_id))
    auth_service.audit(session, viewer.principal, "apikey.revoke", "api_key", key.id, {})
    flash(request, f"Key #{key.id} “{key.name}” is revoked.")
    return see_other("/staff")
