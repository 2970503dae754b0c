"""Console sessions: login state and CSRF tokens in the signed session cookie, units of work, viewers.

The console authenticates with the session cookie set by Starlette's SessionMiddleware. Every POST
must carry the session's CSRF token, as the `csrf_token` form field or the `X-CSRF-Token` header
(htmx sends the header on every request, see base.html).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from siyu.auth import service as auth_service
from siyu.auth.models import Role, User
from siyu.auth.principal import HQ_ROLES, Principal
from siyu.db import get_read_sessionmaker, get_sessionmaker
from siyu.deps import principal_from_request
from siyu.errors import SiyuError

USER_KEY = "user_id"
STAMP_KEY = "stamp"  # auth_service.session_stamp: a new password ends the session
CSRF_KEY = "csrf"
FLASH_KEY = "flash"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


class LoginRequired(Exception):
    """The request has no (longer a) logged-in user; answered with a redirect to /login."""


class PageError(Exception):
    """A failure the console shows as an error page (or an htmx error toast) with this status."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True, slots=True)
class Viewer:
    """The principal behind a console request, with what the nav bar shows of it."""

    principal: Principal
    display_name: str

    @property
    def role(self) -> Role:
        return self.principal.role

    @property
    def sees_operations(self) -> bool:
        """Whether the ingestion and review pages are open to this viewer."""
        return self.principal.role in HQ_ROLES


def csrf_token(request: Request) -> str:
    """The session's CSRF token, created on first use."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return token


async def verify_csrf(request: Request) -> None:
    """Refuse (403) a request whose CSRF token is missing or not the session's."""
    expected = request.session.get(CSRF_KEY)
    sent: Any = request.headers.get(CSRF_HEADER)
    if not sent:
        sent = (await request.form()).get(CSRF_FIELD)
    if not (isinstance(expected, str) and expected and isinstance(sent, str) and sent):
        raise PageError(403, "The form has expired or was not sent by this console: reload the page.")
    if not secrets.compare_digest(expected.encode(), sent.encode()):
        raise PageError(403, "The form has expired or was not sent by this console: reload the page.")


def log_in(request: Request, user: User) -> None:
    """Start a fresh session for user: nothing from the anonymous session (its CSRF token included) survives."""
    request.session.clear()
    request.session[USER_KEY] = user.id
    request.session[STAMP_KEY] = auth_service.session_stamp(user)
    csrf_token(request)


def log_out(request: Request) -> None:
    """Forget the session."""
    request.session.clear()


def flash(request: Request, text: str, *, kind: str = "success", href: str = "", link: str = "") -> None:
    """Queue a message for the next page; it is kept only if the request's unit of work commits."""
    pending: list[dict[str, str]] | None = getattr(request.state, "pending_flash", None)
    if pending is None:
        pending = request.state.pending_flash = []
    pending.append({"kind": kind, "text": text, "href": href, "link": link})


def pop_flashes(request: Request) -> list[dict[str, str]]:
    """The messages queued for this page, removed from the session."""
    messages = request.session.pop(FLASH_KEY, None)
    return messages if isinstance(messages, list) else []


def _unit_of_work(request: Request, factory: sessionmaker[Session], *, commit: bool) -> Iterator[Session]:
    session = factory()
    try:
        yield session
        if commit:
            session.commit()
            pending = getattr(request.state, "pending_flash", None)
            if pending:
                request.session[FLASH_KEY] = [*request.session.get(FLASH_KEY, []), *pending]
    except SiyuError as exc:
        session.rollback()
        raise PageError(exc.status_code, exc.message) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def read_session(request: Request) -> Iterator[Session]:
    """A read-only unit of work (on SQLite it does not wait for ingest writers); service errors become pages."""
    yield from _unit_of_work(request, get_read_sessionmaker(), commit=False)


def write_session(request: Request) -> Iterator[Session]:
    """A unit of work committed when the route returns; its flash messages are kept only then."""
    yield from _unit_of_work(request, get_sessionmaker(), commit=True)


ReadSession = Annotated[Session, Depends(read_session, scope="function")]
WriteSession = Annotated[Session, Depends(write_session, scope="function")]


def _viewer(request: Request, session: Session) -> Viewer:
    principal = principal_from_request(request, session)
    if principal is None:
        raise LoginRequired
    if principal.role is Role.source:
        raise PageError(403, "A source (write) key cannot use the console.")
    user = session.get(User, principal.user_id) if principal.user_id is not None else None
    viewer = Viewer(principal, (user.display_name if user else "") or principal.name)
    # The error pages draw the nav bar from it.
    request.state.viewer = viewer
    return viewer


def reading_viewer(request: Request, session: ReadSession) -> Viewer:
    """The logged-in viewer of a page."""
    return _viewer(request, session)


def writing_viewer(
    request: Request, session: WriteSession, _csrf: Annotated[None, Depends(verify_csrf)]
) -> Viewer:
    """The logged-in viewer of a POST whose CSRF token checked out."""
    return _viewer(request, session)


def require_operations(viewer: Annotated[Viewer, Depends(reading_viewer)]) -> Viewer:
    """A viewer allowed to see brand-wide operations (admin, hq, marketer), else 403."""
    if not viewer.sees_operations:
        raise PageError(403, f"The {viewer.role} role cannot open this page.")
    return viewer


def require_operations_writer(viewer: Annotated[Viewer, Depends(writing_viewer)]) -> Viewer:
    """The same check for a form's POST (after its CSRF token checked out)."""
    if not viewer.sees_operations:
        raise PageError(403, f"The {viewer.role} role cannot change this.")
    return viewer


ReaderDep = Annotated[Viewer, Depends(reading_viewer)]
WriterDep = Annotated[Viewer, Depends(writing_viewer)]
OperationsDep = Annotated[Viewer, Depends(require_operations)]
OperationsWriterDep = Annotated[Viewer, Depends(require_operations_writer)]
