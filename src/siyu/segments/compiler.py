"""Compile a checked rule to an Ibis expression: the ids of the live profiles that match, as of a moment.

Every leaf is a boolean that is never NULL (a missing trait compares false), so NOT and OR mean the same
on every engine. "Has at least one" conditions (a tag, an identifier, an event without a count above one)
become a correlated EXISTS: a semi-join, and an anti-join under NOT, where `NOT IN` would hash or rescan the whole
set. Aggregated event conditions become `id IN (subquery … GROUP BY … HAVING)`; a count or sum that zero
satisfies (`count <= 2`) is written as NOT IN the profiles that fail it, so customers without such events
count. With a scope (an unbound `segment_scope` table of profile ids) every subquery is restricted to it,
which is how an ingest batch re-evaluates a segment for the profiles it touched without scanning the rest.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable
from functools import reduce
from typing import Any

import ibis
import ibis.expr.datatypes as idt
import orjson
from ibis.expr.types import BooleanValue, Column, Table, Value

from siyu.lifecycle.models import Stage
from siyu.segments import rules as r
from siyu.segments.tables import Tables

SCOPE_TABLE = "segment_scope"

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq,
    "ne": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def scope_table() -> Table:
    """The unbound table of profile ids a scoped expression is restricted to."""
    return ibis.table({"profile_id": "int64"}, name=SCOPE_TABLE)


def compile_rule(node: r.Node, t: Tables, *, as_of: dt.datetime, scoped: bool = False) -> Table:
    """A one-column (`profile_id`) table of the live profiles matching `node` at `as_of`."""
    return _Compiler(t, as_of, scope_table() if scoped else None).members(node)


class _Compiler:
    def __init__(self, t: Tables, as_of: dt.datetime, scope: Table | None) -> None:
        self.t = t
        # Whole seconds: SQLite compares times as text, and a fraction would make the literal's format differ.
        self.as_of = as_of.astimezone(dt.UTC).replace(microsecond=0)
        self.scope = scope
        # Merged-away profiles are part of another; erased ones are no one any more (PIPL).
        p = t.profiles.filter(t.profiles.merged_into_id.isnull(), t.profiles.erased_at.isnull())
        if scope is not None:
            p = p.filter(p.id.isin(scope.profile_id))
        self.p = p

    def members(self, node: r.Node) -> Table:
        # p.id is a key and nothing is joined: no DISTINCT (a hash or a sort of every member) needed.
        return self.p.filter(self.cond(node)).select(profile_id=self.p.id)

    def scoped(self, table: Table) -> Table:
        if self.scope is None:
            return table
        return table.filter(table.profile_id.isin(self.scope.profile_id))

    def cond(self, node: r.Node) -> BooleanValue:
        p = self.p
        match node:
            case r.All(nodes):
                return reduce(operator.and_, (self.cond(n) for n in nodes))
            case r.Any_(nodes):
                return reduce(operator.or_, (self.cond(n) for n in nodes))
            case r.Not(child):
                return ~self.cond(child)
            case r.Trait(name, compare):
                return self.json_compare(p.traits, name, compare)
            case r.ProfileField(name, compare, window):
                column = p[name]
                if window is not None:
                    return _true(self.in_window(column, window))
                assert compare is not None
                return _value_compare(column, compare)
            case r.HasTag(name, has):
                tags = self.t.profile_tags
                found = self.exists(tags, tags.name == name)
                return found if has else ~found
            case r.InStage(stages):
                states = self.scoped(self.t.lifecycle_states)
                chosen = states.filter(states.stage.isin([s.value for s in stages]))
                if Stage.anonymous not in stages:
                    return _member(p.id, chosen.profile_id)
                # Anonymous visitors have no stage row: "Anonymous" is also "no row at all".
                return _member(p.id, chosen.profile_id) | ~_member(p.id, states.profile_id)
            case r.Score(name, compare):
                states = self.scoped(self.t.lifecycle_states)
                chosen = states.filter(_value_compare(states[name], compare))
                return _member(p.id, chosen.profile_id)
            case r.HasIdentifier(id_type, has):
                ids = self.t.identifiers
                found = self.exists(ids, ids.type == id_type)
                return found if has else ~found
            case r.HasConsent(purpose, granted):
                c = self.scoped(self.t.consents)
                c = c.filter(c.purpose == purpose)
                latest = c.mutate(
                    rn=ibis.row_number().over(group_by=c.profile_id, order_by=[c.at.desc(), c.id.desc()])
                )
                chosen = latest.filter(latest.rn == 0, latest.granted == granted)
                return _member(p.id, chosen.profile_id)
            case r.Owner(user_ids, assigned):
                if user_ids:
                    return _true(p.owner_user_id.isin(list(user_ids)))
                return p.owner_user_id.notnull() if assigned else p.owner_user_id.isnull()
            case r.InStore(codes):
                stores = self.t.stores
                return _in_ids(p.store_id, stores.filter(stores.code.isin(list(codes))).id)
            case r.InRegion(codes):
                stores, regions = self.t.stores, self.t.regions
                region_ids = regions.filter(regions.code.isin(list(codes))).id
                return _in_ids(p.store_id, stores.filter(stores.region_id.isin(region_ids)).id)
            case r.EventCondition():
                return self.event(node)
        raise TypeError(f"no compilation for {type(node).__name__}")  # pragma: no cover

    def exists(self, table: Table, condition: BooleanValue) -> BooleanValue:
        """EXISTS (a row of table for the profile, meeting condition): never NULL, a semi-join everywhere."""
        return ((table.profile_id == self.p.id) & condition).any()

    def event(self, node: r.EventCondition) -> BooleanValue:
        p = self.p
        if node.occurrence is None and node.sum is None and node.count in (None, ("gte", 1), ("gt", 0)):
            # At least one such event: no aggregate needed, and under NOT an anti-join.
            events = self.t.events
            parts = [events.event == node.event]
            parts += [self.property_filter(events, f) for f in node.where]
            if node.window is not None:
                parts.append(self.in_window(events.timestamp, node.window))
            return self.exists(events, reduce(operator.and_, parts))
        events = self.scoped(self.t.events)
        matching = events.filter(events.event == node.event)
        for f in node.where:
            matching = matching.filter(self.property_filter(matching, f))
        if node.occurrence is not None:
            assert node.window is not None
            agg = matching.group_by("profile_id").aggregate(
                at=matching.timestamp.min() if node.occurrence == "first" else matching.timestamp.max()
            )
            return _member(p.id, agg.filter(self.in_window(agg.at, node.window)).profile_id)
        if node.window is not None:
            matching = matching.filter(self.in_window(matching.timestamp, node.window))
        if node.sum is not None:
            prop, op, value = node.sum
            amount = matching.amount_fen if prop == "amount_fen" else matching.properties[prop].float
            measure: Value = amount.sum().fill_null(0)
            threshold: float = value
        else:
            op, count = node.count or ("gte", 1)
            measure, threshold = matching.count(), count
        agg = matching.group_by("profile_id").aggregate(measure=measure)
        compare = _OPS[op]
        if compare(0, threshold):
            # Customers with no such event satisfy it too: exclude those who fail instead.
            return ~_member(p.id, agg.filter(~compare(agg.measure, threshold)).profile_id)
        return _member(p.id, agg.filter(compare(agg.measure, threshold)).profile_id)

    def property_filter(self, events: Table, f: r.PropertyFilter) -> BooleanValue:
        if f.property == "amount_fen":
            return _value_compare(events.amount_fen, f.compare)
        return self.json_compare(events.properties, f.property, f.compare)

    def json_compare(self, document: Column, key: str, compare: r.Compare) -> BooleanValue:
        """Compare the JSON value under key: typed (a number is not its text), one extraction when it can."""
        text = _JSON_TEXT.get(self.t.dialect)
        if text is not None and _text_is_exact(compare):
            # The value's text equals a given string only when the value is that string: no type check.
            function, path = text
            return _value_compare(function(document, path(key)), compare)
        return _json_compare(document[key], compare)

    def in_window(self, column: Column, window: r.Window) -> BooleanValue:
        parts: list[BooleanValue] = []
        if window.days is not None:
            parts.append(column >= self.as_of - dt.timedelta(days=window.days))
        if window.older_than_days is not None:
            parts.append(column < self.as_of - dt.timedelta(days=window.older_than_days))
        if window.start is not None:
            parts.append(column >= window.start)
        if window.end is not None:
            parts.append(column < window.end)
        return reduce(operator.and_, parts)


def _member(profile_id: Column, ids: Column) -> BooleanValue:
    """profile_id IN (ids): never NULL here (neither side is), so not wrapped in a COALESCE.

    A COALESCE around it keeps PostgreSQL from planning the IN as a semi-join: it then rescans the
    subquery for every profile (bench/segments.py stopped one such query after 300 s).
    """
    return profile_id.isin(ids)


def _in_ids(column: Column, ids: Column) -> BooleanValue:
    """column IN (ids), false when column is NULL: never NULL, without a COALESCE hiding the semi-join."""
    return column.notnull() & column.isin(ids)


def _text_function(name: str, document: idt.DataType) -> Callable[[Any, str], Value]:
    """The engine's SQL function `name(document, key or path)` returning the value's text, for Ibis."""

    def text(document: Any, where: str) -> str:
        raise NotImplementedError  # never called: Ibis renders the function by name

    built: Callable[[Any, str], Value] = ibis.udf.scalar.builtin(
        text, name=name, signature=((document, idt.string), idt.string)
    )
    return built


def _quoted_path(key: str) -> str:
    # Names cannot hold a double quote (rules._name), so quoting the key is enough for a dot or a bracket.
    return f'$."{key}"'


# The one-extraction text of a JSON value, per engine: PostgreSQL unquotes a string and renders the rest
# as JSON; SQLite answers an SQL value (text for a string, a number or 0/1 otherwise); DuckDB as PostgreSQL.
_JSON_TEXT: dict[str, tuple[Callable[[Any, str], Value], Callable[[str], str]]] = {
    "postgres": (_text_function("jsonb_extract_path_text", idt.JSON(binary=True)), lambda key: key),
    "sqlite": (_text_function("json_extract", idt.json), _quoted_path),
    "duckdb": (_text_function("json_extract_string", idt.json), _quoted_path),
}


def _text_is_exact(compare: r.Compare) -> bool:
    """True when comparing the value's text decides the typed comparison: equality with strings that no
    number, boolean, null, object or array is written as (`"5"` or `"true"` could be either)."""
    if compare.op not in ("eq", "ne", "in", "not_in"):
        return False
    values = compare.value if isinstance(compare.value, tuple) else (compare.value,)
    for value in values:
        if not isinstance(value, str):
            return False
        try:
            orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        return False
    return True


def _true(expr: BooleanValue) -> BooleanValue:
    """The condition with NULL read as false, so NOT and OR behave alike on every engine."""
    return expr.fill_null(False)


def _json_compare(value: Any, compare: r.Compare) -> BooleanValue:
    """Compare a JSON value: as text when the rule gives text, as a number or a boolean otherwise."""
    op, given = compare.op, compare.value
    if op in ("exists", "missing"):
        present = value.str.notnull() | value.float.notnull() | value.bool.notnull()
        return _true(present) if op == "exists" else ~_true(present)
    sample = given[0] if isinstance(given, tuple) else given
    if isinstance(sample, bool):
        typed = value.bool
    elif isinstance(sample, str):
        typed = value.str
    else:
        typed = value.float
    return _value_compare(typed, compare)


def _value_compare(column: Any, compare: r.Compare) -> BooleanValue:
    op, given = compare.op, compare.value
    if op == "exists":
        return column.notnull()
    if op == "missing":
        return column.isnull()
    if op in ("ne", "not_in"):
        # "not Shanghai" includes customers with no city at all.
        return ~_value_compare(column, r.Compare("eq" if op == "ne" else "in", given))
    if op == "in":
        assert isinstance(given, tuple)
        return _true(column.isin(list(given)))
    if op == "contains":
        return _true(column.contains(given))
    return _true(_OPS[op](column, given))
