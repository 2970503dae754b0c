"""The brand's organisation: regions and stores, which scope what managers and associates see.

Flushes, never commits. Codes are what events and imports use (`home_store`, a POS export's `store`).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy import update as sa_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from siyu.auth.models import ApiKey, Role, User
from siyu.clienteling.models import Region, Store
from siyu.errors import BadRequest, Conflict, NotFound
from siyu.profiles.models import Profile

# The roles whose scope is one store or one region: a user of theirs must name it.
STORE_ROLES = frozenset({Role.store_manager, Role.sales_associate})
REGION_ROLES = frozenset({Role.regional_manager})


def _code(value: str, field: str) -> str:
    code = value.strip()
    if not code or len(code) > 40:
        raise BadRequest(f"{field}: a code of 1 to 40 characters is required")
    if re.search(r"[\s,;|/]", code):
        # Codes travel in QR scenes, CLI arguments and import cells, where these characters split or vanish.
        raise BadRequest(f"{field}: {code!r} has a space or one of , ; | /: use letters, digits, - or _")
    return code


def _name(value: str, field: str) -> str:
    name = value.strip()
    if not name or len(name) > 120:
        raise BadRequest(f"{field}: a name of 1 to 120 characters is required")
    return name


def list_regions(session: Session) -> Sequence[Region]:
    """Every region, by code."""
    return session.execute(select(Region).order_by(Region.code)).scalars().all()


def list_stores(session: Session) -> Sequence[Store]:
    """Every store, by code."""
    return session.execute(select(Store).order_by(Store.code)).scalars().all()


def scope_namer(session: Session) -> Callable[[int | None, int | None], str]:
    """A function naming a (region id, store id) scope by its codes: "store SH01", "region EAST", "whole brand"."""
    regions = {r.id: r.code for r in list_regions(session)}
    stores = {s.id: s.code for s in list_stores(session)}

    def name(region_id: int | None, store_id: int | None) -> str:
        if store_id is not None:
            return f"store {stores.get(store_id, store_id)}"
        if region_id is not None:
            return f"region {regions.get(region_id, region_id)}"
        return "whole brand"

    return name


def get_region_by_code_or_raise(session: Session, code: str) -> Region:
    """The region with this code; NotFound naming the known codes otherwise."""
    region = session.execute(
        select(Region).where(func.upper(Region.code) == code.strip().upper())
    ).scalar_one_or_none()
    if region is None:
        known = ", ".join(r.code for r in list_regions(session)) or "none yet: add one first"
        raise NotFound(f"region {code!r} does not exist (regions: {known})")
    return region


def get_store_by_code_or_raise(session: Session, code: str) -> Store:
    """The store with this code; NotFound otherwise."""
    store = session.execute(
        select(Store).where(func.upper(Store.code) == code.strip().upper())
    ).scalar_one_or_none()
    if store is None:
        raise NotFound(f"store {code!r} does not exist (add it with `siyu org add-store` or the org API)")
    return store


def create_region(session: Session, *, code: str, name: str) -> Region:
    """A new region; Conflict when the code is taken."""
    code = _code(code, "code")
    taken = session.execute(select(Region.code).where(func.upper(Region.code) == code.upper())).scalar()
    if taken is not None:
        raise Conflict(f"region {taken!r} exists (codes are case-insensitive)")
    region = Region(code=code, name=_name(name, "name"))
    session.add(region)
    session.flush()
    return region


def create_store(session: Session, *, code: str, name: str, region: str, city: str = "") -> Store:
    """A new store in the region with code `region`; Conflict when the code is taken."""
    code = _code(code, "code")
    taken = session.execute(select(Store.code).where(func.upper(Store.code) == code.upper())).scalar()
    if taken is not None:
        raise Conflict(f"store {taken!r} exists (codes are case-insensitive)")
    store = Store(
        code=code,
        name=_name(name, "name"),
        city=city.strip()[:60],
        region_id=get_region_by_code_or_raise(session, region).id,
    )
    session.add(store)
    session.flush()
    return store


def update_region(session: Session, region: Region, *, name: str) -> Region:
    """Rename a region (its code stays: users, keys and rules name it by code)."""
    region.name = _name(name, "name")
    session.flush()
    return region


def delete_region(session: Session, region: Region) -> None:
    """Remove a region with no store and no one scoped to it; Conflict naming what is left."""
    stores = session.execute(select(func.count()).where(Store.region_id == region.id)).scalar_one()
    people = session.execute(select(func.count()).where(User.region_id == region.id)).scalar_one()
    keys = session.execute(
        select(func.count()).where(ApiKey.region_id == region.id, ApiKey.revoked_at.is_(None))
    ).scalar_one()
    held = [f"{n:,} {what}" for what, n in (("stores", stores), ("staff", people), ("API keys", keys)) if n]
    if held:
        raise Conflict(f"region {region.code!r} still has {', '.join(held)}: move them first")
    session.delete(region)
    session.flush()


def update_store(
    session: Session,
    store: Store,
    *,
    name: str | None = None,
    city: str | None = None,
    region: str | None = None,
) -> Store:
    """Rename a store, change its city or move it to another region (its staff and customers move with it)."""
    if name is not None:
        store.name = _name(name, "name")
    if city is not None:
        store.city = city.strip()[:60]
    if region is not None:
        store.region_id = get_region_by_code_or_raise(session, region).id
        # A store manager's or associate's region is their store's: it moves too.
        session.execute(sa_update(User).where(User.store_id == store.id).values(region_id=store.region_id))
        session.execute(
            sa_update(ApiKey).where(ApiKey.store_id == store.id).values(region_id=store.region_id)
        )
    session.flush()
    return store


def delete_store(session: Session, store: Store) -> None:
    """Remove a store nobody points at; Conflict naming what still does (customers, staff, keys, QR codes)."""
    using = {
        "customers": session.execute(select(func.count()).where(Profile.store_id == store.id)).scalar_one(),
        "staff": session.execute(select(func.count()).where(User.store_id == store.id)).scalar_one(),
        "API keys": session.execute(
            select(func.count()).where(ApiKey.store_id == store.id, ApiKey.revoked_at.is_(None))
        ).scalar_one(),
    }
    held = [f"{n:,} {what}" for what, n in using.items() if n]
    if held:
        raise Conflict(f"store {store.code!r} still has {', '.join(held)}: move them first")
    try:
        with session.begin_nested():
            session.delete(store)
            session.flush()
    except IntegrityError:
        # Anything else that names the store (a QR code, a 「联系我」 code, a message's attribution) keeps it.
        raise Conflict(f"store {store.code!r} is still named by QR codes or other records: keep it") from None


@dataclass(frozen=True, slots=True)
class StoresImported:
    created: int
    updated: int
    unchanged: int
    regions_created: int


STORE_COLUMNS = ("code", "name", "city", "region", "region_name")


def import_stores(session: Session, path: Path) -> StoresImported:
    """Create or update the stores of a CSV (code, name, city, region[, region_name]), all or none.

    A region named by a code that does not exist is created (with `region_name`, else the code as its
    name). BadRequest naming the row and column of the first bad value; nothing is written then.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadRequest(f"{path}: no such file") from None
    except OSError as exc:
        raise BadRequest(f"{path}: cannot be read ({exc.strerror})") from None
    # Excel in China saves CSV as GBK: UTF-8 first (with or without BOM), then GB18030 (a superset of GBK).
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes any byte sequence the file could hold
        raise BadRequest(f"{path.name}: neither UTF-8 nor GBK text")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows:
        raise BadRequest(f"{path.name}: the file is empty")
    header = [h.strip().lower() for h in rows[0]]
    missing = [c for c in ("code", "name", "region") if c not in header]
    if missing:
        raise BadRequest(
            f"{path.name}: no column {', '.join(missing)} (columns: {', '.join(rows[0])}); "
            f"expected {', '.join(STORE_COLUMNS)}"
        )
    at = {name: header.index(name) for name in STORE_COLUMNS if name in header}
    # Codes are case-insensitive: a file that writes "sh01" updates SH01 instead of adding a second store.
    regions = {r.code.upper(): r for r in list_regions(session)}
    stores = {s.code.upper(): s for s in list_stores(session)}
    created = updated = unchanged = regions_created = 0
    seen: dict[str, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue

        def cell(name: str, row: list[str] = row) -> str:
            i = at.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

        def fail(name: str, reason: str, number: int = number) -> BadRequest:
            letter = chr(ord("A") + at[name]) if at.get(name, 99) < 26 else "?"
            return BadRequest(f"{path.name}: row {number}, column {name} ({letter}): {reason}")

        code, name, region_code = cell("code"), cell("name"), cell("region")
        if not code or len(code) > 40:
            raise fail("code", f"a store code of 1 to 40 characters is required, got {code!r}")
        if code.upper() in seen:
            raise fail("code", f"store {code!r} is already on row {seen[code.upper()]}")
        seen[code.upper()] = number
        if not name or len(name) > 120:
            raise fail("name", f"a name of 1 to 120 characters is required, got {name!r}")
        if not region_code or len(region_code) > 40:
            raise fail("region", f"a region code of 1 to 40 characters is required, got {region_code!r}")
        region = regions.get(region_code.upper())
        if region is None:
            region = Region(code=region_code, name=(cell("region_name") or region_code)[:120])
            session.add(region)
            session.flush()
            regions[region_code.upper()] = region
            regions_created += 1
        city = cell("city")[:60]
        store = stores.get(code.upper())
        if store is None:
            stores[code.upper()] = Store(code=code, name=name, city=city, region_id=region.id)
            session.add(stores[code.upper()])
            created += 1
        elif (store.name, store.city, store.region_id) != (name, city, region.id):
            store.name, store.city, store.region_id = name, city, region.id
            updated += 1
        else:
            unchanged += 1
    session.flush()
    return StoresImported(created, updated, unchanged, regions_created)


def scope_of(
    session: Session, role: Role, *, store: str | None, region: str | None
) -> tuple[int | None, int | None]:
    """(region_id, store_id) for a user or key of role; BadRequest when the role needs a scope not given.

    A store's region is implied; a store-scoped role must name a store, a regional manager a region.
    """
    if role in STORE_ROLES and not store:
        raise BadRequest(f"store: a {role} works in one store: name its code")
    if role in REGION_ROLES and not region:
        raise BadRequest(f"region: a {role} manages one region: name its code")
    if role not in STORE_ROLES | REGION_ROLES and (store or region):
        raise BadRequest(f"store, region: a {role} sees the whole brand; leave them out")
    if store:
        found = get_store_by_code_or_raise(session, store)
        return found.region_id, found.id
    if region:
        return get_region_by_code_or_raise(session, region).id, None
    return None, None
