"""Console pages of journeys and messages: library, draft with live problems, publish, graph, caps."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.journeys import engine
from siyu.journeys import service as journeys
from siyu.journeys.models import Journey
from siyu.messaging.models import FrequencyCap, MessageTemplate
from tests import factories
from tests.channels.wechat import oa_account
from tests.console.conftest import csrf_of, login
from tests.journeys.brand import NOW


def test_from_the_library_to_a_published_journey_with_its_graph(client: TestClient, session: Session) -> None:
    oa = oa_account(session)
    login(client, factories.user(session, Role.marketer).username)
    page = client.get("/journeys")
    assert page.status_code == 200 and 'id="library-favourite-reminder"' in page.text
    token = csrf_of(page.text)
    made = client.post(
        "/journeys/library/favourite-reminder",
        data={"csrf_token": token, "oa": str(oa.id)},
        follow_redirects=True,
    )
    assert made.status_code == 200 and "Ready to publish" in made.text
    journey = session.execute(select(Journey)).scalar_one()
    assert session.execute(select(MessageTemplate.name)).scalars().all() == ["Your favourite is waiting"]
    # Live problems while typing; a broken draft cannot be published.
    headers = {"HX-Request": "true", "X-CSRF-Token": token}
    broken = dict(journey.draft, start="nowhere")
    problems = client.post("/journeys/check", data={"definition": json.dumps(broken)}, headers=headers)
    assert "$.start" in problems.text and "no node" in problems.text
    assert "not JSON" in client.post("/journeys/check", data={"definition": "{"}, headers=headers).text
    published = client.post(
        f"/journeys/{journey.id}/publish", data={"csrf_token": token}, follow_redirects=True
    )
    assert published.status_code == 200 and "Version 1 published" in published.text
    assert 'data-chart="journey-graph"' in published.text
    graph = json.loads(
        re.search(
            r'<script type="application/json" id="graph-data">(.*?)</script>', published.text, re.S
        ).group(1)
    )  # type: ignore[union-attr]
    # Laid out from the start, left to right (PostgreSQL's JSONB does not keep the nodes' order).
    assert {n["name"]: n["x"] for n in graph["nodes"]} == {"wait": 0, "remind": 220, "done": 440}
    # Pause and resume from the page.
    paused = client.post(
        f"/journeys/{journey.id}/status",
        data={"csrf_token": token, "status": "paused"},
        follow_redirects=True,
    )
    assert 'id="journey-status">paused<' in paused.text


def test_the_graph_shows_each_nodes_numbers(client: TestClient, session: Session) -> None:
    login(client, factories.user(session, Role.admin).username)
    from siyu.profiles.models import Profile

    p = Profile()
    session.add(p)
    session.flush()
    j = journeys.create(
        session,
        name="Tag",
        definition={
            "entry": {"type": "manual"},
            "start": "t",
            "nodes": {
                "t": {"type": "tag", "add": ["x"], "next": "w"},
                "w": {"type": "wait", "duration": "1d", "next": "e"},
                "e": {"type": "exit"},
            },
        },
    )
    journeys.publish(session, j)
    journeys.enrol(session, j, [(p.id, "k", {})], now=NOW)
    engine.run_due(session, now=NOW)
    page = client.get(f"/journeys/{j.id}")
    assert 'id="stat-entered">1<' in page.text
    graph = json.loads(re.search(r'id="graph-data">(.*?)</script>', page.text, re.S).group(1))  # type: ignore[union-attr]
    labels = {n["name"]: n["label"] for n in graph["nodes"]}
    assert labels["t"] == "tag: t\npassed 1" and labels["w"] == "wait: w\npassed 0\nwaiting 1"
    # The customer's page says where she is.
    customer = client.get(f"/customers/{p.id}")
    assert 'id="customer-journeys"' in customer.text and ">Tag</a>" in customer.text


def test_messages_page_templates_and_caps(client: TestClient, session: Session) -> None:
    oa = oa_account(session)
    login(client, factories.user(session, Role.hq).username)
    page = client.get("/messages")
    token = csrf_of(page.text)
    body = json.dumps({"data": {"first": "{{ first_name }}, welcome — it's 苏韵"}})
    saved = client.post(
        "/messages/templates",
        data={
            "csrf_token": token,
            "name": "Welcome",
            "channel": "oa_template",
            "account_id": str(oa.id),
            "external_template_id": "T1",
            "body": body,
        },
        follow_redirects=True,
    )
    assert saved.status_code == 200 and "Template “Welcome” saved" in saved.text
    # The body reads as written: no \u escapes for the dash, the apostrophe or Chinese.
    assert "welcome — it&#39;s 苏韵" in saved.text and "\\u" not in saved.text
    bad = client.post(
        "/messages/templates",
        data={"csrf_token": token, "name": "Bad", "channel": "sms", "body": '{"text": "{{ x }}"}'},
    )
    assert bad.status_code == 422 and "unknown name" in bad.text
    capped = client.post(
        "/messages/caps",
        data={"csrf_token": token, "limit": "2", "period": "week", "channel": ""},
        follow_redirects=True,
    )
    assert "2 per week on all channels" in capped.text
    assert session.execute(select(FrequencyCap.limit)).scalar_one() == 2
    # A sales associate does not manage the brand's messages.
    client.post("/logout", data={"csrf_token": token})
    login(client, factories.user(session, Role.sales_associate).username)
    assert client.get("/messages").status_code == 403
