"""The Loyalty console page and the member card of the customer 360."""

from __future__ import annotations

import random

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.demo.loyalty import ensure_programme
from siyu.identity.models import Identifier
from siyu.loyalty import blind_boxes, service
from siyu.loyalty.models import BlindBox
from tests import factories
from tests.console.conftest import event, login, send


def test_programme_page_and_member_card(client: TestClient, session: Session) -> None:
    ensure_programme(session)
    write_key = factories.api_key(session, Role.source)
    send(
        client,
        write_key,
        event(userId="M1", event="Membership Joined", timestamp="2026-11-01T10:00:00+08:00"),
        event(userId="M1", event="Mini Program Opened", timestamp="2026-11-01T10:05:00+08:00"),
    )
    profile_id = session.execute(select(Identifier.profile_id).where(Identifier.value == "M1")).scalar_one()
    member = service.get_member_by_profile_or_raise(session, profile_id)
    service.earn(session, member.id, 300, key="gift")
    box = session.execute(select(BlindBox)).scalar_one()
    blind_boxes.draw(session, box.id, member.id, key="d1", roller=random.Random(1))
    login(client, factories.user(session, Role.hq).username)

    page = client.get("/loyalty")
    assert page.status_code == 200
    for text in (
        "Silk",
        "Brocade",
        "Kesi",
        "Membership Day x2",
        "Welcome: 10% off",
        "Qipao lucky box",
        "every draw verifies",
    ):
        assert text in page.text, text
    card = client.get(f"/customers/{profile_id}")
    assert 'id="membership"' in card.text and member.member_number in card.text
    assert "First Mini Program visit" in card.text  # the 50 points of the first visit, in the latest postings


def test_sales_associate_cannot_open_the_programme(client: TestClient, session: Session) -> None:
    login(client, factories.user(session, Role.sales_associate).username)
    assert client.get("/loyalty").status_code == 403


def test_store_staff_enrol_a_customer(client: TestClient, session: Session) -> None:
    store = factories.store(session, code="SH09")
    write_key = factories.api_key(session, Role.source)
    send(client, write_key, event(userId="C9", traits={"home_store": "SH09"}, type="identify"))
    profile_id = session.execute(select(Identifier.profile_id).where(Identifier.value == "C9")).scalar_one()
    token = login(client, factories.user(session, Role.store_manager, store_id=store.id).username)
    page = client.get(f"/customers/{profile_id}")
    assert "Enrol in the programme" in page.text
    r = client.post(f"/customers/{profile_id}/enrol", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    member = service.get_member_by_profile_or_raise(session, profile_id)
    assert (member.join_channel, member.join_store_id) == ("console", store.id)
    assert member.member_number in client.get(f"/customers/{profile_id}").text
