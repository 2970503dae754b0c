"""Catalogue upserts; flushes, never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.catalogue.models import Product
from siyu.db import utcnow

FIELDS = ("name", "category", "price_fen", "attributes")


@dataclass(slots=True)
class Upserted:
    created: int = 0
    updated: int = 0
    unchanged: int = 0


def upsert_products(session: Session, rows: Sequence[dict[str, Any]], *, source: str) -> Upserted:
    """Create new SKUs, update changed ones, leave identical ones alone (so a re-import changes nothing)."""
    outcome = Upserted()
    by_sku = {row["sku"]: row for row in rows}  # the last row of a SKU wins
    existing = {
        p.sku: p for p in session.execute(select(Product).where(Product.sku.in_(list(by_sku)))).scalars()
    }
    now = utcnow()
    for sku, row in by_sku.items():
        product = existing.get(sku)
        if product is None:
            session.add(
                Product(sku=sku, source=source, created_at=now, updated_at=now, **{f: row[f] for f in FIELDS})
            )
            outcome.created += 1
        elif any(getattr(product, f) != row[f] for f in FIELDS):
            for f in FIELDS:
                setattr(product, f, row[f])
            product.source = source
            product.updated_at = now
            outcome.updated += 1
        else:
            outcome.unchanged += 1
    outcome.unchanged += len(rows) - len(by_sku)
    session.flush()
    return outcome
