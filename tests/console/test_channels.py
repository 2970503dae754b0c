"""The Channels console page: accounts, QR codes made and shown, contact codes, file uploads."""

from __future__ import annotations

import csv
import io
import re

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth.models import Role
from siyu.channels.fake import FakeState
from siyu.channels.imports.models import FileImport
from siyu.channels.models import WechatQrCode
from tests import factories
from tests.channels.wechat import oa_account, wecom_account
from tests.console.conftest import login


def logged_in(client: TestClient, session: Session, role: Role) -> str:
    return login(client, factories.user(session, role).username)


def test_marketer_creates_a_store_qr_code_and_downloads_it(
    fake: FakeState, client: TestClient, session: Session
) -> None:
    oa_account(session)
    factories.store(session, code="SH01")
    token = logged_in(client, session, Role.marketer)
    page = client.get("/channels")
    assert page.status_code == 200
    assert "/wechat/oa/tos-oa/callback" in page.text and "oa-app-secret" not in page.text
    r = client.post(
        "/channels/qr-codes",
        data={
            "csrf_token": token,
            "account": "tos-oa",
            "name": "Nanjing Road window",
            "purpose": "store",
            "target": "SH01",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    qr = session.execute(select(WechatQrCode)).scalar_one()
    page = client.get("/channels")
    assert "Nanjing Road window" in page.text and "created (scene" in page.text
    assert f'src="/channels/qr-codes/{qr.id}.svg"' in page.text
    svg = client.get(f"/channels/qr-codes/{qr.id}.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and b"<svg" in svg.content
    png = client.get(f"/channels/qr-codes/{qr.id}.png?download=true")
    assert png.content.startswith(b"\x89PNG") and "attachment" in png.headers["content-disposition"]


def test_a_bad_qr_form_is_an_error_page(fake: FakeState, client: TestClient, session: Session) -> None:
    oa_account(session)
    token = logged_in(client, session, Role.admin)
    r = client.post(
        "/channels/qr-codes",
        data={"csrf_token": token, "account": "tos-oa", "name": "x", "purpose": "store", "target": "NOPE"},
    )
    assert r.status_code == 400 and "no store with code" in r.text
    assert fake.sent == []


def test_contact_code_form(fake: FakeState, client: TestClient, session: Session) -> None:
    wecom_account(session)
    factories.user(session, Role.sales_associate, wecom_userid="lisi")
    token = logged_in(client, session, Role.hq)
    r = client.post(
        "/channels/contact-ways",
        data={"csrf_token": token, "account": "tos-wecom", "name": "Li Si card", "associate": "lisi"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    assert "Li Si card" in client.get("/channels").text


def test_store_manager_cannot_open_channels(client: TestClient, session: Session) -> None:
    logged_in(client, session, Role.store_manager)
    assert client.get("/channels").status_code == 403


def test_missing_csrf_is_refused(client: TestClient, session: Session) -> None:
    oa_account(session)
    logged_in(client, session, Role.admin)
    r = client.post(
        "/channels/qr-codes", data={"account": "tos-oa", "name": "x", "purpose": "campaign", "target": "c"}
    )
    assert r.status_code == 403


def test_upload_imports_in_the_background(client: TestClient, session: Session) -> None:
    token = logged_in(client, session, Role.admin)
    body = "order_id,member_card,amount,time,status\nP1,C1,100,2026-11-01 10:00:00,paid\nP2,C2,abc,2026-11-01 10:00:00,paid\n"
    r = client.post(
        "/channels/imports",
        data={"csrf_token": token, "kind": "orders", "source": "pos"},
        files={"file": ("pos.csv", body.encode("gbk"), "text/csv")},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    record = session.execute(select(FileImport)).scalar_one()
    assert (record.status, record.rows_imported, record.rows_failed) == ("done", 1, 1)
    page = client.get("/channels").text
    assert "pos.csv" in page and re.search(r"is being imported", page)
    # The file is named as uploaded (not as stored), and its refused rows are a download, not a server path.
    assert record.filename == "pos.csv" and "-pos.csv" not in page
    assert record.error_report is not None and record.error_report not in page
    link = f"/channels/imports/{record.id}/errors.csv"
    assert f'href="{link}"' in page
    report = client.get(link)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    assert "filename*=UTF-8''pos.errors.csv" in report.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(report.content.decode("utf-8-sig"))))
    assert rows[0] == ["row", "column", "value", "reason"] and rows[1][:3] == ["3", "amount (C)", "abc"]
    assert client.get(f"/channels/imports/{record.id + 1}/errors.csv").status_code == 404


def test_refused_rows_report_masks_phones(client: TestClient, session: Session) -> None:
    token = logged_in(client, session, Role.marketer)
    body = "order_id,member_card,amount,time,status\nP1,C1,tel 13812345678,2026-11-01 10:00:00,paid\n"
    r = client.post(
        "/channels/imports",
        data={"csrf_token": token, "kind": "orders", "source": "pos"},
        files={"file": ("pos.csv", body.encode(), "text/csv")},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    record = session.execute(select(FileImport)).scalar_one()
    report = client.get(f"/channels/imports/{record.id}/errors.csv").content.decode("utf-8-sig")
    assert "13812345678" not in report and "tel 138****5678" in report
    wrong = client.post(
        "/channels/imports",
        data={"csrf_token": token, "kind": "orders", "source": "tmall"},
        files={"file": ("pos.csv", body.encode(), "text/csv")},
    )
    assert wrong.status_code == 400 and "has no column" in wrong.text
    assert session.execute(select(FileImport)).scalars().all() == [record]


def test_admin_adds_an_account_whose_secrets_are_never_shown(client: TestClient, session: Session) -> None:
    token = logged_in(client, session, Role.admin)
    form = {
        "csrf_token": token,
        "kind": "oa",
        "name": "new-oa",
        "app_id": "wx0000000000000001",
        "secret": "s3cret-value",
        "token": "Token123",
        "aes_key": "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "oa_type": "subscription",
    }
    r = client.post("/channels/accounts", data=form, follow_redirects=False)
    assert r.status_code == 303, r.text
    page = client.get("/channels").text
    assert "/wechat/oa/new-oa/callback" in page and "subscription" in page
    assert "s3cret-value" not in page and "Token123" not in page
    bad = client.post(
        "/channels/accounts",
        data={**form, "name": "other", "app_id": "wx0000000000000002", "aes_key": "short"},
    )
    assert bad.status_code == 400 and "aes_key" in bad.text


def test_only_admin_adds_accounts(client: TestClient, session: Session) -> None:
    token = logged_in(client, session, Role.marketer)
    form = {"csrf_token": token, "kind": "miniprogram", "name": "mp", "app_id": "wx3", "secret": "s"}
    assert client.post("/channels/accounts", data=form).status_code == 403
    assert 'action="/channels/accounts"' not in client.get("/channels").text
