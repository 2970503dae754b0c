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


BODIES: list[dict[str, Any]] = [
    {"data": {"first": "{{ first_name }}, the autumn collection is in", "keyword1": "Autumn"}, "url": " x "},
    {"text": "{{ name }} ({{ tier }}): {{ points }} points", "attachments": ["lookbook"]},
    {"text": "  plain  ", "count": 3, "data": {}},
]


@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize(("source", "values"), CASES[:5])
def test_the_renderer_prints_what_jinja_prints_without_building_a_context(
    body: dict[str, Any], source: str, values: dict[str, Any]
) -> None:
    renderer = render.Renderer(body, render.names(body))
    assert renderer.direct is not None

    def context() -> dict[str, Any]:
        raise AssertionError("a plain substitution needs no context")

    assert renderer.render(values, context) == (render.render(body, values), None)


@pytest.mark.parametrize(
    "text",
    ["Order {{ event.order_id }}", "{{ track('https://x.cn') }}", "{{ event }}", "{{ name|upper }}"],
)
def test_the_renderer_runs_jinja_for_what_a_customer_s_values_do_not_hold(text: str) -> None:
    body = {"text": text}
    renderer = render.Renderer(body, render.names(body))
    assert renderer.direct is None
    context = {"name": "amy", "event": {"order_id": "A1"}, "track": lambda url: f"t:{url}"}
    assert renderer.render({"name": "amy"}, lambda: context) == (render.render(body, context), None)
