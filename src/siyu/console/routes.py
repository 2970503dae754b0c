"""Console pages: login, customer search and 360, ingestion health, the merge review queue.

Routes stay thin: they resolve the viewer, call the services and render. Access rules (scoping,
masking, who may unmerge or reveal) live in the services, which raise; the console's units of work
turn those errors into error pages (see security.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.orm import Session

from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.console import views
from siyu.console.rendering import is_htmx, render
from siyu.console.security import (
    USER_KEY,
    LoginRequired,
    OperationsDep,
    PageError,
    ReaderDep,
    ReadSession,
    Viewer,
    WriterDep,
    WriteSession,
    flash,
    log_in,
    log_out,
    verify_csrf,
)
from siyu.deps import principal_from_request
from siyu.identity import service as identity_service
from siyu.identity.models import Identifier, ReviewStatus
from siyu.ingest import service as ingest_service
from siyu.ingest import stats
from siyu.ingest.admin_api import FAILED_BATCH_ROLES
from siyu.profiles import api as profiles_api
from siyu.profiles import service as profiles_service
from siyu.profiles.schemas import EraseIn

STATIC_DIR = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)
HOME = "/customers"


def static_files() -> StaticFiles:
    """The console's static files (vendored htmx and ECharts keep their licence files)."""
    STATIC_DIR.mkdir(exist_ok=True)
    return StaticFiles(directory=STATIC_DIR)


def install_error_pages(app: FastAPI) -> None:
    """Answer the console's own exceptions with a login redirect or an error page."""

    async def login_required(request: Request, _exc: Exception) -> Response:
        # A stale user id (deleted or deactivated user) must not bounce between /login and the page.
        request.session.pop(USER_KEY, None)
        if is_htmx(request):
            current = request.headers.get("hx-current-url", "")
            return Response(status_code=401, headers={"HX-Redirect": login_url(_path_of(current))})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(login_url(target), status_code=303)

    async def page_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return error_page(request, exc.status_code, exc.message)

    app.add_exception_handler(LoginRequired, login_required)
    app.add_exception_handler(PageError, page_error)


def error_page(request: Request, status: int, message: str) -> Response:
    """The console's error page (or its htmx fragment) with status."""
    template = "_error.html" if is_htmx(request) else "error.html"
    return render(request, template, {"status": status, "message": message}, status_code=status)


def login_url(next_path: str) -> str:
    """/login, returning to next_path after a successful login."""
    return "/login" if next_path in ("", "/", HOME) else f"/login?next={quote(next_path, safe='/?=&')}"


def _path_of(url: str) -> str:
    after_scheme = url.split("://", 1)[-1]
    slash = after_scheme.find("/")
    return after_scheme[slash:] if slash >= 0 else "/"


def safe_next(value: str | None) -> str:
    """value if it is a path on this site, else the home page (never an open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//"):
        return HOME
    # Browsers read a backslash as a slash and drop tabs and newlines: "/\\evil" and "/\t/evil" leave the site.
    if "\\" in value or any(ord(c) < 0x20 or c == "\x7f" for c in value):
        return HOME
    return value


def plural(n: int, word: str) -> str:
    """`1 event`, `3 events`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def see_other(url: str) -> RedirectResponse:
    """A redirect after a POST (the browser follows it with a GET)."""
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


# --- login -------------------------------------------------------------------------------------


@router.get("/")
def index(_viewer: ReaderDep) -> RedirectResponse:
    """The home page: customer search."""
    return RedirectResponse(HOME, status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, session: ReadSession, next: str = "") -> Response:
    """The login form (or home, when already logged in)."""
    if principal_from_request(request, session) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, "login.html", {"next": safe_next(next), "username": "", "error": None})


@router.post("/login", response_class=HTMLResponse, dependencies=[Depends(verify_csrf)])
def login(
    request: Request,
    session: WriteSession,
    username: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    """Log in with username and password; a failure says the same whichever of the two was wrong."""
    user = auth_service.authenticate(session, username, password) if username and password else None
    if user is None:
        context = {"next": safe_next(next), "username": username, "error": "Incorrect username or password."}
        return render(request, "login.html", context, status_code=401)
    log_in(request, user)
    return see_other(safe_next(next))


@router.post("/logout", dependencies=[Depends(verify_csrf)])
def logout(request: Request) -> RedirectResponse:
    """End the session."""
    log_out(request)
    return see_other("/login")


# --- customers ---------------------------------------------------------------------------------


SEARCH_PAGE = 25
Page = Annotated[int, Query(ge=1, le=400)]


def _search_context(session: Session, viewer: Viewer, q: str, page: int) -> dict[str, Any]:
    q = q.strip()
    offset = (page - 1) * SEARCH_PAGE
    found = (
        profiles_service.search(session, viewer.principal, q, limit=SEARCH_PAGE + 1, offset=offset)
        if q
        else profiles_service.list_readable(session, viewer.principal, limit=SEARCH_PAGE + 1, offset=offset)
    )
    brand_wide = viewer.role in profiles_service.BRAND_WIDE_ROLES
    return {
        "q": q,
        "listing": "Newest customers" if brand_wide else "Your customers, most recently seen first",
        "page": page,
        "first": offset + 1,
        "more": len(found) > SEARCH_PAGE,
        "results": [profiles_api.summarize(p, viewer.principal) for p in found[:SEARCH_PAGE]],
    }


def _search_url(q: str, page: int) -> str:
    if not q:
        return HOME + (f"?page={page}" if page > 1 else "")
    return f"{HOME}?q={quote(q)}" + (f"&page={page}" if page > 1 else "")


@router.get("/customers", response_class=HTMLResponse)
def customers(
    request: Request, session: ReadSession, viewer: ReaderDep, q: str = "", page: Page = 1
) -> Response:
    """Customer search: by phone (with or without +86), name, member id or any identifier value."""
    return render(request, "customers.html", _search_context(session, viewer, q, page))


@router.get("/customers/search", response_class=HTMLResponse)
def customer_results(
    request: Request, session: ReadSession, viewer: ReaderDep, q: str = "", page: Page = 1
) -> Response:
    """The search results fragment that htmx swaps in as the user types or pages."""
    if not is_htmx(request):
        return RedirectResponse(_search_url(q.strip(), page), status_code=303)
    context = _search_context(session, viewer, q, page)
    url = _search_url(context["q"], page)
    return render(request, "_results.html", context, headers={"HX-Replace-Url": url})


def _customer(
    request: Request, session: Session, viewer: Viewer, profile_id: int, *, reveal: bool
) -> Response:
    principal = viewer.principal
    profile = profiles_service.get_or_raise(session, principal, profile_id)
    out = profiles_api.build_profile_out(session, principal, profile, requested_id=profile_id, reveal=reveal)
    context = {
        "profile": out,
        "identities_editable": principal.can_edit_identity() and len(out.identities) > 1,
        "can_reveal": principal.can_reveal() and not reveal and views.has_hidden_contact(out),
        "can_export": principal.role in profiles_api.PRIVACY_ROLES,
        "can_erase": principal.role is Role.admin and out.erased_at is None,
        "traits": views.trait_items(out.traits),
        "merges": views.merge_rows(out.id, out.merges),
        "timeline": views.timeline_page(session, principal, out.id, None),
        "membership": views.membership(session, out.id),
    }
    return render(request, "customer.html", context)


@router.get("/customers/{profile_id:int}", response_class=HTMLResponse)
def customer(request: Request, session: ReadSession, viewer: ReaderDep, profile_id: int) -> Response:
    """The customer 360: counters, traits, identities, merge history and timeline, masked for the viewer."""
    return _customer(request, session, viewer, profile_id, reveal=False)


@router.post("/customers/{profile_id:int}/reveal", response_class=HTMLResponse)
def reveal(request: Request, session: WriteSession, viewer: WriterDep, profile_id: int) -> Response:
    """The customer 360 with phones and emails in full; the reveal is written to the audit log."""
    return _customer(request, session, viewer, profile_id, reveal=True)


@router.post("/customers/{profile_id:int}/export")
def export_data(session: WriteSession, viewer: WriterDep, profile_id: int) -> Response:
    """Her data as a JSON download (PIPL: a copy on request); admin and hq, written to the audit log."""
    return profiles_api.export_profile(profile_id, viewer.principal, session)


@router.post("/customers/{profile_id:int}/erase")
def erase_data(
    request: Request,
    session: WriteSession,
    viewer: WriterDep,
    profile_id: int,
    confirm: Annotated[str, Form()] = "",
) -> Response:
    """Erase her personal data for good (admin; the form repeats the profile id); audited."""
    if not confirm.strip().isdigit():
        raise PageError(400, f"Type the customer number ({profile_id}) to confirm the erasure.")
    done = profiles_api.erase_profile(profile_id, EraseIn(confirm=int(confirm)), viewer.principal, session)
    emptied = done.erased.get("events", 0)
    flash(request, f"Customer #{profile_id}'s personal data is erased ({emptied} events emptied).")
    return see_other(f"/customers/{profile_id}")


@router.get("/customers/{profile_id:int}/timeline", response_class=HTMLResponse)
def timeline(
    request: Request, session: ReadSession, viewer: ReaderDep, profile_id: int, cursor: str | None = None
) -> Response:
    """The next page of the timeline (list items and a new "Load more"), from the keyset cursor."""
    page = views.timeline_page(session, viewer.principal, profile_id, cursor)
    return render(request, "_timeline_items.html", {"profile_id": profile_id, "timeline": page})


@router.post("/customers/{profile_id:int}/enrol")
def enrol(request: Request, session: WriteSession, viewer: WriterDep, profile_id: int) -> RedirectResponse:
    """Enrol the customer in the membership programme (in store, by their associate or manager)."""
    from siyu.loyalty import service as loyalty
    from siyu.loyalty.api import ENROL_ROLES

    if viewer.role not in ENROL_ROLES:
        raise PageError(403, f"The {viewer.role} role cannot enrol members.")
    profile = profiles_service.get_or_raise(session, viewer.principal, profile_id)
    member, created = loyalty.enrol(
        session, profile.id, channel="console", store_id=viewer.principal.store_id or profile.store_id
    )
    flash(
        request,
        f"Enrolled as member {member.member_number}."
        if created
        else f"Already member {member.member_number}.",
    )
    return see_other(f"/customers/{profile.id}#membership")


@router.post("/customers/{profile_id:int}/tags")
def add_tag(
    request: Request, session: WriteSession, viewer: WriterDep, profile_id: int, name: Annotated[str, Form()]
) -> RedirectResponse:
    """Tag the customer (anyone who may see them); segments that use the tag follow at once."""
    from siyu.segments import service as segments_service

    profile = profiles_service.get_or_raise(session, viewer.principal, profile_id)
    tag = profiles_service.add_tag(session, profile.id, name, actor=viewer.principal.actor)
    segments_service.refresh_for(session, [profile.id])
    flash(request, f"Tagged “{tag.name}”.")
    return see_other(f"/customers/{profile.id}#tags")


@router.post("/customers/{profile_id:int}/tags/remove")
def remove_tag(
    request: Request, session: WriteSession, viewer: WriterDep, profile_id: int, name: Annotated[str, Form()]
) -> RedirectResponse:
    """Take a tag off the customer."""
    from siyu.segments import service as segments_service

    profile = profiles_service.get_or_raise(session, viewer.principal, profile_id)
    if profiles_service.remove_tag(session, profile.id, name):
        segments_service.refresh_for(session, [profile.id])
        flash(request, f"Removed “{name}”.")
    return see_other(f"/customers/{profile.id}#tags")


@router.post("/customers/{profile_id:int}/unmerge")
def unmerge(
    request: Request,
    session: WriteSession,
    viewer: WriterDep,
    profile_id: int,
    identifier_id: Annotated[int, Form()],
) -> RedirectResponse:
    """Split an identifier (and what only it linked) off the profile into a new one, then show the profile."""
    # The form names the identifier by id: masked values in the page could not name a phone.
    identifier = session.get(Identifier, identifier_id)
    if identifier is None:
        raise PageError(404, f"identifier {identifier_id} not found")
    result = identity_service.unmerge(
        session, viewer.principal, profile_id, identifier.type, identifier.value
    )
    flash(
        request,
        f"Split the {identifier.type} identifier off profile #{result.profile_id} into profile "
        f"#{result.new_profile_id} ({plural(len(result.identifier_ids), 'identifier')}, "
        f"{plural(result.events_moved, 'event')} moved).",
        href=f"/customers/{result.new_profile_id}",
        link=f"Open profile #{result.new_profile_id}",
    )
    return see_other(f"/customers/{result.profile_id}")


# --- operations --------------------------------------------------------------------------------


DEAD_LETTERS_PER_PAGE = 50


@router.get("/ingestion", response_class=HTMLResponse)
def ingestion(
    request: Request,
    session: ReadSession,
    viewer: OperationsDep,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """Ingestion health: totals, events per minute, failed batches, dead letters (`before` pages them)."""
    series = stats.events_per_minute(session, minutes=60)
    letters = stats.dead_letters(session, DEAD_LETTERS_PER_PAGE + 1, before_id=before)
    context = {
        "totals": stats.totals(session),
        "last_hour": sum(n for _, n in series),
        "peak": max((n for _, n in series), default=0),
        "chart": views.chart_series(series),
        "failed": views.failed_batch_rows(viewer.principal, ingest_service.list_failed(session)),
        "can_fix_failed": viewer.role in FAILED_BATCH_ROLES,
        "dead_letters": views.dead_letter_rows(viewer.principal, letters[:DEAD_LETTERS_PER_PAGE]),
        "older": letters[DEAD_LETTERS_PER_PAGE - 1].id if len(letters) > DEAD_LETTERS_PER_PAGE else None,
        "paged": before is not None,
    }
    return render(request, "ingestion.html", context)


@router.post("/ingestion/failed/{batch_id:int}/{action}")
def fix_failed(
    request: Request, session: WriteSession, viewer: WriterDep, batch_id: int, action: str
) -> RedirectResponse:
    """Retry a parked batch (after its cause was fixed) or discard it (its events become dead letters)."""
    if viewer.role not in FAILED_BATCH_ROLES:
        raise PageError(403, "retrying or discarding a failed batch is for admin and hq")
    if action == "retry":
        ingest_service.retry_failed(session, batch_id)
        auth_service.audit(session, viewer.principal, "ingest.failed.retry", "queued_batch", batch_id, {})
        flash(request, f"Batch #{batch_id} is queued again: the worker will try to store it.")
    elif action == "discard":
        count = ingest_service.discard_failed(session, batch_id, actor=viewer.principal.actor)
        auth_service.audit(
            session, viewer.principal, "ingest.failed.discard", "queued_batch", batch_id, {"events": count}
        )
        flash(request, f"Batch #{batch_id} discarded: its {count} event(s) are kept as dead letters.")
    else:
        raise PageError(404, f"no action {action!r}: retry or discard")
    return see_other("/ingestion")


@router.get("/reviews", response_class=HTMLResponse)
def reviews(request: Request, session: ReadSession, viewer: OperationsDep, status: str = "open") -> Response:
    """The merge review queue (open by default; approved, rejected or all on request)."""
    wanted = ReviewStatus(status) if status in ReviewStatus.__members__ else None
    rows = views.review_rows(session, identity_service.list_reviews(session, wanted))
    context = {"rows": rows, "status": wanted.value if wanted else "all", "statuses": [*ReviewStatus, "all"]}
    return render(request, "reviews.html", context)


@router.post("/reviews/{review_id:int}/decide")
def decide(
    request: Request,
    session: WriteSession,
    viewer: WriterDep,
    review_id: int,
    decision: Annotated[str, Form()],
) -> RedirectResponse:
    """Approve (merge the two profiles) or reject (keep them apart for good) a merge review."""
    if decision not in ("approve", "reject"):
        raise PageError(400, "decision: must be approve or reject")
    review = identity_service.decide_review(
        session, viewer.principal, review_id, approve=decision == "approve"
    )
    if decision == "approve":
        survivor = profiles_service.live_id(session, review.profile_a_id)
        flash(
            request,
            f"Review #{review.id} approved: the two profiles are now one.",
            href=f"/customers/{survivor}",
            link=f"Open profile #{survivor}",
        )
    else:
        flash(request, f"Review #{review.id} rejected: the two profiles will stay apart.")
    return see_other("/reviews")
