"""The console in headless Chromium (Debian's, never a downloaded one) against a live server.

Screenshots go to /tmp/console-*.png for a look at how the pages render.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright
from sqlalchemy import select

from siyu import db
from siyu.db import utcnow
from siyu.identity.models import Identifier
from siyu.ingest.service import ingest_batch
from tests.console.conftest import CHROMIUM_ARGS, LiveServer, chromium_or_skip, event, send

pytestmark = pytest.mark.browser

# Fixed names, overwritten each run, so a person can look at them after `pytest -m browser`.
SHOTS = "/tmp/console-{}.png"  # noqa: S108


@dataclass(frozen=True)
class Seeded:
    nancy: int
    lilei: int
    dead_message_id: str


@pytest.fixture(scope="module")
def seeded(live_server: LiveServer, live_client: httpx.Client) -> Seeded:
    """Two customers and a dead letter through /v1/batch, and an hour of background traffic."""
    now = utcnow()
    # Background traffic received over the last hour, so the chart has a shape.
    with db.unit_of_work() as session:
        for minute in range(0, 60, 3):
            batch = [event(anonymousId=f"visitor-{minute}-{i}") for i in range(1 + (minute * 7) % 11)]
            ingest_batch(session, batch, source_key_id=None, received_at=now - dt.timedelta(minutes=minute))
    start = now - dt.timedelta(days=30)
    steps = [
        event(
            userId="M1001",
            anonymousId="tablet-7" if i % 5 == 0 else None,
            event="Product Viewed",
            properties={"product_id": f"QP-{i:03d}", "name": "Qingpu tea cake"},
            timestamp=(start + dt.timedelta(hours=6 * i)).isoformat(),
        )
        for i in range(24)
    ]
    send(
        live_client,
        live_server.write_key,
        event(
            "identify",
            userId="M1001",
            traits={
                "name": "Nancy Wang",
                "phone": "13812345678",
                "email": "nancy@example.com",
                "city": "Suzhou",
            },
            context={"externalIds": [{"id": "o16wA0b4AZKzgVJR3MBwoUdTfU_E", "type": "wechat_openid"}]},
            timestamp=start.isoformat(),
        ),
        *[{k: v for k, v in s.items() if v is not None} for s in steps],
        event(
            userId="M1001",
            event="Order Completed",
            properties={"order_id": "SO-88121", "total": 1288.5, "store": "Suzhou Pingjiang Rd"},
            timestamp=(now - dt.timedelta(days=1)).isoformat(),
        ),
        event("identify", userId="M2002", traits={"name": "李雷", "phone": "13987654321", "city": "上海"}),
    )
    # One phone seen with two member ids: the guard opens a merge review instead of merging.
    send(
        live_client, live_server.write_key, event(userId="M-a", context={"traits": {"phone": "13900000001"}})
    )
    send(
        live_client, live_server.write_key, event(userId="M-b", context={"traits": {"phone": "13900000002"}})
    )
    send(
        live_client, live_server.write_key, event(userId="M-a", context={"traits": {"phone": "13900000002"}})
    )
    dead = event("identify", userId="M-bad", traits={"phone": "12345", "name": "Bad Phone"})
    body = send(live_client, live_server.write_key, dead, expect=400)
    assert body["accepted"] == 0
    with db.unit_of_work() as session:
        rows = session.execute(
            select(Identifier.value, Identifier.profile_id).where(
                Identifier.type == "member_id", Identifier.value.in_(["M1001", "M2002"])
            )
        )
        ids = {value: profile_id for value, profile_id in rows}
    return Seeded(ids["M1001"], ids["M2002"], dead["messageId"])


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Debian Chromium."""
    executable = chromium_or_skip()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser: Browser, live_server: LiveServer) -> Iterator[Page]:
    """A fresh browser context (no cookies) whose page must log no error (CSP violations included)."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, locale="zh-CN", reduced_motion="reduce"
    )
    p = context.new_page()
    p.set_default_timeout(10_000)
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    p.on("console", on_console)
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    yield p
    context.close()
    assert errors == []


def log_in(page: Page, server: LiveServer, shot: str = "") -> None:
    page.goto(server.url + "/customers")
    expect(page).to_have_url(re.compile(r"/login"))
    if shot:
        page.screenshot(path=SHOTS.format(shot))
    page.fill("input[name=username]", server.admin)
    page.fill("input[name=password]", server.password)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/customers$"))
    expect(page.locator(".whoami-name")).to_have_text("张伟 Zhang Wei")


def test_search_open_the_360_and_unmerge(page: Page, live_server: LiveServer, seeded: Seeded) -> None:
    log_in(page, live_server, shot="login")
    page.fill("input[name=q]", "13812345678")
    result = page.locator(f'#results-table a[href="/customers/{seeded.nancy}"]')
    expect(result).to_contain_text("Nancy Wang")
    expect(page).to_have_url(re.compile(r"/customers\?q=13812345678$"))
    page.screenshot(path=SHOTS.format("search"))
    result.click()

    expect(page.locator("h1")).to_have_text("Nancy Wang")
    expect(page.locator("#stat-revenue")).to_have_text("¥1,288.50")
    identities = page.locator("#identities tbody tr")
    expect(identities).to_have_count(5)
    expect(page.locator('tr[data-identity-type="phone"] .identity-value')).to_have_text("+86138****5678")
    items = page.locator("#timeline .tl-item")
    expect(items).to_have_count(20)
    expect(items.first).to_contain_text("Order Completed")
    page.screenshot(path=SHOTS.format("360"), full_page=True)
    page.click("#load-more")
    expect(items).to_have_count(26)
    expect(page.locator("#load-more")).to_have_count(0)
    expect(items.last).to_contain_text("Identify")

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator('tr[data-identity-type="anonymous_id"] button', has_text="Unmerge").click()
    flash = page.locator(".flash-success")
    expect(flash).to_contain_text("Split the anonymous_id identifier off")
    new_id = int((flash.locator("a").get_attribute("href") or "").rsplit("/", 1)[1])
    expect(identities).to_have_count(4)
    history = page.locator("#merge-history .history-item").first
    expect(history).to_contain_text(f"Split profile #{new_id} off this profile")
    expect(history).to_contain_text("zhang.wei")
    page.screenshot(path=SHOTS.format("unmerged"), full_page=True)
    history.locator("a.history-link").click()
    expect(page).to_have_url(re.compile(rf"/customers/{new_id}$"))
    expect(page.locator("#merge-history")).to_contain_text(f"Split off from profile #{seeded.nancy}")
    expect(page.locator('tr[data-identity-type="anonymous_id"]')).to_have_count(1)


def test_reveal_phone(page: Page, live_server: LiveServer, seeded: Seeded) -> None:
    log_in(page, live_server)
    page.goto(f"{live_server.url}/customers/{seeded.lilei}")
    phone = page.locator('tr[data-identity-type="phone"] .identity-value')
    expect(phone).to_have_text("+86139****4321")
    page.click("#reveal-button")
    expect(phone).to_have_text("+8613987654321")
    expect(page.locator(".badge-warn", has_text="audited")).to_be_visible()
    # The swap kept the page whole: one header, one profile.
    expect(page.locator("#profile")).to_have_count(1)
    expect(page.locator("header.topbar")).to_have_count(1)


def test_ingestion_chart_and_dead_letters(page: Page, live_server: LiveServer, seeded: Seeded) -> None:
    log_in(page, live_server)
    page.click("nav.mainnav >> text=Ingestion")
    expect(page).to_have_url(re.compile(r"/ingestion$"))
    expect(page.locator("#events-chart canvas")).to_have_count(1)
    row = page.locator("#dead-letters tbody tr", has_text=seeded.dead_message_id)
    expect(row).to_contain_text("phone")
    expect(row.locator("td").nth(1)).to_have_text("0")
    page.screenshot(path=SHOTS.format("ingestion"), full_page=True)
    box = page.locator("#events-chart canvas").bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 200


def test_approve_a_merge_review(page: Page, live_server: LiveServer, seeded: Seeded) -> None:
    log_in(page, live_server)
    page.click("nav.mainnav >> text=Reviews")
    row = page.locator("#reviews tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("both profiles hold a different member_id")
    expect(row).to_contain_text("+86139****0002")
    page.screenshot(path=SHOTS.format("reviews"), full_page=True)
    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button", has_text="Approve").click()
    expect(page.locator(".flash-success")).to_contain_text("approved")
    expect(page.locator(".empty")).to_contain_text("Nothing to review")
    page.click(".flash-success a")
    expect(page.locator("#merge-history")).to_contain_text("review_approved")


def test_mobile_layout(browser: Browser, live_server: LiveServer, seeded: Seeded) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, reduced_motion="reduce"
    )
    page = context.new_page()
    try:
        log_in(page, live_server, shot="mobile-login")
        page.goto(f"{live_server.url}/customers/{seeded.lilei}")
        expect(page.locator("h1")).to_have_text("李雷")
        page.screenshot(path=SHOTS.format("mobile-360"), full_page=True)
        # A mobile browser widens the layout viewport to fit overflowing content: compare with clientWidth.
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        page.goto(f"{live_server.url}/ingestion")
        expect(page.locator("#events-chart canvas")).to_have_count(1)
        page.screenshot(path=SHOTS.format("mobile-ingestion"), full_page=True)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
    finally:
        context.close()


def test_channels_and_loyalty_pages(page: Page, live_server: LiveServer, seeded: Seeded) -> None:
    """The Channels page shows a store QR code as an image; the Loyalty page and the member card render."""
    from siyu.channels import service as channels_service
    from siyu.channels.models import ChannelKind, OaType, QrPurpose, WechatQrCode
    from siyu.demo.loyalty import ensure_programme
    from siyu.loyalty import service as loyalty

    with db.unit_of_work() as session:
        account = channels_service.create_account(
            session,
            kind=ChannelKind.oa,
            name="tos-oa",
            app_id="wxbrowser0000001",
            secret="s",
            token="Token123",
            oa_type=OaType.service,
        )
        session.add(
            WechatQrCode(
                account_id=account.id,
                scene="store-sh01",
                name="Nanjing Road window",
                purpose=QrPurpose.campaign,
                campaign="autumn",
                url="http://weixin.qq.com/q/browser-test",
                scans=12,
                follows=5,
            )
        )
        ensure_programme(session)
        member, _ = loyalty.enrol(session, seeded.nancy, channel="console")
        loyalty.earn(session, member.id, 1280, key="browser-earn", reason="order")
        number = member.member_number
    log_in(page, live_server)
    page.click("nav.mainnav >> text=Channels")
    expect(page).to_have_url(re.compile(r"/channels$"))
    row = page.locator("#qr-table tbody tr", has_text="Nanjing Road window")
    expect(row).to_contain_text("12")
    image = row.locator("img")
    expect(image).to_be_visible()
    assert image.evaluate("img => img.complete && img.naturalWidth > 0")
    expect(row.locator("a", has_text="PNG")).to_have_attribute("href", re.compile(r"\.png\?download=true$"))
    page.screenshot(path=SHOTS.format("channels"), full_page=True)
    page.click("nav.mainnav >> text=Loyalty")
    expect(page.locator("#tiers")).to_contain_text("Kesi")
    expect(page.locator("#rules")).to_contain_text("Membership Day x2")
    expect(page.locator(".blind-box").first).to_contain_text("Silk scarf")
    page.screenshot(path=SHOTS.format("loyalty"), full_page=True)
    page.goto(f"{live_server.url}/customers/{seeded.nancy}")
    expect(page.locator("#membership")).to_contain_text(number)
    expect(page.locator("#member-balance")).to_contain_text("1,280")


def test_segment_editor_counts_while_typing(page: Page, live_server: LiveServer, seeded: Seeded) -> None:
    """Typing a rule updates the count (htmx), a bad node is named, saving shows the size chart; lifecycle charts draw."""
    log_in(page, live_server)
    page.click("nav.mainnav >> text=Segments")
    expect(page).to_have_url(re.compile(r"/segments$"))
    rule = page.locator("#rule")
    rule.fill('{"event": "Product Viewed", "count": {"gte": 20}}')
    expect(page.locator("#preview-count")).to_contain_text("1 customer(s) match now")
    rule.fill('{"event": "Product Viewed", "count": {"gte": "many"}}')
    expect(page.locator("#preview-error")).to_contain_text("$.count.gte")
    rule.fill('{"event": "Product Viewed", "count": {"gte": 20}}')
    expect(page.locator("#preview-count")).to_contain_text("1 customer(s)")
    page.fill("input[name=name]", "Heavy browsers")
    page.click("#segment-form button[type=submit]")
    expect(page.locator("#segment-size")).to_have_text("1")
    chart = page.locator("[data-chart=segment-size] canvas")
    expect(chart).to_be_visible()
    page.screenshot(path=SHOTS.format("segment"), full_page=True)
    page.click("nav.mainnav >> text=Lifecycle")
    expect(page.locator("[data-chart=stage-counts] canvas")).to_be_visible()
    expect(page.locator("[data-chart=stage-weekly] canvas")).to_be_visible()
    expect(page.locator("[data-chart=stage-trend] canvas")).to_be_visible()
    page.screenshot(path=SHOTS.format("lifecycle"), full_page=True)
    page.goto(f"{live_server.url}/customers/{seeded.nancy}")
    expect(page.locator("#lifecycle")).to_be_visible()
    page.fill("#tag-form input[name=name]", "vip")
    page.click("#tag-form button[type=submit]")
    expect(page.locator("#tag-list")).to_contain_text("vip")


def test_journey_editor_lists_problems_and_the_graph_draws(
    page: Page, live_server: LiveServer, seeded: Seeded
) -> None:
    """Typing a journey lists its problems (htmx); saved and published, its graph draws in ECharts."""
    log_in(page, live_server)
    page.click("nav.mainnav >> text=Journeys")
    expect(page).to_have_url(re.compile(r"/journeys$"))
    definition = page.locator("#definition")
    definition.fill(
        '{"entry": {"type": "manual"}, "start": "t", "nodes": {"t": {"type": "tag", "add": ["vip"], "next": "gone"}}}'
    )
    expect(page.locator("#journey-problems")).to_contain_text("$.nodes.t.next")
    definition.fill(
        '{"entry": {"type": "manual"}, "start": "t", "nodes": {"t": {"type": "tag", "add": ["vip"], "next": "w"},'
        ' "w": {"type": "wait", "duration": "1d", "next": "e"}, "e": {"type": "exit"}}}'
    )
    expect(page.locator("#journey-ok")).to_be_visible()
    page.fill("#journey-form input[name=name]", "Tag VIPs")
    page.click("#journey-form button[type=submit]")
    page.click("#publish")
    expect(page.locator("#journey-status")).to_have_text("active")
    expect(page.locator("[data-chart=journey-graph] canvas")).to_be_visible()
    page.screenshot(path=SHOTS.format("journey"), full_page=True)


def test_search_pages_and_the_stores_page(page: Page, live_server: LiveServer, seeded: Seeded) -> None:
    """Next and Previous page through a search in place; an admin adds a region and a store."""
    from siyu.profiles.models import Profile

    with db.unit_of_work() as session:
        session.add_all([Profile(name=f"林{i:02}") for i in range(30)])
    log_in(page, live_server)
    page.fill("input[name=q]", "林")
    expect(page.locator("#results-count")).to_have_text("Results 1–25")
    expect(page.locator("#results-table tbody tr")).to_have_count(25)
    page.click("#results-next")
    expect(page.locator("#results-count")).to_have_text("Results 26–30")
    expect(page.locator("#results-table tbody tr")).to_have_count(5)
    expect(page).to_have_url(re.compile(r"/customers\?q=%E6%9E%97&page=2$"))
    page.click("a[rel=prev]")
    expect(page.locator("#results-count")).to_have_text("Results 1–25")

    page.click("nav.mainnav >> text=Stores")
    expect(page).to_have_url(re.compile(r"/stores$"))
    page.fill("#region-form input[name=code]", "WEST")
    page.fill("#region-form input[name=name]", "West China")
    page.click("#region-form button")
    expect(page.locator(".flash-success")).to_contain_text("Region WEST added")
    page.fill("#store-form input[name=code]", "CD01")
    page.fill("#store-form input[name=name]", "Taikoo Li")
    page.select_option("#store-form select[name=region]", "WEST")
    page.click("#store-form button")
    expect(page.locator(".flash-success")).to_contain_text("Store CD01 added")
    expect(page.locator(".stores-table", has_text="CD01")).to_contain_text("Taikoo Li")
    page.screenshot(path=SHOTS.format("stores"), full_page=True)
