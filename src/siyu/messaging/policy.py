"""The rules a message must pass: quiet hours, consent, reach, the platforms' caps and the brand's own.

Caps are held by slot rows (`message_cap_slots`): a cap of n messages per window is n numbered slots, and
a message takes one with an insert that the unique key refuses when another worker took it first. So a
cap holds across any number of workers without a lock, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache

from siyu.channels.models import ChannelAccount, OaType
from siyu.config import Settings
from siyu.messaging.models import WECOM_CHANNELS, CapPeriod, Channel, FrequencyCap, Purpose


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `limit` messages per `period` window (or per `window` when fixed, as the 48-hour one)."""

    key: str
    label: str
    limit: int
    period: CapPeriod | None = None


def parse_cap(raw: str) -> tuple[int, CapPeriod]:
    """ "1/day" -> (1, day); ValueError naming the expected shape."""
    try:
        count, period = raw.split("/", 1)
        return int(count), CapPeriod(period.strip())
    except ValueError:
        raise ValueError(f"{raw!r}: expected n/day, n/week or n/month") from None


def caps_for(
    channel: Channel,
    purpose: Purpose,
    brand: list[FrequencyCap],
    settings: Settings,
    *,
    account: ChannelAccount | None = None,
) -> list[Cap]:
    """The calendar caps a message of this channel and purpose counts against, platform's first."""
    caps: list[Cap] = []
    if channel == Channel.oa_mass and account is not None:
        # WeChat's rule per follower and account (wechat-protocol.md §4).
        if account.oa_type == OaType.subscription:
            caps.append(Cap(f"oa_mass:{account.id}", "Official Account mass push 1/day", 1, CapPeriod.day))
        else:
            caps.append(
                Cap(f"oa_mass:{account.id}", "Official Account mass push 4/month", 4, CapPeriod.month)
            )
    if channel in WECOM_CHANNELS:
        # WeChat caps company mass messages per customer, whichever associate sends them.
        limit, period = parse_cap(settings.wecom_mass_cap)
        caps.append(Cap("wecom_mass", f"WeCom mass messages {limit}/{period}", limit, period))
    if purpose == Purpose.marketing:
        for cap in brand:
            if cap.active and cap.channel in (None, channel):
                scope = cap.channel or "all channels"
                caps.append(
                    Cap(
                        f"brand:{cap.id}",
                        f"brand cap {cap.limit}/{cap.period} on {scope}",
                        cap.limit,
                        cap.period,
                    )
                )
    return caps


def window(period: CapPeriod, now: dt.datetime, timezone: str) -> str:
    """The calendar window now falls in, in the brand's calendar: 2026-11-23, 2026-W48, 2026-11."""
    local = now.astimezone(zone(timezone))
    if period == CapPeriod.day:
        return local.date().isoformat()
    if period == CapPeriod.week:
        year, week, _ = local.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{local.year}-{local.month:02d}"


def quiet_until(now: dt.datetime, quiet: str, timezone: str) -> dt.datetime | None:
    """The end of the quiet hours now falls in (in timezone), or None outside them."""
    if not quiet.strip():
        return None
    start_s, end_s = quiet.split("-", 1)
    start, end = dt.time.fromisoformat(start_s.strip()), dt.time.fromisoformat(end_s.strip())
    tz = zone(timezone)
    local = now.astimezone(tz)
    t = local.time()
    inside = (start <= t or t < end) if start > end else (start <= t < end)
    if not inside:
        return None
    day = local.date() if t < end else local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(day, end, tzinfo=tz).astimezone(dt.UTC)


@lru_cache(maxsize=256)
def zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def zone_or(name: object, default: str) -> str:
    """name when it is a known IANA time zone (a customer's trait), else default."""
    if isinstance(name, str) and name:
        try:
            zone(name)
            return name
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return default
