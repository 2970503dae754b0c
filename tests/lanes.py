"""A lane's group writer held on its first transaction, so later requests pile up and share the next one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import pytest
from sqlalchemy.orm import Session

from siyu import lanes
from siyu.lanes import Answer, GroupWriter

T = TypeVar("T")


class HeldWriter(Generic[T]):
    """writer, whose first transaction waits until released, so later requests pile up behind it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, writer: GroupWriter[T]) -> None:
        self.writer = writer
        self.started = threading.Event()
        self.release = threading.Event()
        self.transactions = 0
        real = lanes.unit_of_work

        @contextmanager
        def held() -> Iterator[Session]:
            self.transactions += 1
            if self.transactions == 1:
                self.started.set()
                self.release.wait(10)
            with real() as session:
                yield session

        monkeypatch.setattr(lanes, "unit_of_work", held)

    def answer(self, first: T, rest: list[T]) -> tuple[Answer, list[Answer]]:
        """Submit first, then rest while first's transaction is held; every answer."""

        async def run() -> tuple[Answer, list[Answer]]:
            head = asyncio.create_task(self.writer.submit(first))
            await asyncio.to_thread(self.started.wait, 10)
            tail: list[asyncio.Task[Any]] = [asyncio.create_task(self.writer.submit(item)) for item in rest]
            await asyncio.sleep(0)  # each task puts its request in the writer's queue and waits
            self.release.set()
            return await head, list(await asyncio.gather(*tail))

        try:
            return asyncio.run(run())
        finally:
            self.writer.stop()
