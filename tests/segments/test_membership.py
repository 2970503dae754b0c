"""Every kind of rule selects the right customers on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.orm import Session

from siyu.segments import service
from tests.segments.conftest import AS_OF, Population

ALL = {"amy", "bea", "cai", "dan", "eve"}

CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("trait eq", {"trait": "city", "op": "eq", "value": "Shanghai"}, {"amy", "dan"}),
    ("trait ne includes missing", {"trait": "city", "op": "ne", "value": "Shanghai"}, {"bea", "cai", "eve"}),
    ("trait number", {"trait": "age", "op": "gte", "value": 35}, {"bea", "cai"}),
    ("trait bool", {"trait": "vip", "op": "eq", "value": True}, {"amy"}),
    ("trait in", {"trait": "city", "op": "in", "value": ["Beijing", "Chengdu"]}, {"bea"}),
    ("trait contains", {"trait": "city", "op": "contains", "value": "hang"}, {"amy", "dan"}),
    ("trait missing", {"trait": "city", "op": "missing"}, {"cai", "eve"}),
    ("profile number", {"profile": "orders_count", "op": "gte", "value": 1}, {"bea", "cai"}),
    ("profile time", {"profile": "last_order_at", "within_days": 30}, {"cai"}),
    ("tag", {"tag": "hi-po"}, {"amy", "dan"}),
    ("stage Anonymous is also no stage row", {"stage": "Anonymous"}, {"eve"}),
    ("stage", {"stage": ["First-Time", "Repeat"]}, {"bea", "cai"}),
    ("no tag", {"tag": "hi-po", "has": False}, {"bea", "cai", "eve"}),
    ("identifier", {"identifier": "phone"}, {"bea"}),
    ("consent withdrawn is not consent", {"consent": "marketing"}, set()),
    ("latest consent withdrawn", {"consent": "marketing", "granted": False}, {"dan"}),
    ("owner", {"owner": "any"}, {"dan"}),
    ("store", {"store": "SH01"}, {"cai"}),
    ("region", {"region": ["EAST", "WEST"]}, {"cai"}),
    ("event default count", {"event": "Order Completed"}, {"bea", "cai"}),
    (
        "viewed qipao twice in 30 days",
        {
            "event": "Product Viewed",
            "where": [{"property": "category", "op": "eq", "value": "qipao"}],
            "count": {"gte": 2},
            "within_days": 30,
        },
        {"amy"},
    ),
    (
        "property number filter",
        {"event": "Product Viewed", "where": [{"property": "price", "op": "gt", "value": 1000}]},
        {"amy", "bea"},
    ),
    (
        "count <= 1 includes none",
        {"event": "Order Completed", "count": {"lte": 1}},
        {"amy", "bea", "dan", "eve"},
    ),
    ("count eq 0", {"event": "Order Completed", "count": {"eq": 0}}, {"amy", "dan", "eve"}),
    ("sum", {"event": "Order Completed", "sum": {"property": "amount_fen", "gte": 90000}}, {"cai"}),
    (
        "sum under includes none",
        {"event": "Order Completed", "sum": {"property": "amount_fen", "lt": 60000}},
        {"amy", "bea", "dan", "eve"},
    ),
    (
        "first occurrence recent",
        {"event": "Official Account Followed", "occurrence": "first", "within_days": 30},
        {"amy"},
    ),
    (
        "last occurrence old",
        {"event": "Order Completed", "occurrence": "last", "older_than_days": 30},
        {"bea"},
    ),
    ("between dates", {"event": "Order Completed", "between": ["2026-10-01", "2026-10-31"]}, {"bea", "cai"}),
    (
        "the issue's Hi-Po example",
        {
            "all": [
                {"event": "Official Account Followed", "occurrence": "first", "within_days": 30},
                {
                    "event": "Product Viewed",
                    "where": [{"property": "category", "op": "eq", "value": "qipao"}],
                    "count": {"gte": 2},
                },
                {"any": [{"trait": "city", "op": "eq", "value": "Shanghai"}, {"store": "SH01"}]},
                {"not": {"event": "Order Completed"}},
            ]
        },
        {"amy"},
    ),
    ("not any", {"not": {"any": [{"tag": "hi-po"}, {"event": "Order Completed"}]}}, {"eve"}),
    # "At least one" conditions are a correlated EXISTS; under NOT an anti-join that must keep the rest.
    ("no event in a window", {"not": {"event": "Product Viewed", "within_days": 4}}, {"bea", "cai", "dan"}),
    ("count gt 0 is at least one", {"event": "Order Completed", "count": {"gt": 0}}, {"bea", "cai"}),
    (
        "property not_in inside the exists",
        {"event": "Product Viewed", "where": [{"property": "category", "op": "not_in", "value": ["qipao"]}]},
        {"eve"},
    ),
    ("no store is not in the store", {"not": {"store": "SH01"}}, {"amy", "bea", "dan", "eve"}),
    ("no store is not in the region", {"not": {"region": "EAST"}}, {"amy", "bea", "dan", "eve"}),
    # Equality with plain text is compared on the value's text in one extraction: a bool, a number or a
    # missing key must still differ from it.
    ("trait ne text over bool and missing", {"trait": "vip", "op": "ne", "value": "yes"}, ALL),
    ("trait not_in text", {"trait": "city", "op": "not_in", "value": ["Shanghai"]}, {"bea", "cai", "eve"}),
]


@pytest.mark.parametrize(("rule", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule_selects(
    population: Population, session: Session, rule: dict[str, Any], expected: set[str]
) -> None:
    found = service.matching(session, rule, as_of=AS_OF)
    assert population.names(set(found) & set(population.ids.values())) == expected


def test_scope_restricts_to_the_given_profiles(population: Population, session: Session) -> None:
    rule = {"event": "Order Completed", "count": {"lte": 1}}
    scope = [population.ids["bea"], population.ids["cai"], population.ids["eve"]]
    assert population.names(service.matching(session, rule, as_of=AS_OF, scope=scope)) == {"bea", "eve"}


def test_scope_applies_to_an_exists(population: Population, session: Session) -> None:
    rule = {"not": {"event": "Order Completed"}}
    scope = [population.ids["bea"], population.ids["cai"], population.ids["eve"]]
    assert population.names(service.matching(session, rule, as_of=AS_OF, scope=scope)) == {"eve"}


def test_literals_are_not_parameters(population: Population, session: Session) -> None:
    # A ':' or '%' in a value must reach the database as text, not as a bind parameter or a format.
    rule = {
        "any": [
            {"trait": "city", "op": "eq", "value": "a:b %s 100%"},
            {"trait": "city", "op": "eq", "value": "O'Hare"},
        ]
    }
    assert service.matching(session, rule, as_of=AS_OF) == []
