"""Automatic tags, kept true as events arrive: favourite category, preferred channel and store, price sensitivity.

Each rule is set-based SQL over the customers' events of the last year, restricted to the profiles a
batch touched; a rule's tags on those profiles are replaced by what it finds now (manual tags are
never touched). Tags are `name:value` (`favourite-category:qipao`) or a bare name (`price-sensitive`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.db import is_postgres, utcnow
from siyu.ingest.reactors import StoredEvent
from siyu.profiles.models import Tag, TagSource
from siyu.profiles.service import ORDER_COMPLETED

RULES = ("favourite-category", "preferred-channel", "preferred-store", "price-sensitivity")
BROWSE_EVENTS = ("Product Viewed", "Product Added", "Product Added to Wishlist")
# Events that cannot change an automatic tag: the reactor skips batches made only of them.
RELEVANT = frozenset({*BROWSE_EVENTS, ORDER_COMPLETED})
MIN_BROWSE = 2  # a favourite needs at least this many actions on the category
PRICE_SENSITIVE_SHARE = 0.5  # share of discounted orders (with at least 2 orders)
FULL_PRICE_ORDERS = 3  # never a discount over at least this many orders


def _text(session: Session, key: str) -> str:
    return f"(properties ->> '{key}')" if is_postgres(session) else f"json_extract(properties, '$.{key}')"


def _number(session: Session, key: str) -> str:
    if is_postgres(session):
        return (
            f"(CASE WHEN jsonb_typeof(properties -> '{key}') = 'number' "
            f"THEN (properties ->> '{key}')::numeric END)"
        )
    return f"(CASE WHEN json_type(properties, '$.{key}') IN ('integer', 'real') THEN json_extract(properties, '$.{key}') END)"


def _top(session: Session, value: str, events: Sequence[str], scope: str, minimum: int) -> str:
    names = ", ".join(f"'{e}'" for e in events)
    return f"""
        SELECT profile_id, value FROM (
            SELECT profile_id, value, row_number() OVER (PARTITION BY profile_id ORDER BY n DESC, value) AS rn
            FROM (
                SELECT profile_id, {value} AS value, count(*) AS n FROM events
                WHERE event IN ({names}) AND timestamp >= :since AND profile_id IN ({scope})
                GROUP BY profile_id, {value}
                HAVING count(*) >= {minimum}
            ) AS counted WHERE value IS NOT NULL AND value <> ''
        ) AS ranked WHERE rn = 1
    """


def compute(
    session: Session, profile_ids: Sequence[int], *, now: dt.datetime | None = None
) -> dict[int, list[tuple[str, str]]]:
    """The automatic tags (rule, tag name) each of the given profiles should have now."""
    now = now or utcnow()
    since = now - dt.timedelta(days=365)
    params: dict[str, Any] = {"since": bulk.bind_time(session, since)}
    scope = ",".join(str(int(i)) for i in profile_ids) or "NULL"
    found: dict[int, list[tuple[str, str]]] = {pid: [] for pid in profile_ids}
    queries = (
        ("favourite-category", _top(session, _text(session, "category"), BROWSE_EVENTS, scope, MIN_BROWSE)),
        ("preferred-channel", _top(session, _text(session, "channel"), (ORDER_COMPLETED,), scope, 1)),
        ("preferred-store", _top(session, _text(session, "store"), (ORDER_COMPLETED,), scope, 1)),
    )
    for rule, sql in queries:
        for pid, value in session.execute(text(sql), params):
            found[pid].append((rule, f"{rule}:{value}"[:80]))
    discounted = f"(CASE WHEN coalesce({_number(session, 'discount')}, 0) > 0 OR {_text(session, 'coupon')} IS NOT NULL THEN 1 ELSE 0 END)"
    price = f"""
        SELECT profile_id, count(*), sum({discounted}) FROM events
        WHERE event = '{ORDER_COMPLETED}' AND timestamp >= :since AND profile_id IN ({scope})
        GROUP BY profile_id
    """
    for pid, orders, with_discount in session.execute(text(price), params):
        share = float(with_discount or 0) / orders
        if orders >= 2 and share >= PRICE_SENSITIVE_SHARE:
            found[pid].append(("price-sensitivity", "price-sensitive"))
        elif orders >= FULL_PRICE_ORDERS and share == 0:
            found[pid].append(("price-sensitivity", "full-price"))
    return found


def refresh(session: Session, profile_ids: Sequence[int], *, now: dt.datetime | None = None) -> None:
    """Replace the automatic tags of the given profiles with what the rules find now (manual tags stay)."""
    ids = sorted(set(profile_ids))
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        wanted = compute(session, chunk, now=now)
        existing = {
            (pid, name): (tag_id, source)
            for tag_id, pid, name, source in session.execute(
                select(Tag.id, Tag.profile_id, Tag.name, Tag.source).where(
                    bulk.matches(session, Tag.profile_id, chunk)
                )
            )
        }
        keep = {(pid, name) for pid, tags in wanted.items() for _, name in tags}
        stale = [
            tag_id
            for key, (tag_id, source) in existing.items()
            if source is TagSource.rule and key not in keep
        ]
        if stale:
            session.execute(delete(Tag).where(bulk.matches(session, Tag.id, stale)))
        stamp = now or utcnow()
        new = [
            (pid, name, TagSource.rule.value, rule, stamp, "rule")
            for pid, tags in wanted.items()
            for rule, name in tags
            if (pid, name) not in existing
        ]
        if new:
            ids_for = bulk.allocate_ids(session, "profile_tags", len(new))
            bulk.insert_rows(
                session,
                "profile_tags",
                [
                    ("id", "int"),
                    ("profile_id", "int"),
                    ("name", "text"),
                    ("source", "text"),
                    ("rule", "text"),
                    ("created_at", "ts"),
                    ("created_by", "text"),
                ],
                [(i, *row) for i, row in zip(ids_for, new, strict=True)],
            )


def react(session: Session, events: Sequence[StoredEvent]) -> None:
    """Reactor: refresh the automatic tags of the profiles whose browsing or orders this batch added to."""
    touched = sorted({e.profile_id for e in events if e.event in RELEVANT})
    if touched:
        refresh(session, touched)
