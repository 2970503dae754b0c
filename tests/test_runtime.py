"""The server and the worker tune the garbage collector once, as configured."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from siyu import runtime
from siyu.config import Settings


@pytest.fixture
def fresh_gc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    before = gc.get_threshold()
    monkeypatch.setattr(runtime, "_tuned", False)
    yield
    gc.set_threshold(*before)


def test_the_threshold_is_the_setting_and_applied_once(fresh_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    runtime.tune(Settings(gc_threshold=50_000))
    assert gc.get_threshold() == (50_000, 10, 10)
    runtime.tune(Settings(gc_threshold=70_000))  # a second app in the same process changes nothing
    assert gc.get_threshold() == (50_000, 10, 10)


def test_zero_leaves_python_alone(fresh_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    runtime.tune(Settings(gc_threshold=0))
    assert gc.get_threshold() == (700, 10, 10)
