"""A merge folds the absorbed profile's tags, stage and segment places into the survivor; a split re-derives both."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.db import utcnow
from siyu.lifecycle.models import LifecycleState
from siyu.profiles import service as profiles_service
from siyu.profiles.models import Profile
from siyu.segments import service
from siyu.segments.models import Segment, SegmentMember
from tests.factories import event
from tests.helpers import Api


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def members_match_size(session: Session) -> None:
    for segment in session.execute(select(Segment).execution_options(populate_existing=True)).scalars():
        n = session.execute(select(func.count()).where(SegmentMember.segment_id == segment.id)).scalar_one()
        assert segment.size == n, segment.name


def test_merge_and_unmerge(api: Api, session: Session) -> None:
    api.send(event(anonymousId="dev-1", event="Product Viewed", properties={"category": "qipao"}))
    anon = int(api.lookup("anonymous_id", "dev-1")["id"])
    api.send(event("identify", userId="m-1", traits={"name": "Mei"}))
    member = int(api.lookup("member_id", "m-1")["id"])
    profiles_service.add_tag(session, anon, "seen-at-popup")
    everyone = service.create(session, name="Everyone known or not", rule={"not": {"tag": "nobody"}})
    assert everyone.size >= 2
    # The device logs in: the two profiles are one person.
    api.send(event("identify", anonymousId="dev-1", userId="m-1"))
    survivor = int(api.lookup("member_id", "m-1")["id"])
    loser = anon if survivor == member else member
    assert session.get_one(Profile, loser).merged_into_id == survivor
    assert "seen-at-popup" in {t.name for t in profiles_service.tags(session, survivor)}
    assert session.get(LifecycleState, loser) is None
    assert session.get(SegmentMember, (everyone.id, loser)) is None
    session.refresh(everyone)
    members_match_size(session)
    # An admin splits the device off again: both profiles are staged and in the segment again.
    result = api.unmerge(survivor, "anonymous_id", "dev-1")
    new_id = result["new_profile_id"]
    assert session.get(SegmentMember, (everyone.id, new_id)) is not None
    # The split-off device is an anonymous visitor again: no stage row, and "Anonymous" in rules.
    assert (
        session.execute(select(LifecycleState.stage).where(LifecycleState.profile_id == new_id)).first()
        is None
    )
    assert new_id in service.matching(session, {"stage": "Anonymous"}, as_of=utcnow())
    members_match_size(session)
