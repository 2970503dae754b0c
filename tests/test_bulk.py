"""bulk: column IN values as one parameter, and many tables' rows written at once, on both databases."""

from __future__ import annotations

import datetime as dt

import orjson
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.identity.models import Identifier
from siyu.loyalty.models import Lot, Member, Posting
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


def test_among_is_bound_at_execution(session: Session) -> None:
    ids = _profiles(session, 3)
    postgres = session.get_bind().dialect.name == "postgresql"
    statement = select(Profile.id).where(bulk.among(Profile.id, "ids", postgres=postgres))
    for wanted in ([ids[0]], [ids[1], ids[2]], []):
        value = bulk.among_value(Profile.id, wanted, postgres=postgres)
        assert sorted(session.execute(statement, {"ids": value}).scalars()) == sorted(wanted)


def test_write_inserts_parents_and_children_and_updates_in_one_go(session: Session) -> None:
    (pid,) = _profiles(session, 1)

    now = dt.datetime(2026, 5, 1, 8, 30, 15, 123456, tzinfo=dt.UTC)
    member = Member(profile_id=pid, member_number="B1", balance=0, pending=0, debt=0, joined_at=now)
    session.add(member)
    session.flush()
    ids = bulk.allocate_ids_many(session, {"loyalty_postings": 2, "loyalty_lots": 1, "loyalty_lot_draws": 0})
    assert len(set(ids["loyalty_postings"])) == 2 and len(ids["loyalty_lots"]) == 1
    assert ids["loyalty_lot_draws"] == []
    p1, p2 = ids["loyalty_postings"]
    (lot_id,) = ids["loyalty_lots"]
    posting_columns: bulk.Columns = (
        ("id", "int"),
        ("member_id", "int"),
        ("kind", "text"),
        ("points", "int"),
        ("balance_change", "int"),
        ("balance_after", "int"),
        ("idempotency_key", "text"),
        ("reason", "text"),
        ("actor", "text"),
        ("detail", "json"),
        ("created_at", "ts"),
    )
    bulk.write(
        session,
        [
            bulk.Rows(
                "loyalty_postings",
                posting_columns,
                [
                    (p1, member.id, "earn", 10, 10, 10, "w1", 'a "quoted" 王', "t", {"n": [1, 2]}, now),
                    (p2, member.id, "earn", 5, 5, 15, "w2", "", "t", {}, now),
                ],
            ),
            bulk.Rows(
                "loyalty_lots",
                (
                    ("id", "int"),
                    ("member_id", "int"),
                    ("posting_id", "int"),
                    ("points", "int"),
                    ("remaining", "int"),
                    ("earned_at", "ts"),
                    ("expires_at", "ts"),
                ),
                [(lot_id, member.id, p1, 10, 10, now, now + dt.timedelta(days=30))],
            ),
            bulk.Rows("loyalty_members", (("id", "int"), ("balance", "int")), [(member.id, 15)], key="id"),
            bulk.Rows(
                "loyalty_lots", (("id", "int"), ("remaining", "int")), [], key="id"
            ),  # nothing: skipped
        ],
    )
    session.expire_all()
    first = session.get(Posting, p1)
    assert first is not None
    assert (first.reason, first.detail, first.created_at) == ('a "quoted" 王', {"n": [1, 2]}, now)
    lot = session.get(Lot, lot_id)
    assert lot is not None and (lot.posting_id, lot.expires_at) == (p1, now + dt.timedelta(days=30))
    assert session.get(Member, member.id).balance == 15  # type: ignore[union-attr]


def test_fetch_reads_times_in_utc_whatever_the_session_time_zone(session: Session) -> None:
    (pid,) = _profiles(session, 1)
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        session.execute(text("SET LOCAL TIME ZONE 'Asia/Shanghai'"))
    statement = select(Profile.id, Profile.created_at).where(bulk.among(Profile.id, "ids", postgres=postgres))
    (row,) = bulk.fetch(session, statement, {"ids": bulk.among_value(Profile.id, [pid], postgres=postgres)})
    assert row.id == pid
    assert row.created_at == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert row.created_at.utcoffset() == dt.timedelta(0)


def test_updates_reach_their_rows_through_the_key_not_a_scan_of_the_table(session: Session) -> None:
    # PostgreSQL guesses 100 records for json_to_recordset; joined to them, a table of a few thousand
    # rows was scanned whole for every update (a posting group's lots, an ingest batch's profiles).
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite updates row by row through the primary key (executemany)
    ids = _profiles(session, 5000)
    session.execute(text("ANALYZE profiles"))
    columns: bulk.Columns = (("id", "int"), ("name", "text"))
    document = orjson.dumps([{"id": pid, "name": "renamed"} for pid in ids[:3]]).decode()
    statement = "EXPLAIN " + bulk._pg_update("profiles", "id", columns, "d")
    plan = "\n".join(row[0] for row in bulk.driver_connection(session).execute(statement, {"d": document}))
    assert "Index Scan using pk_profiles" in plan and "Seq Scan on profiles" not in plan, plan
    bulk.update_rows(session, "profiles", (("name", "text"),), [(ids[0], "renamed"), (ids[1], "again")])
    rows = session.execute(select(Profile.id, Profile.name).where(Profile.id.in_(ids[:3]))).all()
    assert {pid: name for pid, name in rows} == {ids[0]: "renamed", ids[1]: "again", ids[2]: "P2"}


def test_statements_joined_to_json_records_are_planned_at_every_call(session: Session) -> None:
    # psycopg prepares a statement it has run five times; PostgreSQL then keeps one generic plan for it,
    # chosen while the tables were small, and a posting group's write went on scanning whole tables.
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite plans each statement it is given
    ids = _profiles(session, 3)
    for n in range(8):
        bulk.write(
            session, [bulk.Rows("profiles", (("id", "int"), ("name", "text")), [(ids[0], f"w{n}")], "id")]
        )
        bulk.update_rows(session, "profiles", (("name", "text"),), [(ids[1], f"u{n}")])
        bulk.repoint(session, "profiles", "merged_into_id", [(10**12 + n, ids[2])])
    prepared = session.execute(text("SELECT statement FROM pg_prepared_statements")).scalars().all()
    assert not [sql for sql in prepared if "json_to_recordset" in sql], prepared
    rows = session.execute(select(Profile.id, Profile.name).where(Profile.id.in_(ids[:2]))).all()
    assert {pid: name for pid, name in rows} == {ids[0]: "w7", ids[1]: "u7"}
