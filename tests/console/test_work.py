"""The console's "My work" page: the signed-in person's alerts and tasks, marked read or done."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from tests import factories
from tests.console.conftest import login


def test_associate_reads_an_alert_and_finishes_a_task(client: TestClient, session: Session) -> None:
    li = factories.user(session, Role.sales_associate)
    customer, alerts, tasks = factories.work_for(session, li)
    other = factories.user(session, Role.sales_associate)
    factories.work_for(session, other)
    token = login(client, li.username)
    page = client.get("/work").text
    assert "2 unread alerts · 3 open tasks" in page
    assert page.count(f'href="/customers/{customer.id}"') == 5  # only her own five items
    assert page.index(">soon<") < page.index(">later<") < page.index(">undated<")
    assert "王小明" in page
    r = client.post(f"/work/alerts/{alerts[0].id}/read", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    r = client.post(f"/work/tasks/{tasks[2].id}/done", data={"csrf_token": token}, follow_redirects=True)
    assert "Done: soon" in r.text and "1 unread alert · 2 open tasks" in r.text
    assert "show done tasks" in r.text and ">soon<" not in r.text
    assert ">soon<" in client.get("/work?done=true").text
    forged = client.post(f"/work/tasks/{tasks[0].id}/done", data={"csrf_token": "x"})
    assert forged.status_code == 403


def test_marketer_sees_customer_names_masked(client: TestClient, session: Session) -> None:
    marketer = factories.user(session, Role.marketer)
    _, alerts, tasks = factories.work_for(session, marketer)
    # Titles are rendered text: her name and phone in them are masked too.
    tasks[0].title = alerts[0].title = "Call 王小明 on 13812345678"
    session.flush()
    login(client, marketer.username)
    page = client.get("/work").text
    assert "王**" in page and "王小明" not in page
    assert page.count("Call 王** on 138****5678") == 2 and "13812345678" not in page
