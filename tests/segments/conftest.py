"""A small population with every kind of data a rule can test, sent through the real ingest API."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from siyu.profiles import service as profiles_service
from tests import factories
from tests.factories import event
from tests.helpers import Api

AS_OF = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def ago(days: float) -> str:
    return (AS_OF - dt.timedelta(days=days)).isoformat()


@dataclass
class Population:
    api: Api
    ids: dict[str, int]

    def names(self, profile_ids: list[int] | set[int]) -> set[str]:
        by_id = {v: k for k, v in self.ids.items()}
        return {by_id[i] for i in profile_ids}


@pytest.fixture
def population(client: TestClient, session: Session) -> Population:
    """amy, bea, cai, dan, eve: see the events below; eve is only an anonymous visitor."""
    api = Api(client, session)
    store = factories.store(session, code="SH01", region_code="EAST")
    owner = factories.user(session)
    api.send(
        event(
            "identify", userId="amy", traits={"city": "Shanghai", "age": 28, "vip": True}, timestamp=ago(40)
        ),
        event(userId="amy", event="Official Account Followed", timestamp=ago(10)),
        event(
            userId="amy",
            event="Product Viewed",
            properties={"category": "qipao", "price": 1280},
            timestamp=ago(3),
        ),
        event(
            userId="amy",
            event="Product Viewed",
            properties={"category": "qipao", "price": 980},
            timestamp=ago(2),
        ),
        event(
            "identify",
            userId="bea",
            traits={"city": "Beijing", "age": 41, "phone": "13800138000"},
            timestamp=ago(400),
        ),
        event(userId="bea", event="Official Account Followed", timestamp=ago(300)),
        event(
            userId="bea",
            event="Product Viewed",
            properties={"category": "qipao", "price": 1280},
            timestamp=ago(5),
        ),
        event(
            userId="bea",
            event="Order Completed",
            properties={"order_id": "B1", "total": 500},
            timestamp=ago(40),
        ),
        event("identify", userId="cai", traits={"age": 35, "home_store": "SH01"}, timestamp=ago(200)),
        event(
            userId="cai",
            event="Order Completed",
            properties={"order_id": "C1", "total": 100},
            timestamp=ago(200),
        ),
        event(
            userId="cai",
            event="Order Completed",
            properties={"order_id": "C2", "total": 900},
            timestamp=ago(20),
        ),
        event("identify", userId="dan", traits={"city": "Shanghai"}, timestamp=ago(1)),
        event(userId="dan", event="Consent Granted", properties={"purpose": "marketing"}, timestamp=ago(30)),
        event(userId="dan", event="Consent Withdrawn", properties={"purpose": "marketing"}, timestamp=ago(1)),
        event(
            anonymousId="eve-device",
            event="Product Viewed",
            properties={"category": "shoes"},
            timestamp=ago(1),
        ),
    )
    ids = {name: int(api.lookup("member_id", name)["id"]) for name in ("amy", "bea", "cai", "dan")}
    ids["eve"] = int(api.lookup("anonymous_id", "eve-device")["id"])
    profiles_service.add_tag(session, ids["amy"], "hi-po")
    profiles_service.add_tag(session, ids["dan"], "hi-po")
    from siyu.profiles.models import Profile

    session.get_one(Profile, ids["dan"]).owner_user_id = owner.id
    assert session.get_one(Profile, ids["cai"]).store_id == store.id
    session.flush()
    return Population(api, ids)
