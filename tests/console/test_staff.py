"""The console's Staff page: an admin adds, resets and disables users and creates and revokes keys."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth import service as auth_service
from siyu.auth.models import ApiKey, AuditLog, Role, User
from siyu.identity.models import Identifier
from tests import factories
from tests.console.conftest import PASSWORD, login


def secret_of(page: str) -> str:
    found = re.search(r'<code class="mono" id="secret">([^<]+)</code>', page)
    assert found is not None, "no secret shown"
    return found[1]


def test_admin_adds_a_scoped_user_resets_and_disables(client: TestClient, session: Session) -> None:
    shop = factories.store(session, "SH01")
    admin = factories.user(session, Role.admin, password=PASSWORD)
    token = login(client, admin.username)
    page = client.get("/staff").text
    assert 'href="/staff"' in page and admin.username in page

    missing = client.post(
        "/staff/users", data={"csrf_token": token, "username": "li.si", "role": "sales_associate"}
    )
    assert missing.status_code == 400 and "works in one store" in missing.text
    made = client.post(
        "/staff/users",
        data={"csrf_token": token, "username": "li.si", "role": "sales_associate", "store": "SH01"},
    )
    assert made.status_code == 201 and "Password for li.si" in made.text
    li = session.execute(select(User).where(User.username == "li.si")).scalar_one()
    assert (li.store_id, li.role) == (shop.id, "sales_associate")
    assert auth_service.authenticate(session, "li.si", secret_of(made.text)) is not None

    reset = client.post(f"/staff/users/{li.id}/reset", data={"csrf_token": token})
    assert reset.status_code == 200 and "New password for li.si" in reset.text
    session.expire_all()
    assert auth_service.authenticate(session, "li.si", secret_of(reset.text)) is not None

    key = client.post("/staff/keys", data={"csrf_token": token, "name": "li's app", "user": "li.si"})
    assert key.status_code == 201 and "acts as li.si" in key.text
    both = client.post(
        "/staff/keys", data={"csrf_token": token, "name": "x", "user": "li.si", "role": "admin"}
    )
    assert both.status_code == 400 and "leave out role" in both.text
    r = client.post(f"/staff/users/{li.id}/disable", data={"csrf_token": token}, follow_redirects=True)
    assert "li.si is disabled" in r.text
    session.expire_all()
    assert auth_service.get_api_key_by_secret(session, secret_of(key.text)) is None
    assert client.post(f"/staff/users/{admin.id}/disable", data={"csrf_token": token}).status_code == 403
    # A service's refusal is the console's error page, with its message, not JSON.
    taken = client.post(
        "/staff/users",
        data={"csrf_token": token, "username": "LI.SI", "role": "sales_associate", "store": "SH01"},
    )
    assert taken.status_code == 409 and "text/html" in taken.headers["content-type"]
    assert "username &#39;LI.SI&#39; is taken" in taken.text or "username 'LI.SI' is taken" in taken.text
    actions = session.execute(select(AuditLog.action)).scalars().all()
    assert {"user.create", "user.update", "apikey.create"} <= set(actions)


def test_admin_creates_and_revokes_a_write_key(client: TestClient, session: Session) -> None:
    admin = factories.user(session, Role.admin, password=PASSWORD)
    token = login(client, admin.username)
    made = client.post("/staff/keys", data={"csrf_token": token, "name": "POS", "role": "source"})
    assert made.status_code == 201 and secret_of(made.text).startswith("sy_")
    key = session.execute(select(ApiKey).where(ApiKey.name == "POS")).scalar_one()
    r = client.post(f"/staff/keys/{key.id}/revoke", data={"csrf_token": token}, follow_redirects=True)
    assert f"Key #{key.id} “POS” is revoked." in r.text
    session.expire_all()
    assert auth_service.get_api_key_by_secret(session, secret_of(made.text)) is None


def test_only_admins_see_the_page(client: TestClient, session: Session) -> None:
    hq = factories.user(session, Role.hq, password=PASSWORD)
    token = login(client, hq.username)
    assert client.get("/staff").status_code == 403
    assert 'href="/staff"' not in client.get("/customers").text
    assert (
        client.post("/staff/keys", data={"csrf_token": token, "name": "x", "role": "admin"}).status_code
        == 403
    )


def test_admin_exports_and_erases_a_customer_from_the_360(client: TestClient, session: Session) -> None:
    from tests.console.conftest import event, send

    admin = factories.user(session, Role.admin, password=PASSWORD)
    write_key = factories.api_key(session, Role.source)
    send(
        client,
        write_key,
        event("identify", userId="M-ERASE", traits={"name": "林南希", "phone": "13812345678"}),
    )
    pid = session.execute(select(Identifier.profile_id).where(Identifier.value == "M-ERASE")).scalar_one()
    token = login(client, admin.username)
    page = client.get(f"/customers/{pid}").text
    assert "Export her data" in page and 'id="erase"' in page
    data = client.post(f"/customers/{pid}/export", data={"csrf_token": token})
    assert data.status_code == 200 and data.json()["profiles"][0]["name"] == "林南希"
    refused = client.post(f"/customers/{pid}/erase", data={"csrf_token": token, "confirm": "x"})
    assert refused.status_code == 400 and "Type the customer number" in refused.text
    done = client.post(
        f"/customers/{pid}/erase", data={"csrf_token": token, "confirm": str(pid)}, follow_redirects=True
    )
    assert "personal data is erased" in done.text and 'id="erased"' in done.text
    assert "林南希" not in done.text and 'id="erase"' not in done.text
