"""Lifecycle stages (domain.md §3) and the figures they are decided on, kept for every customer.

The figures come from set-based SQL over the events (purchase days, the median gap between them,
high-intent actions, engagement); the stage is then decided per customer by `classify`, with every
threshold a setting. The ingest reactor re-stages the profiles a batch touched; the scheduled job
re-stages everyone, because time alone lapses customers and moves P(alive). Each change is a
LifecycleChange row, shown on the customer's timeline beside the events (not written as an event: a
stage follows from events, and writing it back as one would send every batch round the reactors twice).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.config import Settings, get_settings
from siyu.db import is_postgres, utcnow
from siyu.identity.models import IdentifierType
from siyu.ingest.models import Event
from siyu.ingest.reactors import StoredEvent
from siyu.lifecycle import predictive
from siyu.lifecycle.models import LifecycleChange, LifecycleState, Stage, StageCount, ValueModel
from siyu.profiles.service import ORDER_COMPLETED

# Identifiers that make a customer known (an openid or a device id alone does not).
KNOWN_IDENTIFIERS = tuple(
    t.value
    for t in (
        IdentifierType.member_id,
        IdentifierType.phone,
        IdentifierType.email,
        IdentifierType.wecom_external_userid,
        IdentifierType.pos_card,
    )
)
# Events that show engagement without a purchase (domain.md §3, Window).
ENGAGEMENT_EVENTS = (
    "Official Account Followed",
    "WeCom Contact Added",
    "Membership Joined",
    "Signed Up",
    "Product Added to Wishlist",
)
# Events a stage depends on (with SIYU_LIFECYCLE_INTENT_EVENTS): the reactor re-stages only their profiles.
_STAGE_EVENTS = frozenset({ORDER_COMPLETED, "Order Refunded", "Tier Changed", *ENGAGEMENT_EVENTS})
# Events siyu writes about segments: they change no stage.
_OWN_EVENTS = frozenset({"Segment Entered", "Segment Exited"})
TIME_UNITS = {"day": 1.0, "week": 7.0}
# A small L2 penalty (as lifetimes recommends): where the data show almost no dropout, the unpenalised
# maximum runs a and b off to infinity and the predictions become NaN.
DEFAULT_PENALIZER = 0.001


@dataclass(slots=True)
class Features:
    """What one customer's stage is decided on, as of a moment."""

    profile_id: int
    purchase_days: int = 0
    purchase_days_365: int = 0
    first_purchase_at: dt.datetime | None = None
    last_purchase_at: dt.datetime | None = None
    repeat_value_fen: float = 0.0  # the value of the purchase days after the first, summed
    median_gap_days: float | None = None
    intent_actions: int = 0
    engaged: bool = False
    top_tier: bool = False
    p_alive: float | None = None
    expected_purchases: float | None = None
    expected_order_value_fen: float | None = None
    clv_fen: float | None = None
    scores: tuple[int, int, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Run:
    """What a re-staging did."""

    profiles: int
    changed: int
    by_stage: dict[str, int]


# --- figures --------------------------------------------------------------------------------------------


def _day(session: Session, zone: str, column: str) -> str:
    # A purchase day is a calendar day in the brand's time zone.
    if is_postgres(session):
        return f"date(timezone('{zone}', {column}))"
    offset = dt.datetime.now(ZoneInfo(zone)).utcoffset() or dt.timedelta()
    return f"date({column}, '{int(offset.total_seconds())} seconds')"


def _gap_days(session: Session, later: str, earlier: str) -> str:
    if is_postgres(session):
        return f"(extract(epoch from ({later} - {earlier})) / 86400.0)"
    return f"(julianday({later}) - julianday({earlier}))"


def _scope_sql(session: Session, scope: Sequence[int] | None, column: str) -> str:
    if scope is None:
        return ""
    ids = ",".join(str(int(i)) for i in scope) or "NULL"
    return f" AND {column} IN ({ids})"


def _aware(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def features(
    session: Session,
    *,
    as_of: dt.datetime,
    scope: Sequence[int] | None = None,
    settings: Settings | None = None,
) -> dict[int, Features]:
    """The figures of every live profile (or those in scope), from the events up to as_of."""
    settings = settings or get_settings()
    zone = settings.timezone
    params = {
        "as_of": bulk.bind_time(session, as_of),
        "year_ago": bulk.bind_time(session, as_of - dt.timedelta(days=365)),
        "intent_since": bulk.bind_time(
            session, as_of - dt.timedelta(days=settings.lifecycle_intent_window_days)
        ),
    }
    out: dict[int, Features] = {
        pid: Features(pid)
        for pid in session.execute(
            text(f"SELECT id FROM profiles WHERE merged_into_id IS NULL{_scope_sql(session, scope, 'id')}")
        ).scalars()
    }
    if not out:
        return out
    in_scope = _scope_sql(session, scope, "profile_id")
    purchases = f"""
        WITH days AS (
            SELECT profile_id, {_day(session, zone, "timestamp")} AS day, min(timestamp) AS at,
                   sum(amount_fen) AS value
            FROM events
            WHERE event = :order AND timestamp <= :as_of{in_scope}
            GROUP BY profile_id, {_day(session, zone, "timestamp")}
        ), ordered AS (
            SELECT profile_id, at, value,
                   row_number() OVER (PARTITION BY profile_id ORDER BY at) AS n,
                   lag(at) OVER (PARTITION BY profile_id ORDER BY at) AS previous
            FROM days
        )
        SELECT profile_id, count(*), sum(CASE WHEN at >= :year_ago THEN 1 ELSE 0 END), min(at), max(at),
               sum(CASE WHEN n > 1 THEN value ELSE 0 END)
        FROM ordered GROUP BY profile_id
    """
    for pid, n, n365, first, last, repeat_value in session.execute(
        text(purchases), {**params, "order": ORDER_COMPLETED}
    ):
        if pid in out:
            f = out[pid]
            f.purchase_days, f.purchase_days_365 = int(n), int(n365 or 0)
            f.first_purchase_at, f.last_purchase_at = _aware(first), _aware(last)
            f.repeat_value_fen = float(repeat_value or 0)
    median = f"""
        WITH days AS (
            SELECT profile_id, min(timestamp) AS at
            FROM events
            WHERE event = :order AND timestamp <= :as_of{in_scope}
            GROUP BY profile_id, {_day(session, zone, "timestamp")}
        ), gaps AS (
            SELECT profile_id, {_gap_days(session, "at", "previous")} AS gap
            FROM (SELECT profile_id, at, lag(at) OVER (PARTITION BY profile_id ORDER BY at) AS previous
                  FROM days) AS d
            WHERE previous IS NOT NULL
        ), ranked AS (
            SELECT profile_id, gap, row_number() OVER (PARTITION BY profile_id ORDER BY gap) AS rn,
                   count(*) OVER (PARTITION BY profile_id) AS total
            FROM gaps
        )
        SELECT profile_id, avg(gap) FROM ranked
        WHERE rn IN ((total + 1) / 2, (total + 2) / 2)
        GROUP BY profile_id
    """
    for pid, gap in session.execute(text(median), {**params, "order": ORDER_COMPLETED}):
        if pid in out:
            out[pid].median_gap_days = float(gap)
    intent_names = ",".join(f"'{_quote(n)}'" for n in settings.lifecycle_intent_events) or "NULL"
    intent = f"""
        SELECT profile_id, count(*) FROM events
        WHERE event IN ({intent_names}) AND timestamp >= :intent_since AND timestamp <= :as_of{in_scope}
        GROUP BY profile_id
    """
    for pid, n in session.execute(text(intent), params):
        if pid in out:
            out[pid].intent_actions = int(n)
    known = ",".join(f"'{t}'" for t in KNOWN_IDENTIFIERS)
    engaged_events = ",".join(f"'{_quote(n)}'" for n in ENGAGEMENT_EVENTS)
    engaged = f"""
        SELECT profile_id FROM identifiers WHERE type IN ({known}){in_scope}
        UNION
        SELECT profile_id FROM events WHERE event IN ({engaged_events}) AND timestamp <= :as_of{in_scope}
        UNION
        SELECT profile_id FROM loyalty_members WHERE 1 = 1{in_scope}
    """
    for (pid,) in session.execute(text(engaged), params):
        if pid in out:
            out[pid].engaged = True
    top = f"""
        SELECT m.profile_id FROM loyalty_members AS m
        WHERE m.tier = (SELECT name FROM loyalty_tiers ORDER BY rank DESC LIMIT 1){_scope_sql(session, scope, "m.profile_id")}
    """
    for (pid,) in session.execute(text(top)):
        if pid in out:
            out[pid].top_tier = True
    return out


def _quote(value: str) -> str:
    return value.replace("'", "''")


# --- predicted value -----------------------------------------------------------------------------------


def latest_model(session: Session) -> ValueModel | None:
    """The newest fitted value model, or None before the first fit."""
    return session.execute(select(ValueModel).order_by(ValueModel.id.desc()).limit(1)).scalar_one_or_none()


def rfm_inputs(buyers: Sequence[Features], as_of: dt.datetime, unit_days: float) -> dict[str, np.ndarray]:
    """BG/NBD inputs (x repeat purchase days, t_x, T in the unit) and RFM inputs of buyers."""
    day = 86400.0 * unit_days
    first = np.array([b.first_purchase_at.timestamp() for b in buyers if b.first_purchase_at], dtype=float)
    last = np.array([b.last_purchase_at.timestamp() for b in buyers if b.last_purchase_at], dtype=float)
    x = np.array([b.purchase_days - 1 for b in buyers], dtype=float)
    repeat = np.array([b.repeat_value_fen for b in buyers], dtype=float)
    return {
        "x": x,
        "t_x": (last - first) / day,
        "T": np.maximum((as_of.timestamp() - first) / day, (last - first) / day),
        "m": np.divide(repeat, x, out=np.zeros_like(repeat), where=x > 0),
        "recency_days": (as_of.timestamp() - last) / 86400.0,
    }


def score(
    buyers: Sequence[Features], model: ValueModel | None, as_of: dt.datetime, *, rank: bool, days: int
) -> None:
    """Fill P(alive), expected purchases in `days`, expected order value and CLV (and RFM scores if rank)."""
    if not buyers:
        return
    unit = TIME_UNITS.get(model.time_unit, 7.0) if model else 7.0
    inputs = rfm_inputs(buyers, as_of, unit)
    if rank:
        r, f, m = predictive.rfm_scores(
            inputs["recency_days"],
            np.array([b.purchase_days for b in buyers], dtype=float),
            np.array([b.repeat_value_fen / max(b.purchase_days - 1, 1) for b in buyers], dtype=float),
        )
        for i, b in enumerate(buyers):
            b.scores = (int(r[i]), int(f[i]), int(m[i]))
    if model is None:
        return
    bg = predictive.BgNbdParams(
        model.r, model.alpha, model.a, model.b, model.log_likelihood, model.customers, True
    )
    horizon = days / unit
    alive = predictive.p_alive(bg, inputs["x"], inputs["t_x"], inputs["T"])
    expected = predictive.expected_purchases(bg, horizon, inputs["x"], inputs["t_x"], inputs["T"])
    value = clv = None
    if model.p is not None and model.q is not None and model.v is not None:
        gg = predictive.GammaGammaParams(model.p, model.q, model.v, 0.0, 0, True)
        value = predictive.expected_average_value(gg, inputs["x"], inputs["m"])
        clv = predictive.clv(bg, gg, inputs["x"], inputs["t_x"], inputs["T"], inputs["m"], horizon=horizon)
    for i, b in enumerate(buyers):
        b.p_alive = _finite(alive[i])
        b.expected_purchases = _finite(expected[i])
        if value is not None and clv is not None:
            b.expected_order_value_fen = _finite(value[i])
            b.clv_fen = _finite(clv[i])


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


# --- stages ---------------------------------------------------------------------------------------------


def classify(f: Features, as_of: dt.datetime, settings: Settings) -> tuple[Stage, str]:
    """The stage the default rules of domain.md §3 give these figures, with the reason in words."""
    if f.purchase_days == 0:
        if f.engaged and f.intent_actions >= settings.lifecycle_indecisive_intent_actions:
            days = settings.lifecycle_intent_window_days
            return Stage.indecisive, f"{f.intent_actions} high-intent actions in {days} days, no purchase"
        if f.engaged:
            return Stage.window, "known and engaged, no purchase yet"
        return Stage.anonymous, "only anonymous touchpoints"
    assert f.last_purchase_at is not None
    idle = (as_of - f.last_purchase_at).total_seconds() / 86400
    if idle > settings.lifecycle_lapsed_days:
        return Stage.lapsed, f"no purchase for {idle:.0f} days (> {settings.lifecycle_lapsed_days})"
    if f.p_alive is not None and f.p_alive < settings.lifecycle_lapsed_p_alive:
        return Stage.lapsed, f"P(alive) {f.p_alive:.2f} < {settings.lifecycle_lapsed_p_alive}"
    if f.p_alive is not None and f.p_alive < settings.lifecycle_indecisive_p_alive:
        return Stage.indecisive, f"P(alive) {f.p_alive:.2f} < {settings.lifecycle_indecisive_p_alive}"
    factor = settings.lifecycle_indecisive_gap_factor
    if f.median_gap_days is not None and f.median_gap_days > 0 and idle > factor * f.median_gap_days:
        return (
            Stage.indecisive,
            f"{idle:.0f} days since the last purchase, over {factor:g}× the usual {f.median_gap_days:.0f}",
        )
    if f.purchase_days_365 >= settings.lifecycle_loyal_purchases_365:
        return (
            Stage.loyal,
            f"{f.purchase_days_365} purchase days in 365 days (≥ {settings.lifecycle_loyal_purchases_365})",
        )
    if settings.lifecycle_loyal_top_tier and f.top_tier:
        return Stage.loyal, "in the top loyalty tier"
    if f.purchase_days >= 2:
        return Stage.repeat, f"{f.purchase_days} purchase days"
    return Stage.first_time, "one purchase"


_STATE_COLUMNS: bulk.Columns = [
    ("stage", "text"),
    ("since", "ts"),
    ("reason", "text"),
    ("purchase_days", "int"),
    ("purchase_days_365", "int"),
    ("first_purchase_at", "ts"),
    ("last_purchase_at", "ts"),
    ("median_gap_days", "float"),
    ("intent_actions_30d", "int"),
    ("recency_score", "int"),
    ("frequency_score", "int"),
    ("monetary_score", "int"),
    ("p_alive", "float"),
    ("expected_purchases", "float"),
    ("expected_order_value_fen", "float"),
    ("clv_fen", "float"),
    ("updated_at", "ts"),
]


def restage(
    session: Session,
    *,
    scope: Sequence[int] | None = None,
    as_of: dt.datetime | None = None,
    settings: Settings | None = None,
) -> Run:
    """Decide the stage of every live profile (or those in scope) now and record what changed.

    A full run (no scope) also ranks RFM scores across all buyers; a scoped run keeps the last ranks.
    Flushes, never commits.
    """
    settings = settings or get_settings()
    now = as_of or utcnow()
    found = features(session, as_of=now, scope=scope, settings=settings)
    buyers = [f for f in found.values() if f.purchase_days > 0]
    score(buyers, latest_model(session), now, rank=scope is None, days=settings.lifecycle_prediction_days)
    ids = sorted(found)
    # What is stored now, column for column, so that unchanged rows are not written again.
    stored_columns = [getattr(LifecycleState, name) for name, _ in _STATE_COLUMNS[:-1]]
    previous: dict[int, tuple[Any, ...]] = {}
    for start in range(0, len(ids), 10_000):
        chunk = ids[start : start + 10_000]
        rows = session.execute(
            select(LifecycleState.profile_id, *stored_columns).where(
                bulk.matches(session, LifecycleState.profile_id, chunk)
            )
        )
        for pid, *values in rows:
            previous[pid] = tuple(values)
    updates: list[tuple[Any, ...]] = []
    inserts: list[tuple[Any, ...]] = []
    changes: list[tuple[Any, ...]] = []
    by_stage: dict[str, int] = {}
    for pid in ids:
        f = found[pid]
        stage, reason = classify(f, now, settings)
        by_stage[stage.value] = by_stage.get(stage.value, 0) + 1
        before = previous.get(pid)
        if before is None and stage is Stage.anonymous:
            # No row is an anonymous visitor: most profiles are, and they then cost nothing here.
            continue
        before_stage = Stage(before[0]) if before else None
        since = now if before is None or before_stage is not stage else _aware(before[1])
        scores = f.scores or (
            (before[9], before[10], before[11]) if before and f.purchase_days else (None, None, None)
        )
        row = (
            stage.value,
            since,
            reason[:200],
            f.purchase_days,
            f.purchase_days_365,
            f.first_purchase_at,
            f.last_purchase_at,
            f.median_gap_days,
            f.intent_actions,
            *scores,
            f.p_alive,
            f.expected_purchases,
            f.expected_order_value_fen,
            f.clv_fen,
        )
        if before is None:
            inserts.append((pid, *row, now))
        elif _differs(before, row):
            updates.append((pid, *row, now))
        if before_stage is not stage:
            changes.append(
                (pid, before_stage.value if before_stage else None, stage.value, now, reason[:200])
            )
    bulk.insert_rows(session, "lifecycle_states", [("profile_id", "int"), *_STATE_COLUMNS], inserts)
    bulk.update_rows(session, "lifecycle_states", _STATE_COLUMNS, updates, key="profile_id")
    if changes:
        bulk.insert_rows(
            session,
            "lifecycle_changes",
            [
                ("id", "int"),
                ("profile_id", "int"),
                ("from_stage", "text"),
                ("to_stage", "text"),
                ("at", "ts"),
                ("reason", "text"),
            ],
            [
                (i, *c)
                for i, c in zip(
                    bulk.allocate_ids(session, "lifecycle_changes", len(changes)), changes, strict=True
                )
            ],
        )
    if scope is None:
        _snapshot(session, now, by_stage, settings)
    return Run(profiles=len(ids), changed=len(changes), by_stage=by_stage)


def _differs(before: tuple[Any, ...], row: tuple[Any, ...]) -> bool:
    return any(
        _aware(old) != _aware(new)
        if isinstance(old, dt.datetime | str) and isinstance(new, dt.datetime)
        else old != new
        for old, new in zip(before, row, strict=True)
    )


def _snapshot(session: Session, now: dt.datetime, by_stage: dict[str, int], settings: Settings) -> None:
    # The day's counts are those of its last full run: replace them.
    day = now.astimezone(ZoneInfo(settings.timezone)).date()
    session.execute(delete(StageCount).where(StageCount.day == day))
    session.add_all(StageCount(day=day, stage=Stage(s), customers=by_stage.get(s.value, 0)) for s in Stage)
    session.flush()


def trend(session: Session, *, days: int = 90, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Customers per stage on each day with a full staging, the last `days` days, oldest first."""
    since = ((now or utcnow()) - dt.timedelta(days=days)).date()
    rows = session.execute(
        select(StageCount.day, StageCount.stage, StageCount.customers)
        .where(StageCount.day >= since)
        .order_by(StageCount.day)
    ).all()
    by_day: dict[dt.date, dict[str, Any]] = {}
    for day, stage, n in rows:
        by_day.setdefault(day, {"day": day.isoformat(), **{s.value: 0 for s in Stage}})[str(stage)] = n
    return list(by_day.values())


def forget_merged(session: Session, pairs: list[tuple[int, int]], now: dt.datetime) -> None:
    """Identity hook: an absorbed profile has no stage of its own any more (its history stays)."""
    losers = [loser for loser, _ in pairs]
    if losers:
        session.execute(delete(LifecycleState).where(LifecycleState.profile_id.in_(losers)))


def react(session: Session, events: Sequence[StoredEvent]) -> None:
    """Reactor: re-stage the profiles this batch may have moved, before segments read their stage.

    Those are new profiles (no stage yet) and those with an event a stage depends on: an order, a
    high-intent or engagement action, a tier change, or an identify / alias (a new identifier may make a
    visitor known). A page view moves no one; time's effects are the schedule's.
    """
    settings = get_settings()
    moving = {*_STAGE_EVENTS, *settings.lifecycle_intent_events}
    touched = {e.profile_id for e in events if e.event not in _OWN_EVENTS}
    if not touched:
        return
    relevant = {e.profile_id for e in events if e.type in ("identify", "alias") or e.event in moving}
    others = sorted(touched - relevant)
    staged: set[int] = set()
    for start in range(0, len(others), 10_000):
        chunk = others[start : start + 10_000]
        staged.update(
            session.execute(
                select(LifecycleState.profile_id).where(
                    bulk.matches(session, LifecycleState.profile_id, chunk)
                )
            ).scalars()
        )
    scope = sorted(relevant | (touched - staged))
    if scope:
        restage(session, scope=scope, settings=settings)


def get_state(session: Session, profile_id: int) -> LifecycleState | None:
    """The customer's current stage and scores, or None before the first staging."""
    # Fresh from the database: re-staging writes in bulk, past the session's identity map.
    statement = select(LifecycleState).where(LifecycleState.profile_id == profile_id)
    return session.execute(statement.execution_options(populate_existing=True)).scalar_one_or_none()


def changes_of(session: Session, profile_id: int, *, limit: int = 50) -> Sequence[LifecycleChange]:
    """The customer's stage changes, newest first."""
    statement = (
        select(LifecycleChange)
        .where(LifecycleChange.profile_id == profile_id)
        .order_by(LifecycleChange.at.desc(), LifecycleChange.id.desc())
        .limit(limit)
    )
    return session.execute(statement).scalars().all()


def counts(session: Session) -> dict[str, int]:
    """How many live customers are in each stage now (every stage listed, in order).

    A live profile without a stage row is Anonymous (anonymous visitors get no row).
    """
    rows: dict[str, int] = dict(
        session.execute(
            text(
                "SELECT s.stage, count(*) FROM lifecycle_states AS s JOIN profiles AS p ON p.id = s.profile_id "
                "WHERE p.merged_into_id IS NULL GROUP BY s.stage"
            )
        ).all()
    )
    live = session.execute(text("SELECT count(*) FROM profiles WHERE merged_into_id IS NULL")).scalar_one()
    out = {stage.value: int(rows.get(stage.value, 0)) for stage in Stage}
    out[Stage.anonymous.value] = int(live) - sum(
        n for stage, n in out.items() if stage != Stage.anonymous.value
    )
    return out


def flows(
    session: Session, *, since: dt.datetime, until: dt.datetime | None = None
) -> list[tuple[str, str, int]]:
    """Transitions between stages in the period: (from, to, customers), the first staging excluded."""
    until = until or utcnow()
    rows = session.execute(
        select(LifecycleChange.from_stage, LifecycleChange.to_stage, text("count(*)"))
        .where(
            LifecycleChange.at >= since, LifecycleChange.at < until, LifecycleChange.from_stage.is_not(None)
        )
        .group_by(LifecycleChange.from_stage, LifecycleChange.to_stage)
    ).all()
    return sorted(((str(a), str(b), int(n)) for a, b, n in rows), key=lambda r: -r[2])


def weekly(session: Session, *, weeks: int = 12, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Changes per week and stage entered, the last `weeks` weeks (oldest first), for the console chart."""
    now = now or utcnow()
    start = now - dt.timedelta(weeks=weeks)
    week = (
        "floor(extract(epoch from (at - :start)) / 604800)"
        if is_postgres(session)
        else "CAST((julianday(at) - julianday(:start)) / 7 AS INTEGER)"
    )
    rows = session.execute(
        text(
            f"SELECT {week} AS week, to_stage, count(*) FROM lifecycle_changes "
            "WHERE at >= :start AND from_stage IS NOT NULL GROUP BY 1, 2"
        ),
        {"start": bulk.bind_time(session, start)},
    ).all()
    buckets: list[dict[str, Any]] = [
        {"week_start": (start + dt.timedelta(weeks=i)).date().isoformat(), **{s.value: 0 for s in Stage}}
        for i in range(weeks)
    ]
    for index, stage, n in rows:
        buckets[min(int(index), weeks - 1)][str(stage)] += int(n)
    return buckets


# --- fitting the value models -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Holdout:
    """Predicted against actual repeat purchase days after the calibration end."""

    period: float  # in the time unit
    customers: int
    predicted: float
    actual: int
    # Per number of repeat purchases in calibration (0..6, 7 meaning 7 or more): (customers, predicted, actual).
    by_frequency: list[tuple[int, int, float, float]]


@dataclass(frozen=True, slots=True)
class Fit:
    """The outcome of `siyu lifecycle fit`."""

    time_unit: str
    observed_until: dt.datetime
    customers: int
    bgnbd: predictive.BgNbdParams
    gamma_gamma: predictive.GammaGammaParams | None
    gamma_gamma_error: str | None
    holdout: Holdout | None
    model_id: int | None


def end_of_day(day: dt.date, settings: Settings | None = None) -> dt.datetime:
    """The UTC moment a day of the brand's calendar ends (a calibration end names a whole day)."""
    zone = ZoneInfo((settings or get_settings()).timezone)
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC)


def fit(
    session: Session,
    *,
    calibration_end: dt.datetime | None = None,
    time_unit: str = "week",
    penalizer: float = DEFAULT_PENALIZER,
    now: dt.datetime | None = None,
) -> Fit:
    """Fit BG/NBD and Gamma-Gamma on the purchases up to calibration_end (or now).

    Without a calibration end the fit is saved and becomes the model customers are scored with; with
    one, it is only compared with what the customers actually bought after it (FitError on bad data).
    """
    if time_unit not in TIME_UNITS:
        raise predictive.FitError(f"unknown time unit {time_unit!r} (day or week)")
    now = now or utcnow()
    until = calibration_end or now
    if until > now:
        raise predictive.FitError("the calibration end is in the future")
    found = features(session, as_of=until)
    buyers = sorted((f for f in found.values() if f.purchase_days > 0), key=lambda f: f.profile_id)
    if not buyers:
        if calibration_end is None:
            raise predictive.FitError("no purchases to fit on (no Order Completed events)")
        zone = ZoneInfo(get_settings().timezone)
        first = _aware(
            session.execute(select(func.min(Event.timestamp)).where(Event.event == ORDER_COMPLETED)).scalar()
        )
        after = (
            f"the first order is on {first.astimezone(zone):%Y-%m-%d}"
            if first is not None
            else "there is no Order Completed event at all"
        )
        # The calibration end is the last moment of a local day: one microsecond back names that day.
        day = (calibration_end - dt.timedelta(microseconds=1)).astimezone(zone)
        raise predictive.FitError(
            f"no purchases up to the calibration end {day:%Y-%m-%d}: choose a later day ({after})"
        )
    unit = TIME_UNITS[time_unit]
    inputs = rfm_inputs(buyers, until, unit)
    bg = predictive.fit_bgnbd(inputs["x"], inputs["t_x"], inputs["T"], penalizer=penalizer)
    gg: predictive.GammaGammaParams | None = None
    gg_error: str | None = None
    try:
        gg = predictive.fit_gamma_gamma(inputs["x"], inputs["m"])
    except predictive.FitError as exc:
        gg_error = str(exc)
    holdout = None
    model_id = None
    if calibration_end is not None:
        holdout = _holdout(session, buyers, inputs, bg, calibration_end, now, unit)
    else:
        model = ValueModel(
            fitted_at=now,
            time_unit=time_unit,
            observed_until=until,
            customers=len(buyers),
            r=bg.r,
            alpha=bg.alpha,
            a=bg.a,
            b=bg.b,
            log_likelihood=bg.log_likelihood,
            p=gg.p if gg else None,
            q=gg.q if gg else None,
            v=gg.v if gg else None,
        )
        session.add(model)
        session.flush()
        model_id = model.id
    return Fit(time_unit, until, len(buyers), bg, gg, gg_error, holdout, model_id)


def _holdout(
    session: Session,
    buyers: Sequence[Features],
    inputs: dict[str, np.ndarray],
    bg: predictive.BgNbdParams,
    start: dt.datetime,
    end: dt.datetime,
    unit: float,
) -> Holdout:
    zone = get_settings().timezone
    day = _day(session, zone, "timestamp")
    rows = session.execute(
        text(
            f"SELECT profile_id, count(DISTINCT {day}) FROM events "
            "WHERE event = :order AND timestamp > :start AND timestamp <= :end GROUP BY profile_id"
        ),
        {
            "order": ORDER_COMPLETED,
            "start": bulk.bind_time(session, start),
            "end": bulk.bind_time(session, end),
        },
    ).all()
    actual_by_id = {int(pid): int(n) for pid, n in rows}
    period = (end - start).total_seconds() / 86400 / unit
    predicted = predictive.expected_purchases(bg, period, inputs["x"], inputs["t_x"], inputs["T"])
    actual = np.array([actual_by_id.get(b.profile_id, 0) for b in buyers], dtype=float)
    groups = np.minimum(inputs["x"], 7).astype(int)
    by_frequency = [
        (
            int(g),
            int((groups == g).sum()),
            float(predicted[groups == g].mean()),
            float(actual[groups == g].mean()),
        )
        for g in range(8)
        if (groups == g).any()
    ]
    return Holdout(period, len(buyers), float(predicted.sum()), int(actual.sum()), by_frequency)
