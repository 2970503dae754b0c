"""What every WeChat callback shares: the freshness check and handing events to the ingest queue."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from siyu.config import Settings
from siyu.errors import BadRequest, Forbidden
from siyu.ingest.normalize import EARLIEST, MAX_FUTURE
from siyu.ingest.service import BatchResult, check_batch, enqueue_batch, record_dead_letter


def check_fresh(timestamp: str, now: dt.datetime, settings: Settings) -> None:
    """Forbidden unless timestamp is unix seconds within the allowed skew of now (replays are stale)."""
    try:
        sent = int(timestamp)
        age = abs(now.timestamp() - sent)
    except (ValueError, OverflowError):
        raise Forbidden("timestamp: must be unix seconds") from None
    if age > settings.wechat_callback_max_age_seconds:
        raise Forbidden(
            f"stale timestamp: {timestamp} is more than {settings.wechat_callback_max_age_seconds} s from now"
        )


def query_value(query: dict[str, str], name: str) -> str:
    """A required query parameter, or Forbidden naming it (WeChat always sends it)."""
    value = query.get(name)
    if not value:
        raise Forbidden(f"{name}: missing")
    return value


def iso(create_time: Any, fallback: dt.datetime) -> str:
    """CreateTime (unix seconds) as ISO 8601, the send time of the event; fallback if it is not plausible.

    The push itself is fresh (its signed timestamp was checked), so a CreateTime that is no time or far
    from it (the documented samples' 123456789, a test tool's 0) says nothing: the push's arrival does.
    """
    try:
        sent = dt.datetime.fromtimestamp(int(create_time), dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return fallback.isoformat()
    if not EARLIEST <= sent <= fallback + MAX_FUTURE:
        return fallback.isoformat()
    return sent.isoformat()


def enqueue(
    session: Session, events: Sequence[dict[str, Any]], now: dt.datetime, settings: Settings
) -> BatchResult:
    """Validate and queue events in the caller's transaction (the same pipeline as /v1/batch)."""
    checked = check_batch(
        list(events), source_key_id=None, batch_context=None, received_at=now, settings=settings
    )
    return enqueue_batch(session, checked, batch_context=None)


def keep_unreadable(session: Session, body: bytes, reason: str, now: dt.datetime) -> BadRequest:
    """Keep a signed body that could not be read as a dead letter; the error to answer with."""
    record_dead_letter(session, body.decode("utf-8", "replace"), reason, source_key_id=None, received_at=now)
    return BadRequest(reason)
