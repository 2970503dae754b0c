"""`siyu demo` into a database: the organisation, the story, determinism and safe reruns (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, func, select
from sqlalchemy.orm import Session

from siyu import demo
from siyu.auth import service as auth_service
from siyu.auth.models import ApiKey, Role, User
from siyu.channels.models import ContactWay, WechatQrCode
from siyu.clienteling.models import Alert, Region, Store
from siyu.demo import org, story
from siyu.identity.models import Identifier, MergeReview
from siyu.ingest.models import DeadLetter, Event
from siyu.loyalty.models import Posting, PostingKind
from siyu.profiles.models import Profile
from tests import factories
from tests.helpers import counters_match_events

CUSTOMERS = 80


@pytest.fixture
def brand(session: Session) -> demo.DemoResult:
    return demo.run(customers=CUSTOMERS, seed=7, console=None)


def snapshot(session: Session) -> tuple[int, int, int, int]:
    """(live profiles, events, orders, revenue in fen): what the same seed must reproduce."""
    session.expire_all()
    profiles = session.execute(
        select(func.count()).select_from(Profile).where(Profile.merged_into_id.is_(None))
    ).scalar_one()
    events, orders, revenue = session.execute(
        select(
            func.count(),
            func.count().filter(Event.event == "Order Completed"),
            func.coalesce(func.sum(Event.amount_fen).filter(Event.event == "Order Completed"), 0),
        )
    ).one()
    return profiles, events, orders, int(revenue)


def lookup(client: TestClient, key: str, id_type: str, value: str, expect: int = 200) -> dict[str, Any]:
    r = client.get(
        "/api/v1/profiles/lookup", params={"type": id_type, "value": value}, headers=factories.auth(key)
    )
    assert r.status_code == expect, r.text
    body: dict[str, Any] = r.json()
    return body


def timeline(client: TestClient, key: str, profile_id: int) -> list[dict[str, Any]]:
    r = client.get(
        f"/api/v1/profiles/{profile_id}/timeline", params={"limit": 500}, headers=factories.auth(key)
    )
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


class TestRun:
    def test_creates_the_organisation_and_the_customers(
        self, brand: demo.DemoResult, session: Session
    ) -> None:
        assert session.execute(select(func.count()).select_from(Region)).scalar_one() == len(org.REGIONS)
        assert session.execute(select(func.count()).select_from(Store)).scalar_one() == len(org.STORES)
        advisors = session.execute(
            select(Store.code, func.count(User.id))
            .join(User, User.store_id == Store.id)
            .where(User.role == Role.sales_associate, User.wecom_userid.is_not(None))
            .group_by(Store.code)
        ).all()
        assert len(advisors) == len(org.STORES)
        assert all(2 <= n <= 4 for _, n in advisors)
        roles = dict(session.execute(select(User.role, func.count()).group_by(User.role)).all())
        assert roles[Role.store_manager] == len(org.STORES)
        assert roles[Role.regional_manager] == len(org.REGIONS)
        assert roles[Role.hq] == roles[Role.marketer] == roles[Role.admin] == 1
        _, events, orders, revenue = snapshot(session)
        assert brand.customers == CUSTOMERS
        assert brand.events == events > CUSTOMERS
        assert brand.duplicates == 0
        assert orders > 0 and revenue > 0
        assert session.execute(select(func.count()).select_from(DeadLetter)).scalar_one() == 0
        counters_match_events(session)
        # The demo's "x2 on qipao" earning rule fires on the catalogue's qipao ("Qipao/Evening", ...).
        details = session.execute(select(Posting.detail).where(Posting.kind == PostingKind.earn)).scalars()
        assert any("category:qipao" in d.get("boosted", ()) for d in details)

    def test_the_printed_login_and_keys_work(
        self, brand: demo.DemoResult, session: Session, client: TestClient
    ) -> None:
        admin = auth_service.authenticate(session, brand.admin_username, brand.admin_password)
        assert admin is not None and admin.role == Role.admin
        assert lookup(client, brand.api_key, "member_id", story.NANCY_MEMBER_ID)["name"] == story.NANCY_NAME
        r = client.post(
            "/v1/track",
            auth=(brand.write_key, ""),
            json={
                "userId": story.NANCY_MEMBER_ID,
                "event": "Product Viewed",
                "properties": {"product_id": "QP-001"},
            },
        )
        assert r.status_code == 200, r.text

    def test_the_same_seed_gives_the_same_brand(self, session: Session) -> None:
        connection = session.connection()
        assert isinstance(connection, Connection)
        # Each run inside a savepoint that is rolled back, so every run starts from an empty database.
        outcomes = []
        for seed in (3, 3, 4):
            savepoint = connection.begin_nested()
            demo.run(customers=60, seed=seed, console=None)
            outcomes.append(snapshot(session))
            savepoint.rollback()
            assert snapshot(session) == (0, 0, 0, 0)
        first, again, other = outcomes
        assert first == again
        assert first != other


class TestStory:
    def test_nancy_is_a_first_time_buyer_found_by_phone(
        self, brand: demo.DemoResult, client: TestClient
    ) -> None:
        nancy = lookup(client, brand.api_key, "phone", story.NANCY_PHONE)
        assert nancy["name"] == story.NANCY_NAME
        assert nancy["counters"]["orders"] == 1
        assert nancy["counters"]["revenue_fen"] == round(story.NANCY_PRODUCT.price * 0.9 * 100)
        ids = {(i["type"], i["value"]) for i in nancy["identities"]}
        assert {
            ("member_id", story.NANCY_MEMBER_ID),
            ("wechat_openid", story.NANCY_OA_OPENID),
            ("wechat_openid", story.NANCY_MP_OPENID),
            ("wechat_unionid", story.NANCY_UNIONID),
            ("wecom_external_userid", story.NANCY_WECOM_ID),
            ("anonymous_id", story.NANCY_DEVICE),
        } <= ids
        for id_type, value in [
            ("member_id", story.NANCY_MEMBER_ID),
            ("wechat_openid", story.NANCY_OA_OPENID),
            ("anonymous_id", story.NANCY_DEVICE),
        ]:
            assert lookup(client, brand.api_key, id_type, value)["id"] == nancy["id"]

        events = timeline(client, brand.api_key, nancy["id"])
        names = [e["event"] for e in reversed(events) if e["type"] == "track"]
        # Window before the visit (follows, favourites), then joins, refers Lizzy, buys, is thanked.
        assert names.index("Official Account Followed") < names.index("Product Added to Wishlist")
        assert names.index("Product Added to Wishlist") < names.index("Membership Joined")
        assert (
            names.index("Membership Joined") < names.index("Referral Sent") < names.index("Order Completed")
        )
        assert names.index("Order Completed") < names.index("Template Message Sent")
        joined = next(e for e in events if e["event"] == "Membership Joined")
        assert joined["properties"]["welcome_discount"] == 0.1
        order = next(e for e in events if e["event"] == "Order Completed")
        assert order["properties"]["coupon"] == "WELCOME10"
        assert order["properties"]["discount"] == story.NANCY_PRODUCT.price * 0.1
        referral = next(e for e in events if e["event"] == "Referral Sent")
        assert referral["properties"]["reward"]["amount"] == 20

    def test_nancy_belongs_to_her_advisor_and_store(
        self, brand: demo.DemoResult, session: Session, client: TestClient
    ) -> None:
        advisor = session.execute(select(User).where(User.wecom_userid == org.STORY_ADVISOR)).scalar_one()
        store = session.execute(select(Store).where(Store.code == org.STORY_STORE)).scalar_one()
        nancy = lookup(client, brand.api_key, "member_id", story.NANCY_MEMBER_ID)
        assert (nancy["owner_user_id"], nancy["store_id"]) == (advisor.id, store.id)
        # Scoping: her advisor finds her; an advisor of another store does not.
        own_key = factories.api_key(session, Role.sales_associate, user=advisor)
        assert lookup(client, own_key, "member_id", story.NANCY_MEMBER_ID)["id"] == nancy["id"]
        other = session.execute(
            select(User).where(User.role == Role.sales_associate, User.store_id != store.id).limit(1)
        ).scalar_one()
        other_key = factories.api_key(session, Role.sales_associate, user=other)
        lookup(client, other_key, "member_id", story.NANCY_MEMBER_ID, expect=404)

    def test_lizzy_follows_without_joining_or_buying(
        self, brand: demo.DemoResult, client: TestClient
    ) -> None:
        lizzy = lookup(client, brand.api_key, "wechat_openid", story.LIZZY_OA_OPENID)
        nancy = lookup(client, brand.api_key, "member_id", story.NANCY_MEMBER_ID)
        assert lizzy["id"] != nancy["id"]
        assert lizzy["counters"]["orders"] == 0
        assert {i["type"] for i in lizzy["identities"]} == {"wechat_openid", "wechat_unionid"}
        events = timeline(client, brand.api_key, lizzy["id"])
        followed = [e for e in events if e["event"] == "Official Account Followed"]
        assert len(followed) == 1
        assert followed[0]["properties"]["source"] == "qr_code"
        assert followed[0]["properties"]["qr_scene"] == f"store:{org.STORY_STORE}"
        assert not any(e["event"] in ("Membership Joined", "Order Completed") for e in events)

    def test_the_store_codes_and_contact_codes_count_what_came_through_them(
        self, brand: demo.DemoResult, session: Session
    ) -> None:
        """As the callbacks attribute follows and adds: the channels report shows the demo's, not zeros."""
        follows = session.execute(
            select(func.sum(WechatQrCode.follows)).join(Store, Store.id == WechatQrCode.store_id)
        ).scalar_one()
        followed_by_store = session.execute(
            select(func.count()).where(
                Event.event == "Official Account Followed",
                Event.properties["qr_scene"].as_string().like("store:%"),
            )
        ).scalar_one()
        assert follows == followed_by_store > 0
        adds = session.execute(select(func.sum(ContactWay.adds))).scalar_one()
        added = session.execute(select(func.count()).where(Event.event == "WeCom Contact Added")).scalar_one()
        assert adds == added > 0

    def test_the_programme_of_the_seeds_runs_on_the_demo(
        self, brand: demo.DemoResult, client: TestClient, session: Session
    ) -> None:
        """Nancy: member with her invite code, the welcome voucher, points from her purchase (qipao x2)."""
        headers = factories.auth(brand.api_key)
        nancy = lookup(client, brand.api_key, "member_id", story.NANCY_MEMBER_ID)
        member = client.get(f"/api/v1/loyalty/members/{nancy['id']}", headers=headers).json()
        assert member["invite_code"] == story.REFERRAL_CODE and member["tier"] in ("Silk", "Brocade", "Kesi")
        assert member["balance"] > 0 and member["pending"] == 0  # released by the demo's worker pass
        vouchers = client.get(f"/api/v1/loyalty/members/{nancy['id']}/vouchers", headers=headers).json()
        assert any(v["status"] == "issued" for v in vouchers)  # the 10 % welcome voucher
        referrals = client.get(f"/api/v1/loyalty/members/{nancy['id']}/referrals", headers=headers).json()
        # Lizzy followed with Nancy's code but did not join: the referral waits, nobody is rewarded yet.
        assert referrals["stats"] == {"pending": 1, "rewarded": 0, "rejected": 0}
        rules = client.get("/api/v1/loyalty/rules", headers=headers).json()
        assert {r["name"] for r in rules} >= {
            "First Mini Program visit",
            "Membership Day x2",
            "Share to Win Credits",
        }
        from siyu.loyalty import service as loyalty_service
        from siyu.loyalty.models import Member

        for member_id in session.execute(select(Member.id)).scalars():
            assert loyalty_service.verify(session, member_id) == []

    def test_the_demo_s_followers_and_contacts_can_be_messaged(
        self, brand: demo.DemoResult, session: Session
    ) -> None:
        """The accounts' pushes say which account they came from, so reach follows them as it does live."""
        from siyu.channels.models import ChannelAccount
        from siyu.messaging.models import Message, Reach

        reach = dict(
            session.execute(
                select(ChannelAccount.kind, func.count())
                .join(Reach, Reach.account_id == ChannelAccount.id)
                .where(Reach.reachable)
                .group_by(ChannelAccount.kind)
            ).all()
        )
        assert reach.get("oa", 0) > 0 and reach.get("wecom", 0) > 0
        # Every reachable openid is a follower's identifier: one the reach reactor took from a push.
        unmatched = session.execute(
            select(func.count())
            .select_from(Reach)
            .outerjoin(Identifier, (Identifier.value == Reach.address) & (Identifier.type == Reach.id_type))
            .where(Identifier.id.is_(None))
        ).scalar_one()
        assert unmatched == 0
        # A message to reachable followers finds their openids (quiet hours off: the clock must not decide).
        from siyu.config import get_settings
        from siyu.messaging import service as messaging

        followers = session.execute(
            select(Identifier.profile_id)
            .join(Reach, (Reach.address == Identifier.value) & (Reach.id_type == Identifier.type))
            .join(ChannelAccount, ChannelAccount.id == Reach.account_id)
            .where(Reach.reachable, ChannelAccount.kind == "oa")
            .order_by(Identifier.profile_id)
            .limit(10)
        ).scalars()
        template = messaging.get_template_by_name(session, "Welcome — personalised")
        assert template is not None
        requests = [messaging.Request(pid, f"reach-test:{pid}") for pid in followers]
        settings = get_settings().model_copy(update={"quiet_hours": ""})
        outcomes = messaging.queue(session, template, requests, settings=settings)
        assert "no_recipient" not in {o.rule for o in outcomes}
        assert any(o.status == "queued" for o in outcomes)
        assert session.execute(select(func.count()).select_from(Message)).scalar_one() >= len(requests)


class TestRerun:
    def test_a_rerun_reuses_the_organisation_and_stores_nothing_twice(
        self, brand: demo.DemoResult, session: Session
    ) -> None:
        before = snapshot(session)
        users = session.execute(select(func.count()).select_from(User)).scalar_one()
        again = demo.run(customers=CUSTOMERS, seed=7, console=None)
        assert snapshot(session) == before
        assert again.events == brand.events
        assert again.duplicates == again.events
        assert session.execute(select(func.count()).select_from(User)).scalar_one() == users
        # The new password is the one that works; the old one no longer does.
        assert auth_service.authenticate(session, "admin", again.admin_password) is not None
        assert auth_service.authenticate(session, "admin", brand.admin_password) is None
        names = session.execute(select(ApiKey.name)).scalars().all()
        assert names.count(demo.WRITE_KEY_NAME) == 2

    def test_more_customers_later_only_adds_the_new_ones(
        self, brand: demo.DemoResult, session: Session
    ) -> None:
        more = demo.run(customers=CUSTOMERS + 20, seed=7, console=None)
        assert more.duplicates == brand.events
        assert snapshot(session)[1] == more.events


class TestIdentityRealism:
    def test_shared_tablets_stop_linking_and_marketplace_buyers_are_found_by_phone(
        self, session: Session
    ) -> None:
        result = demo.run(customers=600, seed=7, console=None)
        assert snapshot(session)[1] == result.events
        tablets = session.execute(
            select(Identifier.value, Identifier.shared).where(Identifier.value.like("tablet-%"))
        ).all()
        assert any(shared for _, shared in tablets)
        # The members who used a tablet before the guard tripped wait for review instead of merging.
        reasons = session.execute(select(MergeReview.reason)).scalars().all()
        assert reasons and all("member_id" in r or "phone" in r for r in reasons)
        # A Tmall buyer id stitched to a phone number: a marketplace buyer found by phone.
        tmall_profiles = select(Identifier.profile_id).where(Identifier.type == "tmall_buyer_id")
        found = session.execute(
            select(func.count()).where(Identifier.type == "phone", Identifier.profile_id.in_(tmall_profiles))
        ).scalar_one()
        assert found > 0
        counters_match_events(session)


def test_customers_who_delete_their_advisor_alert_the_advisor_and_the_manager(
    session: Session, brand: demo.DemoResult
) -> None:
    """The demo's "My work" is not empty: a few customers deleted their advisor on WeCom last month."""
    deleted = session.execute(select(Event).where(Event.event == "WeCom Contact Deleted")).scalars().all()
    assert deleted, "the demo has churn"
    alerts = session.execute(select(Alert)).scalars().all()
    for ev in deleted:
        advisor = session.execute(
            select(User).where(User.wecom_userid == ev.properties["associate"])
        ).scalar_one()
        told = {a.user_id for a in alerts if a.profile_id == ev.profile_id}
        managers = session.execute(
            select(User.id).where(User.store_id == advisor.store_id, User.role == Role.store_manager)
        ).scalars()
        assert {advisor.id, *managers} <= told
