"""Jobs that time alone makes due, run by `siyu worker` (and by `siyu serve` in one-process installs).

Each job runs at most every `interval` seconds in a process; on PostgreSQL a transaction-scoped advisory
lock keeps two workers from running the same job at once (the second skips it).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from siyu.config import Settings
from siyu.db import is_postgres

log = structlog.get_logger(__name__)
Job = Callable[[sessionmaker[Session]], object]


@dataclass(slots=True)
class Scheduler:
    """The due times of the scheduled jobs in this process."""

    settings: Settings
    next_run: dict[str, float] = field(default_factory=dict)

    def jobs(self) -> list[tuple[str, float, Job]]:
        """(name, interval in seconds, job), in the order they run."""
        # Imported here: those domains build on the ingest pipeline, which imports this module's callers.
        from siyu.journeys.tasks import run_scheduled as journeys_job
        from siyu.lifecycle.tasks import run_scheduled as lifecycle_job
        from siyu.loyalty.tasks import run_scheduled as loyalty_job
        from siyu.messaging.tasks import run_scheduled as messaging_job
        from siyu.profiles.tasks import run_scheduled as retention_job
        from siyu.segments.tasks import run_scheduled as segments_job

        s = self.settings
        return [
            ("loyalty", s.loyalty_schedule_seconds, loyalty_job),
            ("lifecycle", s.lifecycle_schedule_seconds, lifecycle_job),
            ("segments", s.segments_schedule_seconds, segments_job),
            ("journeys", s.journeys_schedule_seconds, journeys_job),
            ("messaging", s.wecom_confirm_poll_seconds, messaging_job),
            ("retention", 3600.0, retention_job),
        ]

    def run_due(self, factory: sessionmaker[Session]) -> dict[str, object]:
        """Run every job whose time has come; returns what each one that ran reported."""
        ran: dict[str, object] = {}
        for name, interval, job in self.jobs():
            if time.monotonic() < self.next_run.get(name, 0.0):
                continue
            try:
                ran[name] = job(factory)
            except Exception:  # one failing job must not stop the others; it is retried next time
                log.exception("schedule.job_failed", job=name)
            self.next_run[name] = time.monotonic() + interval
        return ran


def try_lock(session: Session, name: str) -> bool:
    """Take the job's lock for this transaction (PostgreSQL); False when another worker holds it."""
    if not is_postgres(session):
        return True
    key = zlib.crc32(f"siyu.schedule.{name}".encode())
    return bool(session.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}).scalar_one())
