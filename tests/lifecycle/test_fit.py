"""From stored orders to a fitted value model: the literature's conventions, the CLI, the holdout."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy.orm import Session

from siyu import db, migrate
from siyu.db import utcnow
from siyu.ingest.service import ingest_batch
from siyu.lifecycle import predictive, service
from siyu.lifecycle.models import ValueModel
from tests.factories import event
from tests.helpers import clear_of_midnight
from tests.test_cli import run

NOW = clear_of_midnight(utcnow()).replace(microsecond=0)


def order(user: str, days_ago: float, total: float = 100) -> dict[str, object]:
    at = (NOW - dt.timedelta(days=days_ago)).isoformat()
    return event(
        userId=user,
        event="Order Completed",
        properties={"order_id": f"{user}@{at}", "total": total},
        timestamp=at,
    )


def test_inputs_follow_the_conventions(session: Session) -> None:
    # Two orders on the first day are one purchase day; time runs from the first purchase, in weeks of 7 days.
    ingest_batch(
        session,
        [
            order("a", 42, 100),
            order("a", 41.99, 50),
            order("a", 28, 300),
            order("a", 14, 500),
            order("b", 10),
        ],
        source_key_id=None,
    )
    found = service.features(session, as_of=NOW)
    buyers = sorted(
        (f for f in found.values() if f.purchase_days), key=lambda f: f.purchase_days, reverse=True
    )
    inputs = service.rfm_inputs(buyers, NOW, 7.0)
    assert list(inputs["x"]) == [2, 0]
    assert inputs["t_x"][0] == pytest.approx(4.0, abs=1e-3)
    assert inputs["T"][0] == pytest.approx(6.0, abs=1e-3)
    assert (inputs["t_x"][1], inputs["T"][1]) == (0, pytest.approx(10 / 7, abs=1e-3))
    # The mean value of the repeat purchase days (the first day's 150 CNY excluded): (300 + 500) / 2 CNY.
    assert inputs["m"][0] == pytest.approx(40000)


def test_fit_saves_a_model_that_scores_customers(session: Session) -> None:
    x, t_x, T = predictive.simulate_bgnbd(0.8, 4.0, 0.6, 2.5, 300, 40.0, seed=3)
    events = []
    shanghai = ZoneInfo("Asia/Shanghai")
    expected_x = []
    for i, (xi, txi, Ti) in enumerate(zip(x, t_x, T, strict=True)):
        first = Ti * 7  # days ago
        days = [first] + [first - txi * 7 * (k + 1) / xi for k in range(int(xi))]
        events += [order(f"s{i}", d, 100 + 10 * k) for k, d in enumerate(days)]
        # Purchases a few hours apart can share a calendar day in Shanghai: counted here independently.
        local_days = {(NOW - dt.timedelta(days=d)).astimezone(shanghai).date() for d in days}
        expected_x.append(len(local_days) - 1)
    ingest_batch(session, events, source_key_id=None)
    result = service.fit(session)
    assert result.customers == 300 and result.model_id is not None
    assert result.bgnbd.converged
    inputs = service.rfm_inputs(
        sorted(
            (f for f in service.features(session, as_of=NOW).values() if f.purchase_days),
            key=lambda f: f.profile_id,
        ),
        result.observed_until,
        7.0,
    )
    # The reported log-likelihood is the model's at the fitted parameters on exactly these customers.
    bg = result.bgnbd
    total = predictive.bgnbd_log_likelihood(
        bg.r, bg.alpha, bg.a, bg.b, inputs["x"], inputs["t_x"], inputs["T"]
    ).sum()
    assert bg.log_likelihood == pytest.approx(total, rel=1e-9)
    assert np.array_equal(np.sort(inputs["x"]), np.sort(np.array(expected_x, dtype=float)))
    assert session.get(ValueModel, result.model_id) is not None
    run_ = service.restage(session)
    assert run_.profiles == 300


def test_cli_fit_with_holdout(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fit.db'}"
    migrate.upgrade(url)
    engine = db.create_db_engine(url)
    x, t_x, T = predictive.simulate_bgnbd(0.8, 4.0, 0.6, 2.5, 200, 40.0, seed=5)
    with Session(engine) as session:
        events = []
        for i, (xi, txi, Ti) in enumerate(zip(x, t_x, T, strict=True)):
            first = Ti * 7 + 70
            days = [first] + [first - txi * 7 * (k + 1) / xi for k in range(int(xi))]
            events += [order(f"c{i}", d) for d in days]
            if i % 4 == 0:
                events.append(order(f"c{i}", 30))  # bought again after the calibration end
        ingest_batch(session, events, source_key_id=None)
        session.commit()
    engine.dispose()
    end = (NOW - dt.timedelta(days=60)).date().isoformat()
    out = run("lifecycle", "fit", "--calibration-end", end, "--json", db_url=url)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["customers"] == 200 and body["model_id"] is None
    assert set(body) >= {"r", "alpha", "a", "b", "log_likelihood", "p", "q", "v", "mean_dropout", "notes"}
    assert body["holdout"]["actual"] == 50
    assert sum(g["customers"] for g in body["holdout"]["by_frequency"]) == 200
    saved = run("lifecycle", "fit", db_url=url)
    assert saved.returncode == 0 and "saved as value model #1" in saved.stderr
    bad = run("lifecycle", "fit", "--calibration-end", "yesterday", db_url=url)
    assert bad.returncode != 0 and "not a date" in bad.stderr
