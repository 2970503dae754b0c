"""The per-node counters of journeys: how many customers left each node with each outcome.

Added to once per batch by the engine, by the goal reactor, and by the sender and the receipts for what
became of a node's messages (outcomes `message:sent`, `message:delivered`, …).
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from siyu.db import is_postgres
from siyu.journeys.models import NodeCount

# Outcomes counted at a node without being a pass through it.
NOT_PASSES = ("goal:", "converted:", "holdout over", "message:")
CountKey = tuple[int, int, str, str]  # journey, version, node, outcome


def count_label(outcome: str) -> str:
    """The outcome as counted: an error's message stays on the path, the count says "error"."""
    if outcome.startswith("error"):
        return "error"
    return outcome if len(outcome) <= 80 else outcome[:80]


def add_counts(session: Session, counts: Counter[CountKey]) -> None:
    """Add to the node counters (in key order, so two workers lock the rows in the same order)."""
    rows = [
        {"journey_id": j, "version_id": v, "node": node, "outcome": outcome, "n": n}
        for (j, v, node, outcome), n in sorted(counts.items())
        if n
    ]
    if not rows:
        return
    insert = pg_insert if is_postgres(session) else sqlite_insert
    statement = insert(NodeCount).values(rows)
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["version_id", "node", "outcome"], set_={"n": NodeCount.n + statement.excluded.n}
        )
    )


def count_messages(session: Session, rows: list[tuple[int | None, int | None, str | None, str]]) -> None:
    """Count what became of journey messages: (journey, version, node, status) per message."""
    counts: Counter[CountKey] = Counter()
    for journey_id, version_id, node, status in rows:
        if journey_id is not None and version_id is not None and node is not None:
            counts[(journey_id, version_id, node, f"message:{status}")] += 1
    add_counts(session, counts)
