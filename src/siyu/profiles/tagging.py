"""Automatic tags, kept true as events arrive: favourite category, preferred channel and store, price sensitivity.

Every rule is set-based SQL over the customers' events of the last year, restricted to the profiles a
batch touched, all in one statement that reads those events once; a rule's tags on those profiles are
replaced by what it finds now (manual tags are never touched). Tags are `name:value`
(`favourite-category:qipao`) or a bare name (`price-sensitive`).
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


def _top(rule: str, column: str, events: Sequence[str], minimum: int) -> str:
    """The rule's winning value per profile among the scoped events (most frequent, then first by value)."""
    names = ", ".join(f"'{e}'" for e in events)
    return f"""
        SELECT '{rule}' AS rule, profile_id, value, CAST(NULL AS INTEGER) AS orders,
               CAST(NULL AS INTEGER) AS discounted
        FROM (
            SELECT profile_id, value, row_number() OVER (PARTITION BY profile_id ORDER BY n DESC, value) AS rn
            FROM (
                SELECT profile_id, {column} AS value, count(*) AS n FROM scoped
                WHERE event IN ({names})
                GROUP BY profile_id, {column}
                HAVING count(*) >= {minimum}
            ) AS counted WHERE value IS NOT NULL AND value <> ''
        ) AS ranked WHERE rn = 1
    """


def _statement(session: Session) -> str:
    """Every rule in one statement: the scoped profiles' events of the year are read once, then ranked."""
    postgres = is_postgres(session)
    in_scope = (
        "profile_id = ANY(CAST(:scope AS BIGINT[]))"
        if postgres
        else "profile_id IN (SELECT value FROM json_each(:scope))"
    )
    names = ", ".join(f"'{e}'" for e in (*BROWSE_EVENTS, ORDER_COMPLETED))
    discounted = f"(CASE WHEN coalesce({_number(session, 'discount')}, 0) > 0 OR {_text(session, 'coupon')} IS NOT NULL THEN 1 ELSE 0 END)"
    order = f"event = '{ORDER_COMPLETED}'"
    return f"""
        WITH scoped AS MATERIALIZED (
            SELECT profile_id, event, {_text(session, "category")} AS category,
                   CASE WHEN {order} THEN {_text(session, "channel")} END AS channel,
                   CASE WHEN {order} THEN {_text(session, "store")} END AS store,
                   CASE WHEN {order} THEN {discounted} END AS discounted
            FROM events
            WHERE event IN ({names}) AND timestamp >= :since AND {in_scope}
        )
        {_top("favourite-category", "category", BROWSE_EVENTS, MIN_BROWSE)}
        UNION ALL {_top("preferred-channel", "channel", (ORDER_COMPLETED,), 1)}
        UNION ALL {_top("preferred-store", "store", (ORDER_COMPLETED,), 1)}
        UNION ALL
        SELECT 'price-sensitivity', profile_id, NULL, count(*), sum(discounted) FROM scoped
        WHERE {order} GROUP BY profile_id
    """


def compute(
    session: Session, profile_ids: Sequence[int], *, now: dt.datetime | None = None
) -> dict[int, list[tuple[str, str]]]:
    """The automatic tags (rule, tag name) each of the given profiles should have now."""
    now = now or utcnow()
    since = now - dt.timedelta(days=365)
    found: dict[int, list[tuple[str, str]]] = {pid: [] for pid in profile_ids}
    if not profile_ids:
        return found
    params: dict[str, Any] = {
        "since": bulk.bind_time(session, since),
        "scope": bulk.among_value(Tag.profile_id, profile_ids, postgres=is_postgres(session)),
    }
    prices: list[tuple[int, int, int]] = []
    for rule, pid, value, orders, with_discount in session.execute(text(_statement(session)), params):
        if rule == "price-sensitivity":
            prices.append((pid, int(orders), int(with_discount or 0)))
        else:
            found[pid].append((rule, f"{rule}:{value}"[:80]))
    # The price rule last, as the tags were always listed: category, channel, store, price.
    for pid, orders, with_discount in prices:
        share = with_discount / orders
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
