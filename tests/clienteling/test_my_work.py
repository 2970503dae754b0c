"""Each person's alerts and tasks: listed newest first or by due time, marked read or done once, never another's."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from tests import factories
from tests.console.conftest import PASSWORD, login


def test_a_user_reads_and_finishes_their_own(client: TestClient, session: Session) -> None:
    li = factories.user(session, Role.sales_associate)
    other = factories.user(session, Role.sales_associate)
    _, alerts, tasks = factories.work_for(session, li)
    _, others_alerts, others_tasks = factories.work_for(session, other)
    key = factories.auth(factories.api_key(session, Role.sales_associate, user=li))

    listed = client.get("/api/v1/me/alerts", headers=key).json()
    assert [a["title"] for a in listed] == ["alert 1", "alert 0"]
    assert [t["title"] for t in client.get("/api/v1/me/tasks", headers=key).json()] == [
        "soon",
        "later",
        "undated",
    ]

    first = client.post(f"/api/v1/me/alerts/{alerts[0].id}/read", headers=key)
    assert first.status_code == 200 and first.json()["read_at"] is not None
    again = client.post(f"/api/v1/me/alerts/{alerts[0].id}/read", headers=key)
    assert again.json()["read_at"] == first.json()["read_at"]
    assert [a["title"] for a in client.get("/api/v1/me/alerts?unread=true", headers=key).json()] == [
        "alert 1"
    ]

    done = client.post(f"/api/v1/me/tasks/{tasks[2].id}/done", headers=key)
    assert done.status_code == 200 and done.json()["done_at"] is not None
    assert [t["title"] for t in client.get("/api/v1/me/tasks", headers=key).json()] == ["later", "undated"]
    everything = client.get("/api/v1/me/tasks?include_done=true", headers=key).json()
    assert len(everything) == 3

    # Someone else's alert or task does not exist for this user.
    assert client.post(f"/api/v1/me/alerts/{others_alerts[0].id}/read", headers=key).status_code == 404
    assert client.post(f"/api/v1/me/tasks/{others_tasks[0].id}/done", headers=key).status_code == 404
    session.refresh(others_tasks[0])
    assert others_tasks[0].done_at is None


def test_a_key_without_a_person_is_refused(client: TestClient, session: Session) -> None:
    key = factories.auth(factories.api_key(session, Role.hq))
    r = client.get("/api/v1/me/tasks", headers=key)
    assert r.status_code == 403 and "console user's key" in r.json()["detail"]


def test_titles_are_masked_like_the_360(client: TestClient, session: Session) -> None:
    """A title is rendered text: a phone or email in it is masked; a marketer does not see her name either."""
    for role, expected in (
        (Role.sales_associate, "Call 王小明 on 138****5678 or n***@example.com"),
        (Role.marketer, "Call 王** on 138****5678 or n***@example.com"),
    ):
        person = factories.user(session, role)
        _, alerts, tasks = factories.work_for(session, person)
        tasks[0].title = alerts[0].title = "Call 王小明 on 13812345678 or nancy@example.com"
        tasks[0].detail = {"note": "she asked for 13812345678"}
        session.flush()
        key = factories.auth(factories.api_key(session, role, user=person))
        listed = client.get("/api/v1/me/tasks?include_done=true", headers=key).json()
        mine = next(t for t in listed if t["id"] == tasks[0].id)
        assert mine["title"] == expected
        assert mine["detail"] == {"note": "she asked for 138****5678"}
        alert = client.post(f"/api/v1/me/alerts/{alerts[0].id}/read", headers=key).json()
        assert alert["title"] == expected


def test_an_alert_about_a_customer_out_of_reach_is_flagged_not_linked(
    client: TestClient, session: Session
) -> None:
    """Her advisor was removed or she moved store: the alert stays, without her name or a dead link."""
    li = factories.user(session, Role.sales_associate, password=PASSWORD)
    customer, _, _ = factories.work_for(session, li)
    customer.owner_user_id = None
    session.flush()
    key = factories.auth(factories.api_key(session, Role.sales_associate, user=li))
    assert {a["profile_readable"] for a in client.get("/api/v1/me/alerts", headers=key).json()} == {False}
    login(client, li.username, PASSWORD)
    page = client.get("/work").text
    assert "not in your book" in page and "王小明" not in page and f"/customers/{customer.id}" not in page

    customer.owner_user_id = li.id  # her own customer again
    session.flush()
    assert {a["profile_readable"] for a in client.get("/api/v1/me/alerts", headers=key).json()} == {True}
    page = client.get("/work").text
    assert "王小明" in page and f'href="/customers/{customer.id}"' in page


def test_a_manager_sees_the_team_s_tasks_and_whose_they_are(client: TestClient, session: Session) -> None:
    shanghai, beijing = factories.store(session, "SH01"), factories.store(session, "BJ01")
    li = factories.user(session, Role.sales_associate, store_id=shanghai.id)
    gone = factories.user(session, Role.sales_associate, store_id=shanghai.id)
    far = factories.user(session, Role.sales_associate, store_id=beijing.id)
    customer, _, _ = factories.work_for(session, li)
    customer.store_id = shanghai.id
    factories.work_for(session, far)
    factories.work_for(session, gone)
    gone.is_active = False  # she left: her open tasks stay visible to her managers
    session.flush()
    seen: dict[str, list[dict[str, object]]] = {}
    for who, role, store in (
        ("sh-manager", Role.store_manager, shanghai),
        ("sh-manager-2", Role.store_manager, shanghai),
        ("bj-manager", Role.store_manager, beijing),
    ):
        manager = factories.user(session, role, store_id=store.id)
        key = factories.auth(factories.api_key(session, role, user=manager))
        seen[who] = client.get("/api/v1/me/team/tasks", headers=key).json()
    both = {(t["user_id"], t["title"]) for t in seen["sh-manager"]}
    assert both == {(u.id, title) for u in (li, gone) for title in ("soon", "later", "undated")}
    assert seen["sh-manager-2"] == seen["sh-manager"]
    assert {t["user_id"] for t in seen["bj-manager"]} == {far.id}
    assert [t["title"] for t in seen["sh-manager"] if t["user_id"] == li.id] == ["soon", "later", "undated"]
    # An associate has no team: her own tasks are at /me/tasks.
    own = factories.auth(factories.api_key(session, Role.sales_associate, user=li))
    r = client.get("/api/v1/me/team/tasks", headers=own)
    assert r.status_code == 403 and "/api/v1/me/tasks" in r.json()["detail"]


def test_my_work_shows_a_manager_the_team_s_open_tasks(client: TestClient, session: Session) -> None:
    shanghai = factories.store(session, "SH01")
    li = factories.user(
        session, Role.sales_associate, store_id=shanghai.id, display_name="Li Na", password=PASSWORD
    )
    customer, _, _ = factories.work_for(session, li)
    customer.store_id = shanghai.id
    manager = factories.user(session, Role.store_manager, store_id=shanghai.id, password=PASSWORD)
    session.flush()
    login(client, manager.username, PASSWORD)
    page = client.get("/work").text
    team = page[page.index('id="team-table"') :]
    assert team.count("<tr>") == 1 + 3  # the header, her three open tasks
    assert "Li Na" in team and "soon" in team and f'href="/customers/{customer.id}"' in team
    login(client, li.username, PASSWORD)
    assert 'id="team-table"' not in client.get("/work").text  # an associate's page: her own work only
