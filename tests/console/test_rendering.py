"""Template filters: money, times in China Standard Time, actors, one-line summaries."""

from __future__ import annotations

import datetime as dt

from siyu.console.rendering import actor_label, cny, event_summary, iso, local_time, short


def test_cny_formats_fen_as_yuan() -> None:
    assert cny(128050) == "¥1,280.50"
    assert cny(5) == "¥0.05"
    assert cny(0) == cny(None) == "¥0.00"
    assert cny(-1999) == "-¥19.99"


def test_times_show_in_china_standard_time() -> None:
    at = dt.datetime(2026, 11, 1, 18, 30, tzinfo=dt.UTC)
    assert local_time(at) == "2026-11-02 02:30"
    assert local_time(at.replace(tzinfo=None)) == "2026-11-02 02:30"
    assert local_time(None) == "—"
    assert iso(at) == "2026-11-01T18:30:00Z"
    assert iso(None) == ""


def test_actor_label() -> None:
    assert actor_label("user:3:alice") == "alice"
    assert actor_label("api_key:7:CRM sync") == "CRM sync (API key)"
    assert actor_label("system") == "system"


def test_event_summary_takes_the_first_scalars() -> None:
    props = {"items": [1, 2], "sku": "QP-1", "total": 12.5, "empty": "", "paid": True, "store": "S1", "x": 1}
    assert event_summary(props) == [("sku", "QP-1"), ("total", "12.5"), ("paid", "True"), ("store", "S1")]


def test_short_is_one_line() -> None:
    assert short("a\n  b") == "a b"
    assert short("x" * 100, 10) == "x" * 9 + "…"
    assert short({"k": "值"}) == '{"k": "值"}'
