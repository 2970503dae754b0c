"""The callback lane: WeChat's and WeCom's POSTs answered without the API framework, committed in groups.

WeChat pushes one event per request, and in a campaign thousands arrive each second. Through FastAPI
each would pay for dependency resolution, a hand-off to the thread pool and a transaction of its own;
here the request is read on the event loop and handed to a `lanes.GroupWriter`, whose thread checks,
reads and queues every push waiting at that moment in one transaction (`receiver.receive_group`) and
answers each after the commit (decision 0014). The GET URL verifications stay ordinary FastAPI routes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import parse_qsl

import structlog
from sqlalchemy.orm import Session

from siyu.channels.models import ChannelKind
from siyu.channels.receiver import Push, receive_group
from siyu.config import get_settings
from siyu.db import utcnow
from siyu.ingest import processor
from siyu.lanes import (
    Answer,
    ASGIApp,
    GroupWriter,
    Receive,
    Scope,
    Send,
    TooLarge,
    read_body,
    route_path,
    send_answer,
)

log = structlog.get_logger()

CALLBACK_PATH = re.compile(r"^/wechat/(oa|wecom)/([^/]+)/callback$")
# WeChat's pushes are a few KB; anything far larger is not one of them.
MAX_BODY_BYTES = 1 << 20

FAILED = Answer.text(500, "the push could not be stored: WeChat will retry it")
TOO_LARGE = Answer.text(413, f"a push is at most {MAX_BODY_BYTES} bytes")


def _receive(session: Session, pushes: list[Push]) -> list[Answer]:
    return receive_group(session, pushes, get_settings())


def _wake(answers: Sequence[Answer]) -> None:
    if any(answer.status == 200 for answer in answers):
        processor.wake()


def callback_writer() -> GroupWriter[Push]:
    """The group writer of a process's callbacks."""
    return GroupWriter("callbacks", _receive, failed=FAILED, after=_wake)


class CallbackLane:
    """ASGI middleware: POSTs to a callback URL go to the group writer, everything else to app."""

    def __init__(self, app: ASGIApp, writer: GroupWriter[Push]) -> None:
        self.app = app
        self.writer = writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a callback POST here; pass every other request on."""
        if scope["type"] == "http" and scope["method"] == "POST":
            match = CALLBACK_PATH.match(route_path(scope))
            if match is not None:
                try:
                    answer = await self._push(ChannelKind(match[1]), match[2], scope, receive)
                except Exception:  # in front of FastAPI's error middleware: answer as it would
                    log.exception("callbacks.lane_failed", path=scope["path"])
                    answer = FAILED
                await send_answer(send, answer)
                return
        await self.app(scope, receive, send)

    async def _push(self, kind: ChannelKind, name: str, scope: Scope, receive: Receive) -> Answer:
        received_at = utcnow()
        try:
            body = await read_body(receive, MAX_BODY_BYTES)
        except TooLarge:
            return TOO_LARGE
        if body is None:
            return FAILED
        # As Starlette reads a query: the last of repeated parameters wins.
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        return await self.writer.submit(Push(kind, name, query, body, received_at))
