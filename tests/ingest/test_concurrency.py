"""Concurrent ingest processors on PostgreSQL: queue rows taken once, shared new identifiers resolved once."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from siyu import db
from siyu.config import get_settings
from siyu.identity.models import Identifier
from siyu.ingest import processor
from siyu.ingest.models import Event, QueuedBatch
from siyu.ingest.service import Drained, check_batch, enqueue_batch
from siyu.profiles.models import Profile
from tests.factories import event
from tests.live import fresh_database, require_backend


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_two_processors_store_every_batch_once(backend: str, tmp_path: Path) -> None:
    require_backend(backend)
    settings = get_settings().model_copy(update={"ingest_process_events": 100})
    with fresh_database(backend, tmp_path) as url:
        engine = db.create_db_engine(url)
        db.set_engine(engine)
        try:
            # 40 batches; every batch names the same 20 members (new identifiers in many batches at once)
            # with a device of its own, so batches taken by different processors collide on the same keys.
            for b in range(40):
                events = [
                    event(userId=f"M{m}", anonymousId=f"dev-{b}-{m}", event="Product Viewed")
                    for m in range(20)
                ]
                checked = check_batch(
                    events, source_key_id=None, batch_context=None, received_at=db.utcnow(), settings=settings
                )
                with db.unit_of_work() as session:
                    enqueue_batch(session, checked, batch_context=None)
            errors: list[BaseException] = []
            results: list[Drained] = []

            def run() -> None:
                try:
                    results.append(processor.drain(settings))
                except BaseException as exc:  # pragma: no cover - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=run) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            assert errors == []
            # No pass failed and had to be retried batch by batch: the processors took turns cleanly.
            assert [r.failed_passes for r in results] == [0, 0]
            assert sum(r.events for r in results) == 800
            with db.get_read_sessionmaker()() as session:
                count = lambda stmt: session.execute(stmt).scalar_one()  # noqa: E731
                assert count(select(func.count()).select_from(QueuedBatch)) == 0
                assert count(select(func.count()).select_from(Event)) == 800
                assert count(select(func.count()).where(Identifier.type == "member_id")) == 20
                # Each member is one live profile holding all its devices and all its events.
                live = (
                    session.execute(select(Profile.events_count).where(Profile.merged_into_id.is_(None)))
                    .scalars()
                    .all()
                )
                assert sorted(live) == [40] * 20
        finally:
            db.set_engine(None)
            engine.dispose()
