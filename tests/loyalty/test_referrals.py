"""Referrals (seed 001): Nancy invites Lizzy, both get a 20 RMB voucher when Lizzy joins; guards and caps."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.loyalty import service, vouchers
from tests import factories
from tests.factories import event
from tests.helpers import Api


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def setup_programme(api: Api, trigger: str = "sign_up", cap: int = 10) -> dict[str, Any]:
    headers = factories.auth(api.admin_key)
    template = api.client.post(
        "/api/v1/loyalty/voucher-templates",
        json={"name": "20 RMB for the next purchase", "kind": "amount_off", "value": 2000},
        headers=headers,
    ).json()
    r = api.client.post(
        "/api/v1/loyalty/referral-program",
        json={
            "name": "Invite a friend",
            "trigger": trigger,
            "referrer_template_id": template["id"],
            "friend_template_id": template["id"],
            "cap_per_30_days": cap,
        },
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def join(api: Api, member: str, at: str, **props: Any) -> int:
    api.send(event(userId=member, event="Membership Joined", properties=props, timestamp=at))
    return int(api.lookup("member_id", member)["id"])


def referrals_of(api: Api, profile_id: int) -> dict[str, Any]:
    r = api.client.get(
        f"/api/v1/loyalty/members/{profile_id}/referrals", headers=factories.auth(api.admin_key)
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def voucher_count(session: Session, profile_id: int) -> int:
    member = service.get_member_by_profile_or_raise(session, profile_id)
    return len(vouchers.member_vouchers(session, member.id))


def test_both_get_20_rmb_when_the_friend_joins(api: Api, session: Session) -> None:
    setup_programme(api)
    nancy = join(api, "NANCY", "2026-10-24T11:25:00+08:00")
    code = referrals_of(api, nancy)["invite_code"]
    assert code and len(code) == 8
    lizzy = join(api, "LIZZY", "2026-10-25T20:00:00+08:00", referral_code=code.lower())
    assert voucher_count(session, nancy) == 1 and voucher_count(session, lizzy) == 1
    tree = referrals_of(api, nancy)
    assert tree["stats"] == {"pending": 0, "rewarded": 1, "rejected": 0}
    assert [(f["profile_id"], f["status"]) for f in tree["friends"]] == [(lizzy, "rewarded")]
    # Lizzy invites her own friend: the tree grows under Nancy.
    lizzy_code = referrals_of(api, lizzy)["invite_code"]
    third = join(api, "MEI", "2026-10-27T20:00:00+08:00", referral_code=lizzy_code)
    assert [f["profile_id"] for f in referrals_of(api, nancy)["friends"][0]["friends"]] == [third]
    # A replay of Lizzy's sign-up changes nothing.
    api.send(
        event(
            userId="LIZZY",
            event="Membership Joined",
            properties={"referral_code": code},
            timestamp="2026-10-25T20:00:01+08:00",
        )
    )
    assert voucher_count(session, nancy) == 1


def test_reward_on_first_purchase(api: Api, session: Session) -> None:
    setup_programme(api, trigger="first_purchase")
    nancy = join(api, "N2", "2026-10-01T10:00:00+08:00")
    code = referrals_of(api, nancy)["invite_code"]
    friend = join(api, "F2", "2026-10-02T10:00:00+08:00", referral_code=code)
    assert voucher_count(session, nancy) == 0 and referrals_of(api, nancy)["stats"]["pending"] == 1
    api.send(
        event(
            userId="F2",
            event="Order Completed",
            properties={"order_id": "F2-1", "total": 300},
            timestamp="2026-10-05T10:00:00+08:00",
        )
    )
    assert voucher_count(session, nancy) == 1 and voucher_count(session, friend) == 1


def test_a_friend_who_joins_and_buys_in_one_batch_is_rewarded(api: Api, session: Session) -> None:
    # The reactor looks the batch's pending referrals up once: one recorded by the batch itself counts.
    setup_programme(api, trigger="first_purchase")
    nancy = join(api, "N3", "2026-10-01T10:00:00+08:00")
    code = referrals_of(api, nancy)["invite_code"]
    api.send(
        event(
            userId="F3",
            event="Membership Joined",
            properties={"referral_code": code},
            timestamp="2026-10-02T10:00:00+08:00",
        ),
        event(
            userId="F3",
            event="Order Completed",
            properties={"order_id": "F3-1", "total": 300},
            timestamp="2026-10-02T10:05:00+08:00",
        ),
    )
    friend = int(api.lookup("member_id", "F3")["id"])
    assert voucher_count(session, nancy) == 1 and voucher_count(session, friend) == 1
    assert referrals_of(api, nancy)["stats"]["pending"] == 0


def test_guards(api: Api, session: Session) -> None:
    setup_programme(api, cap=1)
    nancy = join(api, "N3", "2026-10-01T10:00:00+08:00")
    code = referrals_of(api, nancy)["invite_code"]
    # Her own sign-up link, sent to herself: self-referral.
    api.send(
        event(
            userId="N3",
            event="Mini Program Opened",
            properties={"referral_code": code},
            timestamp="2026-10-01T11:00:00+08:00",
        )
    )
    # A friend who was already a member.
    join(api, "OLD", "2026-01-01T10:00:00+08:00")
    api.send(
        event(
            userId="OLD",
            event="Mini Program Opened",
            properties={"referral_code": code},
            timestamp="2026-10-02T11:00:00+08:00",
        )
    )
    # A "friend" on Nancy's own phone (the identity guard keeps the two member ids apart, the referral
    # guard sees the shared device).
    api.send(
        event(
            userId="N3",
            anonymousId="nancy-phone",
            event="Product Viewed",
            timestamp="2026-10-02T12:00:00+08:00",
        )
    )
    api.send(
        event(
            userId="ALT0",
            anonymousId="nancy-phone",
            event="Membership Joined",
            properties={"referral_code": code},
            timestamp="2026-10-02T13:00:00+08:00",
        )
    )
    # A real friend on her own phone.
    api.send(
        event(
            userId="ALT",
            anonymousId="friend-phone",
            event="Membership Joined",
            properties={"referral_code": code},
            timestamp="2026-10-03T12:00:00+08:00",
        )
    )
    session.expire_all()
    reasons = sorted(f["reason"] for f in referrals_of(api, nancy)["friends"] if f["status"] == "rejected")
    assert len(reasons) == 3
    assert reasons[0].startswith("same device") and reasons[1].startswith("self-referral")
    assert reasons[2].startswith("the friend was already a member (M")
    stats = referrals_of(api, nancy)["stats"]
    assert stats["rejected"] == 3 and stats["rewarded"] == 1  # ALT, on her own device: rewarded
    # The cap: one reward in 30 days.
    join(api, "F4", "2026-10-04T10:00:00+08:00", referral_code=code)
    friends = referrals_of(api, nancy)["friends"]
    capped = [f for f in friends if "cap" in f["reason"]]
    assert len(capped) == 1 and voucher_count(session, nancy) == 1
