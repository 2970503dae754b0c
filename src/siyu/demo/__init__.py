"""The deterministic "Taste of Su" demo brand (domain.md §8), sent through the ingest pipeline.

`run` creates the organisation (regions, stores, staff) if it is missing, then sends the story of Nancy
and Lizzy and `customers - 2` generated customers through `ingest_batch`, the pipeline every real source
uses, in batches of BATCH_SIZE events, one transaction each. Events carry messageIds derived from the seed,
so running the demo again on the same database stores nothing twice.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from siyu.auth import service as auth_service
from siyu.auth.models import Role, User
from siyu.db import get_sessionmaker
from siyu.demo import channels as demo_channels
from siyu.demo import loyalty as demo_loyalty
from siyu.demo import org, population, story
from siyu.demo.channels import DemoChannels
from siyu.demo.journeys import ensure_journeys
from siyu.demo.population import Event
from siyu.demo.segments import ensure_segments, replay_lifecycle
from siyu.ingest.service import ingest_batch
from siyu.journeys.tasks import run_engine
from siyu.loyalty.tasks import run_scheduled

BATCH_SIZE = 500
STORY_CUSTOMERS = 2  # Nancy and Lizzy
ADMIN_KEY_NAME = "Taste of Su demo (admin)"
WRITE_KEY_NAME = "Taste of Su demo (events)"


class DemoError(RuntimeError):
    """The pipeline refused a generated event: a bug in the generator, never expected."""


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What `siyu demo` prints: how to log in and how to send events."""

    admin_username: str
    admin_password: str
    api_key: str
    write_key: str
    customers: int
    events: int
    # Of `events`, how many were already stored by an earlier run (a rerun stores nothing twice).
    duplicates: int = 0
    seconds: float = 0.0
    wechat: DemoChannels | None = None


def iter_batches(seed: int, customers: int, size: int = BATCH_SIZE) -> Iterator[tuple[list[Event], int]]:
    """(events, customers completed so far) in batches of at most size: the story first, then customers.

    Lazy: only the current batch and the customer being cut into it are in memory, whatever the count.
    """
    buffer: list[Event] = story.events()
    done = STORY_CUSTOMERS
    for events in population.iter_customers(seed, max(customers - STORY_CUSTOMERS, 0)):
        buffer.extend(events)
        done += 1
        while len(buffer) >= size:
            yield buffer[:size], done
            buffer = buffer[size:]
    if buffer:
        yield buffer, done


def run(*, customers: int, seed: int, console: Console | None = None) -> DemoResult:
    """Generate the demo brand into the configured database: the same seed gives the same brand.

    Reuses an existing organisation, sets a new random admin password and creates a new admin API key
    and write key (their secrets are not stored, so earlier ones cannot be shown again).
    """
    started = time.perf_counter()
    factory = get_sessionmaker()
    password = secrets.token_urlsafe(12)
    status = console.status("creating the organisation") if console else contextlib.nullcontext()
    with status, factory() as session:
        result = org.ensure_org(session, password)
        admin = session.get_one(User, result.admin_user_id)
        _, api_key = auth_service.create_api_key(session, name=ADMIN_KEY_NAME, role=Role.admin, user=admin)
        source, write_key = auth_service.create_api_key(session, name=WRITE_KEY_NAME, role=Role.source)
        source_id = source.id
        wechat = demo_channels.ensure_channels(session)
        attribution = demo_channels.Attribution.load(session)
        demo_loyalty.ensure_programme(session)
        session.commit()
    if console:
        console.print(
            f"organisation: {len(org.REGIONS)} regions, {len(org.STORES)} stores, "
            f"{len(org.ROSTER.staff) + 1} users ({result.created_users} new)"
        )

    total = max(customers, STORY_CUSTOMERS)
    sent = duplicates = 0
    progress = (
        Progress(
            TextColumn("[bold]Taste of Su[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("customers · {task.fields[events]:,} events"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        if console
        else None
    )
    with progress or contextlib.nullcontext():
        task = progress.add_task("customers", total=total, events=0) if progress else None
        for batch, done in iter_batches(seed, customers):
            attribution.apply(batch)
            with factory() as session:
                outcome = ingest_batch(session, batch, source_key_id=source_id)
                if outcome.errors:
                    first = outcome.errors[0]
                    raise DemoError(f"event {first.message_id} was refused: {first.reason}")
                session.commit()
            sent += len(batch)
            duplicates += outcome.duplicates
            if progress is not None and task is not None:
                progress.update(task, completed=done, events=sent)

    # What `siyu worker` would have done meanwhile: release points whose return window closed, expire old ones.
    run_scheduled(factory)
    # Then what siyu keeps on top of the events: weekly stages (with their history), the value model, segments.
    with factory() as session:
        staged = replay_lifecycle(session)
        made = ensure_segments(session)
        flows = ensure_journeys(session)
        session.commit()
    # The journeys' first steps, as `siyu worker` takes them (messages go out once the server runs).
    moved = run_engine(factory)
    if console:
        stages = ", ".join(f"{n:,} {stage}" for stage, n in staged.by_stage.items())
        console.print(f"lifecycle: {stages}")
        console.print("segments: " + ", ".join(f"{s.name} ({s.size:,})" for s in made))
        console.print(f"journeys: {', '.join(j.name for j in flows)}; {moved:,} customer(s) moved")
    seconds = time.perf_counter() - started
    if console:
        again = f", {duplicates:,} already stored" if duplicates else ""
        console.print(f"sent {total:,} customers, {sent:,} events{again} in {seconds:.1f} s")
    return DemoResult(
        admin_username=org.ADMIN_USERNAME,
        admin_password=password,
        api_key=api_key,
        write_key=write_key,
        customers=total,
        events=sent,
        duplicates=duplicates,
        seconds=seconds,
        wechat=wechat,
    )
