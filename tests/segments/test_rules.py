"""The rule language refuses bad rules with an error that points at the offending node."""

from __future__ import annotations

from typing import Any

import pytest

from siyu.segments import rules


def error(rule: Any) -> rules.RuleError:
    with pytest.raises(rules.RuleError) as caught:
        rules.parse(rule)
    return caught.value


@pytest.mark.parametrize(
    ("rule", "path", "words"),
    [
        (
            {"all": [{"trait": "city", "op": "eq", "value": "Shanghai"}, {"stage": "Windw"}]},
            "$.all[1].stage",
            "Windw",
        ),
        ({"any": []}, "$.any", "non-empty list"),
        ({"trait": "city", "op": "equals", "value": "x"}, "$.op", "equals"),
        ({"trait": "city", "op": "eq"}, "$", "needs a value"),
        ({"event": "Product Viewed", "count": {"gtee": 2}}, "$.count.gtee", "gtee"),
        ({"event": "Product Viewed", "count": {"gte": -1}}, "$.count.gte", "≥ 0"),
        (
            {"not": {"event": "X", "where": [{"property": "p", "op": "gt", "value": "a"}]}},
            "$.not.where[0].value",
            "numbers",
        ),
        ({"event": "X", "within_days": 30, "between": ["2026-01-01", None]}, "$", "one of"),
        ({"event": "X", "between": ["2026-02-01", "2026-01-01"]}, "$.between", "before"),
        ({"event": "X", "between": ["yesterday", None]}, "$.between[0]", "yesterday"),
        ({"event": "X", "occurrence": "first"}, "$", "needs a window"),
        ({"event": "X", "within_days": 1e10}, "$.within_days", "at most 36500"),
        ({"profile": "revenue_fen", "op": "gt", "value": 10**20}, "$.value", "beyond 64 bits"),
        ({"owner": [10**20]}, "$.owner", "beyond 64 bits"),
        ({"event": "X", "between": ["0001-01-01", None]}, "$.between[0]", "from 1900 to 2999"),
        ({"event": "X", "between": [None, "9999-12-31"]}, "$.between[1]", "from 1900 to 2999"),
        ({"event": "X", "count": {"gte": 10**20}}, "$.count.gte", "beyond 64 bits"),
        (
            {"event": "X", "where": [{"property": "total", "op": "gt", "value": 2**63}]},
            "$.where[0].value",
            "64",
        ),
        ({"event": "X", "sum": {"property": "total", "gte": float("inf")}}, "$.sum.gte", "not a finite"),
        ({"profile": "last_seen_at", "older_than_days": 0}, "$.older_than_days", "> 0"),
        ({"profile": "last_order_at", "op": "gt", "value": 1}, "$.op", "is a time"),
        ({"profile": "shoe_size", "op": "gt", "value": 1}, "$.profile", "shoe_size"),
        ({"score": "p_alive", "op": "lt", "value": "high"}, "$.value", "numbers"),
        ({"score": "p_alive", "op": "gte", "value": 5}, "$.value", "from 0 to 1"),
        ({"any": [{"identifier": "Phone"}]}, "$.any[0].identifier", "unknown identifier type 'Phone'"),
        ({"trait": "city", "op": "in", "value": ["a", 1]}, "$.value", "mixes"),
        ({"colour": "red"}, "$", "unknown node"),
        ({"trait": "x", "tag": "y", "op": "exists"}, "$", "exactly one kind"),
        ({"tag": "vip", "op": "eq"}, "$", "unknown key 'op'"),
        ({"owner": "someone"}, "$.owner", "user id"),
        ([1, 2], "$", "JSON object"),
        ({"trait": 'say "hi"', "op": "exists"}, "$.trait", "double quote"),
    ],
)
def test_errors_point_at_the_node(rule: Any, path: str, words: str) -> None:
    caught = error(rule)
    assert caught.path == path
    assert words in caught.problem
    assert caught.status_code == 422
    assert caught.body()["path"] == path


def test_nesting_is_bounded() -> None:
    rule: dict[str, Any] = {"tag": "x"}
    for _ in range(20):
        rule = {"not": rule}
    assert "levels deep" in error(rule).problem


def test_dates_are_days_in_the_brand_time_zone() -> None:
    node = rules.parse({"event": "Order Completed", "between": ["2026-11-11", "2026-11-11"]})
    assert isinstance(node, rules.EventCondition) and node.window is not None
    # 11.11 in Shanghai runs from 16:00 UTC the day before to 16:00 UTC on the 11th (end date inclusive).
    assert node.window.start is not None and node.window.start.isoformat() == "2026-11-10T16:00:00+00:00"
    assert node.window.end is not None and node.window.end.isoformat() == "2026-11-11T16:00:00+00:00"


def test_time_sensitivity() -> None:
    assert rules.time_sensitive(rules.parse({"event": "Order Completed", "within_days": 30}))
    assert rules.time_sensitive(rules.parse({"not": {"stage": "Lapsed"}}))
    assert not rules.time_sensitive(
        rules.parse({"event": "Order Completed", "between": ["2026-01-01", None]})
    )
    assert not rules.time_sensitive(rules.parse({"trait": "city", "op": "eq", "value": "Shanghai"}))
