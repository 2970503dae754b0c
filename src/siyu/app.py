"""The composition root: the FastAPI application with the API, the ingest endpoints and the console."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg.errors import NumericValueOutOfRange
from sqlalchemy import select, text
from sqlalchemy.exc import DataError
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp

from siyu import __version__, runtime
from siyu import models as _models  # noqa: F401  (every table known to the metadata)
from siyu.auth.api import router as apikeys_router
from siyu.auth.api import users as users_router
from siyu.channels.api import callbacks as channel_callbacks
from siyu.channels.api import mp as mp_router
from siyu.channels.api import qr_images as qr_images_router
from siyu.channels.api import router as channels_router
from siyu.channels.lane import CallbackLane, callback_writer
from siyu.channels.receiver import Push
from siyu.clienteling.api import me as me_router
from siyu.clienteling.api import router as org_router
from siyu.config import Settings, get_settings, secret_key
from siyu.console import mount as mount_console
from siyu.console import routes as console_routes
from siyu.db import get_read_sessionmaker
from siyu.errors import SiyuError
from siyu.http import JSONBytesResponse
from siyu.identity.api import router as identity_router
from siyu.ingest import processor
from siyu.ingest.admin_api import router as ingest_admin_router
from siyu.ingest.api import router as ingest_router
from siyu.journeys.api import router as journeys_router
from siyu.lanes import GroupWriter
from siyu.lifecycle.api import router as lifecycle_router
from siyu.loyalty.api import router as loyalty_router
from siyu.loyalty.lane import PostingCall, PostingLane, posting_writer
from siyu.loyalty.member_api import router as member_loyalty_router
from siyu.messaging.api import clicks as clicks_router
from siyu.messaging.api import router as messages_router
from siyu.profiles.api import router as profiles_router
from siyu.segments.api import router as segments_router


class App(FastAPI):
    """siyu's FastAPI application, with the lanes (decision 0014) in front of all of its middleware."""

    def __init__(
        self, *, callback_writer: GroupWriter[Push], posting_writer: GroupWriter[PostingCall], **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.callback_writer = callback_writer
        self.posting_writer = posting_writer

    def build_middleware_stack(self) -> ASGIApp:
        """FastAPI's stack behind the lanes: WeChat's pushes and API postings need no session or routing."""
        return CallbackLane(
            PostingLane(super().build_middleware_stack(), self.posting_writer), self.callback_writer
        )


# Paths called by programs (they get JSON errors); every other path is a console page for a person.
MACHINE_PREFIXES = ("/api/", "/v1/", "/mp/", "/wechat/", "/m/")


def mount_fake_wechat(app: FastAPI, settings: Settings) -> None:
    """The local fake WeChat API at /_fake/wechat, knowing siyu's own channel accounts (demo only)."""
    if settings.environment == "production":
        raise RuntimeError("SIYU_FAKE_WECHAT is for the demo and tests, not production")
    from siyu.channels import service as channels_service
    from siyu.channels.fake import FakeState, create_fake_app
    from siyu.channels.models import ChannelAccount

    def lookup(app_id: str) -> str | None:
        with get_read_sessionmaker()() as session:
            account = session.execute(
                select(ChannelAccount).where(ChannelAccount.app_id == app_id)
            ).scalar_one_or_none()
            return channels_service.credentials(account).secret if account is not None else None

    app.mount("/_fake/wechat", create_fake_app(FakeState(lookup=lookup, accept_any_user=True)))


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new application bound to the process-wide database engine."""
    runtime.configure_logging()
    settings = settings or get_settings()
    callbacks, postings = callback_writer(), posting_writer()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        runtime.tune(settings)
        running = None
        if settings.ingest_processor:
            running = processor.Processor(settings)
            processor.set_current(running)
            running.start()
        try:
            yield
        finally:
            callbacks.stop()
            postings.stop()
            if running is not None:
                running.stop()
                processor.set_current(None)

    app = App(
        callback_writer=callbacks,
        posting_writer=postings,
        lifespan=lifespan,
        title="siyu",
        version=__version__,
        description="Private-domain CRM and customer data platform for the WeChat ecosystem",
    )
    https_only = (
        settings.cookie_secure if settings.cookie_secure is not None else settings.environment == "production"
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key(settings),
        session_cookie="siyu_session",
        max_age=12 * 3600,
        same_site="lax",
        https_only=https_only,
    )

    @app.exception_handler(SiyuError)
    async def siyu_error(request: Request, exc: SiyuError) -> Response:
        if not request.url.path.startswith(MACHINE_PREFIXES) and exc.status_code != 401:
            # A service's refusal inside a console page (a taken username, the last admin): the console's
            # error page with the message, not a JSON body in the browser.
            return console_routes.error_page(request, exc.status_code, exc.message)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONBytesResponse(exc.body(), status_code=exc.status_code, headers=headers)

    # An id or a number beyond 64 bits (9223372036854775807) in a path, a query or a body reaches the
    # database and overflows there (SQLite: OverflowError; PostgreSQL: numeric value out of range).
    out_of_range = {"detail": "a number in the request is out of range: ids and amounts are at most 2^63 - 1"}

    def too_large(request: Request) -> Response:
        if not request.url.path.startswith(MACHINE_PREFIXES):
            return console_routes.error_page(
                request,
                422,
                "A number in this address or form is too large: ids and amounts are at most 2^63 - 1.",
            )
        return JSONBytesResponse(out_of_range, status_code=422)

    @app.exception_handler(OverflowError)
    async def overflow(request: Request, _exc: OverflowError) -> Response:
        return too_large(request)

    @app.exception_handler(DataError)
    async def data_error(request: Request, exc: DataError) -> Response:
        if not isinstance(exc.orig, NumericValueOutOfRange):
            raise exc
        return too_large(request)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> Response:
        broken = next((e for e in exc.errors() if e.get("type") == "json_invalid"), None)
        if broken is not None:
            # A body that is not JSON at all: pydantic's location is a character offset, not a field.
            where = broken["loc"][-1] if broken.get("loc") else None
            reason = (broken.get("ctx") or {}).get("error") or broken.get("msg", "")
            at = f" at character {where}" if isinstance(where, int) else ""
            detail = f"malformed JSON: {reason}{at}"
            return JSONBytesResponse({"detail": detail, "errors": [{"field": "", "message": detail}]}, 400)
        errors = [
            {"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        if not _request.url.path.startswith(MACHINE_PREFIXES):
            # A console page asked with a bad query (?page=0) or a form sent incomplete: a page a person
            # can read, not JSON.
            raw = exc.errors()
            if all(e["loc"] and e["loc"][0] == "body" for e in raw):
                fields = "; ".join(
                    f"{e['field']} is required"
                    if r.get("type") == "missing"
                    else f"{e['field']}: {e['message']}"
                    for e, r in zip(errors, raw, strict=True)
                )
                return console_routes.error_page(_request, 400, f"Please check the form: {fields}")
            fields = "; ".join(
                f"{e['field'].removeprefix('query.').removeprefix('path.')}: {e['message']}" for e in errors
            )
            return console_routes.error_page(_request, 400, f"This address is not valid: {fields}")
        return JSONBytesResponse({"detail": detail, "errors": errors}, status_code=422)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> PlainTextResponse:
        with get_read_sessionmaker()() as session:
            session.execute(text("SELECT 1"))
        return PlainTextResponse("ready")

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    if settings.fake_wechat:
        mount_fake_wechat(app, settings)

    app.include_router(ingest_router)
    app.include_router(profiles_router)
    app.include_router(org_router)
    app.include_router(me_router)
    app.include_router(identity_router)
    app.include_router(ingest_admin_router)
    app.include_router(apikeys_router)
    app.include_router(users_router)
    app.include_router(channels_router)
    app.include_router(loyalty_router)
    app.include_router(journeys_router)
    app.include_router(messages_router)
    app.include_router(clicks_router)
    app.include_router(member_loyalty_router)
    app.include_router(segments_router)
    app.include_router(lifecycle_router)
    app.include_router(channel_callbacks)
    app.include_router(mp_router)
    app.include_router(qr_images_router)
    mount_console(app)
    return app
