"""A segment's CSV streamed by a real server: the database is free again once the download ends."""

from __future__ import annotations

from pathlib import Path

import httpx

from siyu import db
from siyu.auth import service as auth_service
from siyu.auth.models import Role
from tests.live import fresh_database, live_server


def test_downloading_a_segment_leaves_the_database_writable(tmp_path: Path) -> None:
    with fresh_database("sqlite", tmp_path) as url, live_server(url) as base:
        with db.unit_of_work() as session:
            _, admin = auth_service.create_api_key(session, name="admin", role=Role.admin)
        headers = {"Authorization": f"Bearer {admin}"}
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            made = client.post(
                "/api/v1/segments", json={"name": "everyone", "rule": {"trait": "x", "op": "missing"}}
            )
            assert made.status_code == 201, made.text
            csv = client.get(f"/api/v1/segments/{made.json()['id']}/export.csv")
            assert csv.status_code == 200 and csv.text.startswith("profile_id,entered_at")
            # Before, the stream's session kept SQLite's write lock: every write then waited 30 s and failed.
            again = client.post(
                "/api/v1/segments", json={"name": "again", "rule": {"trait": "y", "op": "missing"}}
            )
            assert again.status_code == 201, again.text
