"""The callback lane: WeChat's and WeCom's POSTs answered without the API framework, committed in groups.

WeChat pushes one event per request, and in a campaign thousands arrive each second. Through FastAPI
each would pay for dependency resolution, a hand-off to the thread pool and a transaction of its own;
here the request is read on the event loop and handed to one writer thread per process, which checks,
reads and queues every push waiting at that moment in one transaction (`receiver.receive_group`) and
answers each after the commit. Nothing is answered `success` before it is durable, and a slow disk
makes the groups larger rather than the queue longer.

If a group's transaction fails, its pushes are retried one transaction each, so a push that breaks
the database cannot take the others with it. The GET URL verifications stay ordinary FastAPI routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import re
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import structlog

from siyu.channels.models import ChannelKind
from siyu.channels.receiver import Answer, Push, receive_group
from siyu.config import get_settings
from siyu.db import unit_of_work, utcnow
from siyu.ingest import processor

log = structlog.get_logger()

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CALLBACK_PATH = re.compile(r"^/wechat/(oa|wecom)/([^/]+)/callback$")
# WeChat's pushes are a few KB; anything far larger is not one of them.
MAX_BODY_BYTES = 1 << 20
# Enough to amortise a commit; a bigger group only delays its first push's answer.
MAX_GROUP = 500

FAILED = Answer.text(500, "the push could not be stored: WeChat will retry it")
TOO_LARGE = Answer.text(413, f"a push is at most {MAX_BODY_BYTES} bytes")


@dataclass(slots=True)
class _Waiting:
    push: Push
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Answer]


def _resolve(answered: list[tuple[asyncio.Future[Answer], Answer]]) -> None:
    for future, answer in answered:
        if not future.done():  # the client may have gone, cancelling the wait
            future.set_result(answer)


def _answer(group: list[_Waiting], answers: list[Answer]) -> None:
    """Hand each push its answer on its own event loop, with one wake-up of each loop for the group."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Answer], Answer]]] = {}
    for waiting, answer in zip(group, answers, strict=True):
        by_loop.setdefault(waiting.loop, []).append((waiting.future, answer))
    for loop, answered in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits there any more
            loop.call_soon_threadsafe(_resolve, answered)


class GroupWriter:
    """A thread that writes the pushes handed to it, a group per transaction.

    One thread: a second made the groups smaller and cost more CPU than it saved in waiting (decision 0014).
    """

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Guards the thread and the queue together: a push is never put in a queue whose thread is gone.
        self._lock = threading.Lock()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is waiting, then stop the thread (a later push starts a new one)."""
        with self._lock:
            thread, stopped = self._thread, self._queue
            self._thread, self._queue = None, queue.SimpleQueue()
        if thread is not None:
            stopped.put(None)
            thread.join(timeout)

    async def submit(self, push: Push) -> Answer:
        """The answer to push, once its group is committed (or refused)."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(push, loop, loop.create_future())
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name="siyu-callbacks", daemon=True
                )
                self._thread.start()
            self._queue.put(waiting)
        return await waiting.future

    def _run(self, pushes: queue.SimpleQueue[_Waiting | None]) -> None:
        stopping = False
        while not stopping:
            first = pushes.get()
            if first is None:
                return
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    item = pushes.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True  # after writing what came before it
                    break
                group.append(item)
            try:
                answers = self._write(group)
            except Exception:  # never leave a push unanswered, nor the thread dead with pushes waiting
                log.exception("callbacks.group_failed", pushes=len(group))
                answers = [FAILED] * len(group)
            _answer(group, answers)
            if any(answer.status == 200 for answer in answers):
                processor.wake()

    def _write(self, group: list[_Waiting]) -> list[Answer]:
        pushes = [waiting.push for waiting in group]
        try:
            with unit_of_work() as session:
                return receive_group(session, pushes, get_settings())
        except Exception:
            if len(group) == 1:
                log.exception("callbacks.push_failed", kind=pushes[0].kind, account=pushes[0].name)
                return [FAILED]
            log.warning("callbacks.group_retried_one_by_one", pushes=len(group))
            return [self._write([waiting])[0] for waiting in group]


class CallbackLane:
    """ASGI middleware: POSTs to a callback URL go to the group writer, everything else to app."""

    def __init__(self, app: ASGIApp, writer: GroupWriter) -> None:
        self.app = app
        self.writer = writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a callback POST here; pass every other request on."""
        if scope["type"] == "http" and scope["method"] == "POST":
            match = CALLBACK_PATH.match(_route_path(scope))
            if match is not None:
                try:
                    answer = await self._push(ChannelKind(match[1]), match[2], scope, receive)
                except Exception:  # in front of FastAPI's error middleware: answer as it would
                    log.exception("callbacks.lane_failed", path=scope["path"])
                    answer = FAILED
                await _send(send, answer)
                return
        await self.app(scope, receive, send)

    async def _push(self, kind: ChannelKind, name: str, scope: Scope, receive: Receive) -> Answer:
        received_at = utcnow()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return FAILED
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return TOO_LARGE
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        # As Starlette reads a query: the last of repeated parameters wins.
        query = dict(parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True))
        return await self.writer.submit(Push(kind, name, query, b"".join(chunks), received_at))


def _route_path(scope: Scope) -> str:
    """The path below the application's root path (behind a proxy that mounts siyu under a prefix)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


async def _send(send: Send, answer: Answer) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (b"content-type", answer.content_type.encode()),
                (b"content-length", str(len(answer.body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer.body})
