"""Customer 360: scoping by role, masking, reveal audit, timeline paging, search."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth.models import AuditLog, Role
from siyu.loyalty import service as loyalty
from tests import factories
from tests.factories import event
from tests.helpers import Api


@pytest.fixture
def api(client: TestClient, session: Session) -> Api:
    return Api(client, session)


def get(client: TestClient, path: str, key: str, **params: object) -> object:
    return client.get(path, params=params, headers=factories.auth(key))


class TestScoping:
    def test_roles_see_only_their_customers(self, api: Api, client: TestClient, session: Session) -> None:
        shanghai, beijing = factories.store(session, "SH01"), factories.store(session, "BJ01")
        sa = factories.user(session, Role.sales_associate, store_id=shanghai.id, wecom_userid="fa_lin")
        api.send(
            event("identify", userId="SH-OWNED", traits={"home_store": "SH01", "advisor": "fa_lin"}),
            event("identify", userId="SH-OTHER", traits={"home_store": "SH01"}),
            event("identify", userId="BJ", traits={"home_store": "BJ01"}),
        )
        ids = {m: api.lookup("member_id", m)["id"] for m in ("SH-OWNED", "SH-OTHER", "BJ")}
        keys = {
            "store": factories.api_key(session, Role.store_manager, store_id=shanghai.id),
            "region": factories.api_key(session, Role.regional_manager, region_id=beijing.region_id),
            "sa": factories.api_key(session, Role.sales_associate, user=sa),
            "hq": factories.api_key(session, Role.hq),
        }
        visible = {
            who: {
                m for m, pid in ids.items() if get(client, f"/api/v1/profiles/{pid}", key).status_code == 200
            }
            for who, key in keys.items()
        }
        assert visible == {
            "store": {"SH-OWNED", "SH-OTHER"},
            "region": {"BJ"},
            "sa": {"SH-OWNED"},
            "hq": {"SH-OWNED", "SH-OTHER", "BJ"},
        }
        # Lookup and search go through the same scope.
        assert (
            get(client, "/api/v1/profiles/lookup", keys["sa"], type="member_id", value="BJ").status_code
            == 404
        )
        found = get(client, "/api/v1/profiles", keys["store"], q="BJ").json()
        assert found == []

    def test_home_store_codes_are_case_insensitive(self, api: Api, session: Session) -> None:
        shanghai = factories.store(session, "SH01")
        api.send(event("identify", userId="POS-1", traits={"home_store": "sh01 "}))
        found = api.lookup("member_id", "POS-1")
        assert (found["store_id"], found["store"]) == (shanghai.id, f"SH01 {shanghai.name}")

    def test_unknown_store_advisor_or_birthday_do_not_become_the_profiles(
        self, api: Api, session: Session
    ) -> None:
        shanghai = factories.store(session, "SH01")
        sa = factories.user(session, Role.sales_associate, store_id=shanghai.id, wecom_userid="fa_lin")
        traits = {"home_store": "SH01", "advisor": "fa_lin", "birthday": "1990-05-01"}
        api.send(event("identify", userId="REV-1", traits=traits))
        # A retired store code, a UserID nobody has, a day that does not exist: the event keeps them as
        # sent, the profile keeps what it knew, so its traits agree with its store and owner.
        api.send(
            event(
                "identify",
                userId="REV-1",
                traits={"home_store": "ZZ99", "advisor": "nobody", "birthday": "2026-13-45"},
            )
        )
        api.send(event("identify", userId="REV-1", traits={"birthday": "02-29"}))
        found = api.lookup("member_id", "REV-1")
        assert (found["store_id"], found["owner_user_id"]) == (shanghai.id, sa.id)
        assert {k: found["traits"].get(k) for k in traits} == {
            "home_store": "SH01",
            "advisor": "fa_lin",
            "birthday": "02-29",
        }

    def test_unauthenticated(self, client: TestClient) -> None:
        assert client.get("/api/v1/profiles/1").status_code == 401


class TestMasking:
    def test_phone_masked_until_revealed_and_reveal_is_audited(self, api: Api, session: Session) -> None:
        api.send(event("identify", userId="M1", traits={"name": "王小明", "phone": "13812345678"}))
        p = api.lookup("member_id", "M1")
        assert p["traits"]["phone"] == "+86138****5678"
        assert [i["value"] for i in p["identities"] if i["type"] == "phone"] == ["+86138****5678"]
        assert session.execute(select(AuditLog)).scalars().all() == []
        revealed = api.profile(p["id"], reveal="true")
        assert revealed["traits"]["phone"] == "+8613812345678" and revealed["revealed"] is True
        log = session.execute(select(AuditLog)).scalar_one()
        assert (log.action, log.subject_id) == ("profile.reveal", p["id"])

    def test_marketer_sees_masked_names_and_cannot_reveal(
        self, api: Api, client: TestClient, session: Session
    ) -> None:
        api.send(event("identify", userId="M1", traits={"name": "王小明", "phone": "13812345678"}))
        marketer = factories.api_key(session, Role.marketer)
        pid = api.lookup("member_id", "M1")["id"]
        p = get(client, f"/api/v1/profiles/{pid}", marketer).json()
        assert p["name"] == "王**"
        assert get(client, f"/api/v1/profiles/{pid}", marketer, reveal="true").status_code == 403
        # Nor can she find who has a phone or a name: the answer would unmask it. Her own keys still work.
        for q in ("13812345678", "+8613812345678", "王小明", "小明"):
            assert get(client, "/api/v1/profiles", marketer, q=q).json() == [], q
        assert [p["id"] for p in get(client, "/api/v1/profiles", marketer, q="M1").json()] == [pid]
        assert [p["id"] for p in get(client, "/api/v1/profiles", api.admin_key, q="小明").json()] == [pid]

    def test_a_track_calls_product_name_is_not_masked_a_recipients_is(
        self, api: Api, client: TestClient, session: Session
    ) -> None:
        api.send(
            event(
                userId="M1",
                event="Product Viewed",
                properties={
                    "name": "苏绣旗袍",
                    "products": [{"sku": "Q1", "name": "真丝旗袍"}],
                    "recipient": "李雷",
                },
            )
        )
        pid = api.lookup("member_id", "M1")["id"]
        item = get(
            client, f"/api/v1/profiles/{pid}/timeline", factories.api_key(session, Role.marketer)
        ).json()
        props = item["items"][0]["properties"]
        assert (props["name"], props["products"][0]["name"], props["recipient"]) == (
            "苏绣旗袍",
            "真丝旗袍",
            "李*",
        )

    def test_timeline_masks_payloads(self, api: Api, client: TestClient) -> None:
        api.send(event(userId="M1", context={"traits": {"phone": "13812345678"}}))
        pid = api.lookup("member_id", "M1")["id"]
        item = get(client, f"/api/v1/profiles/{pid}/timeline", api.admin_key).json()["items"][0]
        assert item["context"]["traits"]["phone"] == "138****5678"
        assert "13812345678" not in str(item)

    def test_personal_data_under_any_key_or_in_free_text_is_masked(
        self, api: Api, client: TestClient, session: Session
    ) -> None:
        """Brands send shipping names, notes and phones as member ids: the 360 finds them by shape too."""
        api.send(
            event(
                "identify",
                userId="13900001111",
                traits={"name": "王小明", "address": "上海市静安区南京西路1266号"},
            ),
            event(
                userId="13900001111",
                event="Order Completed",
                properties={
                    "order_id": "o1",
                    "total": 10,
                    "shipping_phone": "13812345678",
                    "shipping_name": "王小明",
                    "note": "王小明 asks to call 13812345678 or mail xm@example.com",
                },
            ),
        )
        pid = api.lookup("member_id", "13900001111")["id"]
        for who, name in ((api.admin_key, "王小明"), (factories.api_key(session, Role.marketer), "王**")):
            p = get(client, f"/api/v1/profiles/{pid}", who).json()
            assert [i["value"] for i in p["identities"] if i["type"] == "member_id"] == ["139****1111"]
            assert p["traits"]["address"] == "上海市静安区****"
            items = get(client, f"/api/v1/profiles/{pid}/timeline", who).json()["items"]
            order = next(i for i in items if i["event"] == "Order Completed")["properties"]
            assert order["shipping_phone"] == "138****5678" and order["shipping_name"] == name
            assert order["note"] == f"{name} asks to call 138****5678 or mail x***@example.com"
            assert "13900001111" not in str(items) and "13812345678" not in str(items)
        # A reveal shows the member id and the address in full, audited.
        revealed = api.profile(pid, reveal="true")
        assert revealed["traits"]["address"] == "上海市静安区南京西路1266号"
        assert "13900001111" in [i["value"] for i in revealed["identities"]]


class TestTimeline:
    def test_keyset_pages_cover_every_event_once(self, api: Api, client: TestClient) -> None:
        api.send(*[event(userId="M1", timestamp=f"2026-10-{d:02d}T08:00:00Z") for d in range(1, 13)])
        api.send(*[event(userId="M1", timestamp="2026-10-05T08:00:00Z") for _ in range(3)])  # ties
        pid = api.lookup("member_id", "M1")["id"]
        seen: list[int] = []
        stamps: list[str] = []
        cursor = None
        for _ in range(10):
            params = {"limit": 4} | ({"cursor": cursor} if cursor else {})
            page = get(client, f"/api/v1/profiles/{pid}/timeline", api.admin_key, **params).json()
            seen += [e["id"] for e in page["items"]]
            stamps += [e["timestamp"] for e in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 15
        assert stamps == sorted(stamps, reverse=True)  # newest first across pages

    def test_bad_cursor(self, api: Api, client: TestClient) -> None:
        api.send(event(userId="M1"))
        pid = api.lookup("member_id", "M1")["id"]
        r = get(client, f"/api/v1/profiles/{pid}/timeline", api.admin_key, cursor="garbage!")
        assert r.status_code == 400 and "cursor" in r.json()["detail"]


class TestSearch:
    def test_by_phone_name_member_and_openid(self, api: Api, client: TestClient) -> None:
        api.send(
            event(
                "identify",
                userId="TOS-1",
                traits={"name": "林南希", "phone": "13800000001"},
                context={"externalIds": [{"id": "o-nancy", "type": "wechat_openid"}]},
            ),
            event("identify", userId="TOS-2", traits={"name": "李丽"}),
            event("identify", userId="TOS-3", traits={"name": "Nancy Wang"}),
        )
        for q in ("Nancy", "Wang", "nancy wang"):
            names = [p["name"] for p in get(client, "/api/v1/profiles", api.admin_key, q=q).json()]
            assert names == ["Nancy Wang"], q
        nancy = api.lookup("member_id", "TOS-1")["id"]
        number = loyalty.enrol(api.session, nancy)[0].member_number
        for q in ("13800000001", "+8613800000001", "林", "南希", "TOS-1", "o-nancy", number, number.lower()):
            names = [p["name"] for p in get(client, "/api/v1/profiles", api.admin_key, q=q).json()]
            assert names == ["林南希"], q

    def test_pages_follow_the_link_header(self, api: Api, client: TestClient) -> None:
        api.send(*(event("identify", userId=f"L{i}", traits={"name": f"林{i:02}"}) for i in range(30)))
        r = get(client, "/api/v1/profiles", api.admin_key, q="林")
        assert len(r.json()) == 20
        link = r.headers["Link"]
        assert link.endswith('>; rel="next"') and "offset=20" in link
        rest = client.get(link[1 : link.index(">")], headers=factories.auth(api.admin_key))
        assert rest.status_code == 200 and "Link" not in rest.headers
        names = [p["name"] for p in r.json() + rest.json()]
        assert sorted(names) == [f"林{i:02}" for i in range(30)]
        assert get(client, "/api/v1/profiles", api.admin_key, q="林", limit=101).status_code == 422

    def test_lookup_unknown(self, api: Api) -> None:
        api.lookup("member_id", "nobody", expect=404)
        api.lookup("phone", "not-a-phone", expect=400)
