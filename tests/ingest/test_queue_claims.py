"""The processor's claim on PostgreSQL: it locks the queued rows it stores, and no others."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from siyu import db
from siyu.db import utcnow
from siyu.ingest import service
from tests.live import fresh_database, require_backend


def _pushes(batch: int, n: int) -> list[dict[str, object]]:
    return [
        {
            "type": "track",
            "event": "Menu Clicked",
            "messageId": f"claim-{batch}-{i}",
            "context": {"externalIds": [{"id": f"o-{batch}-{i}", "type": "wechat_openid"}]},
        }
        for i in range(n)
    ]


def test_a_pass_locks_only_the_rows_it_takes(tmp_path: Path) -> None:
    require_backend("postgresql")
    with fresh_database("postgresql", tmp_path) as url:
        engine = db.create_db_engine(url)
        try:
            with Session(engine) as setup:
                for batch in range(10):
                    service.enqueue_built(setup, _pushes(batch, 3), received_at=utcnow())
                setup.commit()
            with Session(engine) as first, engine.connect() as other:
                drained = service.process_queue(first, max_events=6)  # two rows of three; not committed yet
                assert (drained.batches, drained.events) == (2, 6)
                # Another processor can claim every row the first did not take.
                free = other.execute(
                    text("SELECT id FROM ingest_queue ORDER BY id FOR UPDATE SKIP LOCKED")
                ).scalars()
                assert len(list(free)) == 8
                other.rollback()
                first.commit()
        finally:
            engine.dispose()
