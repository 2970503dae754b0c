from fastapi.testclient import TestClient

from tests import factories


def test_batch_then_lookup(client: TestClient, session) -> None:
    write = factories.api_key(session, factories.Role.source)
    admin = factories.api_key(session)
    r = client.post(
        "/v1/batch",
        json={
            "batch": [
                factories.event("identify", userId="M1", traits={"name": "Nancy", "phone": "13812345678"})
            ]
        },
        headers=factories.auth(write),
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 1
    r = client.get(
        "/api/v1/profiles/lookup",
        params={"type": "phone", "value": "13812345678"},
        headers=factories.auth(admin),
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Nancy"
