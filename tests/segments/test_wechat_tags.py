"""A segment mirrored as an Official Account user tag, against the local fake WeChat API (not WeChat)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu import db
from siyu.channels.fake import FakeState
from siyu.outbox import service as outbox
from siyu.profiles import service as profiles_service
from siyu.segments import wechat_tags
from siyu.segments.models import WechatTagLink
from tests import factories
from tests.channels.wechat import oa_account, wecom_account
from tests.factories import event
from tests.helpers import Api


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def follower(openid: str) -> dict[str, object]:
    return event(
        anonymousId=f"dev-{openid}",
        event="Official Account Followed",
        context={"externalIds": [{"id": openid, "type": "wechat_openid"}]},
    )


def tagged(fake: FakeState, name: str) -> set[str]:
    [tag] = [t for t in fake.tags.values() if t["name"] == name]
    return set(tag["openids"])


def test_members_follow_onto_the_wechat_tag(api: Api, session: Session, fake: FakeState) -> None:
    oa_account(session)
    api.send(follower("o-amy"), follower("o-bea"), follower("o-cai"))
    headers = factories.auth(api.admin_key)
    ids = {o: int(api.lookup("wechat_openid", o)["id"]) for o in ("o-amy", "o-bea", "o-cai")}
    for o in ("o-amy", "o-bea"):
        profiles_service.add_tag(session, ids[o], "vip")
    seg = api.client.post(
        "/api/v1/segments", json={"name": "VIP followers", "rule": {"tag": "vip"}}, headers=headers
    ).json()
    r = api.client.put(
        f"/api/v1/segments/{seg['id']}/wechat-tag", json={"account": "tos-oa"}, headers=headers
    )
    assert r.status_code == 202 and r.json()["tag_id"] is None
    outbox.run_once(db.get_sessionmaker())
    assert tagged(fake, "VIP followers") == {"o-amy", "o-bea"}
    # Bea leaves the segment, Cai joins: the next sync untags one and tags the other, 50 per call at most.
    api.client.delete(f"/api/v1/profiles/{ids['o-bea']}/tags/vip", headers=headers)
    api.client.post(f"/api/v1/profiles/{ids['o-cai']}/tags", json={"name": "vip"}, headers=headers)
    outbox.run_once(db.get_sessionmaker())
    assert tagged(fake, "VIP followers") == {"o-amy", "o-cai"}
    calls = [c for c in fake.calls if c.startswith("tags/")]
    assert calls.count("tags/create") == 1
    body = api.client.get(f"/api/v1/segments/{seg['id']}/wechat-tags", headers=headers).json()
    assert body[0]["tagged"] == 2 and body[0]["tag_id"] == next(iter(fake.tags))
    # Deleting the segment removes the link (the tag stays on WeChat, untouched).
    assert api.client.delete(f"/api/v1/segments/{seg['id']}", headers=headers).status_code == 204
    assert wechat_tags.links(session, seg["id"]) == []


def test_a_tag_created_by_a_failed_sync_is_found_again(api: Api, session: Session, fake: FakeState) -> None:
    account = oa_account(session)
    api.send(follower("o-dee"))
    segment_id = api.client.post(
        "/api/v1/segments",
        json={"name": "Followers", "rule": {"identifier": "wechat_openid"}},
        headers=factories.auth(api.admin_key),
    ).json()["id"]
    link = WechatTagLink(segment_id=segment_id, account_id=account.id, tag_name="Followers")
    session.add(link)
    session.flush()
    fake.tags[100] = {
        "name": "Followers",
        "openids": set(),
    }  # created on WeChat by a sync that then rolled back
    wechat_tags.sync(session, {"link_id": link.id})
    assert link.tag_id == 100 and tagged(fake, "Followers") == {"o-dee"}


def test_only_official_accounts_have_user_tags(api: Api, session: Session) -> None:
    wecom_account(session)
    seg = api.client.post(
        "/api/v1/segments", json={"name": "S", "rule": {"tag": "x"}}, headers=factories.auth(api.admin_key)
    ).json()
    r = api.client.put(
        f"/api/v1/segments/{seg['id']}/wechat-tag",
        json={"account": "tos-wecom"},
        headers=factories.auth(api.admin_key),
    )
    assert r.status_code == 400 and "not an Official Account" in r.json()["detail"]
