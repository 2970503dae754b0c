"""The posting lane: API-key postings answered as the route answers them, committed in groups."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from siyu import db
from siyu.app import create_app
from siyu.auth.models import Role
from siyu.lanes import Answer
from siyu.loyalty import lane, service
from siyu.loyalty.lane import PostingCall, posting_writer
from siyu.loyalty.models import Member
from siyu.loyalty.schemas import PostingIn
from siyu.profiles.models import Profile
from tests import factories
from tests.lanes import HeldWriter
from tests.live import require_backend
from tests.loyalty.test_concurrency import concurrent_database


def new_member(session: Session) -> int:
    profile = Profile()
    session.add(profile)
    session.flush()
    service.enrol(session, profile.id)
    return profile.id


def new_profile(session: Session) -> int:
    profile = Profile()
    session.add(profile)
    session.flush()
    return profile.id


def scenario(client: TestClient, session: Session, keys: dict[str, str], run: str) -> list[tuple[int, Any]]:
    """Every kind of answer a posting can get, each normalised (ids and times differ between runs)."""
    pid, stranger = new_member(session), new_profile(session)
    url = f"/api/v1/loyalty/members/{pid}/postings"
    admin = factories.auth(keys["admin"])

    def post(headers: dict[str, str], key: str | None, url: str = url, **body: Any) -> tuple[int, Any]:
        extra = {"Idempotency-Key": f"{run}-{key}"} if key is not None else {}
        r = client.post(url, json=body, headers={**headers, **extra})
        return normalise(r.status_code, r.json(), r.headers, pid, stranger)

    return [
        post(admin, "k1", kind="earn", points=120, reason="welcome", order_id="O-1"),
        post(admin, "k1", kind="earn", points=120, reason="welcome", order_id="O-1"),  # a replay
        post(admin, "k2", kind="spend", points=100),
        post(admin, "k3", kind="spend", points=21),  # overdraw
        post(admin, "k4", kind="adjust", points=-5, reason="duplicate welcome"),
        post(admin, "k5", kind="adjust", points=5),  # no reason
        post(admin, "k6", kind="earn", points=0),
        post(admin, None, kind="earn", points=5),  # no Idempotency-Key
        post(admin, "k7", kind="gift", points=5),  # not a kind: 422 from FastAPI
        post(admin, "k8", kind="earn"),  # no points
        post(admin, "k2", kind="earn", points=100),  # a key used for another posting
        post(factories.auth(keys["marketer"]), "k9", kind="earn", points=5),
        post(factories.auth(keys["source"]), "k10", kind="earn", points=5),
        post(factories.auth("not-a-key"), "k11", kind="earn", points=5),
        post(factories.auth(keys["associate"]), "k12", kind="spend", points=5),  # not the SA's customer
        post(admin, "k13", f"/api/v1/loyalty/members/{stranger}/postings", kind="earn", points=5),
        post(admin, "k14", "/api/v1/loyalty/members/999999999/postings", kind="earn", points=5),
        normalise_response(
            client.post(
                url,
                content=b'{"kind": "earn", "points": 5}',
                headers={**admin, "Idempotency-Key": f"{run}-k15", "Content-Type": "text/plain"},
            ),
            pid,
            stranger,
        ),
        normalise_response(
            client.post(url, content=b"{not json", headers={**admin, "Idempotency-Key": f"{run}-k16"}),
            pid,
            stranger,
        ),
        post(admin, "k17", kind="earn", points="7"),  # a number in a string, as pydantic accepts it
        # No Content-Type: FastAPI does not read the body as JSON (422); the lane leaves it to the route.
        normalise_response(
            client.post(
                url,
                content=b'{"kind": "earn", "points": 5}',
                headers={**admin, "Idempotency-Key": f"{run}-k18"},
            ),
            pid,
            stranger,
        ),
        post(admin, "k19", kind="earn", points=5, reason="x" * 70_000),  # over the lane's 64 KiB: the route's
        post(factories.auth("not-a-key"), "k20", kind="earn", points=5, reason="x" * 70_000),
        post(admin, "k21", kind="earn", points=5, order_id="o" * 101),  # longer than the column
        post(admin, "k22", kind="earn", points=10**13),  # beyond any programme
        # A profile the caller may not read is not found, before its missing key or membership is told.
        post(factories.auth(keys["associate"]), None, kind="spend", points=5),
        post(
            factories.auth(keys["associate"]),
            "k23",
            f"/api/v1/loyalty/members/{stranger}/postings",
            kind="spend",
            points=5,
        ),
    ]


def normalise_response(r: Any, pid: int, stranger: int) -> tuple[int, Any]:
    return normalise(r.status_code, r.json(), r.headers, pid, stranger)


def normalise(status: int, body: Any, headers: Any, pid: int, stranger: int) -> tuple[int, Any]:
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in ("id", "created_at")}
        if isinstance(body.get("detail"), str):
            detail = re.sub(rf"\bprofile {pid}\b", "profile <pid>", body["detail"])
            detail = re.sub(rf"\bprofile {stranger}\b", "profile <stranger>", detail)
            body["detail"] = re.sub(r"#\d+|'(lane|route)-", "<id>", detail)
    return status, body, headers.get("www-authenticate"), headers.get("content-type")


@pytest.fixture
def keys(session: Session) -> dict[str, str]:
    return {
        "admin": factories.api_key(session, Role.admin),
        "marketer": factories.api_key(session, Role.marketer),
        "source": factories.api_key(session, Role.source),
        "associate": factories.api_key(session, Role.sales_associate),
    }


def test_the_lane_answers_as_the_route(
    session: Session, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    handled: list[int] = []
    real = lane.handle

    def counted(s: Session, calls: list[PostingCall]) -> list[Answer]:
        handled.append(len(calls))
        return real(s, calls)

    monkeypatch.setattr(lane, "handle", counted)
    app = create_app()
    # The same application without its lanes: every posting goes to the FastAPI route.
    route_only = FastAPI.build_middleware_stack(app)
    with TestClient(route_only) as client:
        expected = scenario(client, session, keys, "route")
    assert handled == []
    with TestClient(app) as client:
        answered = scenario(client, session, keys, "lane")
    assert answered == expected
    # Taken by the lane: everything but the bodies that are no posting, not JSON or over 64 KiB.
    assert len(handled) == len(expected) - 9
    statuses = [status for status, *_ in answered]
    assert statuses[:17] == [
        201,
        200,
        201,
        409,
        201,
        400,
        400,
        400,
        422,
        422,
        409,
        403,
        403,
        401,
        404,
        404,
        404,
    ]
    assert statuses[17:] == [422, 422, 201, 422, 201, 401, 422, 422, 404, 404]
    assert answered[-1][1] == {"detail": "profile <stranger> not found"}


def call(secret: str, profile_id: int, key: str | None, **body: Any) -> PostingCall:
    return PostingCall(secret, profile_id, key, PostingIn.model_validate(body))


def balance(session: Session, profile_id: int) -> int:
    session.expire_all()
    return session.execute(select(Member.balance).where(Member.profile_id == profile_id)).scalar_one()


def test_waiting_postings_share_one_transaction(
    session: Session, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pid, other, stranger = new_member(session), new_member(session), new_profile(session)
    admin = keys["admin"]
    held = HeldWriter(monkeypatch, posting_writer())
    first, rest = held.answer(
        call(admin, pid, "a", kind="earn", points=50),
        [
            call(admin, pid, "b", kind="earn", points=30),
            call(admin, pid, "b", kind="earn", points=30),  # the same key again in the group: a replay
            call(admin, pid, "c", kind="spend", points=81),  # more than 50 + 30
            call(admin, pid, "d", kind="spend", points=80),
            call(admin, other, "e", kind="earn", points=9),
            call("wrong", pid, "f", kind="earn", points=1),
            call(keys["marketer"], pid, "g", kind="earn", points=1),
            call(admin, stranger, "h", kind="earn", points=1),
            call(admin, pid, None, kind="earn", points=1),
            call(admin, other, "b", kind="earn", points=30),  # b's key for another member's posting
        ],
    )
    assert held.transactions == 2
    statuses = [first.status, *(a.status for a in rest)]
    assert statuses == [201, 201, 200, 409, 201, 201, 401, 403, 404, 400, 409]
    assert rest[0].body == rest[1].body
    # The posting the reused key made is named by its id, drawn when the group was written.
    made = orjson.loads(rest[0].body)["id"]
    assert (
        orjson.loads(rest[-1].body)["detail"] == f"Idempotency-Key 'b' was used for another posting (#{made})"
    )
    assert (balance(session, pid), balance(session, other)) == (0, 9)


def test_a_posting_that_breaks_its_group_fails_alone(
    session: Session, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = new_member(session)
    real = service.post_many

    def post_many(s: Session, ops: list[service.PostingOp], **kwargs: Any) -> Any:
        if any(op.reason == "poison" for op in ops):
            raise RuntimeError("this posting breaks the database")
        return real(s, ops, **kwargs)

    monkeypatch.setattr(service, "post_many", post_many)
    held = HeldWriter(monkeypatch, posting_writer())
    first, rest = held.answer(
        call(keys["admin"], pid, "a", kind="earn", points=5),
        [
            call(keys["admin"], pid, "b", kind="earn", points=7),
            call(keys["admin"], pid, "c", kind="earn", points=11, reason="poison"),
            call(keys["admin"], pid, "d", kind="earn", points=13),
        ],
    )
    assert [first.status, *(a.status for a in rest)] == [201, 201, 500, 201]
    assert rest[1].body == b"Internal Server Error"  # as FastAPI's stack answers an unexpected error
    assert balance(session, pid) == 5 + 7 + 13


@pytest.mark.parametrize("backend", ["postgresql", "sqlite"])
def test_simultaneous_spends_through_two_writers_never_overdraw(backend: str, tmp_path: Path) -> None:
    """Two processes' writers, 50 spends each at a balance that covers one: exactly one is posted."""
    require_backend(backend)
    with concurrent_database(backend, tmp_path):
        with db.unit_of_work() as session:
            admin = factories.api_key(session, Role.admin)
            pid = new_member(session)
            member = service.get_member_by_profile_or_raise(session, pid)
            service.earn(session, member.id, 100, key="seed")
        writers = [posting_writer(), posting_writer()]

        async def fire() -> list[Answer]:
            return list(
                await asyncio.gather(
                    *(
                        writers[i % 2].submit(call(admin, pid, f"s{i}", kind="spend", points=100))
                        for i in range(100)
                    )
                )
            )

        try:
            answers = asyncio.run(fire())
        finally:
            for writer in writers:
                writer.stop()
        assert Counter(a.status for a in answers) == Counter({201: 1, 409: 99})
        with db.get_read_sessionmaker()() as session:
            assert session.execute(select(Member.balance).where(Member.profile_id == pid)).scalar_one() == 0


def test_the_writer_replaces_a_connection_the_database_dropped(tmp_path: Path) -> None:
    """The writer keeps its connection between groups; when the server drops it, the next posting still goes in."""
    backend = "postgresql"  # a SQLite connection cannot be dropped by the database
    require_backend(backend)
    with concurrent_database(backend, tmp_path):
        with db.unit_of_work() as session:
            admin = factories.api_key(session, Role.admin)
            pid = new_member(session)
        writer = posting_writer()
        try:
            first = asyncio.run(writer.submit(call(admin, pid, "k1", kind="earn", points=10)))
            with db.get_engine().connect() as conn:  # every other session of this database: the writer's
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            second = asyncio.run(writer.submit(call(admin, pid, "k2", kind="earn", points=5)))
        finally:
            writer.stop()
        assert (first.status, second.status) == (201, 201)
        assert balance_of(pid) == 15


def balance_of(profile_id: int) -> int:
    with db.get_read_sessionmaker()() as session:
        return session.execute(select(Member.balance).where(Member.profile_id == profile_id)).scalar_one()
