"""Lanes: hot requests answered in front of FastAPI, their writes committed in groups (decision 0014).

A lane is ASGI middleware that recognises one kind of request, reads it on the event loop and hands it
to a `GroupWriter`: one thread per process that takes every request waiting at that moment, handles
them in one transaction and answers each after the commit. Nothing is answered before it is durable,
and a slow disk makes the groups larger rather than the queue longer. If a group's transaction fails,
its requests are retried one transaction each, so a request that breaks the database fails alone.

Used by WeChat's callbacks (`channels.lane`) and the loyalty ledger's postings (`loyalty.lane`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
import structlog
from sqlalchemy import Connection, Engine
from sqlalchemy.orm import Session

from siyu import metrics
from siyu.db import get_sessionmaker, transaction, unit_of_work
from siyu.errors import SiyuError

log = structlog.get_logger()

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Enough to amortise a commit; a bigger group only delays its first request's answer.
MAX_GROUP = 500

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Answer:
    """The HTTP answer to one request handled by a lane."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[bytes, bytes], ...] = ()

    @classmethod
    def text(cls, status: int, text: str) -> Answer:
        """A plain-text answer (what WeChat reads: `success`, or the reason a push was refused)."""
        return cls(status, text.encode())

    @classmethod
    def json(cls, status: int, body: bytes) -> Answer:
        """A JSON answer from its encoded body."""
        return cls(status, body, "application/json")

    @classmethod
    def error(cls, exc: SiyuError) -> Answer:
        """The JSON error the API answers a SiyuError with (and its WWW-Authenticate on 401)."""
        headers = ((b"www-authenticate", b"Bearer"),) if exc.status_code == 401 else ()
        return cls(exc.status_code, orjson.dumps(exc.body()), "application/json", headers)


Handler = Callable[[Session, list[T]], Sequence[Answer]]


@dataclass(slots=True)
class _Waiting(Generic[T]):
    item: T
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Answer]


def _resolve(answered: list[tuple[asyncio.Future[Answer], Answer]]) -> None:
    for future, answer in answered:
        if not future.done():  # the client may have gone, cancelling the wait
            future.set_result(answer)


def _answer(group: Sequence[_Waiting[Any]], answers: Sequence[Answer]) -> None:
    """Hand each request its answer on its own event loop, with one wake-up of each loop for the group."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Answer], Answer]]] = {}
    for waiting, answer in zip(group, answers, strict=True):
        by_loop.setdefault(waiting.loop, []).append((waiting.future, answer))
    for loop, answered in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits there any more
            loop.call_soon_threadsafe(_resolve, answered)


class GroupWriter(Generic[T]):
    """A thread that handles the requests given to it, a group per transaction.

    One thread: for the callbacks a second made the groups smaller and cost more CPU than it saved in
    waiting (decision 0014). `handle` answers a group in order, in the session's transaction, which the
    writer commits; `after` runs once the answers are sent (a wake-up of the ingest processor).
    """

    def __init__(
        self,
        name: str,
        handle: Handler[T],
        *,
        failed: Answer,
        after: Callable[[Sequence[Answer]], None] | None = None,
    ) -> None:
        self.name = name
        self._handle = handle
        self._failed = failed
        self._after = after
        self._sizes = metrics.LANE_GROUP_SIZE.labels(name)
        self._queue: queue.SimpleQueue[_Waiting[T] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Guards the thread and the queue together: a request is never put in a queue whose thread is gone.
        self._lock = threading.Lock()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is waiting, then stop the thread (a later request starts a new one)."""
        with self._lock:
            thread, stopped = self._thread, self._queue
            self._thread, self._queue = None, queue.SimpleQueue()
        if thread is not None:
            stopped.put(None)
            thread.join(timeout)

    async def submit(self, item: T) -> Answer:
        """The answer to item, once its group is committed (or refused)."""
        loop = asyncio.get_running_loop()
        waiting = _Waiting(item, loop, loop.create_future())
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, args=(self._queue,), name=f"siyu-{self.name}", daemon=True
                )
                self._thread.start()
            self._queue.put(waiting)
        return await waiting.future

    def _run(self, waiting: queue.SimpleQueue[_Waiting[T] | None]) -> None:
        held = _HeldConnection()
        try:
            self._serve(waiting, held)
        finally:
            held.close()

    def _serve(self, waiting: queue.SimpleQueue[_Waiting[T] | None], held: _HeldConnection) -> None:
        stopping = False
        while not stopping:
            first = waiting.get()
            if first is None:
                return
            group = [first]
            while len(group) < MAX_GROUP:
                try:
                    item = waiting.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True  # after writing what came before it
                    break
                group.append(item)
            self._sizes.observe(len(group))
            try:
                answers = self._write([w.item for w in group], held)
            except Exception:  # never leave a request unanswered, nor the thread dead with requests waiting
                log.exception("lane.group_failed", lane=self.name, requests=len(group))
                answers = [self._failed] * len(group)
            _answer(group, answers)
            if self._after is not None:
                try:
                    self._after(answers)
                except Exception:
                    log.exception("lane.after_failed", lane=self.name)

    def _write(self, items: list[T], held: _HeldConnection, *, again: bool = True) -> list[Answer]:
        try:
            with held.unit_of_work() as session:
                answers = list(self._handle(session, items))
                if len(answers) != len(items):  # before the commit: nothing is written twice on the retry
                    raise RuntimeError(f"{self.name}: {len(answers)} answers to {len(items)} requests")
            return answers
        except Exception:
            if again and held.lost():
                # The database dropped the connection kept since the last group (a restart, an idle
                # timeout): once more on a new one. Had the commit gone through, the keys replay it.
                log.warning("lane.connection_lost", lane=self.name, requests=len(items))
                return self._write(items, held, again=False)
            if len(items) == 1:
                log.exception("lane.request_failed", lane=self.name)
                return [self._failed]
            log.warning("lane.group_retried_one_by_one", lane=self.name, requests=len(items))
            return [self._write([item], held)[0] for item in items]


class _HeldConnection:
    """The writer thread's own database connection, kept from one group to the next.

    A group checked a connection out of the pool and back in, and the pool pinged it first: a round
    trip and about a tenth of the writer's CPU per group. A connection the database dropped is
    invalidated by the failing statement and replaced here (the group is written once more: `_write`).
    """

    def __init__(self) -> None:
        self._connection: Connection | None = None

    @contextlib.contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        """As db.unit_of_work, on the held connection (a new one if it was lost)."""
        maker = get_sessionmaker()
        engine = maker.kw.get("bind")
        if not isinstance(engine, Engine):  # the tests bind sessions to their own connection
            with unit_of_work() as session:
                yield session
            return
        if self._connection is None or self._connection.invalidated or self._connection.closed:
            self.close()
            self._connection = engine.connect()
        with transaction(maker(bind=self._connection)) as session:
            yield session

    def lost(self) -> bool:
        """Whether the last statement found the connection dropped by the database."""
        return self._connection is not None and self._connection.invalidated

    def close(self) -> None:
        """Give the connection back to the pool (or drop it, if it was lost)."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None


class TooLarge(Exception):
    """A request body beyond a lane's limit: `prefix` is what was read of it, `more` whether more is coming."""

    def __init__(self, limit: int, prefix: bytes, more: bool) -> None:
        super().__init__(f"the body is over {limit} bytes")
        self.prefix, self.more = prefix, more


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request's body, None when the client went away; TooLarge beyond limit bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if size > limit:
            raise TooLarge(limit, b"".join(chunks), bool(message.get("more_body", False)))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive, *, more_body: bool = False) -> Receive:
    """A receive that gives body again, then defers to receive: the app behind a lane reads it afresh.

    more_body: body is only what was read so far, and the rest is still to come from receive.
    """
    given = False

    async def again() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": more_body}

    return again


def route_path(scope: Scope) -> str:
    """The path below the application's root path (behind a proxy that mounts siyu under a prefix)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header (name in lower case), as Starlette reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def send_answer(send: Send, answer: Answer) -> None:
    """Send answer as the whole response."""
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (b"content-type", answer.content_type.encode()),
                (b"content-length", str(len(answer.body)).encode()),
                *answer.headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer.body})
