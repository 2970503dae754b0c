"""What every WeChat callback shares."""

from __future__ import annotations

import datetime as dt

import pytest

from siyu.channels.callbacks import iso

NOW = dt.datetime(2026, 12, 5, 8, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("create_time", "expected"),
    [
        ("1764921600", "2025-12-05T08:00:00+00:00"),
        # The documented samples' CreateTime, an unset 0, a far future or no number: the push's arrival.
        ("123456789", NOW.isoformat()),
        ("0", NOW.isoformat()),
        ("99999999999", NOW.isoformat()),
        ("99999999999999999999", NOW.isoformat()),
        ("soon", NOW.isoformat()),
        (None, NOW.isoformat()),
    ],
)
def test_create_time_is_the_events_time_when_it_is_plausible(create_time: str | None, expected: str) -> None:
    assert iso(create_time, NOW) == expected
