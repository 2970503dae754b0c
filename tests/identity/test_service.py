"""Identity resolution: stitching, guards, merges, unmerge — through the real ingest API."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.config import get_settings
from siyu.identity.models import BlockedLink, IdentityLink, MergeReview
from siyu.ingest.models import Event
from tests import factories
from tests.factories import event
from tests.helpers import Api, counters_match_events


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def openid(value: str) -> dict[str, object]:
    return {"externalIds": [{"id": value, "type": "wechat_openid"}]}


class TestStitching:
    def test_identifiers_in_one_event_make_one_profile(self, api: Api) -> None:
        api.send(event(userId="M1", context={**openid("o1"), "traits": {"phone": "13800000001"}}))
        by_member = api.lookup("member_id", "M1")
        assert api.lookup("wechat_openid", "o1")["id"] == by_member["id"]
        assert api.lookup("phone", "+8613800000001")["id"] == by_member["id"]
        types = {i["type"] for i in by_member["identities"]}
        assert types == {"member_id", "wechat_openid", "phone"}

    def test_separate_people_stay_separate(self, api: Api) -> None:
        api.send(event(userId="M1"), event(userId="M2"), event(anonymousId="a1"))
        ids = {api.lookup("member_id", "M1")["id"], api.lookup("member_id", "M2")["id"]}
        ids.add(api.lookup("anonymous_id", "a1")["id"])
        assert len(ids) == 3

    def test_a_later_event_joining_two_profiles_merges_them(self, api: Api, session: Session) -> None:
        api.send(event(anonymousId="device-1", event="Product Viewed"))
        api.send(event("track", userId="M1", event="Order Completed", properties={"total": 1280}))
        anon = api.lookup("anonymous_id", "device-1")["id"]
        member = api.lookup("member_id", "M1")["id"]
        assert anon != member
        api.send(event(userId="M1", anonymousId="device-1"))
        merged = api.lookup("member_id", "M1")
        assert api.lookup("anonymous_id", "device-1")["id"] == merged["id"] == min(anon, member)
        assert merged["counters"]["events"] == 3
        assert merged["counters"]["orders"] == 1
        assert merged["counters"]["revenue_fen"] == 128000
        assert [m["kind"] for m in merged["merges"]] == ["merge"]
        assert merged["merges"][0]["other_profile_id"] == max(anon, member)
        # The absorbed id still answers, with the survivor.
        assert api.profile(max(anon, member))["id"] == merged["id"]
        counters_match_events(session)

    def test_merge_inside_one_batch(self, api: Api, session: Session) -> None:
        api.send(event(userId="M1"), event(anonymousId="d1"))
        body = api.send(
            event(anonymousId="d2"),
            event(anonymousId="d1", userId="M1"),
            event(userId="M1", anonymousId="d2"),
        )
        assert body["accepted"] == 3
        p = api.lookup("member_id", "M1")
        assert {i["value"] for i in p["identities"]} == {"M1", "d1", "d2"}
        assert p["counters"]["events"] == 5
        counters_match_events(session)

    def test_alias_links_previous_anonymous_id(self, api: Api) -> None:
        api.send(event(anonymousId="anon-9", event="Product Added"))
        api.send(event("alias", userId="M9", previousId="anon-9"))
        p = api.lookup("member_id", "M9")
        assert api.lookup("anonymous_id", "anon-9")["id"] == p["id"]

    def test_links_record_event_and_rule(self, api: Api, session: Session) -> None:
        ev = event(userId="M1", anonymousId="d1")
        api.send(ev)
        link = session.execute(select(IdentityLink)).scalar_one()
        assert (link.message_id, link.rule, link.active) == (ev["messageId"], "same_event", True)


class TestGuards:
    def test_two_member_ids_are_not_merged_but_reviewed(self, api: Api, session: Session) -> None:
        api.send(event(userId="M1", context={"traits": {"phone": "13800000001"}}))
        api.send(event(userId="M2"))
        # The same phone now claimed by a different member: a conflict, not a merge.
        api.send(event(userId="M2", context={"traits": {"phone": "13800000001"}}))
        m1, m2 = api.lookup("member_id", "M1"), api.lookup("member_id", "M2")
        assert m1["id"] != m2["id"]
        review = session.execute(select(MergeReview)).scalar_one()
        assert {review.profile_a_id, review.profile_b_id} == {m1["id"], m2["id"]}
        assert "member_id" in review.reason
        # Repeating the evidence does not pile up reviews.
        api.send(event(userId="M2", context={"traits": {"phone": "13800000001"}}))
        assert session.execute(select(func.count()).select_from(MergeReview)).scalar_one() == 1

    def test_two_phones_are_not_merged(self, api: Api) -> None:
        api.send(event(anonymousId="x", context={"traits": {"phone": "13800000001"}}))
        api.send(event(anonymousId="y", context={"traits": {"phone": "13900000002"}}))
        api.send(event(anonymousId="x", context=openid("shared-openid")))
        api.send(event(anonymousId="y", context=openid("shared-openid")))
        assert api.lookup("phone", "13800000001")["id"] != api.lookup("phone", "13900000002")["id"]

    def test_approving_a_review_merges(self, api: Api, client: TestClient) -> None:
        api.send(event(userId="M1", context={"traits": {"phone": "13800000001"}}))
        api.send(event(userId="M2", context={"traits": {"phone": "13800000001"}}))
        reviews = client.get("/api/v1/identity/reviews", headers=factories.auth(api.admin_key)).json()
        assert len(reviews) == 1
        r = client.post(
            f"/api/v1/identity/reviews/{reviews[0]['id']}/approve", headers=factories.auth(api.admin_key)
        )
        assert r.status_code == 200 and r.json()["status"] == "approved"
        assert api.lookup("member_id", "M1")["id"] == api.lookup("member_id", "M2")["id"]
        again = client.post(
            f"/api/v1/identity/reviews/{reviews[0]['id']}/approve", headers=factories.auth(api.admin_key)
        )
        assert again.status_code == 409

    def test_rejecting_a_review_blocks_the_pair(self, api: Api, client: TestClient, session: Session) -> None:
        api.send(event(userId="M1", context={"traits": {"phone": "13800000001"}}))
        api.send(event(userId="M2", context={"traits": {"phone": "13800000001"}}))
        review = client.get("/api/v1/identity/reviews", headers=factories.auth(api.admin_key)).json()[0]
        r = client.post(
            f"/api/v1/identity/reviews/{review['id']}/reject", headers=factories.auth(api.admin_key)
        )
        assert r.json()["status"] == "rejected"
        assert session.execute(select(func.count()).select_from(BlockedLink)).scalar_one() == 1

    def test_source_and_marketer_cannot_decide_reviews(
        self, api: Api, client: TestClient, session: Session
    ) -> None:
        api.send(event(userId="M1", context={"traits": {"phone": "13800000001"}}))
        api.send(event(userId="M2", context={"traits": {"phone": "13800000001"}}))
        review = client.get("/api/v1/identity/reviews", headers=factories.auth(api.admin_key)).json()[0]
        marketer = factories.api_key(session, factories.Role.marketer)
        r = client.post(f"/api/v1/identity/reviews/{review['id']}/approve", headers=factories.auth(marketer))
        assert r.status_code == 403
        # Store staff do not even see the queue: it names customers of every store.
        shop = factories.store(session, "SH01")
        manager = factories.api_key(
            session, factories.Role.store_manager, store_id=shop.id, region_id=shop.region_id
        )
        r = client.get("/api/v1/identity/reviews", headers=factories.auth(manager))
        assert r.status_code == 403

    def test_shared_device_stops_linking(self, api: Api, session: Session) -> None:
        get_settings().shared_device_threshold = 3
        for i in range(1, 6):
            api.send(event(userId=f"M{i}", anonymousId="store-tablet"))
        # M1 was linked while the tablet looked personal; M2-M3 hit the member-id guard; M4 made it shared.
        tablet = session.execute(select(func.count()).select_from(MergeReview)).scalar_one()
        assert tablet <= 2
        profile = api.lookup("anonymous_id", "store-tablet")
        shared = [i for i in profile["identities"] if i["value"] == "store-tablet"][0]
        assert shared["shared"] is True
        for i in range(2, 6):
            assert api.lookup("member_id", f"M{i}")["id"] != profile["id"]
        # A shared device no longer links anyone, even a member id never seen before.
        api.send(event(userId="M-new", anonymousId="store-tablet"))
        assert api.lookup("member_id", "M-new")["id"] != profile["id"]
        counters_match_events(session)

    def test_threshold_is_a_setting(self, api: Api) -> None:
        get_settings().shared_device_threshold = 1
        api.send(event(userId="M1", anonymousId="tab"))
        api.send(event(userId="M2", anonymousId="tab"))
        ident = [i for i in api.lookup("anonymous_id", "tab")["identities"] if i["value"] == "tab"][0]
        assert ident["shared"] is True


class TestUnmerge:
    def _wrongly_merged(self, api: Api) -> tuple[int, dict[str, object]]:
        """Nancy (member, phone) and Lizzy (openid, her own device) joined through a shared device id."""
        api.send(
            event("identify", userId="NANCY", traits={"name": "Nancy", "phone": "13800000001"}),
            event(userId="NANCY", event="Order Completed", properties={"total": 1000}),
            event(anonymousId="lizzy-phone", context=openid("o-lizzy"), event="Official Account Followed"),
        )
        api.send(event(anonymousId="family-ipad", userId="NANCY", event="Product Viewed"))
        api.send(event(anonymousId="family-ipad", context=openid("o-lizzy"), event="Product Added"))
        merged = api.lookup("member_id", "NANCY")
        assert api.lookup("wechat_openid", "o-lizzy")["id"] == merged["id"]
        return merged["id"], merged

    def test_unmerge_splits_what_was_linked_only_through_the_identifier(
        self, api: Api, session: Session
    ) -> None:
        pid, before = self._wrongly_merged(api)
        assert before["counters"]["events"] == 5
        result = api.unmerge(pid, "wechat_openid", "o-lizzy")
        assert result["profile_id"] == pid
        nancy = api.lookup("member_id", "NANCY")
        lizzy = api.lookup("wechat_openid", "o-lizzy")
        assert nancy["id"] == pid and lizzy["id"] == result["new_profile_id"]
        assert {i["value"] for i in lizzy["identities"]} == {"o-lizzy", "lizzy-phone"}
        assert {i["value"] for i in nancy["identities"]} == {"NANCY", "+86138****0001", "family-ipad"}
        # Events follow their primary identifier: Lizzy's follow and add-to-cart move with her.
        assert nancy["counters"]["events"] + lizzy["counters"]["events"] == 5
        assert lizzy["counters"]["events"] == 2
        assert nancy["counters"]["orders"] == 1 and lizzy["counters"]["orders"] == 0
        assert nancy["name"] == "Nancy" and lizzy["name"] is None
        assert nancy["merges"][0]["kind"] == "unmerge"
        counters_match_events(session)

    def test_unmerge_holds_against_the_same_evidence(self, api: Api) -> None:
        pid, _ = self._wrongly_merged(api)
        api.unmerge(pid, "wechat_openid", "o-lizzy")
        api.send(event(anonymousId="family-ipad", context=openid("o-lizzy"), event="Product Viewed"))
        api.send(event(userId="NANCY", context=openid("o-lizzy")))
        assert api.lookup("member_id", "NANCY")["id"] != api.lookup("wechat_openid", "o-lizzy")["id"]

    def test_unmerge_then_new_events_are_counted_once(self, api: Api, session: Session) -> None:
        pid, _ = self._wrongly_merged(api)
        api.unmerge(pid, "wechat_openid", "o-lizzy")
        api.send(event(userId="NANCY", event="Order Completed", properties={"total": 99.5}))
        api.send(event(anonymousId="lizzy-phone", event="Product Viewed"))
        assert api.lookup("member_id", "NANCY")["counters"]["revenue_fen"] == 109950
        counters_match_events(session)

    def test_unmerge_errors(self, api: Api, session: Session, client: TestClient) -> None:
        api.send(event(userId="SOLO"))
        pid = api.lookup("member_id", "SOLO")["id"]
        api.unmerge(pid, "member_id", "SOLO", expect=409)
        api.unmerge(pid, "wechat_openid", "nope", expect=404)
        api.unmerge(pid, "fax", "1", expect=400)
        sa = factories.api_key(session, factories.Role.hq)
        r = client.post(
            f"/api/v1/profiles/{pid}/unmerge", json={"type": "member_id"}, headers=factories.auth(sa)
        )
        assert r.status_code == 422 and "value" in r.json()["detail"]

    def test_unmerge_needs_admin_or_hq(self, api: Api, session: Session, client: TestClient) -> None:
        pid, _ = self._wrongly_merged(api)
        marketer = factories.api_key(session, factories.Role.marketer)
        r = client.post(
            f"/api/v1/profiles/{pid}/unmerge",
            json={"type": "wechat_openid", "value": "o-lizzy"},
            headers=factories.auth(marketer),
        )
        assert r.status_code == 403
        assert session.execute(select(func.count()).select_from(Event)).scalar_one() == 5
