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
from siyu.loyalty.models import BlindBox, EarningRule, VoucherTemplate
from tests import factories
from tests.console.conftest import csrf_of, event, login, send


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


def test_programme_is_edited_from_the_page(client: TestClient, session: Session) -> None:
    login(client, factories.user(session, Role.hq).username)
    page = client.get("/loyalty")
    token = csrf_of(page.text)
    r = client.post(
        "/loyalty/tiers",
        data={"csrf_token": token, "name": "Jade", "rank": "0", "threshold_points": "0", "multiplier": "1"},
        follow_redirects=True,
    )
    assert "Tier “Jade” defined." in r.text
    r = client.post(
        "/loyalty/rules",
        data={
            "csrf_token": token,
            "name": "Store double points",
            "event": "Order Completed",
            "mode": "multiplier",
            "amount": "2",
            "channels": "store",
            "starts": "2026-12-12",
            "ends": "2026-12-12",
        },
        follow_redirects=True,
    )
    assert "Rule “Store double points” created" in r.text
    rule = session.execute(select(EarningRule).where(EarningRule.name == "Store double points")).scalar_one()
    assert rule.channels == ["store"] and rule.starts_at is not None and rule.ends_at is not None
    # 12.12 in Shanghai: from 16:00 UTC on the 11th to 16:00 UTC on the 12th.
    assert (rule.ends_at - rule.starts_at).total_seconds() == 86400
    r = client.post(f"/loyalty/rules/{rule.id}/toggle", data={"csrf_token": token}, follow_redirects=True)
    assert "switched off" in r.text
    r = client.post(
        "/loyalty/voucher-templates",
        data={
            "csrf_token": token,
            "name": "50 off 500",
            "kind": "amount_off",
            "value": "50",
            "min_spend": "500",
        },
        follow_redirects=True,
    )
    template = session.execute(
        select(VoucherTemplate).where(VoucherTemplate.name == "50 off 500")
    ).scalar_one()
    assert (template.value, template.min_spend_fen) == (5000, 50000)
    bad = client.post(
        "/loyalty/rules",
        data={
            "csrf_token": token,
            "name": "x",
            "event": "Order Completed",
            "mode": "fixed",
            "amount": "1",
            "cap_per_day": "many",
        },
    )
    assert bad.status_code == 400 and "cap per day" in bad.text


def test_marketers_see_the_programme_but_do_not_change_it(client: TestClient, session: Session) -> None:
    token = login(client, factories.user(session, Role.marketer).username)
    assert client.get("/loyalty").status_code == 200
    r = client.post("/loyalty/tiers", data={"csrf_token": token, "name": "X", "rank": "9"})
    assert r.status_code == 403
