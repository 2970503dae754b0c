"""Segment memberships computed on DuckDB or Spark from a Parquet snapshot, written back like a full refresh.

The engines run the very Ibis expressions the operational database runs (`segments.compiler`), over the
snapshot's tables registered under the same names and types. Two Ibis compilers are corrected here, as
`segments.tables` corrects SQLite's: DuckDB's and Spark's JSON key access (see `_duckdb_json_get_item`
and `_spark_json_get_item`).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shutil
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as idt
import ibis.expr.operations as ops
import sqlglot.expressions as sge
import structlog
from ibis.backends.sql.compilers.duckdb import DuckDBCompiler
from ibis.backends.sql.compilers.pyspark import PySparkCompiler
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.db import utcnow
from siyu.profiles.models import Profile
from siyu.segments import service
from siyu.segments.compiler import compile_rule
from siyu.segments.models import Segment
from siyu.segments.tables import schemas, tables
from siyu.warehouse.export import WarehouseError, columns, read_manifest

log = structlog.get_logger(__name__)

# Engine name (CLI) -> Ibis dialect.
ENGINES = {"duckdb": "duckdb", "spark": "pyspark"}
JAVA_MISSING = "Java not found: Spark needs Java 17 (install a JDK or set JAVA_HOME)"
PYSPARK_MISSING = (
    "PySpark is not installed: install siyu's spark extra (.venv/bin/pip install -e '.[spark]'); "
    "Spark also needs Java 17"
)


# --- compiler corrections ----------------------------------------------------------------------------


def _duckdb_json_get_item(self: Any, op: Any, *, arg: Any, index: Any) -> Any:
    # Ibis writes a key as a JSONPath ($.key): "a.b" then reads a nested path and "$x" another key.
    # A JSON Pointer names any key exactly (~ and / escaped as ~0 and ~1).
    if not isinstance(op.index, ops.Literal):
        return self.f.json_extract(arg, index)
    key = op.index.value
    if isinstance(key, int):
        return self.f.json_extract(arg, sge.convert(f"$[{key}]"))
    return self.f.json_extract(arg, sge.convert("/" + str(key).replace("~", "~0").replace("/", "~1")))


def _call(name: str, *args: Any) -> Any:
    # An anonymous call: sqlglot rewrites some known names for Spark (PARSE_JSON disappears entirely).
    return sge.Anonymous(this=name, expressions=list(args))


def _spark_json_get_item(self: Any, op: Any, *, arg: Any, index: Any) -> Any:
    # Ibis uses GET_JSON_OBJECT, which returns a string value without its quotes, and then unwraps it with
    # Python UDFs that json.loads it: every string trait fails the query. Spark 4's VARIANT keeps the type;
    # a map lookup names any key (a variant path cannot hold both quote characters).
    if op.index.dtype.is_integer():
        path = _call("format_string", sge.convert("$[%s]"), index)
        element = _call("try_variant_get", _call("try_parse_json", arg), path)
    else:
        entries = _call("from_json", arg, sge.convert("map<string,variant>"))
        element = sge.Bracket(this=entries, expressions=[index])
    return _call("to_json", element)


_SPARK_INTEGERS = ("TINYINT", "SMALLINT", "INT", "BIGINT")


def _spark_unwrap(kinds: tuple[str, ...], target: str, *, decimals: bool = False) -> Any:
    """An unwrap of JSON text to `target` when the value's JSON type is one of kinds, else NULL."""

    def visit(self: Any, op: Any, *, arg: Any) -> Any:
        # parse_json(to_json(v)) is v: skip the text round trip after a key access.
        if isinstance(arg, sge.Anonymous) and arg.name.lower() == "to_json":
            value = arg.expressions[0]
        else:
            value = _call("parse_json", arg)
        kind = _call("schema_of_variant", value)
        condition = kind.isin(*(sge.convert(k) for k in kinds))
        if decimals:
            condition = sge.or_(condition, kind.like(sge.convert("DECIMAL%")))
        return self.if_(
            condition, _call("variant_get", value, sge.convert("$"), sge.convert(target)), sge.Null()
        )

    return visit


DuckDBCompiler.visit_JSONGetItem = _duckdb_json_get_item
PySparkCompiler.visit_JSONGetItem = _spark_json_get_item
PySparkCompiler.visit_UnwrapJSONString = _spark_unwrap(("STRING",), "string")
PySparkCompiler.visit_UnwrapJSONBoolean = _spark_unwrap(("BOOLEAN",), "boolean")
PySparkCompiler.visit_UnwrapJSONInt64 = _spark_unwrap(_SPARK_INTEGERS, "bigint")
PySparkCompiler.visit_UnwrapJSONFloat64 = _spark_unwrap(
    (*_SPARK_INTEGERS, "FLOAT", "DOUBLE"), "double", decimals=True
)


# --- engines -----------------------------------------------------------------------------------------


def dialect_of(engine: str) -> str:
    """The Ibis dialect of an engine (duckdb, spark); WarehouseError for another name."""
    if engine not in ENGINES:
        raise WarehouseError(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")
    return ENGINES[engine]


def java_problem() -> str | None:
    """Why Spark cannot start here (no Java), or None."""
    home = os.environ.get("JAVA_HOME")
    if home:
        if (Path(home) / "bin" / "java").exists():
            return None
        return f"JAVA_HOME={home} holds no bin/java: Spark needs Java 17 (install a JDK or fix JAVA_HOME)"
    return None if shutil.which("java") else JAVA_MISSING


def spark_problem() -> str | None:
    """Why Spark cannot run here (PySpark not installed, no Java), or None."""
    if importlib.util.find_spec("pyspark") is None:
        return PYSPARK_MISSING
    return java_problem()


def spark_session(master: str | None = None, **config: str) -> Any:
    """The process's SparkSession (created on first use; master from SIYU_SPARK_MASTER, default local[*])."""
    problem = spark_problem()
    if problem:
        raise WarehouseError(problem)
    from pyspark.sql import SparkSession

    # Python workers must run this interpreter (the one with siyu's dependencies).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.appName("siyu")
        .master(master or os.environ.get("SIYU_SPARK_MASTER", "local[*]"))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
    )
    for key, value in config.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def connect(engine: str, source: Path, *, spark: Any = None) -> Any:
    """An Ibis backend holding every table of the snapshot at source under its name and rule types."""
    dialect = dialect_of(engine)
    manifest = read_manifest(source)
    files = {table: source / manifest["tables"][table]["file"] for table in columns()}
    missing = [str(path) for path in files.values() if not path.exists()]
    if missing:
        raise WarehouseError(f"incomplete snapshot: {', '.join(missing)} missing")
    if dialect == "duckdb":
        con = ibis.duckdb.connect()
        for table, path in files.items():
            # JSON text becomes DuckDB's JSON type, which the compiled rules read with ->.
            parts = [
                f'CAST("{name}" AS JSON) AS "{name}"' if kind.is_json() else f'"{name}"'
                for name, kind in columns()[table].items()
            ]
            location = str(path).replace("'", "''")
            con.raw_sql(
                f"CREATE VIEW \"{table}\" AS SELECT {', '.join(parts)} FROM read_parquet('{location}')"
            )
    else:
        session = spark if spark is not None else spark_session()
        con = ibis.pyspark.connect(session)
        for table, path in files.items():
            # JSON stays a string column: the (corrected) compiler reads it as JSON text.
            session.read.parquet(str(path)).select(*columns()[table]).createOrReplaceTempView(table)
    with _quiet():
        _check_types(con, dialect)
    return con


@contextmanager
def _quiet() -> Iterator[None]:
    # Ibis 12 calls DuckDB's deprecated fetch_arrow_table(): nothing siyu can act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "fetch_arrow_table", DeprecationWarning)
        yield


def _check_types(con: Any, dialect: str) -> None:
    for table, expected in schemas(dialect).items():
        if dialect == "pyspark":
            schema = con.raw_sql(f"SELECT * FROM `{table}`").schema
            fields = {f.name: f.dataType.simpleString() for f in schema.fields}
            actual: dict[str, str] = {name: fields.get(name, "missing") for name in expected}
            wanted = {name: _SPARK_TYPES[type(ibis.dtype(kind)).__name__] for name, kind in expected.items()}
        else:
            schema = con.table(table).schema()
            actual = {name: _duckdb_type(schema.get(name)) for name in expected}
            wanted = {name: _duckdb_type(ibis.dtype(kind)) for name, kind in expected.items()}
        for name, want in wanted.items():
            if actual[name] != want:
                raise WarehouseError(
                    f"{table}.{name} is {actual[name]} on {dialect}, the rules expect {want}"
                )


# Spark's `timestamp` is an instant (an NTZ one would be `timestamp_ntz`); JSON is its text.
_SPARK_TYPES = {
    "Int64": "bigint",
    "String": "string",
    "JSON": "string",
    "Boolean": "boolean",
    "Float64": "double",
    "Timestamp": "timestamp",
}


def _duckdb_type(kind: idt.DataType | None) -> str:
    if kind is None:
        return "missing"
    if kind.is_timestamp():
        return f"timestamp({kind.timezone})"
    return str(kind.copy(nullable=True))


def matching(con: Any, dialect: str, rule: Any, as_of: dt.datetime) -> set[int]:
    """Ids of the live profiles of the snapshot matching rule at as_of (to the minute, like the database)."""
    minute = as_of.astimezone(dt.UTC).replace(second=0, microsecond=0)
    expr = compile_rule(service.check(rule), tables(dialect), as_of=minute)
    if dialect == "pyspark":
        # Straight to Arrow: Ibis would go through pandas, and register Python UDFs the SQL no longer calls.
        result = con.raw_sql(con.compile(expr)).toArrow()
    else:
        with _quiet():
            result = con.to_pyarrow(expr)
    return {int(pid) for pid in result.column("profile_id").to_pylist()}


def compute(
    session: Session,
    engine: str,
    source: Path,
    *,
    segment_ids: Iterable[int] | None = None,
    as_of: dt.datetime | None = None,
    spark: Any = None,
) -> dict[int, service.Change]:
    """Compute segments (all, or these) on the engine and write memberships back like a full refresh.

    Relative windows are measured from as_of, by default the snapshot's export time. A segment whose
    computation fails is marked failed with the error and keeps its members; it is absent from the result.
    """
    manifest = read_manifest(source)
    as_of = as_of or dt.datetime.fromisoformat(manifest["exported_at"])
    chosen = _segments(session, segment_ids)
    dialect = dialect_of(engine)
    con = connect(engine, source, spark=spark)
    now = utcnow()
    changes: dict[int, service.Change] = {}
    try:
        for segment in chosen:
            change = _refresh(session, con, dialect, segment, as_of, now, int(manifest["max_profile_id"]))
            if change is not None:
                changes[segment.id] = change
    finally:
        if dialect == "duckdb":
            con.disconnect()
    return changes


def _segments(session: Session, segment_ids: Iterable[int] | None) -> list[Segment]:
    if segment_ids is None:
        return list(session.execute(select(Segment).order_by(Segment.id)).scalars())
    out = []
    for segment_id in dict.fromkeys(segment_ids):
        out.append(service.get_or_raise(session, segment_id))
    return out


def _refresh(
    session: Session,
    con: Any,
    dialect: str,
    segment: Segment,
    as_of: dt.datetime,
    now: dt.datetime,
    max_profile_id: int,
) -> service.Change | None:
    try:
        found = matching(con, dialect, segment.rule, as_of)
    except Exception as exc:
        service.mark_failed(session, segment, exc)
        return None
    # Customers merged away since the export are no longer live: the database would not count them.
    # Customers created after the export are not in the snapshot: their memberships are the reactor's.
    return service.write_members(
        session,
        segment,
        _live(session, found),
        now=now,
        kind="warehouse",
        may_exit=lambda pid: pid <= max_profile_id,
    )


def _live(session: Session, ids: set[int]) -> set[int]:
    ordered = sorted(ids)
    live: set[int] = set()
    for start in range(0, len(ordered), 10_000):
        chunk = ordered[start : start + 10_000]
        live.update(
            session.execute(
                select(Profile.id).where(
                    Profile.merged_into_id.is_(None), bulk.matches(session, Profile.id, chunk)
                )
            ).scalars()
        )
    return live
