"""FastAPI dependencies: one session per request, committed once at its end; the caller's principal."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from siyu.auth import service as auth_service
from siyu.auth.models import Role, User
from siyu.auth.principal import Principal
from siyu.db import unit_of_work
from siyu.errors import Forbidden, Unauthorized

UNAUTHENTICATED = "missing, unknown or revoked API key: send a live key as a Bearer token"


def get_session() -> Iterator[Session]:
    """The request's unit of work: commit when the endpoint returns, roll back when it raises."""
    with unit_of_work() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def credential_from_request(request: Request) -> str | None:
    """The secret the caller sent: a Bearer token, or the HTTP Basic username (as Segment SDKs send it)."""
    return credential_from_authorization(request.headers.get("authorization", ""))


def credential_from_authorization(header: str) -> str | None:
    """The secret in an Authorization header's value: a Bearer token, or the HTTP Basic username."""
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip() or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        username, _, password = decoded.partition(":")
        return username or password or None
    return None


def principal_from_request(request: Request, session: Session) -> Principal | None:
    """The principal behind the request: an API key, else the console session's user."""
    secret = credential_from_request(request)
    if secret:
        key = auth_service.get_api_key_by_secret(session, secret)
        if key is None:
            return None
        auth_service.touch_keys(session, {key.id: key.key_hash})
        return auth_service.principal_for_key(key)
    user_id = request.scope.get("session", {}).get("user_id") if "session" in request.scope else None
    if user_id is not None:
        user = session.get(User, user_id)
        stamp = request.scope["session"].get("stamp")
        if user is not None and user.is_active and stamp == auth_service.session_stamp(user):
            return auth_service.principal_for_user(user)
    return None


def require_principal(request: Request, session: SessionDep) -> Principal:
    """The authenticated principal, or 401."""
    principal = principal_from_request(request, session)
    if principal is None:
        raise Unauthorized(UNAUTHENTICATED)
    return principal


def require_reader(principal: Annotated[Principal, Depends(require_principal)]) -> Principal:
    """A principal that may read profiles (every role but `source`)."""
    check_reader(principal)
    return principal


def check_reader(principal: Principal) -> None:
    """Forbidden for a principal that may not read profiles (a `source` key)."""
    if principal.role is Role.source:
        raise Forbidden("a source (write) key can only send events")


PrincipalDep = Annotated[Principal, Depends(require_principal)]
ReaderDep = Annotated[Principal, Depends(require_reader)]
