"""Time in the demo brand: a fixed reference date, local (China) hours, and the Official Account pushes.

Nothing here reads the wall clock: the same seed gives the same timestamps on every machine and day.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from random import Random

CST = dt.timezone(dt.timedelta(hours=8), "CST")
# Every demo event happens before this instant; the history reaches back about 18 months.
REFERENCE = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
HISTORY_DAYS = 548
START = REFERENCE - dt.timedelta(days=HISTORY_DAYS)

# Weight of each local hour of the day for customer activity: lunch and the evening peak, quiet nights.
_HOUR_WEIGHTS = [
    0.4, 0.2, 0.1, 0.05, 0.05, 0.1, 0.3, 0.8, 1.4, 1.8, 2.0, 2.2,
    3.0, 2.6, 1.8, 1.8, 1.9, 2.0, 2.2, 2.8, 3.4, 3.6, 3.0, 1.6,
]  # fmt: skip
_HOUR_CUM = list(itertools.accumulate(_HOUR_WEIGHTS))
_HOURS = list(range(24))
# Store opening hours (10:00-22:00 local), busiest in the afternoon and early evening.
_STORE_HOURS = list(range(10, 22))
_STORE_CUM = list(itertools.accumulate([1, 1.4, 1.6, 1.8, 2.2, 2.4, 2.4, 2.2, 2.0, 1.8, 1.4, 0.8]))


def local_midnight(day: dt.date) -> dt.datetime:
    """00:00 China time on day, as a UTC datetime."""
    return dt.datetime(day.year, day.month, day.day, tzinfo=CST).astimezone(dt.UTC)


def at_active_hour(rng: Random, day: dt.date) -> dt.datetime:
    """A moment on day (China time) at an hour people use their phones, weighted by _HOUR_WEIGHTS."""
    hour = rng.choices(_HOURS, cum_weights=_HOUR_CUM)[0]
    return local_midnight(day) + dt.timedelta(hours=hour, seconds=rng.randrange(3600))


def at_store_hour(rng: Random, day: dt.date) -> dt.datetime:
    """A moment on day (China time) while stores are open."""
    hour = rng.choices(_STORE_HOURS, cum_weights=_STORE_CUM)[0]
    return local_midnight(day) + dt.timedelta(hours=hour, seconds=rng.randrange(3600))


def day_of(moment: dt.datetime) -> dt.date:
    """The China-time calendar day of a UTC moment."""
    return moment.astimezone(CST).date()


def iso(moment: dt.datetime) -> str:
    """The ISO-8601 timestamp a Chinese source would send: China time with its +08:00 offset."""
    return moment.astimezone(CST).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Push:
    """One Official Account mass push (a single article, as 74% of pushes are in seed 003)."""

    at: dt.datetime
    article_id: str
    title: str
    screens: int
    segmented: bool


_ARTICLE_TITLES = [
    "The Qipao at Work: Five Looks for the Boardroom",
    "How Su Embroidery Is Made",
    "Caring for Silk: Washing, Steaming, Storing",
    "New Arrivals: The Autumn Office Collection",
    "Member Day: Triple Credits This Weekend",
    "Styling a Qipao with Modern Accessories",
    "Behind the Seams: Hand-Knotted Buttons",
    "Evening Qipao for the Gala Season",
    "Our Advisors Pick Their Favourites",
    "A Short History of the Shanghai Qipao",
    "Finding Your Fit: The Taste of Su Size Guide",
    "Bridal Season: Toast Qipao Lookbook",
]


def _pushes() -> tuple[Push, ...]:
    # Four pushes a calendar month (the service-account cap, used in full by 65.71% of brands, seed 003),
    # in the first four weeks, on Thursday or Friday evening: the slots most brands use.
    pushes: list[Push] = []
    n = 0
    year, month = START.year, START.month
    while (year, month) <= (REFERENCE.year, REFERENCE.month):
        for week in range(4):
            weekday = 3 if week % 2 == 0 else 4  # Thursday, Friday
            first = dt.date(year, month, 1 + 7 * week)
            day = first + dt.timedelta(days=(weekday - first.weekday()) % 7)
            at = local_midnight(day) + dt.timedelta(hours=20, minutes=30 if week % 2 else 0)
            if START <= at < REFERENCE:
                pushes.append(
                    Push(
                        at=at,
                        article_id=f"ART-{day:%Y%m%d}",
                        title=_ARTICLE_TITLES[n % len(_ARTICLE_TITLES)],
                        screens=6 + n % 7,
                        # Every other push targets a segment: segmented pushes engage more (seed 003).
                        segmented=n % 2 == 1,
                    )
                )
                n += 1
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return tuple(pushes)


PUSHES: tuple[Push, ...] = _pushes()
PUSH_TIMES: tuple[dt.datetime, ...] = tuple(p.at for p in PUSHES)


def month_starts() -> tuple[dt.datetime, ...]:
    """The first instant (China time) of every calendar month of the history, plus the one after it."""
    starts: list[dt.datetime] = []
    year, month = START.astimezone(CST).year, START.astimezone(CST).month
    while True:
        at = local_midnight(dt.date(year, month, 1))
        starts.append(at)
        if at >= REFERENCE:
            return tuple(starts)
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


MONTH_STARTS: tuple[dt.datetime, ...] = month_starts()
