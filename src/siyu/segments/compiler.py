"""Compile a checked rule to an Ibis expression: the ids of the live profiles that match, as of a moment.

Every leaf is a boolean that is never NULL (a missing trait compares false), so NOT and OR mean the same
on every engine. Event conditions become `id IN (subquery)`; a count or sum that zero satisfies
(`count <= 2`) is written as NOT IN the profiles that fail it, so customers without such events count.
With a scope (an unbound `segment_scope` table of profile ids) every subquery is restricted to it, which
is how an ingest batch re-evaluates a segment for the profiles it touched without scanning the rest.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable
from functools import reduce
from typing import Any

import ibis
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
        p = t.profiles.filter(t.profiles.merged_into_id.isnull())
        if scope is not None:
            p = p.filter(p.id.isin(scope.profile_id))
        self.p = p

    def members(self, node: r.Node) -> Table:
        return self.p.filter(self.cond(node)).select(profile_id=self.p.id).distinct()

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
                return _json_compare(p.traits[name], compare)
            case r.ProfileField(name, compare, window):
                column = p[name]
                if window is not None:
                    return _true(self.in_window(column, window))
                assert compare is not None
                return _value_compare(column, compare)
            case r.HasTag(name, has):
                tags = self.scoped(self.t.profile_tags)
                found = _member(p.id, tags.filter(tags.name == name).profile_id)
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
                ids = self.scoped(self.t.identifiers)
                found = _member(p.id, ids.filter(ids.type == id_type).profile_id)
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
                return _true(p.store_id.isin(stores.filter(stores.code.isin(list(codes))).id))
            case r.InRegion(codes):
                stores, regions = self.t.stores, self.t.regions
                region_ids = regions.filter(regions.code.isin(list(codes))).id
                return _true(p.store_id.isin(stores.filter(stores.region_id.isin(region_ids)).id))
            case r.EventCondition():
                return self.event(node)
        raise TypeError(f"no compilation for {type(node).__name__}")  # pragma: no cover

    def event(self, node: r.EventCondition) -> BooleanValue:
        p = self.p
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
        return _json_compare(events.properties[f.property], f.compare)

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
