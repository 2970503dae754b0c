"""The definition language: a good definition parses; each kind of mistake is reported at its node."""

from __future__ import annotations

from typing import Any

import pytest

from siyu.journeys import definition as language
from siyu.journeys import library
from siyu.messaging import render

GOOD: dict[str, Any] = {
    "entry": {
        "type": "event",
        "event": "Official Account Followed",
        "where": [{"property": "source", "op": "eq", "value": "qr_code"}],
    },
    "reentry": "after_exit",
    "goals": [{"event": "Order Completed"}],
    "start": "welcome",
    "nodes": {
        "welcome": {"type": "send", "template": "Welcome", "next": "wait"},
        "wait": {
            "type": "wait_event",
            "event": "Order Completed",
            "timeout": "72h",
            "next": "done",
            "timeout_next": "ab",
        },
        "ab": {
            "type": "ab",
            "holdout": 10,
            "variants": [{"name": "A", "weight": 1, "next": "v"}, {"name": "B", "weight": 1, "next": "done"}],
        },
        "v": {"type": "voucher", "template": "20 off", "next": "done"},
        "done": {"type": "exit"},
    },
}


def problems(raw: Any) -> dict[str, str]:
    return {p.path: p.problem for p in language.parse(raw).problems}


def test_a_complete_definition_has_no_problem_and_reads_as_written() -> None:
    d = language.parse(GOOD)
    assert d.problems == []
    assert d.entry.kind == "event" and d.entry.filter is not None
    assert d.entry.filter.matches("Official Account Followed", {"source": "qr_code"})
    assert not d.entry.filter.matches("Official Account Followed", {"source": "search"})
    assert d.nodes["wait"].params["seconds"] == 72 * 3600
    assert d.nodes["ab"].branches == {"A": "v", "B": "done"}
    assert d.reentry == "after_exit"


@pytest.mark.parametrize(
    ("change", "path", "fragment"),
    [
        (lambda d: d["nodes"]["welcome"].update(next="nowhere"), "$.nodes.welcome.next", "dangling"),
        (lambda d: d["nodes"].update(orphan={"type": "exit"}), "$.nodes.orphan", "unreachable exit"),
        (
            lambda d: (
                d["nodes"]["v"].update(next="v2")
                or d["nodes"].update(v2={"type": "wait", "duration": "1d", "next": "v"})
            ),
            "$.nodes.v",
            "no path from here reaches an exit",
        ),
        (lambda d: d["nodes"]["wait"].update(timeout="soon"), "$.nodes.wait.timeout", "duration"),
        (lambda d: d["nodes"]["wait"].update(timeout="999999999999d"), "$.nodes.wait.timeout", "10 years"),
        (lambda d: d["nodes"]["welcome"].update(type="teleport"), "$.nodes.welcome.type", "one of"),
        (lambda d: d["nodes"]["ab"].update(holdout=80), "$.nodes.ab.holdout", "0 to 50"),
        (lambda d: d["nodes"]["ab"]["variants"][1].update(name="A"), "$.nodes.ab.variants[1].name", "twice"),
        (lambda d: d.update(start="missing"), "$.start", "no node"),
        (lambda d: d.update(reentry="sometimes"), "$.reentry", "never"),
        (lambda d: d["entry"].update(type="telepathy"), "$.entry.type", "one of"),
        (lambda d: d["entry"]["where"][0].update(op="like"), "$.entry.where[0].op", "unknown operator"),
        (lambda d: d["nodes"]["welcome"].update(colour="red"), "$.nodes.welcome.colour", "unknown key"),
    ],
)
def test_each_mistake_is_reported_at_its_node(change: Any, path: str, fragment: str) -> None:
    import copy

    raw = copy.deepcopy(GOOD)
    change(raw)
    found = problems(raw)
    assert path in found, found
    assert fragment in found[path]


def test_a_loop_without_a_wait_is_refused_and_one_with_a_wait_is_not() -> None:
    loop = {
        "entry": {"type": "manual"},
        "start": "a",
        "nodes": {
            "a": {"type": "tag", "add": ["x"], "next": "b"},
            "b": {"type": "split", "rule": {"tag": "bought"}, "yes": "done", "no": "a"},
            "done": {"type": "exit"},
        },
    }
    assert any("never stop" in p for p in problems(loop).values())
    loop["nodes"]["a"] = {"type": "wait", "duration": "1d", "next": "b"}
    assert problems(loop) == {}


def test_a_split_rule_is_checked_with_the_segment_language_and_located_inside_the_node() -> None:
    raw = {
        "entry": {"type": "manual"},
        "start": "s",
        "nodes": {
            "s": {
                "type": "split",
                "rule": {"all": [{"tag": "vip"}, {"stage": "Sleeping"}]},
                "yes": "e",
                "no": "e",
            },
            "e": {"type": "exit"},
        },
    }
    found = problems(raw)
    assert "$.nodes.s.rule.all[1].stage" in found, found


def test_check_reports_unknown_templates_and_raises_every_problem_at_once() -> None:
    def known(kind: str, value: Any) -> str | None:
        return f"no {kind} named {value!r}" if value != "Welcome" else None

    with pytest.raises(language.DefinitionError) as caught:
        language.check(GOOD, known=known)
    paths = {p.path for p in caught.value.problems}
    assert paths == {"$.nodes.v.template"}
    body = caught.value.body()
    assert body["problems"] == [{"path": "$.nodes.v.template", "problem": "no voucher named '20 off'"}]


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("90s", 90), ("30m", 1800), ("24h", 86400), ("2d", 172800), ("1w", 604800), (45, 45), ("1.5h", 5400)],
)
def test_durations(raw: Any, seconds: float) -> None:
    assert language.duration(raw) == seconds


@pytest.mark.parametrize("raw", ["", "soon", "-1h", True, None, -5])
def test_malformed_durations(raw: Any) -> None:
    assert language.duration(raw) is None


def test_library_messages_sign_with_the_associate_only_when_there_is_one() -> None:
    """A customer with no advisor gets no dangling dash where the associate's name would be."""
    entry = next(e for e in library.entries() if e.key == "birthday-alert")
    body = entry.templates["Happy birthday"]["body"]
    with_sa = render.render(body, {"first_name": "Amy", "store": "Jing'an", "sa_name": "Chen Jing"})
    without = render.render(body, {"first_name": "Amy", "store": "Jing'an", "sa_name": ""})
    assert with_sa["text"] == "Happy birthday, Amy! A gift is waiting for you at Jing'an. — Chen Jing"
    assert without["text"] == "Happy birthday, Amy! A gift is waiting for you at Jing'an."
