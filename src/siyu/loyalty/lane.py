"""The posting lane: the ledger's postings by API key, answered in front of FastAPI and committed in groups.

A POS fleet or the Mini Program's backend posts points from a few connections at once, thousands a
second in a Membership Day rush. Through FastAPI each posting paid for dependency resolution, a hand-off
to the thread pool, a dozen statements and a commit of its own (about 5 ms of CPU: under 200 a second
on two cores). Here the request is read on the event loop; a `lanes.GroupWriter` thread takes every
posting waiting at that moment, checks keys, roles and access for all of them at once and posts them
with `service.post_many` in one transaction, answering each after the commit (decision 0015).

The answers are the route's: the same statuses, errors, headers and bodies. A request the lane does not
take (no API key, no JSON content type, a body that is not a valid posting or is over 64 KiB) goes on to
the FastAPI route unchanged, body included, which answers it as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message as MimeHeader

import structlog
from pydantic import ValidationError
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.auth import service as auth_service
from siyu.auth.principal import Principal
from siyu.config import get_settings
from siyu.deps import UNAUTHENTICATED, check_reader, credential_from_authorization
from siyu.errors import NotFound, SiyuError, Unauthorized
from siyu.lanes import (
    Answer,
    ASGIApp,
    GroupWriter,
    Receive,
    Scope,
    Send,
    TooLarge,
    header,
    read_body,
    replaying,
    route_path,
    send_answer,
)
from siyu.loyalty import service
from siyu.loyalty.api import check_posting_role, key_scope, posting_op, posting_out, require_key
from siyu.loyalty.schemas import PostingIn
from siyu.profiles import service as profiles_service

log = structlog.get_logger()

POSTINGS_PATH = re.compile(r"^/api/v1/loyalty/members/([0-9]{1,18})/postings$")
# A posting is a few hundred bytes (a reason is kept to 2,000 characters); larger bodies go to the route.
MAX_BODY_BYTES = 64 * 1024

# What FastAPI's stack answers for an unexpected error, so a client sees the same either way.
FAILED = Answer.text(500, "Internal Server Error")


@dataclass(frozen=True, slots=True)
class PostingCall:
    """One POST of a posting, as read from the request."""

    secret: str
    profile_id: int
    idempotency_key: str | None
    body: PostingIn


def _posted(result: service.PostingResult) -> Answer:
    out = posting_out(result.posting)
    return Answer.json(200 if result.replayed else 201, out.model_dump_json().encode())


def handle(session: Session, calls: list[PostingCall]) -> list[Answer]:
    """The answers to a group of postings, in order, as the route would give each of them alone."""
    answers: list[Answer | None] = [None] * len(calls)
    # Two round trips on PostgreSQL before the ledger's own: the keys and where each profile went, then
    # each caller's access (the route's scoping statement) and the members.
    principals, live = bulk.read_all(
        session,
        auth_service.principals_read(session, {call.secret for call in calls}),
        profiles_service.live_ids_read(session, (call.profile_id for call in calls)),
    )
    auth_service.touch_keys(
        session,
        {p.id: auth_service.hash_key(secret) for secret, p in principals.items() if p.kind == "api_key"},
    )
    callers: dict[Principal, list[int]] = {}
    for index, call in enumerate(calls):
        principal = principals.get(call.secret)
        try:
            if principal is None:
                raise Unauthorized(UNAUTHENTICATED)
            check_reader(principal)
            check_posting_role(principal, call.body.kind)
        except SiyuError as exc:
            answers[index] = Answer.error(exc)
            continue
        callers.setdefault(principal, []).append(index)
    targets = {
        i: live[calls[i].profile_id]
        for indexes in callers.values()
        for i in indexes
        if calls[i].profile_id in live
    }
    *readables, members = bulk.read_all(
        session,
        *(
            profiles_service.readable_read(session, principal, (targets[i] for i in indexes if i in targets))
            for principal, indexes in callers.items()
        ),
        service.member_ids_read(session, targets.values()),
    )
    profiles: dict[int, int] = {}
    for readable, indexes in zip(readables, callers.values(), strict=True):
        profiles.update({i: targets[i] for i in indexes if targets.get(i) in readable})
    ops: list[service.PostingOp] = []
    posted: list[int] = []
    for index, call in enumerate(calls):
        principal = principals.get(call.secret)
        if answers[index] is not None or principal is None:
            continue
        try:
            profile_id = profiles.get(index)
            if profile_id is None:
                raise NotFound(f"profile {call.profile_id} not found")
            member_id = members.get(profile_id)
            if member_id is None:
                raise NotFound(f"profile {profile_id} is not a member")
            key = require_key(call.idempotency_key, key_scope(principal))
        except SiyuError as exc:
            answers[index] = Answer.error(exc)
            continue
        ops.append(posting_op(principal, member_id, call.body, key))
        posted.append(index)
    results = service.post_many(session, ops, settings=get_settings())
    for index, result in zip(posted, results, strict=True):
        answers[index] = Answer.error(result) if isinstance(result, SiyuError) else _posted(result)
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


def posting_writer() -> GroupWriter[PostingCall]:
    """The group writer of a process's postings."""
    return GroupWriter("postings", handle, failed=FAILED)


def _json(content_type: str | None) -> bool:
    # As FastAPI (strict_content_type) decides whether a body is JSON: application/json or /…+json.
    if content_type is None:
        return False
    mime = MimeHeader()
    mime["content-type"] = content_type
    subtype = mime.get_content_subtype()
    return mime.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class PostingLane:
    """ASGI middleware: API-key POSTs of a valid posting go to the group writer, everything else to app."""

    def __init__(self, app: ASGIApp, writer: GroupWriter[PostingCall]) -> None:
        self.app = app
        self.writer = writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a posting here, or pass the request on (with its body, if the lane read it)."""
        if scope["type"] == "http" and scope["method"] == "POST":
            match = POSTINGS_PATH.match(route_path(scope))
            secret = credential_from_authorization(header(scope, b"authorization") or "") if match else None
            if match is not None and secret and _json(header(scope, b"content-type")):
                try:
                    body = await read_body(receive, MAX_BODY_BYTES)
                except TooLarge as exc:  # no posting is this large: the route answers it, whatever it is
                    await self.app(scope, replaying(exc.prefix, receive, more_body=exc.more), send)
                    return
                if body is None:  # the client went away
                    return
                try:
                    posting = PostingIn.model_validate_json(body)
                except ValidationError:  # FastAPI's own answer (422, each field's problem)
                    await self.app(scope, replaying(body, receive), send)
                    return
                call = PostingCall(secret, int(match[1]), header(scope, b"idempotency-key"), posting)
                try:
                    answer = await self.writer.submit(call)
                except Exception:  # in front of FastAPI's error middleware: answer as it would
                    log.exception("postings.lane_failed", path=scope["path"])
                    answer = FAILED
                await send_answer(send, answer)
                return
        await self.app(scope, receive, send)
