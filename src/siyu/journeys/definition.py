"""The journey definition language: JSON in, a checked graph out, or every problem with its JSONPath.

docs/journeys.md is the reference. A definition names its entry, its re-entry policy, its goals and a
graph of nodes, each with a `type` and the ids of the nodes that follow it. Drafts may be incomplete;
`check` lists what stands between a draft and publishing it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from siyu.errors import SiyuError
from siyu.segments import rules as segment_rules

ENTRY_KINDS = ("event", "segment", "date", "manual")
DATE_ATTRIBUTES = ("birthday", "membership_anniversary", "points_expiry")
REENTRY = ("never", "after_exit", "always")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Node type -> its branch keys (each holds the id of the node that follows on that branch).
BRANCHES: dict[str, tuple[str, ...]] = {
    "send": ("next",),
    "wait": ("next",),
    "wait_until": ("next",),
    "wait_event": ("next", "timeout_next"),
    "split": ("yes", "no"),
    "ab": (),  # its branches are its variants' `next`
    "tag": ("next",),
    "points": ("next",),
    "voucher": ("next",),
    "task": ("next",),
    "webhook": ("next",),
    "exit": (),
}
# Branches a node may have: a reward that cannot be given (not a member, out of stock) goes to `else`.
OPTIONAL_BRANCHES: dict[str, tuple[str, ...]] = {"voucher": ("else",), "points": ("else",)}


def branch_keys(kind: str) -> tuple[str, ...]:
    """Every branch key a node of this type may have, required ones first."""
    return (*BRANCHES[kind], *OPTIONAL_BRANCHES.get(kind, ()))


# Nodes where a customer stops until a time: a cycle must pass through one, or a step would never end.
WAITS = frozenset({"wait", "wait_until", "wait_event"})
# A segment entry listens for the event the segments write on entry.
SEGMENT_ENTERED = "Segment Entered"
_ID = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
MAX_DURATION = 10 * 366 * 86400.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    problem: str


class DefinitionError(SiyuError):
    """A definition that cannot be published: every problem, each with the JSONPath of its node."""

    status_code = 422

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{first.path}: {first.problem}{more}")
        self.problems = problems

    def body(self) -> dict[str, object]:
        return {
            "detail": self.message,
            "problems": [{"path": p.path, "problem": p.problem} for p in self.problems],
        }


@dataclass(frozen=True, slots=True)
class Filter:
    """An event name and property filters, as in a segment rule's event condition."""

    event: str
    where: tuple[segment_rules.PropertyFilter, ...] = ()
    raw_where: tuple[dict[str, Any], ...] = ()

    def matches(self, name: str | None, properties: dict[str, Any]) -> bool:
        """Whether an event of that name with those properties passes."""
        return name == self.event and all(_compare(f.compare, properties.get(f.property)) for f in self.where)


@dataclass(frozen=True, slots=True)
class Entry:
    kind: str
    filter: Filter | None = None  # event entries, and segment entries (on "Segment Entered")
    segment_id: int | None = None
    include_existing: bool = False
    attribute: str | None = None
    days_before: int = 0
    at: dt.time = dt.time(10, 0)


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    type: str
    params: dict[str, Any]
    branches: dict[str, str]  # branch label -> next node id


@dataclass(slots=True)
class Definition:
    entry: Entry
    reentry: str
    goals: tuple[Filter, ...]
    start: str
    nodes: dict[str, Node]
    holdout_days: float = 7.0
    problems: list[Problem] = field(default_factory=list)


def duration(raw: Any) -> float | None:
    """Seconds in "90s" / "30m" / "24h" / "2d" / "1w" or a number of seconds; None when malformed."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw) if raw >= 0 else None
    if isinstance(raw, str) and (m := _DURATION.match(raw)):
        return float(m.group(1)) * _UNITS[m.group(2)]
    return None


def parse(raw: Any, *, timezone: str = "Asia/Shanghai") -> Definition:
    """The definition with every structural problem listed in `problems` (empty: it may be published)."""
    return _Parser(timezone).definition(raw)


def check(
    raw: Any,
    *,
    timezone: str = "Asia/Shanghai",
    known: Callable[[str, Any], str | None] | None = None,
) -> Definition:
    """parse, plus references: `known(kind, value)` answers a problem for a missing template or segment.

    Raises DefinitionError listing every problem.
    """
    definition = parse(raw, timezone=timezone)
    if known is not None:
        entry = definition.entry
        if (
            entry.kind == "segment"
            and entry.segment_id is not None
            and (p := known("segment", entry.segment_id))
        ):
            definition.problems.append(Problem("$.entry.segment_id", p))
        for node in definition.nodes.values():
            path = f"$.nodes.{node.id}"
            if node.type == "send" and (p := known("template", node.params.get("template"))):
                definition.problems.append(Problem(f"{path}.template", p))
            if node.type == "voucher" and (p := known("voucher", node.params.get("template"))):
                definition.problems.append(Problem(f"{path}.template", p))
    if definition.problems:
        raise DefinitionError(definition.problems)
    return definition


class _Parser:
    def __init__(self, timezone: str) -> None:
        self.timezone = timezone
        self.problems: list[Problem] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def definition(self, raw: Any) -> Definition:
        if not isinstance(raw, dict):
            self.problem("$", "a journey definition is a JSON object")
            raw = {}
        for key in sorted(set(raw) - {"entry", "reentry", "goals", "start", "nodes", "holdout_days"}):
            self.problem(f"$.{key}", "unknown key")
        entry = self.entry(raw.get("entry"))
        reentry = raw.get("reentry", "never")
        if reentry not in REENTRY:
            self.problem("$.reentry", f"one of {', '.join(REENTRY)}")
            reentry = "never"
        goals_raw = raw.get("goals", [])
        goals: list[Filter] = []
        if not isinstance(goals_raw, list):
            self.problem("$.goals", "a list of {event, where}")
        else:
            for i, g in enumerate(goals_raw):
                f = self.filter(g, f"$.goals[{i}]")
                if f is not None:
                    goals.append(f)
        holdout_days = duration(f"{raw.get('holdout_days', 7)}d") if "holdout_days" in raw else 7 * 86400.0
        if holdout_days is None or holdout_days <= 0:
            self.problem("$.holdout_days", "a positive number of days")
            holdout_days = 7 * 86400.0
        nodes = self.nodes(raw.get("nodes"))
        start = raw.get("start")
        if not isinstance(start, str) or not start:
            self.problem("$.start", "names the first node")
            start = ""
        elif nodes and start not in nodes:
            self.problem("$.start", f"no node {start!r}")
        definition = Definition(
            entry, reentry, tuple(goals), start, nodes, holdout_days / 86400, self.problems
        )
        if start in nodes:
            self.graph(definition)
        return definition

    # entry and goals
    def entry(self, raw: Any) -> Entry:
        path = "$.entry"
        if not isinstance(raw, dict):
            self.problem(path, f"an object whose type is one of {', '.join(ENTRY_KINDS)}")
            return Entry("manual")
        kind = raw.get("type")
        allowed = {
            "event": {"type", "event", "where"},
            "segment": {"type", "segment_id", "include_existing"},
            "date": {"type", "attribute", "days_before", "at"},
            "manual": {"type"},
        }
        if kind not in allowed:
            self.problem(f"{path}.type", f"one of {', '.join(ENTRY_KINDS)}")
            return Entry("manual")
        for key in sorted(set(raw) - allowed[kind]):
            self.problem(f"{path}.{key}", f"unknown key for {_a(kind)} {kind} entry")
        if kind == "event":
            return Entry("event", filter=self.filter(raw, path))
        if kind == "segment":
            segment_id = raw.get("segment_id")
            if not isinstance(segment_id, int) or isinstance(segment_id, bool):
                self.problem(f"{path}.segment_id", "the id of a segment")
                segment_id = None
            include = raw.get("include_existing", False)
            if not isinstance(include, bool):
                self.problem(f"{path}.include_existing", "true or false")
                include = False
            where = [{"property": "segment_id", "op": "eq", "value": segment_id or 0}]
            return Entry(
                "segment",
                filter=self.filter({"event": SEGMENT_ENTERED, "where": where}, path),
                segment_id=segment_id,
                include_existing=include,
            )
        if kind == "date":
            attribute = raw.get("attribute")
            if attribute not in DATE_ATTRIBUTES:
                self.problem(f"{path}.attribute", f"one of {', '.join(DATE_ATTRIBUTES)}")
                attribute = None
            days = raw.get("days_before", 0)
            if not isinstance(days, int) or isinstance(days, bool) or not -366 <= days <= 366:
                self.problem(f"{path}.days_before", "a whole number of days (negative: after the date)")
                days = 0
            return Entry(
                "date", attribute=attribute, days_before=days, at=self.clock(raw.get("at", "10:00"), path)
            )
        return Entry("manual")

    def clock(self, raw: Any, path: str) -> dt.time:
        try:
            return dt.time.fromisoformat(str(raw))
        except ValueError:
            self.problem(f"{path}.at", 'a local time such as "10:00"')
            return dt.time(10, 0)

    def filter(self, raw: Any, path: str) -> Filter | None:
        if not isinstance(raw, dict) or not isinstance(raw.get("event"), str) or not raw["event"].strip():
            self.problem(path, 'needs "event": the event name')
            return None
        where = raw.get("where", [])
        try:
            parsed = segment_rules.parse({"event": raw["event"], "where": where}, self.timezone)
        except segment_rules.RuleError as exc:
            self.problem(path + exc.path[1:], exc.problem)
            return None
        assert isinstance(parsed, segment_rules.EventCondition)
        return Filter(parsed.event, parsed.where, tuple(where))

    # nodes
    def nodes(self, raw: Any) -> dict[str, Node]:
        if not isinstance(raw, dict) or not raw:
            self.problem("$.nodes", "an object of nodes by id")
            return {}
        nodes: dict[str, Node] = {}
        for node_id, body in raw.items():
            path = f"$.nodes.{node_id}"
            if not _ID.match(str(node_id)):
                self.problem(path, "a node id is 1 to 64 letters, digits, '_' or '-'")
                continue
            if not isinstance(body, dict) or body.get("type") not in BRANCHES:
                self.problem(f"{path}.type", f"one of {', '.join(BRANCHES)}")
                continue
            node = self.node(str(node_id), body, path)
            if node is not None:
                nodes[node.id] = node
        return nodes

    def node(self, node_id: str, body: dict[str, Any], path: str) -> Node | None:
        kind = body["type"]
        params: dict[str, Any] = {}
        branches: dict[str, str] = {}
        for key in branch_keys(kind):
            target = body.get(key)
            if target is None:
                if key in BRANCHES[kind]:
                    self.problem(f"{path}.{key}", "names the node that follows (or an exit node)")
            elif not isinstance(target, str):
                self.problem(f"{path}.{key}", "a node id")
            else:
                branches[key] = target
        known = {"type", "label", *branch_keys(kind)}
        if kind == "send":
            known |= {"template"}
            params["template"] = self.text(body, "template", path)
        elif kind == "wait":
            known |= {"duration"}
            params["seconds"] = self.seconds(body, "duration", path)
        elif kind == "wait_until":
            known |= {"time", "weekdays"}
            params["time"] = self.clock(body.get("time"), path).isoformat("minutes")
            days = body.get("weekdays", list(WEEKDAYS))
            if not isinstance(days, list) or not days or any(d not in WEEKDAYS for d in days):
                self.problem(f"{path}.weekdays", f"a non-empty list of {', '.join(WEEKDAYS)}")
                days = list(WEEKDAYS)
            params["weekdays"] = [WEEKDAYS.index(d) for d in days]
        elif kind == "wait_event":
            known |= {"event", "where", "timeout"}
            params["filter"] = self.filter(body, path)
            params["seconds"] = self.seconds(body, "timeout", path)
        elif kind == "split":
            known |= {"rule"}
            try:
                segment_rules.parse(body.get("rule"), self.timezone)
                params["rule"] = body.get("rule")
            except segment_rules.RuleError as exc:
                self.problem(f"{path}.rule" + exc.path[1:], exc.problem)
        elif kind == "ab":
            known |= {"variants", "holdout"}
            self.ab(body, path, params, branches)
        elif kind == "tag":
            known |= {"add", "remove"}
            for key in ("add", "remove"):
                names = body.get(key, [])
                if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
                    self.problem(f"{path}.{key}", "a list of tag names")
                    names = []
                params[key] = names
            if not params["add"] and not params["remove"]:
                self.problem(path, "adds or removes at least one tag")
        elif kind == "points":
            known |= {"points", "reason"}
            points = body.get("points")
            if not isinstance(points, int) or isinstance(points, bool) or points <= 0:
                self.problem(f"{path}.points", "a positive whole number of points")
            params["points"] = points
            params["reason"] = str(body.get("reason") or "journey reward")
        elif kind == "voucher":
            known |= {"template"}
            params["template"] = self.text(body, "template", path)
        elif kind == "task":
            known |= {"title", "due"}
            params["title"] = self.text(body, "title", path)
            params["seconds"] = self.seconds(body, "due", path) if "due" in body else None
        elif kind == "webhook":
            known |= {"url"}
            url = self.text(body, "url", path)
            if url and not url.startswith(("http://", "https://")):
                self.problem(f"{path}.url", "an http(s) URL")
            params["url"] = url
        for key in sorted(set(body) - known):
            self.problem(f"{path}.{key}", f"unknown key for {_a(kind)} {kind} node")
        params["label"] = str(body.get("label") or node_id)
        return Node(node_id, kind, params, branches)

    def ab(self, body: dict[str, Any], path: str, params: dict[str, Any], branches: dict[str, str]) -> None:
        variants = body.get("variants")
        if not isinstance(variants, list) or len(variants) < 2:
            self.problem(f"{path}.variants", "at least two variants, each {name, weight, next}")
            variants = []
        weights: list[tuple[str, float]] = []
        for i, v in enumerate(variants):
            vpath = f"{path}.variants[{i}]"
            if not isinstance(v, dict):
                self.problem(vpath, "{name, weight, next}")
                continue
            name, weight, target = v.get("name"), v.get("weight", 1), v.get("next")
            if not isinstance(name, str) or not _ID.match(name) or name == "holdout":
                self.problem(f"{vpath}.name", "a short name (letters, digits, '_', '-'; not 'holdout')")
                continue
            if name in branches:
                self.problem(f"{vpath}.name", f"variant {name!r} twice")
                continue
            if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
                self.problem(f"{vpath}.weight", "a positive number")
                continue
            if not isinstance(target, str):
                self.problem(f"{vpath}.next", "names the node that follows")
                continue
            weights.append((name, float(weight)))
            branches[name] = target
        holdout = body.get("holdout", 0)
        if not isinstance(holdout, int | float) or isinstance(holdout, bool) or not 0 <= holdout <= 50:
            self.problem(f"{path}.holdout", "a percentage from 0 to 50")
            holdout = 0
        params["variants"] = weights
        params["holdout"] = float(holdout)

    def text(self, body: dict[str, Any], key: str, path: str) -> str:
        value = body.get(key)
        if not isinstance(value, str) or not value.strip():
            self.problem(f"{path}.{key}", "required")
            return ""
        return value

    def seconds(self, body: dict[str, Any], key: str, path: str) -> float:
        value = duration(body.get(key))
        if value is None or value <= 0:
            self.problem(f"{path}.{key}", 'a duration such as "30m", "24h", "2d" or a number of seconds')
            return 0.0
        if value > MAX_DURATION:
            # A wait beyond the calendar would fail each time the engine tries to schedule it.
            self.problem(f"{path}.{key}", f"at most {MAX_DURATION // 86400:,.0f} days (10 years)")
            return 0.0
        return value

    # the graph
    def graph(self, d: Definition) -> None:
        for node in d.nodes.values():
            for label, target in node.branches.items():
                if target not in d.nodes:
                    key = label if label in branch_keys(node.type) else "variants"
                    self.problem(f"$.nodes.{node.id}.{key}", f"no node {target!r} (dangling branch)")
        reachable = _reach(d.start, d.nodes, lambda n: n.branches.values())
        for node_id in d.nodes:
            if node_id not in reachable:
                what = "exit" if d.nodes[node_id].type == "exit" else "node"
                self.problem(f"$.nodes.{node_id}", f"unreachable {what}: no path from start leads here")
        exits = [n for n in d.nodes if d.nodes[n].type == "exit"]
        if not exits:
            self.problem("$.nodes", "no exit node")
        else:
            back: dict[str, list[str]] = {n: [] for n in d.nodes}
            for node in d.nodes.values():
                for target in node.branches.values():
                    if target in back:
                        back[target].append(node.id)
            leads_out = set().union(*(_reach(e, d.nodes, lambda n: back[n.id]) for e in exits))
            for node_id in sorted(reachable - leads_out):
                self.problem(f"$.nodes.{node_id}", "no path from here reaches an exit")
        # A loop without a wait would run forever within one step.
        instant = {n: node for n, node in d.nodes.items() if node.type not in WAITS}
        for node_id in instant:
            if node_id in _reach_from_children(node_id, instant):
                self.problem(f"$.nodes.{node_id}", "a loop through here has no wait: it would never stop")
                break


def _reach(start: str, nodes: dict[str, Node], step: Callable[[Node], Any]) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        current = todo.pop()
        if current in seen or current not in nodes:
            continue
        seen.add(current)
        todo.extend(step(nodes[current]))
    return seen


def _reach_from_children(start: str, nodes: dict[str, Node]) -> set[str]:
    seen: set[str] = set()
    todo = [t for t in nodes[start].branches.values()]
    while todo:
        current = todo.pop()
        if current in seen or current not in nodes:
            continue
        seen.add(current)
        todo.extend(nodes[current].branches.values())
    return seen


def _compare(c: segment_rules.Compare, value: Any) -> bool:
    """A property filter on one event's value, as the segment compiler would evaluate it."""
    op, want = c.op, c.value
    if op == "exists":
        return value is not None
    if op == "missing":
        return value is None
    if value is None:
        return op in ("ne", "not_in")
    if op == "contains":
        return isinstance(value, str) and str(want) in value
    if op in ("in", "not_in"):
        assert isinstance(want, tuple)
        found = any(_equal(value, w) for w in want)
        return found if op == "in" else not found
    if op in ("eq", "ne"):
        return _equal(value, want) == (op == "eq")
    try:
        a, b = float(value), float(want)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def _equal(value: Any, want: Any) -> bool:
    if isinstance(want, bool) or isinstance(value, bool):
        return value is want
    if isinstance(want, int | float) and isinstance(value, int | float):
        return float(value) == float(want)
    return str(value) == str(want)


def _a(word: str) -> str:
    """The indefinite article for word ("an exit node", "a wait node")."""
    return "an" if word[:1].lower() in "aeiou" else "a"
