"""Receiving WeChat and WeCom pushes: a group of them checked, read and queued in one transaction.

A push is answered only once its event is committed to the ingest queue, so a process that dies after
answering loses nothing. Committing each push alone costs a transaction (and a disk flush) per push;
the callback lane (`siyu.channels.lane`) gathers the pushes that arrive while the previous group
commits and hands them here together. Every push still gets its own answer: a forged one 403, an
unreadable one 400 (and a dead letter), the rest `success`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from siyu.channels import callbacks, oa, wecom, xml
from siyu.channels.models import ChannelAccount, ChannelKind
from siyu.config import Settings
from siyu.errors import BadRequest, NotFound, SiyuError
from siyu.ingest import service as ingest
from siyu.lanes import Answer
from siyu.outbox import service as outbox

log = structlog.get_logger()


@dataclass(frozen=True, slots=True)
class Push:
    """One POST to a callback URL, as it arrived."""

    kind: ChannelKind
    name: str
    query: dict[str, str]
    body: bytes
    received_at: dt.datetime


SUCCESS = Answer.text(200, "success")


# Built once: a group's accounts are looked up on every commit.
_ACCOUNTS = select(ChannelAccount).where(
    ChannelAccount.name.in_(bindparam("names", expanding=True)), ChannelAccount.disabled_at.is_(None)
)


def _accounts(session: Session, pushes: Sequence[Push]) -> dict[tuple[ChannelKind, str], ChannelAccount]:
    names = sorted({push.name for push in pushes})
    return {(a.kind, a.name): a for a in session.execute(_ACCOUNTS, {"names": names}).scalars()}


def _unreadable(session: Session, push: Push, account: ChannelAccount, exc: xml.XmlError) -> Answer:
    """400 for a signed Official Account push that is not a message, kept as a dead letter (with the group)."""
    reason = f"Official Account {account.name}: {exc}"
    return Answer.text(400, callbacks.keep_unreadable(session, push.body, reason, push.received_at).message)


def _open(
    push: Push, account: ChannelAccount, session: Session, settings: Settings
) -> dict[str, Any] | Answer:
    """The push's fields, or the answer that refuses it."""
    try:
        if push.kind == ChannelKind.oa:
            try:
                return oa.open_push(account, push.query, push.body, push.received_at, settings)
            except xml.XmlError as exc:
                return _unreadable(session, push, account, exc)
        return wecom.open_push(account, push.query, push.body, push.received_at, settings)
    except BadRequest as exc:
        return Answer.text(400, exc.message)
    except SiyuError as exc:
        return Answer.error(exc)
    except Exception as exc:  # anything else about one push is that push's problem, not its group's
        log.warning("callbacks.push_refused", kind=push.kind, account=push.name, error=repr(exc))
        return Answer.text(400, f"unreadable push: {type(exc).__name__}")


def receive_group(session: Session, pushes: Sequence[Push], settings: Settings) -> list[Answer]:
    """Check, read and queue pushes in the caller's transaction; one answer per push, in their order.

    Flushes, never commits. Pushes refused by their checks write nothing but a dead letter.
    """
    accounts = _accounts(session, pushes)
    answers: list[Answer | None] = [None] * len(pushes)
    opened: list[tuple[int, Push, ChannelAccount, dict[str, Any]]] = []
    for index, push in enumerate(pushes):
        account = accounts.get((push.kind, push.name))
        if account is None:
            answers[index] = Answer.error(NotFound(f"no {push.kind} channel account named {push.name!r}"))
            continue
        fields = _open(push, account, session, settings)
        if isinstance(fields, Answer):
            answers[index] = fields
        else:
            opened.append((index, push, account, fields))
    lookups = oa.Lookups.load(session, [(a, msg) for _, p, a, msg in opened if p.kind == ChannelKind.oa])
    events: list[dict[str, Any]] = []
    jobs: list[outbox.Job] = []
    for index, push, account, msg in opened:
        if push.kind == ChannelKind.oa:
            try:
                event, more = oa.accept(session, account, msg, push.received_at, lookups)
            except xml.XmlError as exc:
                answers[index] = _unreadable(session, push, account, exc)
                continue
        else:
            event, more = wecom.accept(session, account, msg, push.received_at)
        if event is not None:
            events.append(event)
        jobs += more
        answers[index] = SUCCESS
    if events:
        ingest.enqueue_built(session, events, received_at=max(push.received_at for push in pushes))
    outbox.enqueue_many(session, jobs)
    return [answer if answer is not None else SUCCESS for answer in answers]
