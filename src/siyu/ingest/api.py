"""Segment-compatible tracking API: /v1/batch, /v1/track, /v1/identify, /v1/page, /v1/screen, /v1/alias."""

from __future__ import annotations

import time
import zlib
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.config import get_settings
from siyu.db import get_read_sessionmaker, get_sessionmaker, unit_of_work, utcnow
from siyu.deps import credential_from_request
from siyu.http import JSONBytesResponse
from siyu.ingest import processor
from siyu.ingest.service import BatchResult, check_batch, enqueue_batch, record_dead_letter
from siyu.metrics import INGEST_BATCH_SECONDS, INGEST_EVENTS

router = APIRouter(prefix="/v1", tags=["ingestion"])
log = structlog.get_logger()

WRITE_ROLES = frozenset({Role.source, Role.admin})


def _error(status: int, message: str, **extra: Any) -> JSONBytesResponse:
    headers = {"WWW-Authenticate": 'Basic realm="siyu"'} if status == 401 else None
    return JSONBytesResponse(
        {"success": False, "error": message, **extra}, status_code=status, headers=headers
    )


def _authenticate(request: Request) -> tuple[int, str] | JSONBytesResponse:
    secret = credential_from_request(request)
    if not secret:
        return _error(401, "missing write key: send it as the HTTP Basic username or a Bearer token")
    # A read session: on SQLite a write transaction here would queue behind every batch in flight.
    with get_read_sessionmaker()() as session:
        key = auth_service.get_api_key_by_secret(session, secret)
        if key is None:
            return _error(401, "unknown or revoked write key")
        if key.role not in WRITE_ROLES:
            return _error(403, f"a {key.role} key cannot send events: use a source write key")
        return key.id, key.key_hash


def _run(raw_events: list[Any], key: tuple[int, str], batch_context: dict[str, Any] | None) -> BatchResult:
    """Validate outside any transaction, then queue the batch in one short one and wake the processor."""
    settings = get_settings()
    key_id, key_hash = key
    checked = check_batch(
        raw_events, source_key_id=key_id, batch_context=batch_context, received_at=utcnow(), settings=settings
    )
    with unit_of_work() as session:
        result = enqueue_batch(session, checked, batch_context=batch_context)
        auth_service.touch_keys(session, {key_id: key_hash})
    if result.accepted:
        processor.wake()
    return result


def _store_unparsable(body: bytes, reason: str, key_id: int) -> None:
    session = get_sessionmaker()()
    try:
        record_dead_letter(session, body.decode("utf-8", "replace"), reason, source_key_id=key_id)
        session.commit()
    finally:
        session.close()


class BodyError(Exception):
    """A request body that cannot be read: carries the HTTP status and the message for the caller."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decode_body(body: bytes, encoding: str, limit: int, what: str) -> bytes:
    """The body as sent before any Content-Encoding (gzip or deflate), at most `limit` bytes, or BodyError."""
    encoding = encoding.strip().lower()
    if len(body) > limit:
        raise BodyError(413, f"{what} is {len(body)} bytes, over the {limit // 1024} KB limit")
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise BodyError(415, f"Content-Encoding {encoding!r} is not supported: send gzip, deflate or none")
    # wbits 47 reads gzip or zlib headers; a raw deflate stream (what some clients send as
    # "deflate") needs -15. max_length stops a small bomb from inflating past the limit.
    for wbits in (47, -15) if encoding == "deflate" else (31,):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit or inflater.unconsumed_tail:
            raise BodyError(413, f"{what} is over the {limit // 1024} KB limit once decompressed")
        if not inflater.eof:
            raise BodyError(400, f"Content-Encoding {encoding}: the compressed body is truncated")
        return out
    raise BodyError(400, f"Content-Encoding {encoding}: the body is not valid {encoding} data")


async def _handle(request: Request, forced_type: str | None) -> JSONBytesResponse:
    started = time.perf_counter()
    settings = get_settings()
    auth = await run_in_threadpool(_authenticate, request)
    if isinstance(auth, JSONBytesResponse):
        return auth
    key_id = auth[0]
    limit = settings.max_batch_bytes if forced_type is None else settings.max_event_bytes
    what = "batch" if forced_type is None else "event"
    try:
        body = decode_body(await request.body(), request.headers.get("content-encoding", ""), limit, what)
    except BodyError as exc:
        return _error(exc.status, exc.message)
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        await run_in_threadpool(_store_unparsable, body, f"malformed JSON: {exc}", key_id)
        return _error(400, f"malformed JSON: {exc}")

    batch_context: dict[str, Any] | None = None
    if forced_type is None:
        if not isinstance(payload, dict) or not isinstance(payload.get("batch"), list):
            reason = "body must be an object with a `batch` array"
            await run_in_threadpool(_store_unparsable, body, reason, key_id)
            return _error(400, reason)
        events = payload["batch"]
        context = payload.get("context")
        batch_context = context if isinstance(context, dict) else None
        if "sentAt" in payload:
            # SDKs stamp sentAt on the batch: each event's clock-skew correction needs it.
            for ev in events:
                if isinstance(ev, dict):
                    ev.setdefault("sentAt", payload["sentAt"])
    else:
        if isinstance(payload, dict):
            payload.setdefault("type", forced_type)
            if payload["type"] != forced_type:
                return _error(400, f"type: this endpoint takes {forced_type} calls, got {payload['type']!r}")
        events = [payload]

    result = await run_in_threadpool(_run, events, auth, batch_context)
    INGEST_EVENTS.labels("queued").inc(result.accepted)
    INGEST_EVENTS.labels("duplicate").inc(result.duplicates)
    INGEST_EVENTS.labels("rejected").inc(len(result.errors))
    INGEST_BATCH_SECONDS.observe(time.perf_counter() - started)
    body_out: dict[str, Any] = {
        # As Segment answers: the request was taken. A refused event is named in `errors`, not here.
        "success": True,
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "errors": [{"index": e.index, "messageId": e.message_id, "reason": e.reason} for e in result.errors],
    }
    if result.errors and result.accepted == 0 and result.duplicates == 0:
        body_out["error"] = result.errors[0].reason
        body_out["success"] = False
        return JSONBytesResponse(body_out, status_code=400)
    return JSONBytesResponse(body_out)


@router.post("/batch", summary="Send a batch of events (Segment spec)")
async def batch(request: Request) -> JSONBytesResponse:
    """Up to 500 KB of events; invalid ones are answered with their index and reason."""
    return await _handle(request, None)


@router.post("/track", summary="Record an action")
async def track(request: Request) -> JSONBytesResponse:
    return await _handle(request, "track")


@router.post("/identify", summary="Tie a person to their traits")
async def identify(request: Request) -> JSONBytesResponse:
    return await _handle(request, "identify")


@router.post("/page", summary="Record a page view")
async def page(request: Request) -> JSONBytesResponse:
    return await _handle(request, "page")


@router.post("/screen", summary="Record a screen view")
async def screen(request: Request) -> JSONBytesResponse:
    return await _handle(request, "screen")


@router.post("/alias", summary="Join a previous id to a user id")
async def alias(request: Request) -> JSONBytesResponse:
    return await _handle(request, "alias")


@router.post("/group", summary="Tie a person to a group")
async def group(request: Request) -> JSONBytesResponse:
    return await _handle(request, "group")
