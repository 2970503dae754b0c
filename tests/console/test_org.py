"""The console's Stores page: regions, stores, their people and customers; admin and hq add to them."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.clienteling.models import Store
from siyu.profiles.models import Profile
from tests import factories
from tests.console.conftest import login


def logged_in(client: TestClient, session: Session, role: Role) -> str:
    return login(client, factories.user(session, role).username)


def test_hq_sees_stores_with_staff_and_customers_and_adds_one(client: TestClient, session: Session) -> None:
    shop = factories.store(session, code="SH01", region_code="EAST")
    factories.user(session, Role.store_manager, store_id=shop.id, region_id=shop.region_id)
    for _ in range(2):
        factories.user(session, Role.sales_associate, store_id=shop.id, region_id=shop.region_id)
    session.add_all([Profile(store_id=shop.id), Profile(store_id=shop.id), Profile()])
    session.flush()
    token = logged_in(client, session, Role.hq)
    page = client.get("/stores").text
    row = re.search(r"<td[^>]*>SH01</td>(.*?)</tr>", page, re.S)
    assert row is not None
    assert [int(n) for n in re.findall(r'class="num">(\d+)<', row[1])] == [1, 2, 2]
    assert "1 customer with no home store" in page
    r = client.post(
        "/stores",
        data={"csrf_token": token, "code": "SH02", "name": "Xintiandi", "city": "Shanghai", "region": "EAST"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert session.execute(select(Store.name).where(Store.code == "SH02")).scalar_one() == "Xintiandi"
    taken = client.post("/stores", data={"csrf_token": token, "code": "SH02", "name": "x", "region": "EAST"})
    assert taken.status_code == 409 and "store &#39;SH02&#39; exists" in taken.text


def test_marketer_reads_but_cannot_add(client: TestClient, session: Session) -> None:
    token = logged_in(client, session, Role.marketer)
    page = client.get("/stores")
    assert page.status_code == 200 and 'id="region-form"' not in page.text
    r = client.post("/stores/regions", data={"csrf_token": token, "code": "W", "name": "West"})
    assert r.status_code == 403


def test_store_manager_cannot_open_it(client: TestClient, session: Session) -> None:
    shop = factories.store(session)
    login(client, factories.user(session, Role.store_manager, store_id=shop.id).username)
    assert client.get("/stores").status_code == 403


def test_hq_moves_a_store_and_removes_an_empty_one(client: TestClient, session: Session) -> None:
    shop = factories.store(session, code="SH01", region_code="EAST")
    west = factories.store(session, code="CD01", region_code="WEST")
    factories.user(session, Role.store_manager, store_id=shop.id, region_id=shop.region_id)
    factories.store(session, code="TMP1", region_code="TEMP")
    token = logged_in(client, session, Role.hq)
    page = client.get("/stores").text
    assert 'action="/stores/SH01/edit"' in page
    assert 'action="/stores/TMP1/delete"' in page and 'action="/stores/SH01/delete"' not in page
    r = client.post(
        "/stores/SH01/edit",
        data={"csrf_token": token, "name": "Nanjing Road", "city": "Shanghai", "region": "WEST"},
        follow_redirects=True,
    )
    assert "Store SH01 saved." in r.text
    session.expire_all()
    moved = session.get(Store, shop.id)
    assert moved is not None and (moved.name, moved.region_id) == ("Nanjing Road", west.region_id)
    busy = client.post("/stores/SH01/delete", data={"csrf_token": token})
    assert busy.status_code == 409 and "still has 1 staff" in busy.text
    r = client.post("/stores/TMP1/delete", data={"csrf_token": token}, follow_redirects=True)
    assert "Store TMP1 removed." in r.text
    assert session.execute(select(Store.id).where(Store.code == "TMP1")).first() is None
