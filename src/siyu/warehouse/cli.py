"""Commands: `siyu warehouse export --to DIR` and `siyu segments compute --engine duckdb|spark --source DIR`.

`siyu.cli` registers them; this module does not import it (it is imported by it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import Engine, select

from siyu.db import get_read_sessionmaker, is_postgres, unit_of_work
from siyu.errors import SiyuError

warehouse_app = typer.Typer(help="Parquet snapshots for DuckDB and Spark", no_args_is_help=True)
console = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(1)


@warehouse_app.callback()
def _warehouse() -> None:
    """Parquet snapshots of what segment rules read, for DuckDB and Spark."""


@warehouse_app.command("export")
def export_command(
    to: Annotated[Path, typer.Option("--to", help="Directory of the snapshot (new, empty, or a snapshot)")],
) -> None:
    """Write a Parquet snapshot of the tables segment rules read, with a manifest."""
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

    from siyu.warehouse.export import export

    try:
        with get_read_sessionmaker()() as session:
            if is_postgres(session) and isinstance(session.get_bind(), Engine):
                # One snapshot of every table: the rows of events and profiles from the same moment.
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            with Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                TextColumn("{task.completed:,} rows"),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                tasks: dict[str, TaskID] = {}

                def progress(table: str, rows: int) -> None:
                    if table not in tasks:
                        tasks[table] = bar.add_task(table, total=None)
                    bar.update(tasks[table], completed=rows)

                counts = export(session, to, progress=progress)
    except SiyuError as exc:
        _fail(exc.message)
    table = Table("table", "rows")
    for name, rows in counts.items():
        table.add_row(name, f"{rows:,}")
    Console().print(table)
    console.print(f"snapshot written to {to.absolute()}")


def segments_compute(
    engine: Annotated[str, typer.Option(help="duckdb or spark")],
    source: Annotated[Path, typer.Option(help="A snapshot directory written by `siyu warehouse export`")],
    segment: Annotated[
        list[int] | None, typer.Option(help="Only this segment id (repeat for several); default all")
    ] = None,
) -> None:
    """Compute segment memberships on DuckDB or Spark from a snapshot and write them back."""
    from siyu.segments.models import Segment
    from siyu.warehouse import engines

    if engine not in engines.ENGINES:
        _fail(f"--engine {engine!r}: use duckdb or spark")
    if engine == "spark":
        problem = engines.spark_problem()
        if problem:
            _fail(problem)
    try:
        with unit_of_work() as session:
            changes = engines.compute(session, engine, source, segment_ids=segment or None)
            query = select(Segment).order_by(Segment.id)
            if segment:
                query = query.where(Segment.id.in_(segment))
            rows = [(s.id, s.name, s.status, s.error) for s in session.execute(query).scalars()]
    except SiyuError as exc:
        _fail(exc.message)
    table = Table("id", "segment", "size", "entered", "exited", "status")
    failed = 0
    for segment_id, name, status, error in rows:
        change = changes.get(segment_id)
        if change is None:
            failed += 1
            table.add_row(str(segment_id), name, "", "", "", f"{status}: {error or ''}"[:300])
            continue
        table.add_row(
            str(segment_id), name, f"{change.size:,}", f"{change.entered:,}", f"{change.exited:,}", "ready"
        )
    Console().print(table)
    console.print(f"computed {len(changes)} segment(s) on {engine} from {source}")
    if failed:
        _fail(f"{failed} segment(s) failed: their previous memberships are kept")
