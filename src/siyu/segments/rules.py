"""The segment rule language: JSON in, a checked tree out, or an error that points at the offending node.

docs/segments.md is the reference. A rule is one node; a node is an object whose first key says its kind:
`all` / `any` / `not` combine nodes; `trait`, `profile`, `tag`, `stage`, `score`, `identifier`, `consent`,
`owner`, `store`, `region` test the profile; `event` tests what the customer did.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any, Literal

from siyu.errors import LocatedError
from siyu.lifecycle.models import Stage

Scalar = str | int | float | bool

COMPARISONS = ("eq", "ne", "gt", "gte", "lt", "lte")
VALUE_OPS = (*COMPARISONS, "in", "not_in", "contains", "exists", "missing")
COUNT_OPS = ("eq", "gt", "gte", "lt", "lte")

PROFILE_FIELDS = {
    "events_count": "number",
    "orders_count": "number",
    "revenue_fen": "number",
    "refunded_fen": "number",
    "first_seen_at": "time",
    "last_seen_at": "time",
    "first_order_at": "time",
    "last_order_at": "time",
}
SCORE_FIELDS = (
    "recency_score",
    "frequency_score",
    "monetary_score",
    "purchase_days",
    "purchase_days_365",
    "p_alive",
    "expected_purchases",
    "expected_order_value_fen",
    "clv_fen",
)
MAX_DEPTH = 12


# A century: longer than any customer history, short enough to subtract from today (1e10 days overflows).
MAX_WINDOW_DAYS = 36_500


class RuleError(LocatedError):
    """A rule that cannot be compiled; `path` locates the node (JSONPath, `$` is the rule)."""


# --- the checked tree -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class All:
    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Any_:
    nodes: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    node: Node


@dataclass(frozen=True, slots=True)
class Compare:
    """`op` applied to a value; `value` is a scalar, a list for in/not_in, None for exists/missing."""

    op: str
    value: Scalar | tuple[Scalar, ...] | None


@dataclass(frozen=True, slots=True)
class Window:
    """A time window: the last `days` days, or from `start` (inclusive) to `end` (exclusive); None is open."""

    days: float | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    older_than_days: float | None = None

    @property
    def relative(self) -> bool:
        """True when the window moves with the clock (the rule must be re-evaluated as time passes)."""
        return self.days is not None or self.older_than_days is not None


@dataclass(frozen=True, slots=True)
class Trait:
    name: str
    compare: Compare


@dataclass(frozen=True, slots=True)
class ProfileField:
    name: str
    compare: Compare | None
    window: Window | None


@dataclass(frozen=True, slots=True)
class HasTag:
    name: str
    has: bool


@dataclass(frozen=True, slots=True)
class InStage:
    stages: tuple[Stage, ...]


@dataclass(frozen=True, slots=True)
class Score:
    name: str
    compare: Compare


@dataclass(frozen=True, slots=True)
class HasIdentifier:
    type: str
    has: bool


@dataclass(frozen=True, slots=True)
class HasConsent:
    purpose: str
    granted: bool


@dataclass(frozen=True, slots=True)
class Owner:
    """`user_ids` empty with `assigned` True: any owner; `assigned` False: no owner."""

    user_ids: tuple[int, ...]
    assigned: bool


@dataclass(frozen=True, slots=True)
class InStore:
    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InRegion:
    codes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PropertyFilter:
    property: str
    compare: Compare


@dataclass(frozen=True, slots=True)
class EventCondition:
    """Customers whose events named `event` (filtered by `where`, inside `window`) meet the measure.

    The measure is a count (default: at least one), a sum of a property, or, with `occurrence`, whether
    their first or last such event ever falls inside the window.
    """

    event: str
    where: tuple[PropertyFilter, ...]
    window: Window | None
    count: tuple[str, int] | None
    sum: tuple[str, str, float] | None  # (property, op, value)
    occurrence: Literal["first", "last"] | None


Node = (
    All
    | Any_
    | Not
    | Trait
    | ProfileField
    | HasTag
    | InStage
    | Score
    | HasIdentifier
    | HasConsent
    | Owner
    | InStore
    | InRegion
    | EventCondition
)


# --- parsing ----------------------------------------------------------------------------------------


def parse(rule: Any, timezone: str = "Asia/Shanghai", *, personal: bool = True) -> Node:
    """The checked tree of a rule; RuleError naming the node when anything is wrong.

    personal=False: for roles that see personal data masked, a condition on the value of a phone, an email,
    a name or an address (or on a phone or email under any key) is an error too: "phone is +86138…"
    previewed would tell them who has it. Whether she has one (exists, missing) says nothing about whom.
    """
    return _Parser(timezone, personal=personal).node(rule, "$", 0)


def check_not_personal(rule: Any) -> None:
    """RuleError at the first node of rule that compares personal data (parse with personal=False)."""
    parse(rule, personal=False)


def _looks_personal(value: Any) -> bool:
    from siyu.profiles.masking import EMAIL_IN_TEXT, PHONE_IN_TEXT

    text = str(value) if isinstance(value, int | str) and not isinstance(value, bool) else ""
    return bool(PHONE_IN_TEXT.search(text) or EMAIL_IN_TEXT.search(text))


def _is_personal(key: str) -> bool:
    from siyu.profiles.masking import ADDRESS_KEYS, EMAIL_KEYS, is_name_key, is_phone_key

    last = key.rsplit(".", 1)[-1]
    return is_phone_key(last) or is_name_key(last) or last in EMAIL_KEYS or last in ADDRESS_KEYS


def walk(node: Node) -> list[Node]:
    """Every node of the tree, depth first."""
    out: list[Node] = [node]
    if isinstance(node, All | Any_):
        for child in node.nodes:
            out.extend(walk(child))
    elif isinstance(node, Not):
        out.extend(walk(node.node))
    return out


def time_sensitive(node: Node) -> bool:
    """True when time alone can change the rule's answer (relative windows, stages, scores)."""
    for n in walk(node):
        if isinstance(n, EventCondition | ProfileField) and n.window is not None and n.window.relative:
            return True
        if isinstance(n, InStage | Score):
            return True
    return False


class _Parser:
    def __init__(self, timezone: str, *, personal: bool = True) -> None:
        self.personal = personal
        from zoneinfo import ZoneInfo

        self.zone = ZoneInfo(timezone)

    def node(self, raw: Any, path: str, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise RuleError(path, f"rules nest at most {MAX_DEPTH} levels deep")
        if not isinstance(raw, dict) or not raw:
            raise RuleError(path, "a rule node must be a non-empty JSON object")
        kinds = [k for k in raw if k in _KINDS]
        if len(kinds) != 1:
            known = ", ".join(_KINDS)
            if not kinds:
                raise RuleError(path, f"unknown node {sorted(raw)}: a node has one of the keys {known}")
            raise RuleError(path, f"a node has exactly one kind, this one has {kinds}")
        kind = kinds[0]
        allowed = _KINDS[kind]
        extra = sorted(set(raw) - allowed - {kind})
        if extra:
            raise RuleError(path, f"unknown key {extra[0]!r} in a {kind!r} node (allowed: {sorted(allowed)})")
        parsed: Node = getattr(self, f"_{kind}")(raw, path, depth)
        return parsed

    # combinators
    def _all(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        return All(self._children(raw["all"], f"{path}.all", depth))

    def _any(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        return Any_(self._children(raw["any"], f"{path}.any", depth))

    def _not(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        return Not(self.node(raw["not"], f"{path}.not", depth + 1))

    def _children(self, raw: Any, path: str, depth: int) -> tuple[Node, ...]:
        if not isinstance(raw, list) or not raw:
            raise RuleError(path, "expects a non-empty list of nodes")
        return tuple(self.node(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(raw))

    # profile conditions
    def _trait(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        name = _name(raw["trait"], f"{path}.trait")
        compare = self.compare(raw, path, VALUE_OPS)
        self.check_personal(name, compare, path, "trait")
        return Trait(name, compare)

    def check_personal(self, key: str, compare: Compare, path: str, field: str) -> None:
        """RuleError when personal data is off limits and the condition asks what it is (see parse)."""
        if self.personal or compare.op in ("exists", "missing"):
            return
        if _is_personal(key):
            raise RuleError(
                f"{path}.{field}",
                f"{key!r} is personal data your role sees masked: a rule may ask whether it exists, "
                "not what it is",
            )
        # A phone or an email under any other key ("wx_account": "139…") is shown masked just the same.
        values = compare.value if isinstance(compare.value, tuple) else (compare.value,)
        if any(_looks_personal(v) for v in values):
            raise RuleError(
                f"{path}.value",
                "a phone number or an email is personal data your role sees masked: a rule cannot look for one",
            )

    def _profile(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        name = raw["profile"]
        if name not in PROFILE_FIELDS:
            raise RuleError(f"{path}.profile", f"unknown field {name!r} (one of {', '.join(PROFILE_FIELDS)})")
        if PROFILE_FIELDS[name] == "time":
            window = self.window(raw, path)
            if "op" in raw:
                raise RuleError(
                    f"{path}.op", f"{name} is a time: use within_days, older_than_days or between"
                )
            if window is None:
                raise RuleError(path, f"{name} needs within_days, older_than_days or between")
            return ProfileField(name, None, window)
        if any(k in raw for k in ("within_days", "older_than_days", "between")):
            raise RuleError(path, f"{name} is a number: use op and value")
        return ProfileField(name, self.compare(raw, path, (*COMPARISONS, "in", "not_in")), None)

    def _tag(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        return HasTag(_name(raw["tag"], f"{path}.tag"), _flag(raw, "has", path))

    def _stage(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        values = raw["stage"] if isinstance(raw["stage"], list) else [raw["stage"]]
        stages: list[Stage] = []
        for i, value in enumerate(values):
            try:
                stages.append(Stage(value))
            except ValueError:
                where = f"{path}.stage" + (f"[{i}]" if isinstance(raw["stage"], list) else "")
                names = ", ".join(s.value for s in Stage)
                raise RuleError(where, f"unknown stage {value!r} (one of {names})") from None
        if not stages:
            raise RuleError(f"{path}.stage", "name at least one stage")
        return InStage(tuple(stages))

    def _score(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        name = raw["score"]
        if name not in SCORE_FIELDS:
            raise RuleError(f"{path}.score", f"unknown score {name!r} (one of {', '.join(SCORE_FIELDS)})")
        compare = self.compare(raw, path, (*COMPARISONS, "in", "not_in", "exists", "missing"))
        _require_numbers(compare, path)
        if name == "p_alive":  # a probability: "p_alive >= 5" is a typo that would match no one
            values = compare.value if isinstance(compare.value, tuple) else (compare.value,)
            if any(isinstance(v, int | float) and not 0 <= v <= 1 for v in values):
                raise RuleError(f"{path}.value", "p_alive is a probability, from 0 to 1")
        return Score(name, compare)

    def _identifier(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        from siyu.ingest.normalize import normalizer  # the deployment's types, extra ones included

        name = _name(raw["identifier"], f"{path}.identifier")
        known = normalizer().identifier_types()
        if name not in known:
            raise RuleError(
                f"{path}.identifier", f"unknown identifier type {name!r} (known: {', '.join(sorted(known))})"
            )
        return HasIdentifier(name, _flag(raw, "has", path))

    def _consent(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        return HasConsent(_name(raw["consent"], f"{path}.consent"), _flag(raw, "granted", path))

    def _owner(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        value = raw["owner"]
        if value == "any":
            return Owner((), True)
        if value == "none":
            return Owner((), False)
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise RuleError(f"{path}.owner", 'expects a user id, a list of user ids, "any" or "none"')
        for v in values:
            _check_range(v, f"{path}.owner")
        return Owner(tuple(values), True)

    def _store(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        return InStore(_codes(raw["store"], f"{path}.store"))

    def _region(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        return InRegion(_codes(raw["region"], f"{path}.region"))

    # event conditions
    def _event(self, raw: dict[str, Any], path: str, depth: int) -> Node:
        name = _name(raw["event"], f"{path}.event")
        where_raw = raw.get("where", [])
        if not isinstance(where_raw, list):
            raise RuleError(f"{path}.where", "expects a list of property filters")
        where = []
        for i, item in enumerate(where_raw):
            item_path = f"{path}.where[{i}]"
            if not isinstance(item, dict) or "property" not in item:
                raise RuleError(item_path, 'a property filter is {"property": …, "op": …, "value": …}')
            extra = sorted(set(item) - {"property", "op", "value"})
            if extra:
                raise RuleError(item_path, f"unknown key {extra[0]!r} in a property filter")
            prop = _name(item["property"], f"{item_path}.property")
            compare = self.compare(item, item_path, VALUE_OPS)
            self.check_personal(prop, compare, item_path, "property")
            where.append(PropertyFilter(prop, compare))
        measures = [k for k in ("count", "sum", "occurrence") if k in raw]
        if len(measures) > 1:
            raise RuleError(path, f"use one of count, sum, occurrence (found {measures})")
        count = sum_ = occurrence = None
        if "count" in raw:
            count = self.count(raw["count"], f"{path}.count")
        elif "sum" in raw:
            sum_ = self.sum(raw["sum"], f"{path}.sum")
        elif "occurrence" in raw:
            if raw["occurrence"] not in ("first", "last"):
                raise RuleError(f"{path}.occurrence", 'expects "first" or "last"')
            occurrence = raw["occurrence"]
        window = self.window(raw, path)
        if occurrence is not None and window is None:
            raise RuleError(path, "occurrence needs a window: within_days, older_than_days or between")
        return EventCondition(name, tuple(where), window, count, sum_, occurrence)

    def count(self, raw: Any, path: str) -> tuple[str, int]:
        if not isinstance(raw, dict) or len(raw) != 1:
            raise RuleError(path, 'expects one comparison, e.g. {"gte": 2}')
        ((op, value),) = raw.items()
        if op not in COUNT_OPS:
            raise RuleError(f"{path}.{op}", f"unknown comparison {op!r} (one of {', '.join(COUNT_OPS)})")
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise RuleError(f"{path}.{op}", "a count is a whole number ≥ 0")
        _check_range(value, f"{path}.{op}")
        return op, value

    def sum(self, raw: Any, path: str) -> tuple[str, str, float]:
        if not isinstance(raw, dict) or "property" not in raw:
            raise RuleError(path, 'expects {"property": "amount_fen", "gte": 100000}')
        prop = _name(raw["property"], f"{path}.property")
        ops = [k for k in raw if k != "property"]
        if len(ops) != 1 or ops[0] not in COUNT_OPS:
            raise RuleError(path, f"expects exactly one comparison of {', '.join(COUNT_OPS)}")
        value = raw[ops[0]]
        if not _is_number(value):
            raise RuleError(f"{path}.{ops[0]}", "a sum is compared with a number")
        _check_range(value, f"{path}.{ops[0]}")
        return prop, ops[0], float(value)

    def window(self, raw: dict[str, Any], path: str) -> Window | None:
        keys = [k for k in ("within_days", "older_than_days", "between") if k in raw]
        if not keys:
            return None
        if len(keys) > 1:
            raise RuleError(path, f"use one of within_days, older_than_days, between (found {keys})")
        key = keys[0]
        value = raw[key]
        if key in ("within_days", "older_than_days"):
            if not _is_number(value) or not 0 < value <= MAX_WINDOW_DAYS:
                raise RuleError(
                    f"{path}.{key}", f"expects a number of days > 0 and at most {MAX_WINDOW_DAYS}"
                )
            return Window(days=float(value)) if key == "within_days" else Window(older_than_days=float(value))
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(
                f"{path}.between", 'expects [start, end]: dates "2026-01-01" or times, null for open'
            )
        start = self.moment(value[0], f"{path}.between[0]")
        end = self.moment(value[1], f"{path}.between[1]", end=True)
        if start is None and end is None:
            raise RuleError(f"{path}.between", "give a start, an end or both")
        if start is not None and end is not None and start >= end:
            raise RuleError(f"{path}.between", "the start must come before the end")
        return Window(start=start, end=end)

    def moment(self, raw: Any, path: str, *, end: bool = False) -> dt.datetime | None:
        if raw is None:
            return None
        if not isinstance(raw, str):
            raise RuleError(path, "expects a date (2026-01-31) or an ISO time")
        try:
            if len(raw) == 10:
                # A date is a whole day in the brand's time zone; an end date includes its day.
                day = dt.date.fromisoformat(raw) + dt.timedelta(days=1 if end else 0)
                moment = dt.datetime.combine(day, dt.time(), self.zone)
            else:
                moment = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise RuleError(path, f"{raw!r} is not a date (2026-01-31) or an ISO time") from None
        except OverflowError:  # 9999-12-31 as an end: the day after is past the calendar
            raise RuleError(path, f"{raw!r}: a date from 1900 to 2999") from None
        if not 1900 <= moment.year <= 2999:
            raise RuleError(path, f"{raw!r}: a date from 1900 to 2999")
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.astimezone(dt.UTC)

    def compare(self, raw: dict[str, Any], path: str, ops: tuple[str, ...]) -> Compare:
        op = raw.get("op")
        if op is None:
            raise RuleError(path, f"needs an op ({', '.join(ops)})")
        if op not in ops:
            raise RuleError(f"{path}.op", f"unknown operator {op!r} (one of {', '.join(ops)})")
        if op in ("exists", "missing"):
            if "value" in raw:
                raise RuleError(f"{path}.value", f"{op} takes no value")
            return Compare(op, None)
        if "value" not in raw:
            raise RuleError(path, f"{op} needs a value")
        value = raw["value"]
        for v in value if isinstance(value, list) else [value]:
            _check_range(v, f"{path}.value")
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value or not all(_is_scalar(v) for v in value):
                raise RuleError(f"{path}.value", f"{op} expects a non-empty list of strings or numbers")
            if len({type(v) is str for v in value}) > 1:
                raise RuleError(f"{path}.value", "a list mixes strings and numbers")
            return Compare(op, tuple(value))
        if not _is_scalar(value):
            raise RuleError(f"{path}.value", "expects a string, a number or true/false")
        if op in ("gt", "gte", "lt", "lte") and not _is_number(value):
            raise RuleError(f"{path}.value", f"{op} compares numbers")
        if op == "contains" and not isinstance(value, str):
            raise RuleError(f"{path}.value", "contains looks for a string")
        return Compare(op, value)


_KINDS: dict[str, set[str]] = {
    "all": set(),
    "any": set(),
    "not": set(),
    "trait": {"op", "value"},
    "profile": {"op", "value", "within_days", "older_than_days", "between"},
    "tag": {"has"},
    "stage": set(),
    "score": {"op", "value"},
    "identifier": {"has"},
    "consent": {"granted"},
    "owner": set(),
    "store": set(),
    "region": set(),
    "event": {"where", "count", "sum", "occurrence", "within_days", "older_than_days", "between"},
}


def _name(raw: Any, path: str) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > 200:
        raise RuleError(path, "expects a non-empty name (at most 200 characters)")
    if '"' in raw:
        # SQLite's JSON paths cannot name such a key: refused everywhere, so every engine answers alike.
        raise RuleError(path, 'a name cannot contain a double quote (")')
    return raw


def _flag(raw: dict[str, Any], key: str, path: str) -> bool:
    value = raw.get(key, True)
    if not isinstance(value, bool):
        raise RuleError(f"{path}.{key}", "expects true or false")
    return value


def _codes(raw: Any, path: str) -> tuple[str, ...]:
    values = raw if isinstance(raw, list) else [raw]
    if not values or not all(isinstance(v, str) and v for v in values):
        raise RuleError(path, "expects a code or a list of codes")
    return tuple(values)


def _check_range(value: Any, path: str) -> None:
    """RuleError for a number the database cannot compare: beyond 64 bits, infinite or not a number."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise RuleError(path, f"{value} is beyond 64 bits (at most {2**63 - 1:,})")
    if isinstance(value, float) and not math.isfinite(value):
        raise RuleError(path, f"{value} is not a finite number")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _require_numbers(compare: Compare, path: str) -> None:
    values = compare.value if isinstance(compare.value, tuple) else (compare.value,)
    if compare.value is not None and not all(_is_number(v) for v in values):
        raise RuleError(f"{path}.value", "scores are numbers")
