"""The tables segment rules read, as Ibis schemas: the same names on every engine.

On SQLite and PostgreSQL they are the operational tables; on DuckDB and Spark, the Parquet snapshot of
`siyu warehouse export` registered under the same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import sqlglot.expressions as sge
from ibis.backends.sql.compilers.sqlite import SQLiteCompiler
from ibis.expr.types import Table

DIALECTS = ("sqlite", "postgres", "duckdb", "pyspark")


def _sqlite_json_get_item(self: Any, op: Any, *, arg: Any, index: Any) -> Any:
    # Ibis 12 reads a key with json_extract, which SQLite answers with an SQL value, and then unwraps that
    # value as JSON again: "malformed JSON" for every string. `->` keeps the JSON text, as the unwrap expects.
    key = op.index.value
    path = f"$[{key}]" if isinstance(key, int) else '$."' + str(key).replace('"', '\\"') + '"'
    return sge.JSONExtract(this=arg, expression=sge.convert(path))


SQLiteCompiler.visit_JSONGetItem = _sqlite_json_get_item


def schemas(dialect: str) -> dict[str, dict[str, dt.DataType | str]]:
    """Column types of each table the rules read (JSON is JSONB on PostgreSQL)."""
    json: dt.DataType | str = dt.JSON(binary=True) if dialect == "postgres" else "json"
    ts = "timestamp('UTC')"
    return {
        "profiles": {
            "id": "int64",
            "merged_into_id": "int64",
            "traits": json,
            "store_id": "int64",
            "owner_user_id": "int64",
            "events_count": "int64",
            "orders_count": "int64",
            "revenue_fen": "int64",
            "refunded_fen": "int64",
            "first_seen_at": ts,
            "last_seen_at": ts,
            "first_order_at": ts,
            "last_order_at": ts,
            "erased_at": ts,
        },
        "events": {
            "id": "int64",
            "profile_id": "int64",
            "event": "string",
            "timestamp": ts,
            "amount_fen": "int64",
            "properties": json,
        },
        "identifiers": {"profile_id": "int64", "type": "string"},
        "consents": {
            "id": "int64",
            "profile_id": "int64",
            "purpose": "string",
            "granted": "boolean",
            "at": ts,
        },
        "profile_tags": {"profile_id": "int64", "name": "string"},
        "lifecycle_states": {
            "profile_id": "int64",
            "stage": "string",
            "recency_score": "int64",
            "frequency_score": "int64",
            "monetary_score": "int64",
            "purchase_days": "int64",
            "purchase_days_365": "int64",
            "p_alive": "float64",
            "expected_purchases": "float64",
            "expected_order_value_fen": "float64",
            "clv_fen": "float64",
        },
        "stores": {"id": "int64", "code": "string", "region_id": "int64"},
        "regions": {"id": "int64", "code": "string"},
    }


@dataclass(frozen=True, slots=True)
class Tables:
    """Unbound Ibis tables, one per name; compiled to SQL or executed on a backend holding those names."""

    dialect: str
    profiles: Table
    events: Table
    identifiers: Table
    consents: Table
    profile_tags: Table
    lifecycle_states: Table
    stores: Table
    regions: Table


_cache: dict[str, Tables] = {}


def tables(dialect: str) -> Tables:
    """The unbound tables for an engine's dialect (sqlite, postgres, duckdb, pyspark)."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r} (one of {', '.join(DIALECTS)})")
    if dialect not in _cache:
        built = {name: ibis.table(schema, name=name) for name, schema in schemas(dialect).items()}
        _cache[dialect] = Tables(dialect=dialect, **built)
    return _cache[dialect]
