"""A Parquet snapshot of every table segment rules read, for DuckDB and Spark (`siyu warehouse export`).

One file per table (`DIR/events.parquet` …) with exactly the columns and types of `segments.tables.schemas`,
and `DIR/manifest.json`. Rows are read in chunks and written as row groups, so memory does not grow with
the table. The snapshot is written into a hidden sibling directory and renamed into place at the end: a
killed export leaves no directory that looks like a snapshot.
"""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as idt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import text
from sqlalchemy.orm import Session

import siyu
from siyu.db import is_postgres, utcnow
from siyu.errors import SiyuError
from siyu.segments.tables import schemas

FORMAT = 1
MANIFEST = "manifest.json"
CHUNK_ROWS = 100_000
Progress = Callable[[str, int], None]


class WarehouseError(SiyuError):
    """A snapshot that cannot be written or read, or an engine that cannot run."""

    status_code = 400


def columns() -> dict[str, dict[str, idt.DataType]]:
    """The snapshot's tables and their column types (JSON as `json`, stored as JSON text)."""
    return {
        table: {name: ibis.dtype(kind) for name, kind in cols.items()}
        for table, cols in schemas("duckdb").items()
    }


def arrow_schema(table: str) -> pa.Schema:
    """The Parquet schema of one table of the snapshot."""
    return pa.schema([_field(name, kind) for name, kind in columns()[table].items()])


def _field(name: str, kind: idt.DataType) -> pa.Field:
    if kind.is_json():
        return pa.field(name, pa.string(), metadata={"siyu.type": "json"})
    if kind.is_timestamp():
        return pa.field(name, pa.timestamp("us", tz="UTC"))
    if kind.is_int64():
        return pa.field(name, pa.int64())
    if kind.is_float64():
        return pa.field(name, pa.float64())
    if kind.is_boolean():
        return pa.field(name, pa.bool_())
    if kind.is_string():
        return pa.field(name, pa.string())
    raise TypeError(f"no Parquet type for {name}: {kind}")  # pragma: no cover


def export(
    session: Session,
    directory: Path,
    *,
    progress: Progress | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[str, int]:
    """Write the snapshot to directory (new, empty, or a previous snapshot, replaced); rows per table.

    `progress(table, rows)` is called with 0 when a table starts and with its running total after each chunk.
    """
    directory = directory.absolute()
    _check_target(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    partial = directory.parent / f".{directory.name}.partial-{uuid.uuid4().hex[:8]}"
    partial.mkdir()
    try:
        exported_at = utcnow()
        counts: dict[str, int] = {}
        max_profile_id = 0
        for table in columns():
            rows, top = _export_table(session, table, partial / f"{table}.parquet", progress, chunk_rows)
            counts[table] = rows
            if table == "profiles":
                max_profile_id = top
        manifest = {
            "format": FORMAT,
            "siyu_version": siyu.__version__,
            "exported_at": exported_at.isoformat(),
            "source": "postgresql" if is_postgres(session) else "sqlite",
            # Profiles created after the export have larger ids: a computation leaves their memberships alone.
            "max_profile_id": max_profile_id,
            "tables": {
                table: {
                    "file": f"{table}.parquet",
                    "rows": counts[table],
                    "columns": {name: str(kind) for name, kind in cols.items()},
                }
                for table, cols in columns().items()
            },
        }
        (partial / MANIFEST).write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        _replace(partial, directory)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return counts


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of a complete snapshot; WarehouseError when directory holds none."""
    path = directory / MANIFEST
    if not path.is_file():
        raise WarehouseError(f"{directory} is not a snapshot: no {MANIFEST} (run `siyu warehouse export`)")
    manifest: dict[str, Any] = orjson.loads(path.read_bytes())
    if manifest.get("format") != FORMAT:
        raise WarehouseError(f"{directory}: snapshot format {manifest.get('format')!r}, expected {FORMAT}")
    return manifest


def _check_target(directory: Path) -> None:
    # Replacing a directory deletes it: only ever an empty one or a previous snapshot.
    if not directory.exists():
        return
    if not directory.is_dir():
        raise WarehouseError(f"{directory} exists and is not a directory")
    if any(directory.iterdir()) and not (directory / MANIFEST).is_file():
        raise WarehouseError(
            f"{directory} is not empty and holds no snapshot: choose a new or empty directory"
        )


def _replace(partial: Path, directory: Path) -> None:
    _check_target(directory)
    if not directory.exists():
        partial.rename(directory)
        return
    old = directory.parent / f".{directory.name}.old-{uuid.uuid4().hex[:8]}"
    directory.rename(old)
    try:
        partial.rename(directory)
    except BaseException:
        old.rename(directory)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _select(session: Session, table: str) -> str:
    pg = is_postgres(session)
    parts = []
    for name, kind in columns()[table].items():
        column = f'"{name}"'
        # JSON as its text: jsonb would come back as dicts only to be serialised again (SQLite stores text).
        parts.append(f"{column}::text AS {column}" if pg and kind.is_json() else column)
    return f'SELECT {", ".join(parts)} FROM "{table}"'


def _export_table(
    session: Session, table: str, path: Path, progress: Progress | None, chunk_rows: int
) -> tuple[int, int]:
    """Rows written and the largest value of the first column (the id)."""
    schema = arrow_schema(table)
    sqlite = not is_postgres(session)
    total = top = 0
    if progress is not None:
        progress(table, 0)
    # A server-side cursor on PostgreSQL; SQLite's cursor reads lazily anyway.
    statement = text(_select(session, table)).execution_options(
        stream_results=True, max_row_buffer=chunk_rows
    )
    result = session.execute(statement)
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for rows in result.partitions(chunk_rows):
            batch = _batch(schema, rows, sqlite=sqlite)
            writer.write_batch(batch)
            total += batch.num_rows
            first = batch.column(0)
            if first.null_count < len(first):
                top = max(top, int(pc.max(first).as_py()))
            if progress is not None:
                progress(table, total)
    return total, top


def _batch(schema: pa.Schema, rows: Sequence[Sequence[Any]], *, sqlite: bool) -> pa.RecordBatch:
    arrays = []
    for field, values in zip(schema, zip(*rows, strict=True), strict=True):
        arrays.append(_array(field.type, list(values), sqlite=sqlite))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _array(kind: pa.DataType, values: list[Any], *, sqlite: bool) -> pa.Array:
    if pa.types.is_boolean(kind) and sqlite:
        return pa.array([None if v is None else bool(v) for v in values], kind)
    if pa.types.is_timestamp(kind) and sqlite:
        # SQLite holds naive UTC text ("2026-11-20 12:00:00.000000"): Arrow parses it in C.
        try:
            return pa.array(values, pa.string()).cast(pa.timestamp("us")).cast(kind)
        except pa.ArrowInvalid:
            return pa.array([_utc(v) for v in values], kind)
    return pa.array(values, kind)


def _utc(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    moment = dt.datetime.fromisoformat(value)
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
