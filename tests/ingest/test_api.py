"""The Segment-compatible ingest API: auth, limits, bad input, idempotency, atomicity."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import zlib
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.auth.models import AuditLog, Role
from siyu.identity.models import Identifier
from siyu.ingest import processor, reactors
from siyu.ingest.models import DeadLetter, Event, QueuedBatch
from siyu.profiles import service as profiles_service
from siyu.profiles.models import Profile
from tests import factories
from tests.factories import event
from tests.helpers import Api


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def count(session: Session, model: type) -> int:
    return session.execute(select(func.count()).select_from(model)).scalar_one()


class TestAuth:
    def test_basic_auth_username_is_the_write_key(self, api: Api, client: TestClient) -> None:
        token = base64.b64encode(f"{api.write_key}:".encode()).decode()
        r = client.post("/v1/track", json=event(userId="M1"), headers={"Authorization": f"Basic {token}"})
        assert r.status_code == 200 and r.json()["accepted"] == 1

    def test_bearer_token(self, api: Api, client: TestClient) -> None:
        r = client.post("/v1/track", json=event(userId="M1"), headers=factories.auth(api.write_key))
        assert r.status_code == 200

    def test_missing_write_key(self, client: TestClient, session: Session) -> None:
        r = client.post("/v1/batch", json={"batch": [event(userId="M1")]})
        assert r.status_code == 401
        assert "write key" in r.json()["error"]
        assert r.headers["www-authenticate"].startswith("Basic")
        assert count(session, Event) == 0

    def test_unknown_write_key(self, client: TestClient) -> None:
        r = client.post("/v1/batch", json={"batch": [event(userId="M1")]}, auth=("sy_nope", ""))
        assert r.status_code == 401

    def test_read_only_role_cannot_write(self, client: TestClient, session: Session) -> None:
        key = factories.api_key(session, Role.marketer)
        r = client.post("/v1/batch", json={"batch": [event(userId="M1")]}, auth=(key, ""))
        assert r.status_code == 403

    def test_source_key_cannot_read_profiles(self, api: Api, client: TestClient) -> None:
        api.send(event(userId="M1"))
        r = client.get(
            "/api/v1/profiles/lookup?type=member_id&value=M1", headers=factories.auth(api.write_key)
        )
        assert r.status_code == 403


class TestIdempotency:
    def test_same_message_id_twice_is_stored_once(self, api: Api, session: Session) -> None:
        ev = event(userId="M1", event="Order Completed", properties={"total": 100})
        assert api.send(ev)["accepted"] == 1
        again = api.send(ev)
        assert again == {"success": True, "accepted": 0, "duplicates": 1, "errors": []}
        assert count(session, Event) == 1
        assert api.lookup("member_id", "M1")["counters"]["orders"] == 1

    def test_duplicate_inside_one_batch(self, api: Api, session: Session) -> None:
        ev = event(userId="M1")
        body = api.send(ev, ev, event(userId="M1"))
        assert (body["accepted"], body["duplicates"]) == (2, 1)

    def test_event_without_message_id_is_deduplicated_by_content(self, api: Api, session: Session) -> None:
        ev = event(userId="M1")
        del ev["messageId"]
        api.send(ev)
        assert api.send(ev)["duplicates"] == 1
        assert count(session, Event) == 1


class TestCompressedBodies:
    """Segment's and RudderStack's SDKs gzip their batches; some HTTP clients deflate."""

    def post(self, client: TestClient, key: str, body: bytes, encoding: str, path: str = "/v1/batch") -> Any:
        headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
        return client.post(path, content=body, auth=(key, ""), headers=headers)

    @pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw"])
    def test_compressed_batch_is_stored(self, encoding: str, api: Api, client: TestClient) -> None:
        raw = orjson.dumps({"batch": [event(userId="M1"), event(userId="M2")]})
        if encoding == "gzip":
            body = gzip.compress(raw)
        elif encoding == "deflate":
            body = zlib.compress(raw)
        else:
            squeezer = zlib.compressobj(wbits=-15)
            body, encoding = squeezer.compress(raw) + squeezer.flush(), "deflate"
        r = self.post(client, api.write_key, body, encoding)
        assert r.status_code == 200 and r.json()["accepted"] == 2, r.text
        processor.drain()
        assert api.lookup("member_id", "M2")["counters"]["events"] == 1

    def test_gzip_single_event_endpoint(self, api: Api, client: TestClient) -> None:
        r = self.post(
            client, api.write_key, gzip.compress(orjson.dumps(event(userId="M1"))), "gzip", "/v1/track"
        )
        assert r.status_code == 200 and r.json()["accepted"] == 1

    def test_corrupt_gzip_is_400_and_stores_nothing(
        self, api: Api, client: TestClient, session: Session
    ) -> None:
        r = self.post(client, api.write_key, b'{"batch": []}', "gzip")
        assert (
            r.status_code == 400
            and r.json()["error"] == "Content-Encoding gzip: the body is not valid gzip data"
        )
        truncated = gzip.compress(orjson.dumps({"batch": [event(userId="M1")]}))[:-12]
        r = self.post(client, api.write_key, truncated, "gzip")
        assert r.status_code == 400 and "truncated" in r.json()["error"]
        assert count(session, DeadLetter) == 0 and count(session, QueuedBatch) == 0

    def test_gzip_bomb_is_413(self, api: Api, client: TestClient, session: Session) -> None:
        # 20 KB on the wire, 20 MB inflated: the limit applies to what the body becomes.
        bomb = gzip.compress(b'{"batch": [' + b" " * 20_000_000 + b"]}")
        assert len(bomb) < 100_000
        r = self.post(client, api.write_key, bomb, "gzip")
        assert (
            r.status_code == 413 and r.json()["error"] == "batch is over the 500 KB limit once decompressed"
        )
        assert count(session, QueuedBatch) == 0

    def test_unknown_encoding_is_415(self, api: Api, client: TestClient) -> None:
        r = self.post(client, api.write_key, b"{}", "br")
        assert r.status_code == 415 and "'br' is not supported" in r.json()["error"]


class TestBadInput:
    def test_malformed_json_is_400_and_kept(self, api: Api, client: TestClient, session: Session) -> None:
        r = client.post(
            "/v1/batch",
            content=b'{"batch": [{"type": "track",',
            auth=(api.write_key, ""),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code == 400 and r.json()["error"].startswith("malformed JSON")
        dead = session.execute(select(DeadLetter)).scalar_one()
        assert dead.payload == '{"batch": [{"type": "track",'

    def test_batch_without_batch_array(self, api: Api, client: TestClient) -> None:
        r = client.post("/v1/batch", json={"events": []}, auth=(api.write_key, ""))
        assert r.status_code == 400 and "batch" in r.json()["error"]

    def test_oversized_batch_is_413(self, api: Api, client: TestClient, session: Session) -> None:
        big = [event(userId=f"M{i}", properties={"pad": "x" * 2000}) for i in range(300)]
        r = client.post("/v1/batch", json={"batch": big}, auth=(api.write_key, ""))
        assert r.status_code == 413 and "500 KB" in r.json()["error"]
        assert count(session, Event) == 0

    def test_oversized_event_is_rejected_alone(self, api: Api, session: Session) -> None:
        body = api.send(event(userId="M1"), event(userId="M2", properties={"pad": "x" * 33_000}))
        assert body["accepted"] == 1
        assert body["errors"][0]["index"] == 1 and "32 KB" in body["errors"][0]["reason"]

    def test_oversized_single_event_endpoint_is_413(self, api: Api, client: TestClient) -> None:
        r = client.post(
            "/v1/track", json=event(userId="M1", properties={"pad": "x" * 33_000}), auth=(api.write_key, "")
        )
        assert r.status_code == 413

    @pytest.mark.parametrize(
        ("bad", "reason"),
        [
            ({"type": "track", "userId": "M1"}, "event: a track call needs a non-empty event name"),
            ({"type": "track", "event": 5, "userId": "M1"}, "event: must be a string, got a number"),
            ({"type": "group", "userId": "M1", "traits": {"name": "VIP"}}, "groupId: a group call needs"),
            ({"type": "explode", "userId": "M1"}, "type: must be one of"),
            ({"type": "track", "event": "X", "userId": {"id": 1}}, "userId: must be a string"),
            ({"type": "track", "event": "X"}, "userId, anonymousId: the event names nobody"),
            (
                {"type": "track", "event": "X", "userId": "M", "timestamp": "yesterday"},
                "timestamp: 'yesterday' is not",
            ),
            (
                {"type": "track", "event": "X", "userId": "M", "properties": [1]},
                "properties: must be an object",
            ),
            (
                {
                    "type": "track",
                    "event": "X",
                    "userId": "M",
                    "context": {"externalIds": [{"id": "1", "type": "fax"}]},
                },
                "context.externalIds[0].type: unknown identifier type 'fax'",
            ),
            (
                {
                    "type": "track",
                    "event": "X",
                    "userId": "M",
                    "context": {"externalIds": [{"type": "jd_buyer_id"}]},
                },
                "context.externalIds[0].id: must be a non-empty string",
            ),
            (
                {"type": "identify", "userId": "M", "traits": {"phone": "12345"}},
                "traits.phone: '12345' is not a valid phone number",
            ),
            (
                {"type": "track", "event": "Order Completed", "userId": "M", "properties": {"total": -5}},
                "properties.total: must be a non-negative number",
            ),
            (
                {"type": "track", "event": "Order Completed", "userId": "M", "properties": {"total": 1e17}},
                "properties.total: 1e+17 is more than the 100,000,000 yuan one order may be",
            ),
            (
                {"type": "track", "event": "X", "userId": "M", "timestamp": "2099-01-01T00:00:00Z"},
                "timestamp: '2099-01-01T00:00:00Z' is in the future",
            ),
            (
                {"type": "track", "event": "X", "userId": "M", "timestamp": "0001-01-01T00:00:00+08:00"},
                "timestamp: '0001-01-01T00:00:00+08:00' is out of range",
            ),
            (
                {"type": "track", "event": "X", "userId": "M", "timestamp": "1970-01-01T00:00:00Z"},
                "timestamp: '1970-01-01T00:00:00Z' is before 2000-01-01",
            ),
            (
                {
                    "type": "track",
                    "event": "X",
                    "userId": "M",
                    "timestamp": "0001-01-01T00:00:00Z",
                    "sentAt": "9999-12-31T00:00:00Z",
                },
                "timestamp: '0001-01-01T00:00:00Z' is before 2000-01-01",
            ),
            (
                {"type": "track", "event": "X", "userId": "M", "messageId": " "},
                "messageId: must be a non-empty string, got an empty one",
            ),
            (
                {"type": "identify", "userId": "M", "traits": {"home_store": ["SH01", "BJ01"]}},
                "traits.home_store: must be a store code (a string), got an array",
            ),
            (
                {
                    "type": "track",
                    "event": "Order Completed",
                    "userId": "M",
                    "properties": {"order_id": 1.5e22},
                },
                "properties.order_id: 1.5e+22 is not a whole number that fits 64 bits",
            ),
            ({"type": "alias", "userId": "M"}, "previousId and userId"),
            ("just a string", "event must be a JSON object"),
        ],
    )
    def test_invalid_event_is_answered_with_index_and_reason(
        self, api: Api, session: Session, bad: object, reason: str
    ) -> None:
        good = event(userId="OK")
        body = api.send(good, bad, good | {"messageId": "other"})  # type: ignore[arg-type]
        assert body["accepted"] == 2
        assert len(body["errors"]) == 1
        assert body["errors"][0]["index"] == 1
        assert body["errors"][0]["reason"].startswith(reason), body["errors"][0]["reason"]
        dead = session.execute(select(DeadLetter)).scalar_one()
        assert dead.batch_index == 1 and dead.reason == body["errors"][0]["reason"]

    def test_a_device_clock_that_is_off_is_corrected_with_sent_at(self, api: Api, session: Session) -> None:
        """As Segment does: timestamp and sentAt are off by the same amount, the server's clock is not."""
        now = dt.datetime.now(dt.UTC)
        wrong = now + dt.timedelta(hours=30)  # a phone set a day and six hours ahead
        sent = event(
            userId="M1",
            timestamp=(wrong - dt.timedelta(minutes=10)).isoformat(),
            sentAt=wrong.isoformat(),
        )
        assert api.send(sent)["accepted"] == 1
        stored = session.execute(select(Event.timestamp)).scalar_one().replace(tzinfo=dt.UTC)
        assert abs(stored - (now - dt.timedelta(minutes=10))) < dt.timedelta(minutes=1)
        # Batch-level sentAt, as the SDKs send it, counts for every event of the batch.
        r = api.client.post(
            "/v1/batch",
            json={"batch": [event(userId="M2", timestamp=wrong.isoformat())], "sentAt": wrong.isoformat()},
            auth=(api.write_key, ""),
        )
        assert r.json()["accepted"] == 1, r.text
        # sentAt is only a hint: one that is not a time is ignored, and the event is kept.
        assert api.send(event(userId="M3", sentAt=12345))["accepted"] == 1
        # Nor is a sentAt of year 1 (an unset clock) a reason to move a good timestamp out of range.
        assert api.send(event(userId="M4", sentAt="0001-01-01T00:00:00Z"))["accepted"] == 1

    def test_all_invalid_is_400(self, api: Api) -> None:
        body = api.send({"type": "track", "userId": "M"}, expect=400)
        assert body["accepted"] == 0 and body["errors"][0]["index"] == 0

    def test_single_event_endpoint_rejects_other_type(self, api: Api, client: TestClient) -> None:
        r = client.post(
            "/v1/identify", json={"type": "track", "event": "X", "userId": "M"}, auth=(api.write_key, "")
        )
        assert r.status_code == 400 and "identify" in r.json()["error"]


class TestNormalisation:
    def test_mainland_phone_without_country_code(self, api: Api) -> None:
        api.send(event("identify", userId="M1", traits={"phone": "138 0000 0001"}))
        assert api.lookup("phone", "+8613800000001")["id"] == api.lookup("phone", "13800000001")["id"]

    def test_external_ids_of_every_builtin_type(self, api: Api) -> None:
        types = [
            "wechat_openid",
            "wechat_unionid",
            "wecom_external_userid",
            "tmall_buyer_id",
            "jd_buyer_id",
            "pos_card",
        ]
        ctx = {
            "externalIds": [
                {"id": f"{t}-1", "type": t, "encoding": "none", "collection": "users"} for t in types
            ]
        }
        api.send(event(anonymousId="a", context=ctx))
        p = api.lookup("pos_card", "pos_card-1")
        assert {i["type"] for i in p["identities"]} == {*types, "anonymous_id"}

    def test_order_amount_and_batch_context(self, api: Api, client: TestClient) -> None:
        body = {
            "batch": [
                event(
                    event="Order Completed", userId="M1", properties={"total": "1280.50", "currency": "CNY"}
                )
            ],
            "context": {"traits": {"phone": "13800000001"}},
        }
        r = client.post("/v1/batch", json=body, auth=(api.write_key, ""))
        assert r.status_code == 200
        processor.drain()
        p = api.lookup("phone", "13800000001")
        assert p["counters"]["revenue_fen"] == 128050 and p["counters"]["orders"] == 1

    def test_refunds_never_take_back_more_than_the_order_brought_in(self, api: Api, session: Session) -> None:
        def order(name: str, order_id: str, total: float, day: int) -> dict[str, Any]:
            return event(
                userId="R1",
                event=name,
                properties={"order_id": order_id, "total": total},
                timestamp=f"2026-11-{day:02d}T10:00:00Z",
            )

        api.send(order("Order Completed", "A", 300, 1), order("Order Refunded", "A", 100, 2))
        # Refunded twice over (a retry under a new id, a typo): only what is left of the order counts.
        api.send(order("Order Refunded", "A", 500, 3))
        # An order siyu never saw (a marketplace order not imported) is refunded as sent.
        api.send(order("Order Refunded", "TMALL-9", 80, 4))
        counters = api.lookup("member_id", "R1")["counters"]
        assert (counters["revenue_fen"], counters["refunded_fen"]) == (30000, 30000 + 8000)
        capped = session.execute(
            select(Event.amount_fen, Event.properties).where(
                Event.timestamp == dt.datetime(2026, 11, 3, 10, tzinfo=dt.UTC)
            )
        ).one()
        assert capped.amount_fen == 20000 and capped.properties["siyu_refund_capped_from_fen"] == 50000
        # Rebuilding the counters from the events gives the same answer.
        pid = api.lookup("member_id", "R1")["id"]
        profiles_service.recompute(session, [pid])
        session.flush()
        assert api.lookup("member_id", "R1")["counters"]["refunded_fen"] == 38000

    def test_every_single_event_endpoint(self, api: Api, client: TestClient) -> None:
        for path, ev in [
            ("track", {"event": "Product Viewed", "anonymousId": "a"}),
            ("identify", {"userId": "M1", "anonymousId": "a", "traits": {"name": "南希"}}),
            ("page", {"anonymousId": "a", "name": "Home"}),
            ("screen", {"anonymousId": "a", "name": "Cart"}),
            ("alias", {"previousId": "a", "userId": "M1"}),
            ("group", {"userId": "M1", "groupId": "vip", "traits": {"name": "VIP"}}),
        ]:
            r = client.post(f"/v1/{path}", json=ev, auth=(api.write_key, ""))
            assert r.status_code == 200, (path, r.text)
        processor.drain()
        p = api.lookup("member_id", "M1")
        assert p["counters"]["events"] == 6 and p["name"] == "南希"


def stats(api: Api) -> dict[str, Any]:
    r = api.client.get("/api/v1/ingest/stats", headers=factories.auth(api.admin_key))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


class TestQueue:
    def test_accepted_events_wait_in_the_queue_until_the_processor_stores_them(
        self, api: Api, session: Session
    ) -> None:
        body = api.send(event(userId="M1"), event(userId="M1", anonymousId="a1"), drain=False)
        assert body["accepted"] == 2
        assert count(session, Event) == 0
        assert (stats(api)["queued_events"], stats(api)["events"]) == (2, 0)
        api.lookup("member_id", "M1", expect=404)
        assert processor.drain().events == 2
        assert (stats(api)["queued_events"], stats(api)["events"]) == (2 - 2, 2)
        assert api.lookup("anonymous_id", "a1")["counters"]["events"] == 2

    def test_a_repeat_of_a_still_queued_event_is_stored_once(self, api: Api, session: Session) -> None:
        ev = event(userId="M1", event="Order Completed", properties={"total": 10})
        api.send(ev, drain=False)
        assert api.send(ev, drain=False)["accepted"] == 1  # not stored yet: the API cannot know
        drained = processor.drain()
        assert (drained.events, drained.duplicates) == (1, 1)
        assert api.lookup("member_id", "M1")["counters"]["orders"] == 1


class TestAtomicity:
    def test_a_crash_mid_batch_leaves_nothing_and_loses_nothing(self, api: Api, session: Session) -> None:
        def explode(_session: Session, _events: object) -> None:
            raise RuntimeError("reactor crashed")

        reactors.subscribe(None, explode)
        try:
            body = api.send(event(userId="M1"), event(anonymousId="a1"), event(userId="M1", anonymousId="a1"))
        finally:
            reactors.unsubscribe(explode)
        assert body["accepted"] == 3
        assert (count(session, Event), count(session, Identifier), count(session, Profile)) == (0, 0, 0)
        queued = session.execute(select(QueuedBatch)).scalar_one()
        assert (queued.status, queued.attempts) == ("pending", 1)
        assert "reactor crashed" in (queued.last_error or "")
        # Once the fault is gone the queued batch goes through whole.
        assert processor.drain().events == 3
        assert (count(session, Event), count(session, QueuedBatch)) == (3, 0)
        assert api.lookup("anonymous_id", "a1")["counters"]["events"] == 3

    def test_a_batch_that_keeps_failing_is_parked_not_dropped(self, api: Api, session: Session) -> None:
        def explode(_session: Session, _events: object) -> None:
            raise RuntimeError("reactor crashed")

        reactors.subscribe(None, explode)
        try:
            api.send(event(userId="M1"))
            for _ in range(5):
                processor.drain()
        finally:
            reactors.unsubscribe(explode)
        queued = session.execute(select(QueuedBatch)).scalar_one()
        assert (queued.status, queued.attempts) == ("failed", 5)
        assert stats(api)["failed_batches"] == 1
        # Parked batches no longer hold up the queue.
        assert api.send(event(userId="M2"))["accepted"] == 1
        assert api.lookup("member_id", "M2")["counters"]["events"] == 1
        assert count(session, Event) == 1

    def test_one_event_that_keeps_failing_does_not_hold_back_its_batch(
        self, api: Api, client: TestClient, session: Session
    ) -> None:
        """The batch is split, the valid events are stored, the bad one is parked for retry or discard."""

        def explode(_session: Session, events: Any) -> None:
            if any(e.properties.get("poison") for e in events):
                raise RuntimeError("reactor crashed on 13812345678")

        reactors.subscribe(None, explode)
        try:
            bad = event(userId="M2", properties={"poison": True, "phone": "13812345678"})
            api.send(event(userId="M1"), bad, event(userId="M3"))
            for _ in range(5):
                processor.drain()
            # Five failures of the whole batch split it; its valid events go through at once.
            assert count(session, Event) == 2 and count(session, QueuedBatch) == 1
            for _ in range(5):
                processor.drain()
        finally:
            reactors.unsubscribe(explode)
        assert sorted(session.execute(select(Event.user_id)).scalars()) == ["M1", "M3"]
        parked = session.execute(select(QueuedBatch)).scalar_one()
        assert (parked.status, parked.attempts, parked.event_count) == ("failed", 5, 1)

        hq, marketer = (factories.auth(factories.api_key(session, r)) for r in (Role.hq, Role.marketer))
        [listed] = client.get("/api/v1/ingest/failed-batches", headers=marketer).json()
        assert listed["id"] == parked.id and "reactor crashed on 138****5678" in listed["last_error"]
        assert bad["messageId"] in listed["events"] and "13812345678" not in listed["events"]
        # Only admin and hq act on it; retry puts it back with fresh attempts.
        assert (
            client.post(f"/api/v1/ingest/failed-batches/{parked.id}/retry", headers=marketer).status_code
            == 403
        )
        assert client.post(f"/api/v1/ingest/failed-batches/{parked.id}/retry", headers=hq).status_code == 202
        session.refresh(parked)
        assert (parked.status, parked.attempts) == ("pending", 0)
        assert client.post(f"/api/v1/ingest/failed-batches/{parked.id}/retry", headers=hq).status_code == 404
        # Once the fault is gone, it is stored like any other event.
        assert processor.drain().events == 1
        assert count(session, Event) == 3 and count(session, QueuedBatch) == 0
        actions = session.execute(select(AuditLog.action)).scalars().all()
        assert "ingest.failed.retry" in actions

    def test_a_discarded_batch_becomes_dead_letters(
        self, api: Api, client: TestClient, session: Session
    ) -> None:
        def explode(_session: Session, _events: object) -> None:
            raise RuntimeError("reactor crashed")

        reactors.subscribe(None, explode)
        try:
            sent = event(userId="M1")
            api.send(sent)
            for _ in range(5):
                processor.drain()
        finally:
            reactors.unsubscribe(explode)
        parked = session.execute(select(QueuedBatch)).scalar_one()
        admin = factories.auth(api.admin_key)
        r = client.post(f"/api/v1/ingest/failed-batches/{parked.id}/discard", headers=admin)
        assert r.status_code == 200 and r.json()["dead_letters"] == 1
        letter = session.execute(select(DeadLetter)).scalar_one()
        assert letter.message_id == sent["messageId"]
        assert letter.reason.startswith("discarded by ") and "reactor crashed" in letter.reason
        assert count(session, QueuedBatch) == 0


class TestDeadLettersApi:
    """Refused bodies hold personal data: the monitoring API masks it as the 360 does (PIPL)."""

    BODY = (
        b'{"batch": [{"type": "identify", "userId": "M1", "traits": {"phone": "13812345678", "name": "Wang"'
    )

    def refuse(self, api: Api, client: TestClient) -> None:
        r = client.post("/v1/batch", content=self.BODY, auth=(api.write_key, ""))
        assert r.status_code == 400

    def test_masked_for_every_role_and_names_for_marketers(
        self, api: Api, client: TestClient, session: Session
    ) -> None:
        self.refuse(api, client)
        marketer = factories.api_key(session, Role.marketer)
        for key, name in ((api.admin_key, '"name": "Wang"'), (marketer, '"name": "W***"')):
            r = client.get("/api/v1/ingest/dead-letters", headers=factories.auth(key))
            assert r.status_code == 200, r.text
            (letter,) = r.json()
            assert "13812345678" not in letter["payload"] and "138****5678" in letter["payload"]
            assert name in letter["payload"]

    def test_reveal_is_for_admin_and_audited(self, api: Api, client: TestClient, session: Session) -> None:
        self.refuse(api, client)
        marketer = factories.api_key(session, Role.marketer)
        r = client.get("/api/v1/ingest/dead-letters?reveal=true", headers=factories.auth(marketer))
        assert r.status_code == 403
        assert session.execute(select(AuditLog)).scalars().all() == []
        r = client.get("/api/v1/ingest/dead-letters?reveal=true", headers=factories.auth(api.admin_key))
        assert r.status_code == 200 and r.json()[0]["payload"] == self.BODY.decode()
        log = session.execute(select(AuditLog)).scalar_one()
        assert log.action == "dead_letters.reveal" and log.detail == {"ids": [r.json()[0]["id"]]}
