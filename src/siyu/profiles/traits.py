"""How traits shape a profile: its display name, home store and advisor."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from siyu.auth.models import User
from siyu.clienteling.models import Store


@dataclass(slots=True)
class OrgDirectory:
    """Store codes and WeCom user ids of the brand, looked up once per unit of work."""

    stores: dict[str, int]  # by upper-case code
    advisors: dict[str, int]

    @classmethod
    def load(cls, session: Session, traits: Iterable[dict[str, Any]]) -> OrgDirectory:
        """The directory entries that the given traits refer to."""
        store_codes: set[str] = set()
        advisor_codes: set[str] = set()
        for t in traits:
            if isinstance(t.get("home_store"), str):
                store_codes.add(t["home_store"])
            if isinstance(t.get("advisor"), str):
                advisor_codes.add(t["advisor"])
        stores: dict[str, int] = {}
        advisors: dict[str, int] = {}
        if store_codes:
            # Store codes are case-insensitive: a POS that writes "sh01" means SH01.
            wanted = sorted({c.strip().upper() for c in store_codes})
            stores = {
                code.upper(): sid
                for code, sid in session.execute(
                    select(Store.code, Store.id).where(func.upper(Store.code).in_(wanted))
                )
            }
        if advisor_codes:
            rows = session.execute(
                select(User.wecom_userid, User.id).where(User.wecom_userid.in_(advisor_codes))
            ).all()
            advisors = {code: uid for code, uid in rows if code is not None}
        return cls(stores=stores, advisors=advisors)


def display_name(traits: dict[str, Any]) -> str | None:
    """The name to show: `name`, else last name then first name (Chinese order)."""
    name = traits.get("name")
    if isinstance(name, str) and name.strip():
        return name.strip()[:120]
    last, first = (
        traits.get("last_name") or traits.get("lastName"),
        traits.get("first_name") or traits.get("firstName"),
    )
    parts = [p for p in (last, first) if isinstance(p, str) and p.strip()]
    return "".join(parts)[:120] if parts else None


@dataclass(slots=True)
class ProfileState:
    """The mutable part of a profile row that ingest reads, changes and writes back."""

    id: int
    traits: dict[str, Any]
    name: str | None
    store_id: int | None
    owner_user_id: int | None
    events_count: int = 0
    orders_count: int = 0
    revenue_fen: int = 0
    refunded_fen: int = 0
    first_seen_at: Any = None
    last_seen_at: Any = None
    first_order_at: Any = None
    last_order_at: Any = None
    traits_changed: bool = False

    def apply_traits(self, traits: dict[str, Any], org: OrgDirectory) -> None:
        """Merge traits in (later calls win) and derive name, store and advisor from them.

        A home store or an advisor siyu does not know, or a birthday that is no date, stays on the event as
        sent but does not become the profile's: its traits always agree with its store and owner (an SDK
        repeats cached traits on every event, so refusing the event would lose orders for a retired code).
        """
        traits = dict(traits)
        store = traits.get("home_store")
        if isinstance(store, str) and store.strip().upper() in org.stores:
            self.store_id = org.stores[store.strip().upper()]
        elif "home_store" in traits:
            del traits["home_store"]
        advisor = traits.get("advisor")
        if isinstance(advisor, str) and advisor in org.advisors:
            self.owner_user_id = org.advisors[advisor]
        elif "advisor" in traits:
            del traits["advisor"]
        if "birthday" in traits and not is_birthday(traits["birthday"]):
            del traits["birthday"]
        self.traits.update(traits)
        self.traits_changed = True
        name = display_name(self.traits)
        if name:
            self.name = name


def is_birthday(value: Any) -> bool:
    """Whether value is a birthday as journeys read it: YYYY-MM-DD (an ISO date-time too) or MM-DD."""
    if not isinstance(value, str):
        return False
    text = value.strip()
    try:
        if len(text) == 5:
            dt.date.fromisoformat(f"2000-{text}")  # a leap year: 02-29 is a birthday
        else:
            dt.date.fromisoformat(text[:10])
            if len(text) > 10:
                dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
