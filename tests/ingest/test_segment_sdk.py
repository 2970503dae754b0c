"""The real Segment and RudderStack SDKs send to siyu unchanged, plain and gzipped."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client

from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.db import unit_of_work
from tests.live import fresh_database, live_server, require_backend


@pytest.mark.parametrize(
    ("backend", "sdk", "gzip"),
    [
        ("sqlite", "segment", False),
        ("sqlite", "segment", True),
        ("sqlite", "rudderstack", True),
        ("postgresql", "segment", True),
        ("postgresql", "rudderstack", False),
    ],
)
def test_python_sdk(backend: str, sdk: str, gzip: bool, tmp_path: Path) -> None:
    require_backend(backend)
    with fresh_database(backend, tmp_path) as url, live_server(url) as base:
        with unit_of_work() as session:
            _, write_key = auth_service.create_api_key(session, name="sdk", role=Role.source)
            _, admin_key = auth_service.create_api_key(session, name="admin", role=Role.admin)
        errors: list[Exception] = []
        sdk_client = RudderClient if sdk == "rudderstack" else Client
        client = sdk_client(
            write_key, host=base, sync_mode=True, gzip=gzip, on_error=lambda e, _batch: errors.append(e)
        )
        client.identify("M-SDK", {"name": "Nancy", "phone": "13800000001"}, anonymous_id="sdk-device")
        client.track("M-SDK", "Order Completed", {"order_id": "o-1", "total": 1280, "currency": "CNY"})
        client.page(anonymous_id="sdk-device", name="Qipao collection")
        client.alias("sdk-device-2", "M-SDK")
        client.flush()
        assert errors == []
        headers = {"Authorization": f"Bearer {admin_key}"}
        # The API queues; the server's ingest processor stores the events moments later.
        deadline = time.monotonic() + 20
        while True:
            r = httpx.get(
                f"{base}/api/v1/profiles/lookup",
                params={"type": "phone", "value": "13800000001"},
                headers=headers,
            )
            if (r.status_code == 200 and r.json()["counters"]["events"] == 4) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert r.status_code == 200, r.text
        profile = r.json()
        assert profile["name"] == "Nancy"
        assert profile["counters"]["events"] == 4
        assert profile["counters"]["revenue_fen"] == 128000
        assert {i["value"] for i in profile["identities"]} >= {"M-SDK", "sdk-device", "sdk-device-2"}
