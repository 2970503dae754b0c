"""Queueing a message: rendering in the sandbox, and every rule that stops or delays one."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from siyu.config import get_settings
from siyu.errors import BadRequest
from siyu.messaging import policy, render
from siyu.messaging import service as messaging
from siyu.messaging.models import CapPeriod, CapSlot, Channel, Message, MessageStatus, Purpose
from tests.factories import event
from tests.journeys.brand import NOW, Brand, oa_context, wecom_context


def queue(
    brand: Brand, template_name: str, pids: list[int], *, key: str = "k", now: dt.datetime = NOW
) -> list[messaging.Outcome]:
    template = messaging.get_template_by_name(brand.session, template_name)
    assert template is not None
    return messaging.queue(
        brand.session, template, [messaging.Request(pid, f"{key}:{pid}") for pid in pids], now=now
    )


def test_personalised_from_the_profile_membership_store_and_advisor(brand: Brand) -> None:
    s = brand.session
    amy = brand.follower("amy", wecom=True)
    from siyu.loyalty import service as loyalty

    loyalty.enrol(s, amy, channel="console")
    brand.api.send(
        event(userId="amy", event="Product Added to Wishlist", properties={"name": "Su Embroidered Qipao"})
    )
    messaging.create_asset(
        s, key="spring-story", kind="article", title="Spring in Suzhou", url="https://tos.example/spring"
    )
    brand.template(
        "Rich",
        Channel.wecom_1to1,
        text="{{ first_name }} ({{ tier or 'member' }}, {{ points }} pts) likes {{ favourite_product }}; "
        "{{ sa_name }} — {{ asset('spring-story').title }}",
    )
    [o] = queue(brand, "Rich", [amy])
    assert o.status == "queued"
    m = s.execute(select(Message)).scalar_one()
    assert m.content["text"] == "Amy (Jade, 0 pts) likes Su Embroidered Qipao; Chen Jing — Spring in Suzhou"
    assert (m.recipient, m.sender) == ("wm-amy", "fa.chen")


def test_the_sandbox_refuses_unsafe_templates_and_unknown_names(brand: Brand) -> None:
    with pytest.raises(render.TemplateError) as caught:
        brand.template("Bad", Channel.sms, text="{{ nme }}")
    assert caught.value.path == "body.text" and "unknown name 'nme'" in caught.value.problem
    with pytest.raises(render.TemplateError) as caught:
        brand.template("Broken", Channel.sms, text="{% if %}")
    assert caught.value.path == "body.text"
    # Attribute tricks are refused at render time: the message is suppressed with the reason, not sent.
    amy = brand.follower("amy")
    brand.template("Sneaky", Channel.oa_template, data={"first": "{{ traits.__class__.__mro__ }}"})
    [o] = queue(brand, "Sneaky", [amy])
    assert (o.status, o.rule) == ("suppressed", "render")


def test_template_fields_are_checked_per_channel(brand: Brand) -> None:
    with pytest.raises(BadRequest, match="account_id"):
        messaging.create_template(
            brand.session,
            name="x",
            channel=Channel.oa_template,
            account_id=brand.wecom.id,
            external_template_id="T",
            body={"data": {"a": "b"}},
        )
    with pytest.raises(BadRequest, match="external_template_id"):
        messaging.create_template(
            brand.session,
            name="x",
            channel=Channel.oa_template,
            account_id=brand.oa.id,
            body={"data": {"a": "b"}},
        )
    with pytest.raises(BadRequest, match=r"body\.text"):
        messaging.create_template(
            brand.session, name="x", channel=Channel.wecom_mass, account_id=brand.wecom.id, body={}
        )
    with pytest.raises(BadRequest, match="no asset 'nope'"):
        messaging.create_template(
            brand.session,
            name="x",
            channel=Channel.wecom_mass,
            account_id=brand.wecom.id,
            body={"text": "hi", "attachments": ["nope"]},
        )


def test_no_recipient_unsubscribed_and_no_associate(brand: Brand) -> None:
    amy = brand.follower("amy")
    bea = brand.follower("bea")
    brand.api.send(event(userId="bea", event="Official Account Unfollowed", context=oa_context("o-bea")))
    brand.api.send(event("identify", userId="cai", traits={"name": "Cai"}))
    cai = int(brand.api.lookup("member_id", "cai")["id"])
    brand.template("Hello")
    assert [(o.status, o.rule) for o in queue(brand, "Hello", [amy, bea, cai])] == [
        ("queued", None),
        ("suppressed", "unsubscribed"),
        ("suppressed", "no_recipient"),
    ]
    # On WeCom the associate who added her sends (the owner when she is one of the customer's contacts).
    brand.api.send(
        event(
            userId="amy",
            event="WeCom Contact Added",
            properties={"associate": "stranger"},
            context=wecom_context("wm-amy"),
        )
    )
    brand.template("Hi", Channel.wecom_1to1)
    [o] = queue(brand, "Hi", [amy], key="w")
    assert (o.status, o.rule) == ("queued", None)
    brand.api.send(
        event(
            userId="amy",
            event="WeCom Contact Deleted",
            properties={"associate": "stranger"},
            context=wecom_context("wm-amy"),
        )
    )
    [o] = queue(brand, "Hi", [amy], key="k2")
    assert (o.status, o.rule) == ("suppressed", "unsubscribed")


def test_consent_marketing_withdrawn_and_sms_needs_an_opt_in(brand: Brand) -> None:
    amy = brand.follower("amy", traits={"phone": "13800138000"})
    bea = brand.follower("bea", traits={"phone": "13900139000"})
    brand.api.send(event(userId="amy", event="Consent Withdrawn", properties={"purpose": "marketing"}))
    brand.api.send(event(userId="bea", event="Consent Granted", properties={"purpose": "sms"}))
    brand.template("Hello")
    brand.template("Text", Channel.sms)
    service = messaging.get_template_by_name(brand.session, "Hello")
    assert [(o.status, o.rule) for o in queue(brand, "Hello", [amy, bea])] == [
        ("suppressed", "consent:marketing"),
        ("queued", None),
    ]
    assert [(o.status, o.rule) for o in queue(brand, "Text", [amy, bea], key="s")] == [
        ("suppressed", "consent:marketing"),
        ("queued", None),
    ]
    # A service message (an order notice) does not need marketing consent.
    assert service is not None
    messaging.update_template(brand.session, service, purpose=Purpose.service)
    assert [o.status for o in queue(brand, "Hello", [amy], key="svc")] == ["queued"]
    m = brand.session.execute(select(Message).where(Message.idempotency_key == f"s:{bea}")).scalar_one()
    assert m.recipient == "+8613900139000"
    # Without a phone an SMS has no recipient, whatever her consents: said so, not as a missing opt-in.
    cai = brand.follower("cai")
    dan = brand.follower("dan", traits={"phone": "13700137000"})
    assert [(o.status, o.rule) for o in queue(brand, "Text", [cai, dan], key="t")] == [
        ("suppressed", "no_recipient"),
        ("suppressed", "consent:sms"),
    ]


def test_wecom_mass_cap_and_brand_caps_per_calendar_window(
    brand: Brand, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = brand.session
    amy = brand.follower("amy", wecom=True)
    messaging.create_cap(s, channel=None, period=CapPeriod.month, limit=3)
    brand.template("Mass", Channel.wecom_mass)
    assert queue(brand, "Mass", [amy], key="a")[0].status == "queued"
    second = queue(brand, "Mass", [amy], key="b")[0]
    assert (second.status, second.rule) == ("suppressed", "cap:WeCom mass messages 1/day")
    # The next day (in the brand's calendar) there is room again.
    assert queue(brand, "Mass", [amy], key="c", now=NOW + dt.timedelta(days=1))[0].status == "queued"
    brand.template("Hello")
    results = [queue(brand, "Hello", [amy], key=f"m{i}")[0] for i in range(3)]
    # 2 of the month's 3 were used by the WeCom messages (the suppressed one took none): 1 more.
    assert [r.status for r in results] == ["queued", "suppressed", "suppressed"]
    assert results[1].rule == "cap:brand cap 3/month on all channels"
    assert (
        s.execute(select(func.count()).select_from(CapSlot).where(CapSlot.profile_id == amy)).scalar_one()
        == 2 + 3
    )
    # A failed message gives its slots back; a looser platform setting applies at once.
    messaging.release(s, [f"m0:{amy}"])
    assert queue(brand, "Hello", [amy], key="m9")[0].status == "queued"
    monkeypatch.setenv("SIYU_WECOM_MASS_CAP", "3/week")
    get_settings.cache_clear()
    for cap in messaging.list_caps(s):
        messaging.set_cap_active(s, cap.id, False)
    assert queue(brand, "Mass", [amy], key="d")[0].status == "queued"


def test_quiet_hours_defer_marketing_to_the_morning_in_the_customers_time_zone(
    brand: Brand, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIYU_QUIET_HOURS", "22:00-08:00")
    get_settings.cache_clear()
    amy = brand.follower("amy")  # Shanghai (the brand's zone)
    bea = brand.follower("bea", traits={"timezone": "Europe/London"})
    brand.template("Hello")
    late = dt.datetime(2026, 11, 23, 15, 0, tzinfo=dt.UTC)  # 23:00 in Shanghai, 15:00 in London
    a, b = queue(brand, "Hello", [amy, bea], now=late)
    assert (a.status, a.rule, a.until) == (
        "deferred",
        "quiet_hours",
        dt.datetime(2026, 11, 24, 0, 0, tzinfo=dt.UTC),
    )
    assert b.status == "queued"
    assert (
        policy.quiet_until(dt.datetime(2026, 11, 24, 0, 30, tzinfo=dt.UTC), "22:00-08:00", "Asia/Shanghai")
        is None
    )


def test_the_customer_service_window(brand: Brand) -> None:
    amy = brand.follower("amy")
    bea = brand.follower("bea")
    wrote = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    brand.api.send(
        event(
            userId="amy",
            event="Official Account Message Received",
            timestamp=wrote.isoformat(),
            context=oa_context("o-amy"),
        )
    )
    brand.template("Reply", Channel.oa_kefu)
    now = dt.datetime.now(dt.UTC)
    results = [queue(brand, "Reply", [amy, bea], key=f"r{i}", now=now) for i in range(6)]
    # Bea followed (an event: a 1-minute window, long gone); Amy wrote an hour ago: 5 replies allowed.
    assert [r[1].rule for r in results] == ["cs_window"] * 6
    assert [r[0].status for r in results] == ["queued"] * 5 + ["suppressed"]
    assert results[5][0].rule == "cap:customer-service window 5"
    later = queue(brand, "Reply", [amy], key="late", now=wrote + dt.timedelta(hours=49))
    assert later[0].rule == "cs_window"


def test_a_replayed_request_is_not_queued_twice(brand: Brand) -> None:
    amy = brand.follower("amy")
    brand.template("Hello")
    assert queue(brand, "Hello", [amy])[0].status == "queued"
    assert queue(brand, "Hello", [amy])[0].status == "exists"
    assert brand.session.execute(select(func.count()).select_from(Message)).scalar_one() == 1
    assert brand.session.execute(select(Message.status)).scalar_one() == MessageStatus.queued


def test_official_account_mass_pushes_per_follower(brand: Brand) -> None:
    """A service account reaches each follower 4 times a calendar month, a subscription account once a day."""
    from siyu.channels import service as channels
    from siyu.channels.models import ChannelKind, OaType

    amy = brand.follower("amy")
    brand.template("Push", Channel.oa_mass, text="The autumn collection is in")
    results = [queue(brand, "Push", [amy], key=f"p{i}")[0] for i in range(5)]
    assert [r.status for r in results] == ["queued"] * 4 + ["suppressed"]
    assert results[4].rule == "cap:Official Account mass push 4/month"
    assert queue(brand, "Push", [amy], key="next-month", now=NOW + dt.timedelta(days=8))[0].status == "queued"
    news = channels.create_account(
        brand.session,
        kind=ChannelKind.oa,
        name="tos-news",
        app_id="wxnews0001",
        secret="news-secret",
        token="newstoken",
        oa_type=OaType.subscription,
    )
    brand.api.send(
        event(userId="amy", event="Official Account Followed", context=oa_context("o-amy-news", "tos-news"))
    )
    messaging.create_template(
        brand.session, name="Daily", channel=Channel.oa_mass, account_id=news.id, body={"text": "Today"}
    )
    daily = [queue(brand, "Daily", [amy], key=f"d{i}")[0] for i in range(2)]
    assert [(d.status, d.rule) for d in daily] == [
        ("queued", None),
        ("suppressed", "cap:Official Account mass push 1/day"),
    ]


def test_a_broadcast_renders_once_per_first_name_and_still_per_message_where_it_must(brand: Brand) -> None:
    s = brand.session
    mei1 = brand.follower("mei1", traits={"first_name": "Mei"})
    mei2 = brand.follower("mei2", traits={"first_name": "Mei"})
    lan = brand.follower("lan", traits={"first_name": "Lanlan"})
    pids = [mei1, mei2, lan]
    messaging.create_cap(s, channel=None, period=CapPeriod.month, limit=10)

    def contents(template: str, key: str) -> dict[int, tuple[str, str | None, dict[str, object]]]:
        outcomes = queue(brand, template, pids, key=key)
        assert len(outcomes) == 3
        rows = s.execute(
            select(Message.profile_id, Message.status, Message.rule, Message.content).where(
                Message.idempotency_key.like(f"{key}:%")
            )
        )
        return {pid: (str(status), rule, content) for pid, status, rule, content in rows}

    brand.template("Hello", data={"first": "{{ first_name }}, the autumn collection is in"})
    hello = contents("Hello", "hello")
    assert [hello[p][2]["data"] for p in pids] == [
        {"first": "Mei, the autumn collection is in"},
        {"first": "Mei, the autumn collection is in"},
        {"first": "Lanlan, the autumn collection is in"},
    ]
    # A tracked link is signed for its own message: two customers named alike never share one.
    brand.template("Linked", data={"first": "{{ first_name }} {{ track('https://tos.example/a') }}"})
    linked = contents("Linked", "linked")
    links = [str(linked[p][2]["data"]["first"]) for p in pids]  # type: ignore[index]
    assert len(set(links)) == 3
    assert all(f"k=linked%3A{p}&" in link for p, link in zip(pids, links, strict=True))
    # A template failing for one name fails every customer of that name, and only them; their cap slots
    # are given back.
    brand.template("Fragile", data={"first": "{{ 100 // (first_name|length - 3) }}"})
    fragile = contents("Fragile", "fragile")
    assert [fragile[p][:2] for p in pids] == [
        ("suppressed", "render"),
        ("suppressed", "render"),
        ("queued", None),
    ]
    assert "ZeroDivisionError" in str(fragile[mei2][2]["error"])
    slots = s.execute(select(CapSlot.message_key).where(CapSlot.message_key.like("fragile:%"))).scalars()
    assert set(slots) == {f"fragile:{lan}"}
