"""bulk.matches: column IN values as one parameter, on both databases, whatever the values hold."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.identity.models import Identifier
from siyu.profiles.models import Profile

AWKWARD = ["plain", 'a "quoted" one', "back\\slash", "comma, brace {x}", "NULL", "", "王小明 🌸", 'x\\"y']


def _profiles(session: Session, n: int) -> list[int]:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = [Profile(name=f"P{i}", traits={}, created_at=now, updated_at=now) for i in range(n)]
    session.add_all(rows)
    session.flush()
    return [p.id for p in rows]


def test_matches_finds_exactly_the_listed_ids(session: Session) -> None:
    ids = _profiles(session, 5)
    wanted = [ids[0], ids[3], 10**12]  # an id no profile has matches nothing
    found = session.execute(select(Profile.id).where(bulk.matches(session, Profile.id, wanted))).scalars()
    assert sorted(found) == [ids[0], ids[3]]
    assert session.execute(select(Profile.id).where(bulk.matches(session, Profile.id, []))).all() == []


def test_matches_takes_text_with_quotes_backslashes_commas_and_braces(session: Session) -> None:
    (pid,) = _profiles(session, 1)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    for value in AWKWARD:
        session.add(
            Identifier(type="member_id", value=value, profile_id=pid, first_seen_at=now, last_seen_at=now)
        )
    session.add(
        Identifier(
            type="member_id", value="not asked for", profile_id=pid, first_seen_at=now, last_seen_at=now
        )
    )
    session.flush()
    found = session.execute(
        select(Identifier.value).where(bulk.matches(session, Identifier.value, AWKWARD))
    ).scalars()
    assert sorted(found) == sorted(AWKWARD)
    # Two lists in one statement are two parameters.
    both = session.execute(
        select(Identifier.value).where(
            bulk.matches(session, Identifier.value, AWKWARD[:3]),
            bulk.matches(session, Identifier.profile_id, [pid]),
        )
    ).scalars()
    assert sorted(both) == sorted(AWKWARD[:3])
