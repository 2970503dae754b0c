"""Plain `{{ name }}` texts skip Jinja's context building: they must print exactly what Jinja prints."""

from __future__ import annotations

from typing import Any

import pytest

from siyu.messaging import render

CASES: list[tuple[str, dict[str, Any]]] = [
    ("Hi {{ first_name }}!", {"first_name": "Mei"}),
    ("Hi {{ first_name }}!", {}),
    ("{{ points }} pts, {{ tier }}", {"points": 0, "tier": None}),
    ("  {{ name }}\n", {"name": "王芳"}),
    ("{{name}}{{ store }}", {"name": True, "store": 1.5}),
    ("{{ name|upper }} (a filter: Jinja renders it)", {"name": "amy"}),
    ("{% if tier %}{{ tier }}{% endif %}", {"tier": "Jade"}),
]


@pytest.mark.parametrize(("source", "context"), CASES)
def test_a_text_renders_as_jinja_does(source: str, context: dict[str, Any]) -> None:
    assert render.render({"text": source}, context) == {
        "text": render.compile_text(source).render(context).strip()
    }


def test_a_plain_substitution_does_not_run_jinja() -> None:
    assert render._substitution("Hi {{ first_name }}, {{ store }}") == (
        (False, "Hi "),
        (True, "first_name"),
        (False, ", "),
        (True, "store"),
    )
    assert render._substitution("{{ first_name|upper }}") is None
    assert render._substitution("{{ traits.city }}") is None
