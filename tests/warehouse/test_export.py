"""Parquet snapshots (`siyu warehouse export`), and memberships computed on DuckDB written back."""

from __future__ import annotations

import datetime as dt
import importlib.util
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session
from typer.testing import CliRunner

import siyu
from siyu.ingest import processor
from siyu.ingest.models import Event
from siyu.profiles import service as profiles_service
from siyu.profiles.models import Profile
from siyu.segments import service
from siyu.segments.models import Segment, SegmentMember, SegmentSize, SegmentStatus
from siyu.segments.tables import schemas
from siyu.warehouse import engines
from siyu.warehouse.cli import segments_compute, warehouse_app
from siyu.warehouse.export import MANIFEST, WarehouseError, export, read_manifest
from tests.factories import event
from tests.segments import conftest as segment_fixtures
from tests.segments.conftest import AS_OF, Population

# The segment suite's population fixture, used here by name.
population = segment_fixtures.population

HI_PO = {"tag": "hi-po"}
QIPAO = {
    "event": "Product Viewed",
    "where": [{"property": "category", "op": "eq", "value": "qipao"}],
    "count": {"gte": 1},
}


def _table_rows(session: Session, table: str) -> int:
    return int(session.execute(text(f'SELECT count(*) FROM "{table}"')).scalar_one())


def _members(session: Session, segment: Segment) -> set[int]:
    rows = select(SegmentMember.profile_id).where(SegmentMember.segment_id == segment.id)
    return set(session.execute(rows).scalars())


def test_snapshot_has_every_table_with_its_types(
    population: Population, session: Session, tmp_path: Path
) -> None:
    seen: list[tuple[str, int]] = []
    counts = export(session, tmp_path / "snap", progress=lambda table, rows: seen.append((table, rows)))
    snap = tmp_path / "snap"
    assert list(counts) == list(schemas("duckdb"))
    assert counts == {table: _table_rows(session, table) for table in counts}
    assert counts["events"] > 0 and counts["consents"] == 2 and counts["profiles"] == 5
    assert [t for t, rows in seen if rows == 0] == list(counts)
    manifest = read_manifest(snap)
    assert manifest["siyu_version"] == siyu.__version__
    exported_at = dt.datetime.fromisoformat(manifest["exported_at"])
    assert exported_at.utcoffset() == dt.timedelta(0)
    assert manifest["max_profile_id"] == max(population.ids.values())
    for table, cols in schemas("duckdb").items():
        assert manifest["tables"][table]["rows"] == counts[table]
        assert list(manifest["tables"][table]["columns"]) == list(cols)
        assert pq.read_schema(snap / f"{table}.parquet").names == list(cols)
    assert manifest["tables"]["events"]["columns"]["timestamp"] == "timestamp('UTC')"
    assert manifest["tables"]["profiles"]["columns"]["traits"] == "json"

    profiles = pq.read_table(snap / "profiles.parquet")
    assert profiles.schema.field("first_seen_at").type == pa.timestamp("us", tz="UTC")
    assert profiles.schema.field("traits").type == pa.string()
    assert profiles.schema.field("id").type == pa.int64()
    for row in profiles.to_pylist():
        profile = session.get_one(Profile, row["id"])
        assert orjson.loads(row["traits"]) == profile.traits
        assert row["first_seen_at"] == profile.first_seen_at
    consents = pq.read_table(snap / "consents.parquet")
    assert consents.schema.field("granted").type == pa.bool_()
    assert sorted(consents.column("granted").to_pylist()) == [False, True]
    states = pq.read_table(snap / "lifecycle_states.parquet")
    assert states.schema.field("p_alive").type == pa.float64()
    events = pq.read_table(snap / "events.parquet").to_pylist()
    views = [e for e in events if e["event"] == "Product Viewed"]
    assert {orjson.loads(e["properties"]).get("category") for e in views} == {"qipao", "shoes"}
    stored = session.execute(select(Event.id, Event.timestamp)).all()
    assert {(e["id"], e["timestamp"]) for e in events} == {(i, ts) for i, ts in stored}


def test_small_chunks_give_the_same_snapshot(
    population: Population, session: Session, tmp_path: Path
) -> None:
    export(session, tmp_path / "one")
    export(session, tmp_path / "chunks", chunk_rows=2)
    for table in schemas("duckdb"):
        one = pq.read_table(tmp_path / "one" / f"{table}.parquet")
        chunked = pq.read_table(tmp_path / "chunks" / f"{table}.parquet")
        assert chunked.equals(one)
    assert pq.ParquetFile(tmp_path / "chunks" / "events.parquet").num_row_groups > 1


def test_export_replaces_a_snapshot_and_never_leaves_half_of_one(
    population: Population, session: Session, tmp_path: Path
) -> None:
    snap = tmp_path / "snap"
    export(session, snap)
    first = read_manifest(snap)["exported_at"]
    export(session, snap)
    assert read_manifest(snap)["exported_at"] > first

    def killed(table: str, rows: int) -> None:
        if table == "events":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        export(session, tmp_path / "new", progress=killed)
    assert not (tmp_path / "new").exists()
    with pytest.raises(KeyboardInterrupt):
        export(session, snap, progress=killed)
    assert read_manifest(snap)["exported_at"] > first  # the previous snapshot is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap"]  # no partial directory left

    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(WarehouseError, match="not empty"):
        export(session, other)
    assert (other / "notes.txt").read_text() == "mine"
    with pytest.raises(WarehouseError, match="not a snapshot"):
        engines.connect("duckdb", other)


def test_compute_writes_memberships_back(population: Population, session: Session, tmp_path: Path) -> None:
    hi_po = service.create(session, name="Hi-Po", rule=HI_PO, compute=False)
    qipao = service.create(session, name="Qipao viewers", rule=QIPAO, compute=False)
    snap = tmp_path / "snap"
    export(session, snap)

    changes = engines.compute(session, "duckdb", snap, as_of=AS_OF)
    assert changes == {
        hi_po.id: service.Change(size=2, entered=2, exited=0),
        qipao.id: service.Change(size=2, entered=2, exited=0),
    }
    for segment in (hi_po, qipao):
        assert _members(session, segment) == set(service.matching(session, segment.rule, as_of=AS_OF))
        assert segment.status == SegmentStatus.ready and segment.size == 2 and segment.computed_at
    assert population.names(_members(session, hi_po)) == {"amy", "dan"}
    sizes = session.execute(select(SegmentSize.kind, SegmentSize.size, SegmentSize.entered)).all()
    assert sorted(sizes) == [("warehouse", 2, 2), ("warehouse", 2, 2)]

    # Second run: bea is tagged and dan untagged since; the first run announced nothing, this one does.
    profiles_service.add_tag(session, population.ids["bea"], "hi-po")
    profiles_service.remove_tag(session, population.ids["dan"], "hi-po")
    export(session, snap)
    changes = engines.compute(session, "duckdb", snap, segment_ids=[hi_po.id], as_of=AS_OF)
    assert changes == {hi_po.id: service.Change(size=2, entered=1, exited=1)}
    assert population.names(_members(session, hi_po)) == {"amy", "bea"}
    processor.drain()
    timeline = session.execute(
        select(Event.profile_id, Event.event, Event.properties).where(Event.event.like("Segment %"))
    ).all()
    assert sorted((population.names([pid]).pop(), name) for pid, name, _ in timeline) == [
        ("bea", "Segment Entered"),
        ("dan", "Segment Exited"),
    ]
    assert all(props["segment_id"] == hi_po.id for _, _, props in timeline)
    kinds = session.execute(select(SegmentSize.kind).where(SegmentSize.segment_id == hi_po.id)).scalars()
    assert list(kinds) == ["warehouse", "warehouse"]

    with pytest.raises(Exception, match="no segment"):
        engines.compute(session, "duckdb", snap, segment_ids=[10**9])


def test_customers_newer_than_the_snapshot_keep_their_membership(
    population: Population, session: Session, tmp_path: Path
) -> None:
    segment = service.create(session, name="Hi-Po", rule=HI_PO, compute=False)
    snap = tmp_path / "snap"
    export(session, snap)
    population.api.send(event("identify", userId="fay", traits={"city": "Hangzhou"}))
    fay = int(population.api.lookup("member_id", "fay")["id"])
    profiles_service.add_tag(session, fay, "hi-po")
    service.refresh(session, segment, now=AS_OF)
    assert fay in _members(session, segment)
    change = engines.compute(session, "duckdb", snap, as_of=AS_OF)[segment.id]
    assert change == service.Change(size=3, entered=0, exited=0)
    assert population.names(_members(session, segment) - {fay}) == {"amy", "dan"}
    assert fay in _members(session, segment) and segment.size == 3


def test_a_rule_that_fails_on_the_engine_marks_the_segment_failed(
    population: Population, session: Session, tmp_path: Path
) -> None:
    hi_po = service.create(session, name="Hi-Po", rule=HI_PO, compute=False)
    qipao = service.create(session, name="Qipao viewers", rule=QIPAO, compute=False)
    snap = tmp_path / "snap"
    export(session, snap)
    engines.compute(session, "duckdb", snap, as_of=AS_OF)
    before = _members(session, qipao)
    # The events' JSON is no longer JSON: DuckDB fails when a rule reads a property, not before.
    events = pq.read_table(snap / "events.parquet")
    broken = events.set_column(
        events.schema.get_field_index("properties"),
        events.schema.field("properties"),
        pa.array(["{not json"] * events.num_rows, pa.string()),
    )
    pq.write_table(broken, snap / "events.parquet")

    changes = engines.compute(session, "duckdb", snap, as_of=AS_OF)
    assert set(changes) == {hi_po.id}
    assert qipao.status == SegmentStatus.failed
    assert qipao.error and "json" in qipao.error.lower()
    assert _members(session, qipao) == before and qipao.size == len(before)
    assert hi_po.status == SegmentStatus.ready

    # A rule the checker refuses (stored before a stricter version, say) fails the same way.
    qipao.rule = {"event": "Product Viewed", "count": {"gte": "two"}}
    session.flush()
    engines.compute(session, "duckdb", snap, segment_ids=[qipao.id], as_of=AS_OF)
    assert qipao.status == SegmentStatus.failed and qipao.error and "RuleError" in qipao.error


def _cli() -> typer.Typer:
    """The two registrations siyu.cli makes."""
    app = typer.Typer()
    segments_app = typer.Typer()
    app.add_typer(warehouse_app, name="warehouse")
    app.add_typer(segments_app, name="segments")
    segments_app.command("compute")(segments_compute)
    return app


def test_cli_exports_and_computes(
    population: Population, session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The commands' units of work run inside the test's transaction (tests/conftest.py routes them there).
    segment = service.create(session, name="Hi-Po", rule=HI_PO, compute=False)
    other = service.create(session, name="Buyers", rule={"event": "Order Completed"}, compute=False)
    runner = CliRunner()
    snap = tmp_path / "snap"
    result = runner.invoke(_cli(), ["warehouse", "export", "--to", str(snap)])
    assert result.exit_code == 0, result.output
    assert "events" in result.output and (snap / MANIFEST).is_file()

    args = ["segments", "compute", "--engine", "duckdb", "--source", str(snap), "--segment", str(segment.id)]
    result = runner.invoke(_cli(), args)
    assert result.exit_code == 0, result.output
    assert "Hi-Po" in result.output and "Buyers" not in result.output
    session.expire_all()
    assert population.names(_members(session, segment)) == {"amy", "dan"}
    assert session.get_one(Segment, other.id).computed_at is None
    sizes = session.execute(
        select(func.count()).select_from(SegmentSize).where(SegmentSize.kind == "warehouse")
    ).scalar_one()
    assert sizes == 1

    result = runner.invoke(_cli(), ["segments", "compute", "--engine", "presto", "--source", str(snap)])
    assert result.exit_code == 1 and "use duckdb or spark" in result.output
    result = runner.invoke(_cli(), ["warehouse", "export", "--to", str(tmp_path / "snap" / "events.parquet")])
    assert result.exit_code == 1 and "not a directory" in result.output

    # No PySpark (siyu installed without the spark extra): a clear message naming the extra.
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyspark" else real_find_spec(name, *a)
    )
    result = runner.invoke(_cli(), ["segments", "compute", "--engine", "spark", "--source", str(snap)])
    assert (
        result.exit_code == 1 and "PySpark is not installed" in result.output and "[spark]" in result.output
    )
    monkeypatch.setattr(importlib.util, "find_spec", real_find_spec)

    # No Java: a clear message, before any database or Spark work.
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    result = runner.invoke(_cli(), ["segments", "compute", "--engine", "spark", "--source", str(snap)])
    assert result.exit_code == 1 and "Java not found" in result.output
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    result = runner.invoke(_cli(), ["segments", "compute", "--engine", "spark", "--source", str(snap)])
    assert result.exit_code == 1 and "JAVA_HOME" in result.output
