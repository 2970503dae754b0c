"""The console pages through the real app: login, CSRF, search, the 360, unmerge, ingestion, reviews."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth.models import AuditLog, Role
from siyu.identity.models import Identifier, IdentityMerge, MergeReview
from siyu.ingest import processor, reactors
from siyu.ingest.models import DeadLetter, QueuedBatch
from siyu.profiles.models import Profile
from tests import factories
from tests.console.conftest import PASSWORD, csrf_of, event, login, send

PHONE = "13812345678"
NAME = "王小明"


@pytest.fixture
def write_key(session: Session) -> str:
    return factories.api_key(session, Role.source)


def nancy(client: TestClient, session: Session, write_key: str) -> int:
    """A customer with a member id, a phone, an anonymous id and one order; returns the profile id."""
    send(
        client,
        write_key,
        event("identify", userId="M1001", traits={"name": NAME, "phone": PHONE}),
        event(userId="M1001", anonymousId="device-1", event="Product Viewed", properties={"sku": "QP-001"}),
        event(userId="M1001", event="Order Completed", properties={"order_id": "O-1", "total": 1280.5}),
    )
    statement = select(Identifier.profile_id).where(
        Identifier.type == "member_id", Identifier.value == "M1001"
    )
    return session.execute(statement).scalar_one()


def logged_in(client: TestClient, session: Session, role: Role = Role.admin, **kwargs: Any) -> str:
    """Log a new user of role in; returns the CSRF token."""
    user = factories.user(session, role, **kwargs)
    return login(client, user.username)


class TestLogin:
    def test_login_then_home_is_customer_search(self, client: TestClient, session: Session) -> None:
        user = factories.user(session, Role.hq, display_name="李娜")
        token = csrf_of(client.get("/login").text)
        r = client.post(
            "/login",
            data={"username": user.username, "password": PASSWORD, "csrf_token": token},
            follow_redirects=False,
        )
        assert (r.status_code, r.headers["location"]) == (303, "/customers")
        r = client.get("/")
        assert r.url.path == "/customers"
        assert "李娜" in r.text and ">hq<" in r.text
        assert 'lang="zh-CN"' in r.text and "charset=utf-8" in r.headers["content-type"]

    def test_wrong_password_and_unknown_user_look_the_same(
        self, client: TestClient, session: Session
    ) -> None:
        user = factories.user(session, Role.admin)
        pages = []
        for username, password in ((user.username, "wrong password"), ("nobody-here", PASSWORD)):
            token = csrf_of(client.get("/login").text)
            r = client.post(
                "/login",
                data={"username": username, "password": password, "csrf_token": token},
                follow_redirects=False,
            )
            assert r.status_code == 401
            assert "Incorrect username or password." in r.text
            pages.append(r.text.replace(username, "USER"))
        assert csrf_of(pages[0]) == csrf_of(pages[1])
        assert pages[0] == pages[1]
        assert client.get("/customers", follow_redirects=False).status_code == 303

    def test_a_bad_query_on_a_page_is_an_error_page_not_json(
        self, client: TestClient, session: Session
    ) -> None:
        logged_in(client, session)
        r = client.get("/customers", params={"q": "x", "page": 0})
        assert r.status_code == 400 and r.headers["content-type"].startswith("text/html")
        assert "This address is not valid: page: Input should be greater than or equal to 1" in r.text
        assert client.get("/api/v1/profiles", params={"limit": 0}).status_code == 422  # the API stays JSON

    def test_a_form_sent_incomplete_or_an_id_too_large_is_an_error_page(
        self, client: TestClient, session: Session
    ) -> None:
        token = logged_in(client, session)
        r = client.post("/segments", data={"csrf_token": token, "name": "", "rule": '{"stage": "Loyal"}'})
        assert r.status_code == 400 and r.headers["content-type"].startswith("text/html")
        assert "Please check the form: name is required" in r.text
        r = client.get("/customers/99999999999999999999")
        assert r.status_code == 422 and r.headers["content-type"].startswith("text/html")
        assert "too large" in r.text

    def test_inactive_user_cannot_log_in(self, client: TestClient, session: Session) -> None:
        user = factories.user(session, Role.admin)
        user.is_active = False
        session.flush()
        token = csrf_of(client.get("/login").text)
        r = client.post("/login", data={"username": user.username, "password": PASSWORD, "csrf_token": token})
        assert r.status_code == 401

    def test_login_returns_to_the_page_asked_for_but_never_off_site(
        self, client: TestClient, session: Session
    ) -> None:
        user = factories.user(session, Role.admin)
        cases = [
            ("/ingestion", "/ingestion"),
            ("//evil.example/x", "/customers"),
            ("/\\evil.example", "/customers"),
            ("/\t/evil.example", "/customers"),
            ("https://evil.example", "/customers"),
        ]
        for asked, landed in cases:
            client.cookies.clear()
            token = csrf_of(client.get("/login", params={"next": asked}).text)
            r = client.post(
                "/login",
                data={"username": user.username, "password": PASSWORD, "csrf_token": token, "next": asked},
                follow_redirects=False,
            )
            assert r.headers["location"] == landed

    def test_logout_ends_the_session(self, client: TestClient, session: Session) -> None:
        token = logged_in(client, session)
        r = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (303, "/login")
        assert client.get("/customers", follow_redirects=False).status_code == 303

    def test_logged_in_user_going_to_login_goes_home(self, client: TestClient, session: Session) -> None:
        logged_in(client, session)
        r = client.get("/login", follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (303, "/customers")


class TestSessions:
    def test_a_deactivated_user_is_sent_back_to_login(self, client: TestClient, session: Session) -> None:
        user = factories.user(session, Role.admin)
        login(client, user.username)
        user.is_active = False
        session.flush()
        r = client.get("/customers", follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (303, "/login")
        assert client.get("/login", follow_redirects=False).status_code == 200

    def test_pages_carry_security_headers(self, client: TestClient, session: Session) -> None:
        logged_in(client, session)
        r = client.get("/customers")
        assert r.headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in r.headers["content-security-policy"]
        # No asset from elsewhere: every src and href is the console's own (a random CSRF token may spell "cdn").
        linked = re.findall(r'(?:src|href)="([^"]*)"', r.text)
        assert linked and not [url for url in linked if "cdn" in url.lower() or "//" in url]
        assert "https://" not in r.text

    def test_htmx_errors_are_fragments(self, client: TestClient, session: Session) -> None:
        logged_in(client, session)
        r = client.get("/customers/999999/timeline", headers={"HX-Request": "true"})
        assert r.status_code == 404
        assert r.text.strip().startswith('<p class="error-message"') and "<html" not in r.text


class TestLoggedOut:
    @pytest.mark.parametrize("path", ["/", "/customers", "/customers/1", "/ingestion", "/reviews"])
    def test_pages_redirect_to_login(self, client: TestClient, path: str) -> None:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/login")

    def test_the_page_asked_for_is_kept(self, client: TestClient) -> None:
        r = client.get("/customers/42", follow_redirects=False)
        assert r.headers["location"] == "/login?next=/customers/42"

    def test_htmx_requests_are_told_to_redirect(self, client: TestClient) -> None:
        r = client.get(
            "/customers/search",
            params={"q": "x"},
            headers={"HX-Request": "true", "HX-Current-URL": "http://testserver/customers?q=x"},
        )
        assert r.status_code == 401
        assert r.headers["HX-Redirect"] == "/login?next=/customers?q=x"

    def test_api_keys_of_source_role_cannot_use_the_console(
        self, client: TestClient, session: Session
    ) -> None:
        write = factories.api_key(session, Role.source)
        r = client.get("/customers", headers=factories.auth(write))
        assert r.status_code == 403


class TestCsrf:
    def test_login_without_token_is_refused(self, client: TestClient, session: Session) -> None:
        user = factories.user(session, Role.admin)
        client.get("/login")
        r = client.post("/login", data={"username": user.username, "password": PASSWORD})
        assert r.status_code == 403
        assert client.get("/customers", follow_redirects=False).status_code == 303

    def test_post_with_a_wrong_token_is_refused(self, client: TestClient, session: Session) -> None:
        logged_in(client, session)
        r = client.post("/logout", data={"csrf_token": "forged"}, follow_redirects=False)
        assert r.status_code == 403
        assert client.get("/customers", follow_redirects=False).status_code == 200

    def test_unmerge_without_token_changes_nothing(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        logged_in(client, session)
        pid = nancy(client, session, write_key)
        anon = session.execute(select(Identifier).where(Identifier.value == "device-1")).scalar_one()
        r = client.post(f"/customers/{pid}/unmerge", data={"identifier_id": anon.id})
        assert r.status_code == 403
        assert session.execute(select(IdentityMerge)).first() is None

    def test_htmx_header_is_accepted(self, client: TestClient, session: Session, write_key: str) -> None:
        token = logged_in(client, session)
        pid = nancy(client, session, write_key)
        r = client.post(f"/customers/{pid}/reveal", headers={"X-CSRF-Token": token, "HX-Request": "true"})
        assert r.status_code == 200

    def test_token_is_rendered_in_every_form_and_the_htmx_header(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        token = logged_in(client, session)
        pid = nancy(client, session, write_key)
        page = client.get(f"/customers/{pid}").text
        assert page.count("<form") == page.count(f'name="csrf_token" value="{token}"')
        assert (
            f"hx-headers:inherited='{{&#34;X-CSRF-Token&#34;: &#34;{token}&#34;}}'" in page or token in page
        )


class TestSearch:
    def test_phone_typed_without_country_code(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        logged_in(client, session)
        pid = nancy(client, session, write_key)
        r = client.get("/customers/search", params={"q": PHONE}, headers={"HX-Request": "true"})
        assert r.status_code == 200
        assert f'href="/customers/{pid}"' in r.text and NAME in r.text
        assert "¥1,280.50" in r.text
        assert "<html" not in r.text
        assert r.headers["HX-Replace-Url"] == f"/customers?q={PHONE}"

    def test_full_page_search_without_javascript(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        logged_in(client, session)
        pid = nancy(client, session, write_key)
        for q in ("M1001", "王小", "device-1", f"+86{PHONE}"):
            r = client.get("/customers", params={"q": q})
            assert f'href="/customers/{pid}"' in r.text, q

    def test_a_store_manager_sees_their_book_of_customers_without_searching(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        shop, other = factories.store(session, "SH01"), factories.store(session, "BJ01")
        send(
            client,
            write_key,
            event(
                "identify",
                userId="A",
                traits={"name": "甲", "home_store": "SH01"},
                timestamp="2026-11-01T00:00:00Z",
            ),
            event(
                "identify",
                userId="B",
                traits={"name": "乙", "home_store": "SH01"},
                timestamp="2026-11-03T00:00:00Z",
            ),
            event("identify", userId="C", traits={"name": "丙", "home_store": "BJ01"}),
        )
        logged_in(client, session, Role.store_manager, store_id=shop.id, region_id=shop.region_id)
        page = client.get("/customers").text
        assert "Your customers, most recently seen first" in page
        assert page.index(">乙<") < page.index(">甲<") and ">丙<" not in page
        key = factories.auth(factories.api_key(session, Role.store_manager, store_id=shop.id))
        names = [p["name"] for p in client.get("/api/v1/profiles", headers=key).json()]
        assert names == ["乙", "甲"]
        assert other.id != shop.id

    def test_nothing_found(self, client: TestClient, session: Session) -> None:
        logged_in(client, session)
        r = client.get("/customers", params={"q": "13900000000"})
        assert "No customer you can see matches" in r.text

    def test_pages_through_every_match(self, client: TestClient, session: Session, write_key: str) -> None:
        logged_in(client, session)
        send(
            client,
            write_key,
            *(event("identify", userId=f"L{i}", traits={"name": f"林{i:02}"}) for i in range(30)),
        )
        first = client.get("/customers", params={"q": "林"}).text
        assert "Results 1–25" in first and 'rel="next"' in first and 'rel="prev"' not in first
        second = client.get(
            "/customers/search", params={"q": "林", "page": 2}, headers={"HX-Request": "true"}
        )
        assert (
            "Results 26–30" in second.text and 'rel="next"' not in second.text and 'rel="prev"' in second.text
        )
        assert second.headers["HX-Replace-Url"] == "/customers?q=%E6%9E%97&page=2"
        shown = re.findall(r"林\d\d", first) + re.findall(r"林\d\d", second.text)
        assert sorted(shown) == [f"林{i:02}" for i in range(30)]
        beyond = client.get("/customers", params={"q": "林", "page": 3}).text
        assert "No more customers match" in beyond

    def test_marketer_sees_names_masked(self, client: TestClient, session: Session, write_key: str) -> None:
        logged_in(client, session, Role.marketer)
        nancy(client, session, write_key)
        r = client.get("/customers", params={"q": "M1001"})
        assert "王**" in r.text and NAME not in r.text
        # Finding her by phone would unmask it: nothing, and the page says why.
        r = client.get("/customers", params={"q": PHONE})
        assert "王**" not in r.text and "finds customers by member id" in r.text


class TestCustomer360:
    def test_shows_counters_identities_and_masks_the_phone(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        logged_in(client, session)
        pid = nancy(client, session, write_key)
        r = client.get(f"/customers/{pid}")
        assert r.status_code == 200
        assert r.headers["cache-control"] == "no-store"
        html = r.text
        assert NAME in html
        assert "+86138****5678" in html
        assert PHONE not in html
        for kind in ("member_id", "anonymous_id", "phone"):
            assert f'data-identity-type="{kind}"' in html
        assert '<span class="stat-value" id="stat-orders">1</span>' in html
        assert "¥1,280.50" in html
        assert "Order Completed" in html and "Product Viewed" in html
        assert html.count(">Unmerge</button>") == 3
        assert "Reveal phone" in html

    def test_marketer_sees_the_name_masked_and_cannot_reveal_or_unmerge(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        logged_in(client, session, Role.marketer)
        pid = nancy(client, session, write_key)
        html = client.get(f"/customers/{pid}").text
        assert "王**" in html
        assert NAME not in html and PHONE not in html
        assert "Reveal phone" not in html and "Unmerge" not in html

    def test_reveal_shows_the_phone_and_is_audited(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        token = logged_in(client, session)
        pid = nancy(client, session, write_key)
        r = client.post(f"/customers/{pid}/reveal", data={"csrf_token": token})
        assert r.status_code == 200
        assert f"+86{PHONE}" in r.text and "audited" in r.text
        audit = session.execute(select(AuditLog).where(AuditLog.action == "profile.reveal")).scalar_one()
        assert audit.subject_id == pid

    def test_reveal_is_refused_to_a_marketer(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        token = logged_in(client, session, Role.marketer)
        pid = nancy(client, session, write_key)
        r = client.post(f"/customers/{pid}/reveal", data={"csrf_token": token})
        assert r.status_code == 403
        assert PHONE not in r.text
        assert session.execute(select(AuditLog).where(AuditLog.action == "profile.reveal")).first() is None

    def test_store_manager_cannot_open_a_customer_of_another_store(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        mine, other = factories.store(session), factories.store(session)
        logged_in(client, session, Role.store_manager, store_id=mine.id)
        send(
            client,
            write_key,
            event("identify", userId="M-mine", traits={"name": "Mine", "home_store": mine.code}),
            event("identify", userId="M-other", traits={"name": "Other", "home_store": other.code}),
        )
        ids = {v: p for v, p in session.execute(select(Identifier.value, Identifier.profile_id))}
        assert client.get(f"/customers/{ids['M-mine']}").status_code == 200
        r = client.get(f"/customers/{ids['M-other']}")
        assert r.status_code == 404
        assert "Other" not in r.text
        assert f"/customers/{ids['M-other']}" not in client.get("/customers", params={"q": "M-other"}).text
        assert client.get(f"/customers/{ids['M-other']}/timeline").status_code == 404

    def test_unknown_profile_is_404(self, client: TestClient, session: Session) -> None:
        logged_in(client, session)
        r = client.get("/customers/999999")
        assert r.status_code == 404
        assert "profile 999999 not found" in r.text

    def test_timeline_pages_with_the_keyset_cursor(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        logged_in(client, session)
        events = [
            event(userId="M7", event=f"Step {i:02d}", timestamp=f"2026-11-01T10:{i:02d}:00Z")
            for i in range(25)
        ]
        send(client, write_key, *events)
        pid = session.execute(select(Identifier.profile_id).where(Identifier.value == "M7")).scalar_one()
        html = client.get(f"/customers/{pid}").text
        assert "Step 24" in html and "Step 05" in html and "Step 04" not in html
        assert html.index("Step 24") < html.index("Step 05")
        cursor = html.split(f"/customers/{pid}/timeline?cursor=", 1)[1].split('"', 1)[0]
        r = client.get(f"/customers/{pid}/timeline?cursor={cursor}", headers={"HX-Request": "true"})
        assert r.status_code == 200
        assert "Step 04" in r.text and "Step 00" in r.text and "Step 05" not in r.text
        assert "Load more" not in r.text
        assert client.get(f"/customers/{pid}/timeline", params={"cursor": "nonsense"}).status_code == 400

    def test_a_merged_id_shows_the_profile_it_joined(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        logged_in(client, session)
        send(client, write_key, event(anonymousId="d-1"), event(userId="M2"))
        send(client, write_key, event(userId="M2", anonymousId="d-1"))
        absorbed = session.execute(select(Profile).where(Profile.merged_into_id.is_not(None))).scalar_one()
        r = client.get(f"/customers/{absorbed.id}")
        assert r.status_code == 200
        assert f"Profile #{absorbed.id} was merged into #{absorbed.merged_into_id}" in r.text
        assert f"Merged profile #{absorbed.id} into this profile" in r.text


class TestUnmerge:
    def test_splits_the_profile_and_links_the_new_one(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        token = logged_in(client, session)
        pid = nancy(client, session, write_key)
        anon = session.execute(select(Identifier).where(Identifier.value == "device-1")).scalar_one()
        r = client.post(
            f"/customers/{pid}/unmerge",
            data={"identifier_id": anon.id, "csrf_token": token},
            follow_redirects=False,
        )
        assert (r.status_code, r.headers["location"]) == (303, f"/customers/{pid}")
        session.expire_all()
        new_id = session.get(Identifier, anon.id).profile_id  # type: ignore[union-attr]
        assert new_id != pid
        html = client.get(f"/customers/{pid}").text
        assert f'href="/customers/{new_id}">Open profile #{new_id}' in html
        assert f"Split profile #{new_id} off this profile" in html
        assert 'data-identity-type="anonymous_id"' not in html
        # The message is shown once.
        assert f"Open profile #{new_id}" not in client.get(f"/customers/{pid}").text
        split = client.get(f"/customers/{new_id}").text
        assert f"Split off from profile #{pid}" in split and 'data-identity-type="anonymous_id"' in split

    def test_hq_may_unmerge_but_a_marketer_may_not(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        token = logged_in(client, session, Role.marketer)
        pid = nancy(client, session, write_key)
        anon = session.execute(select(Identifier).where(Identifier.value == "device-1")).scalar_one()
        r = client.post(f"/customers/{pid}/unmerge", data={"identifier_id": anon.id, "csrf_token": token})
        assert r.status_code == 403
        assert "only admin and hq may unmerge" in r.text
        assert session.execute(select(IdentityMerge)).first() is None

    def test_an_identifier_of_another_profile_is_404(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        token = logged_in(client, session)
        pid = nancy(client, session, write_key)
        send(client, write_key, event(userId="M-else"))
        other = session.execute(select(Identifier).where(Identifier.value == "M-else")).scalar_one()
        for identifier_id in (other.id, 999999):
            r = client.post(
                f"/customers/{pid}/unmerge", data={"identifier_id": identifier_id, "csrf_token": token}
            )
            assert r.status_code == 404


class TestIngestion:
    def test_lists_dead_letters_with_personal_fields_masked(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        logged_in(client, session, Role.hq)
        bad = event(
            "identify", userId="M-bad", traits={"phone": "12345"}, context={"page": {"url": "x" * 300}}
        )
        body = send(client, write_key, event(userId="M-ok"), bad)
        assert body["accepted"] == 1
        r = client.get("/ingestion")
        assert r.status_code == 200
        html = r.text
        assert bad["messageId"] in html
        assert "is not a phone number" in html or "is not a valid phone number" in html
        assert "<details>" in html and "*****" in html
        assert 'id="events-chart"' in html and '"counts": [' in html
        assert '<span class="stat-value" id="total-dead">1</span>' in html
        assert "/static/vendor/echarts.min.js" in html

    def test_dead_letters_page_back_to_the_oldest(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        logged_in(client, session, Role.hq)
        bad = [{"type": "track", "userId": f"M{i}", "messageId": f"bad-{i:03d}"} for i in range(60)]
        send(client, write_key, event(userId="ok"), *bad)
        first = client.get("/ingestion").text
        assert "bad-059" in first and "bad-010" in first and "bad-009" not in first  # 50 a page, newest first
        older = re.search(r'id="dead-older" href="(/ingestion\?before=\d+)"', first)
        assert older is not None
        second = client.get(older[1]).text
        assert "bad-009" in second and "bad-000" in second and "bad-010" not in second
        assert 'id="dead-older"' not in second and 'href="/ingestion">Newest' in second

    def test_failed_batches_are_shown_and_can_be_retried_or_discarded(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        def explode(_session: Session, _events: object) -> None:
            raise RuntimeError("reactor crashed for 13812345678")

        reactors.subscribe(None, explode)
        try:
            send(client, write_key, event(userId="M1", properties={"phone": "13900001111"}))
            send(client, write_key, event(userId="M2"))
            for _ in range(4):
                processor.drain()
        finally:
            reactors.unsubscribe(explode)
        first, second = session.execute(select(QueuedBatch.id).order_by(QueuedBatch.id)).scalars()
        logged_in(client, session, Role.marketer)
        page = client.get("/ingestion").text
        assert 'id="failed-batches"' in page and "reactor crashed for 138****5678" in page
        assert "13900001111" not in page and "/retry" not in page  # a marketer looks, admin and hq act
        token = logged_in(client, session, Role.hq)
        assert f"/ingestion/failed/{first}/retry" in client.get("/ingestion").text
        r = client.post(f"/ingestion/failed/{first}/retry", data={"csrf_token": token}, follow_redirects=True)
        assert f"Batch #{first} is queued again" in r.text
        r = client.post(
            f"/ingestion/failed/{second}/discard", data={"csrf_token": token}, follow_redirects=True
        )
        assert "its 1 event(s) are kept as dead letters" in r.text and 'id="failed-batches"' not in r.text
        assert processor.drain().events == 1
        assert session.get(QueuedBatch, first) is None
        assert session.execute(select(DeadLetter.reason)).scalar_one().startswith("discarded by user:")

    @pytest.mark.parametrize("role", [Role.store_manager, Role.sales_associate, Role.regional_manager])
    def test_is_closed_to_scoped_roles(self, client: TestClient, session: Session, role: Role) -> None:
        logged_in(client, session, role)
        assert client.get("/ingestion").status_code == 403
        assert client.get("/reviews").status_code == 403
        assert 'href="/ingestion"' not in client.get("/customers").text


class TestReviews:
    def conflicting(self, client: TestClient, write_key: str) -> None:
        # One phone, two member ids: the guard refuses to merge and opens a review.
        send(client, write_key, event(userId="M-a", context={"traits": {"phone": "13900000001"}}))
        send(client, write_key, event(userId="M-b", context={"traits": {"phone": "13900000002"}}))
        send(client, write_key, event(userId="M-a", context={"traits": {"phone": "13900000002"}}))

    def test_admin_approves_a_review(self, client: TestClient, session: Session, write_key: str) -> None:
        token = logged_in(client, session)
        self.conflicting(client, write_key)
        review = session.execute(select(MergeReview)).scalar_one()
        html = client.get("/reviews").text
        assert f"/reviews/{review.id}/decide" in html
        assert "member_id M-a" in html and "phone +86139****0002" in html
        r = client.post(
            f"/reviews/{review.id}/decide",
            data={"decision": "approve", "csrf_token": token},
            follow_redirects=False,
        )
        assert (r.status_code, r.headers["location"]) == (303, "/reviews")
        page = client.get("/reviews").text
        assert f"Review #{review.id} approved" in page
        assert "Nothing to review" in page
        session.expire_all()
        assert session.get(MergeReview, review.id).status == "approved"  # type: ignore[union-attr]
        assert "approved" in client.get("/reviews", params={"status": "approved"}).text

    def test_admin_rejects_a_review(self, client: TestClient, session: Session, write_key: str) -> None:
        token = logged_in(client, session)
        self.conflicting(client, write_key)
        review = session.execute(select(MergeReview)).scalar_one()
        client.post(f"/reviews/{review.id}/decide", data={"decision": "reject", "csrf_token": token})
        session.expire_all()
        assert session.get(MergeReview, review.id).status == "rejected"  # type: ignore[union-attr]

    def test_marketer_sees_the_queue_without_buttons(
        self, client: TestClient, session: Session, write_key: str
    ) -> None:
        token = logged_in(client, session, Role.marketer)
        self.conflicting(client, write_key)
        review = session.execute(select(MergeReview)).scalar_one()
        html = client.get("/reviews").text
        assert f"#{review.profile_a_id}" in html and ">Approve<" not in html
        r = client.post(f"/reviews/{review.id}/decide", data={"decision": "approve", "csrf_token": token})
        assert r.status_code == 403
