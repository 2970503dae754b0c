"""Console pages of segments and lifecycle, and the lifecycle and tags of the customer 360."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.identity.models import Identifier
from siyu.segments.models import Segment
from tests import factories
from tests.console.conftest import csrf_of, event, login, send


def profile_of(session: Session, value: str) -> int:
    return int(session.execute(select(Identifier.profile_id).where(Identifier.value == value)).scalar_one())


def test_define_a_segment_with_a_live_count(client: TestClient, session: Session) -> None:
    write_key = factories.api_key(session, Role.source)
    send(
        client,
        write_key,
        event("identify", userId="M1", traits={"name": "Lin Wei", "city": "Shanghai"}),
        event("identify", userId="M2", traits={"name": "Zhao Min", "city": "Beijing"}),
    )
    login(client, factories.user(session, Role.marketer).username)
    page = client.get("/segments")
    assert page.status_code == 200 and 'id="segment-form"' in page.text
    token = csrf_of(page.text)
    headers = {"HX-Request": "true", "X-CSRF-Token": token}
    rule = '{"trait": "city", "op": "eq", "value": "Shanghai"}'
    preview = client.post("/segments/preview", data={"rule": rule}, headers=headers)
    assert re.search(r"<strong>1</strong> customer\(s\) match now", preview.text)
    # A marketer sees who, not their name (PIPL: names masked for the role).
    assert "L******" in preview.text and "Lin Wei" not in preview.text
    bad = client.post(
        "/segments/preview", data={"rule": '{"trait": "city", "op": "equals", "value": 1}'}, headers=headers
    )
    assert "$.op" in bad.text and "equals" in bad.text
    broken = client.post("/segments/preview", data={"rule": '{"trait": '}, headers=headers)
    assert "not JSON" in broken.text
    saved = client.post(
        "/segments", data={"csrf_token": token, "name": "Shanghai", "rule": rule}, follow_redirects=True
    )
    assert saved.status_code == 200 and 'id="segment-size">1<' in saved.text
    segment = session.execute(select(Segment).where(Segment.name == "Shanghai")).scalar_one()
    csv = client.get(f"/segments/{segment.id}/export.csv")
    assert csv.text.splitlines()[1].startswith(str(profile_of(session, "M1")))
    again = client.post(
        f"/segments/{segment.id}/refresh", data={"csrf_token": csrf_of(saved.text)}, follow_redirects=True
    )
    assert "Recomputed: 1 customer(s)" in again.text
    edited = client.post(
        f"/segments/{segment.id}/edit",
        data={
            "csrf_token": token,
            "name": "North and East",
            "rule": '{"trait": "city", "op": "in", "value": ["Shanghai", "Beijing"]}',
        },
        follow_redirects=True,
    )
    assert "Version 2 saved: 2 customer(s)." in edited.text
    bad = client.post(
        f"/segments/{segment.id}/edit", data={"csrf_token": token, "name": "x", "rule": '{"stage": "Nope"}'}
    )
    assert bad.status_code == 422 and "$.stage" in bad.text
    gone = client.post(f"/segments/{segment.id}/delete", data={"csrf_token": token}, follow_redirects=True)
    assert "Segment “North and East” deleted." in gone.text


def test_lifecycle_page_and_360(client: TestClient, session: Session) -> None:
    write_key = factories.api_key(session, Role.source)
    send(
        client,
        write_key,
        event("identify", userId="M3", traits={"name": "Qian Yu"}),
        event(
            userId="M3",
            event="Order Completed",
            properties={"order_id": "O1", "total": 99, "channel": "store"},
        ),
    )
    login(client, factories.user(session, Role.hq).username)
    page = client.get("/lifecycle")
    assert page.status_code == 200
    assert 'data-stage="First-Time">1<' in page.text
    refit = client.post("/lifecycle/fit", data={"csrf_token": csrf_of(page.text)}, follow_redirects=True)
    # One buyer with one purchase cannot be fitted: the page says why instead of failing.
    assert "could not be fitted" in refit.text
    pid = profile_of(session, "M3")
    card = client.get(f"/customers/{pid}")
    assert 'id="stage-badge">First-Time<' in card.text
    assert "preferred-channel:store" in card.text
    added = client.post(
        f"/customers/{pid}/tags",
        data={"csrf_token": csrf_of(card.text), "name": "vip"},
        follow_redirects=True,
    )
    assert "Tagged “vip”" in added.text and 'aria-label="Remove tag vip"' in added.text


def test_sales_associates_cannot_open_segments(client: TestClient, session: Session) -> None:
    login(client, factories.user(session, Role.sales_associate).username)
    assert client.get("/segments").status_code == 403
    assert client.get("/lifecycle").status_code == 403
