"""Setting up the organisation without the demo: regions, stores (one by one or from a CSV), scoped users."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth.models import AuditLog, Role
from siyu.clienteling import org
from siyu.clienteling.models import Region, Store
from siyu.errors import BadRequest, Conflict, NotFound
from tests import factories


def csv_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stores.csv"
    path.write_text(text, encoding="utf-8-sig")
    return path


def test_import_creates_updates_and_is_idempotent(session: Session, tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "code,name,city,region,region_name\n"
        "SH01,Nanjing Road,Shanghai,EAST,East China\n"
        "SH02,Xintiandi,Shanghai,EAST,\n"
        "BJ01,Sanlitun,Beijing,NORTH,North China\n",
    )
    done = org.import_stores(session, path)
    assert (done.created, done.updated, done.unchanged, done.regions_created) == (3, 0, 0, 2)
    regions = {r.code: r for r in org.list_regions(session)}
    assert regions["EAST"].name == "East China"
    assert [(s.code, s.city, s.region_id) for s in org.list_stores(session)] == [
        ("BJ01", "Beijing", regions["NORTH"].id),
        ("SH01", "Shanghai", regions["EAST"].id),
        ("SH02", "Shanghai", regions["EAST"].id),
    ]
    again = org.import_stores(session, path)
    assert (again.created, again.updated, again.unchanged, again.regions_created) == (0, 0, 3, 0)
    moved = csv_file(tmp_path, "code,name,region\nSH02,Xintiandi Flagship,NORTH\n")
    assert org.import_stores(session, moved).updated == 1
    assert org.get_store_by_code_or_raise(session, "SH02").region_id == regions["NORTH"].id


def test_codes_are_case_insensitive_and_gbk_files_import(session: Session, tmp_path: Path) -> None:
    """Excel in China saves CSV as GBK; a file writing "east" means the region EAST, not a second one."""
    first = tmp_path / "stores.csv"
    first.write_text("code,name,city,region\nSH01,南京路店,上海,EAST\n", encoding="gbk")
    assert org.import_stores(session, first).created == 1
    assert org.get_store_by_code_or_raise(session, "SH01").name == "南京路店"
    second = csv_file(tmp_path, "code,name,city,region\nsh01,南京路店,上海,east\nSH02,新天地店,上海,east\n")
    done = org.import_stores(session, second)
    assert (done.created, done.unchanged, done.regions_created) == (1, 1, 0)
    assert [r.code for r in org.list_regions(session)] == ["EAST"]
    assert org.get_store_by_code_or_raise(session, "sh02").code == "SH02"
    with pytest.raises(Conflict, match="store 'SH01' exists"):
        org.create_store(session, code="Sh01", name="x", region="east")
    with pytest.raises(BadRequest, match="no such file"):
        org.import_stores(session, tmp_path / "missing.csv")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("code,name\nSH01,x\n", "no column region"),
        ("code,name,region\nSH01,,EAST\n", "row 2, column name (B): a name of 1 to 120 characters"),
        (
            "code,name,region\nSH01,a,EAST\nSH01,b,EAST\n",
            "row 3, column code (A): store 'SH01' is already on row 2",
        ),
        ("name,region,code\nx,EAST,\n", "row 2, column code (C): a store code"),
    ],
)
def test_a_bad_row_is_named_and_nothing_is_written(
    session: Session, tmp_path: Path, text: str, message: str
) -> None:
    # The first row is good: it must not be kept when a later one is refused.
    with pytest.raises(BadRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        org.import_stores(session, csv_file(tmp_path, text))
    session.rollback()
    assert session.execute(select(Store)).first() is None
    assert session.execute(select(Region)).first() is None


def test_scope_of_roles(session: Session) -> None:
    org.create_region(session, code="EAST", name="East China")
    store = org.create_store(session, code="SH01", name="Nanjing Road", region="EAST")
    assert org.scope_of(session, Role.sales_associate, store="SH01", region=None) == (
        store.region_id,
        store.id,
    )
    assert org.scope_of(session, Role.regional_manager, store=None, region="EAST") == (store.region_id, None)
    assert org.scope_of(session, Role.hq, store=None, region=None) == (None, None)
    with pytest.raises(BadRequest, match="works in one store"):
        org.scope_of(session, Role.store_manager, store=None, region=None)
    with pytest.raises(BadRequest, match="manages one region"):
        org.scope_of(session, Role.regional_manager, store=None, region=None)
    with pytest.raises(BadRequest, match="sees the whole brand"):
        org.scope_of(session, Role.marketer, store="SH01", region=None)
    with pytest.raises(NotFound, match="store 'XX' does not exist"):
        org.scope_of(session, Role.sales_associate, store="XX", region=None)
    with pytest.raises(NotFound, match=r"region 'WEST' does not exist \(regions: EAST\)"):
        org.create_store(session, code="CD01", name="Chengdu", region="WEST")
    with pytest.raises(Conflict):
        org.create_store(session, code="SH01", name="again", region="EAST")


def test_api_admin_adds_everyone_reads(client: TestClient, session: Session) -> None:
    admin = factories.auth(factories.api_key(session, Role.admin))
    marketer = factories.auth(factories.api_key(session, Role.marketer))
    r = client.post("/api/v1/org/regions", json={"code": "EAST", "name": "East China"}, headers=admin)
    assert r.status_code == 201, r.text
    r = client.post(
        "/api/v1/org/stores",
        json={"code": "SH01", "name": "Nanjing Road", "region": "EAST", "city": "Shanghai"},
        headers=admin,
    )
    assert r.status_code == 201 and r.json()["city"] == "Shanghai"
    assert (
        client.post(
            "/api/v1/org/stores", json={"code": "X", "name": "x", "region": "WEST"}, headers=admin
        ).status_code
        == 404
    )
    assert (
        client.post("/api/v1/org/regions", json={"code": "EAST", "name": "x"}, headers=admin).status_code
        == 409
    )
    assert (
        client.post("/api/v1/org/regions", json={"code": "W", "name": "x"}, headers=marketer).status_code
        == 403
    )
    r = client.post(
        "/api/v1/org/stores", json={"code": "SH 02", "name": "x", "region": "EAST"}, headers=admin
    )
    assert r.status_code == 400 and "'SH 02' has a space" in r.json()["detail"]
    assert [s["code"] for s in client.get("/api/v1/org/stores", headers=marketer).json()] == ["SH01"]
    actions = session.execute(select(AuditLog.action).order_by(AuditLog.id)).scalars().all()
    assert actions == ["org.region.create", "org.store.create"]


def test_a_store_moves_region_with_its_staff_and_is_removed_only_when_empty(
    client: TestClient, session: Session
) -> None:
    admin = factories.auth(factories.api_key(session, Role.admin))
    shop = factories.store(session, "SH01", region_code="EAST")
    west = factories.store(session, "CD01", region_code="WEST")
    manager = factories.user(session, Role.store_manager, store_id=shop.id, region_id=shop.region_id)
    r = client.patch(
        "/api/v1/org/stores/sh01", json={"region": "west", "name": "Nanjing Road"}, headers=admin
    )
    assert r.status_code == 200 and (r.json()["region_id"], r.json()["name"]) == (
        west.region_id,
        "Nanjing Road",
    )
    session.refresh(manager)
    assert manager.region_id == west.region_id  # the manager's region follows the store
    assert (
        client.patch("/api/v1/org/stores/SH01", json={"region": "NOWHERE"}, headers=admin).status_code == 404
    )
    busy = client.delete("/api/v1/org/stores/SH01", headers=admin)
    assert busy.status_code == 409 and "still has 1 staff" in busy.json()["detail"]
    empty_id = factories.store(session, "TMP1").id
    assert client.delete("/api/v1/org/stores/tmp1", headers=admin).status_code == 204
    session.expire_all()
    assert session.execute(select(Store.id).where(Store.id == empty_id)).first() is None
    marketer = factories.auth(factories.api_key(session, Role.marketer))
    assert client.delete("/api/v1/org/stores/SH01", headers=marketer).status_code == 403


def test_a_region_is_renamed_and_removed_only_when_empty(client: TestClient, session: Session) -> None:
    admin = factories.auth(factories.api_key(session, Role.admin))
    shop = factories.store(session, "SH01", region_code="EAST")
    r = client.patch("/api/v1/org/regions/east", json={"name": "East China"}, headers=admin)
    assert r.status_code == 200 and r.json() == {"id": shop.region_id, "code": "EAST", "name": "East China"}
    busy = client.delete("/api/v1/org/regions/EAST", headers=admin)
    assert busy.status_code == 409 and "still has 1 stores" in busy.json()["detail"]
    client.post("/api/v1/org/regions", json={"code": "TMP", "name": "Temporary"}, headers=admin)
    assert client.delete("/api/v1/org/regions/tmp", headers=admin).status_code == 204
    assert [r["code"] for r in client.get("/api/v1/org/regions", headers=admin).json()] == ["EAST"]
