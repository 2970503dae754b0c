"""The ingest processor: drains the queue the API fills, oldest first, many batches per transaction.

`siyu serve` runs one in a background thread (woken by each accepted batch), `siyu worker` runs one
in its loop; on PostgreSQL any number may run (queue rows are taken with SKIP LOCKED and resolution
takes turns on an advisory lock), on SQLite the write lock makes them take turns.
"""

from __future__ import annotations

import threading

import structlog

from siyu.config import Settings, get_settings
from siyu.db import get_sessionmaker, unit_of_work
from siyu.ingest.service import Drained, park_failed, pending_batch_ids, process_queue
from siyu.metrics import INGEST_EVENTS
from siyu.outbox import service as outbox_service
from siyu.schedule import Scheduler

log = structlog.get_logger()


def run_once(settings: Settings | None = None) -> Drained:
    """One pass in one transaction; when it fails, each batch is retried alone and failures are counted."""
    settings = settings or get_settings()
    try:
        with unit_of_work() as session:
            drained = process_queue(session, settings=settings)
    except Exception:
        log.exception("ingest.process.failed")
    else:
        _count(drained)
        return drained
    # Isolate the batch that breaks the pass: the others go through, it is retried, then parked.
    total = Drained(failed_passes=1)
    with unit_of_work() as session:
        ids = pending_batch_ids(session, max(1, settings.ingest_process_events // 50))
    for batch_id in ids:
        try:
            with unit_of_work() as session:
                drained = process_queue(session, batch_ids=[batch_id], settings=settings)
        except Exception as exc:
            log.exception("ingest.batch.failed", batch_id=batch_id)
            with unit_of_work() as session:
                park_failed(session, batch_id, f"{type(exc).__name__}: {exc}")
            total.failed += 1
            continue
        _count(drained)
        total.add(drained)
    return total


def drain(settings: Settings | None = None) -> Drained:
    """Process until no pending batch is left (or only failing ones are)."""
    total = Drained()
    while True:
        drained = run_once(settings)
        total.add(drained)
        if drained.batches == 0:
            return total


def _count(drained: Drained) -> None:
    INGEST_EVENTS.labels("stored").inc(drained.events)
    INGEST_EVENTS.labels("duplicate").inc(drained.duplicates)


class Processor:
    """A background thread that drains the queue when woken, and every poll interval anyway."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or get_settings()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="siyu-ingest-processor", daemon=True)
        self._scheduler = Scheduler(self.settings)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """A batch was queued: process it now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the pass in progress and stop."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.worker_poll_seconds)
            self._wake.clear()
            try:
                while not self._stop.is_set() and run_once(self.settings).batches:
                    pass
                if self.settings.outbox_in_serve:
                    # One-process installs: the jobs the pushes just queued (a WeCom welcome has 20 s).
                    while not self._stop.is_set() and outbox_service.run_once(
                        get_sessionmaker(), self.settings.worker_batch_size
                    ):
                        pass
                    self._scheduler.run_due(get_sessionmaker())
                    # Journeys and their messages, for installs without a separate `siyu worker`.
                    from siyu.journeys.tasks import run_engine
                    from siyu.messaging.tasks import run_sender

                    run_engine(get_sessionmaker(), self.settings)
                    run_sender(get_sessionmaker(), self.settings)
            except Exception:  # a database outage: keep the thread alive and try again at the next poll
                log.exception("ingest.processor.error")


_current: Processor | None = None


def current() -> Processor | None:
    """The processor running in this process, if any."""
    return _current


def wake() -> None:
    """Tell this process's processor (if it runs one) that something was queued."""
    if _current is not None:
        _current.wake()


def set_current(processor: Processor | None) -> None:
    global _current
    _current = processor
