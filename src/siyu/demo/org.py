"""The Taste of Su organisation: regions, stores in real cities, and their staff.

The organisation is fixed (the seed only shapes customers), so the same store codes and WeCom user ids
exist in every demo database and a second run finds and reuses them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from random import Random

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth import service as auth_service
from siyu.auth.models import Role, User
from siyu.clienteling.models import Region, Store
from siyu.demo import names

ADMIN_USERNAME = "admin"
# The roster is drawn from its own fixed seed: staff do not change with the customers' seed.
_STAFF_SEED = 1930


@dataclass(frozen=True, slots=True)
class RegionSpec:
    """A sales region."""

    code: str
    name: str


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """A store: code (the `home_store` trait), city, region, and how many advisors and visitors it has."""

    code: str
    name: str
    city: str
    region: str
    advisors: int
    traffic: float


@dataclass(frozen=True, slots=True)
class StaffSpec:
    """A console user of the demo brand; advisors carry the WeCom user id customers are owned by."""

    username: str
    display_name: str
    role: Role
    region: str | None = None
    store: str | None = None
    wecom_userid: str | None = None


REGIONS: tuple[RegionSpec, ...] = (
    RegionSpec("EAST", "East China 华东"),
    RegionSpec("NORTH", "North China 华北"),
    RegionSpec("SOUTH", "South China 华南"),
    RegionSpec("WEST", "West China 西部"),
)

STORES: tuple[StoreSpec, ...] = (
    StoreSpec("SH01", "Shanghai Jing'an Kerry Centre 上海静安嘉里中心", "Shanghai", "EAST", 4, 1.6),
    StoreSpec("SH02", "Shanghai Xintiandi 上海新天地", "Shanghai", "EAST", 3, 1.2),
    StoreSpec("HZ01", "Hangzhou in77 杭州湖滨银泰in77", "Hangzhou", "EAST", 3, 1.0),
    StoreSpec("SU01", "Suzhou Center 苏州中心", "Suzhou", "EAST", 2, 0.7),
    StoreSpec("BJ01", "Beijing SKP 北京SKP", "Beijing", "NORTH", 4, 1.5),
    StoreSpec("BJ02", "Beijing Sanlitun Taikoo Li 北京三里屯太古里", "Beijing", "NORTH", 3, 1.1),
    StoreSpec("TJ01", "Tianjin Riverside 66 天津恒隆广场", "Tianjin", "NORTH", 2, 0.6),
    StoreSpec("GZ01", "Guangzhou Taikoo Hui 广州太古汇", "Guangzhou", "SOUTH", 3, 1.1),
    StoreSpec("SZ01", "Shenzhen MixC 深圳万象城", "Shenzhen", "SOUTH", 3, 1.1),
    StoreSpec("CD01", "Chengdu Taikoo Li 成都远洋太古里", "Chengdu", "WEST", 3, 1.0),
    StoreSpec("CQ01", "Chongqing Raffles City 重庆来福士", "Chongqing", "WEST", 2, 0.7),
    StoreSpec("XA01", "Xi'an SKP 西安SKP", "Xi'an", "WEST", 2, 0.6),
)
STORE_BY_CODE: dict[str, StoreSpec] = {s.code: s for s in STORES}

# Nancy's store and advisor (domain.md §8): fixed so the story and the docs can name them.
STORY_STORE = "SH01"
STORY_ADVISOR = "chenjing"
_FIXED_STAFF = {STORY_STORE: [("陈静", "Chen Jing", STORY_ADVISOR)]}


@dataclass(frozen=True, slots=True)
class Roster:
    """Every demo user, and the advisors' WeCom user ids per store code."""

    staff: tuple[StaffSpec, ...]
    advisors: dict[str, tuple[str, ...]]


def _roster() -> Roster:
    rng = Random(_STAFF_SEED)
    taken: set[str] = {wid for fixed in _FIXED_STAFF.values() for _, _, wid in fixed}
    staff: list[StaffSpec] = [
        StaffSpec("hq", "HQ CRM Operations 总部运营", Role.hq),
        StaffSpec("marketer", "Brand Content Team 品牌内容", Role.marketer),
    ]

    def person(gender: str = "female") -> tuple[str, str, str]:
        # Draw until the pinyin user id is new: WeCom user ids are unique across the company.
        while True:
            family, family_py = names.surname(rng)
            given, given_py = names.given_name(rng, gender)
            wecom = family_py + given_py
            if wecom not in taken:
                taken.add(wecom)
                english = f"{family_py.capitalize()} {given_py.capitalize()}"
                return family + given, english, wecom

    for region in REGIONS:
        zh, en, _ = person()
        staff.append(
            StaffSpec(f"rm.{region.code.lower()}", f"{zh} {en}", Role.regional_manager, region=region.code)
        )
    advisors: dict[str, tuple[str, ...]] = {}
    for store in STORES:
        zh, en, wecom = person()
        staff.append(
            StaffSpec(
                f"sm.{store.code.lower()}",
                f"{zh} {en}",
                Role.store_manager,
                region=store.region,
                store=store.code,
                wecom_userid=wecom,
            )
        )
        team = list(_FIXED_STAFF.get(store.code, []))
        while len(team) < store.advisors:
            team.append(person())
        for zh, en, wecom in team:
            staff.append(
                StaffSpec(
                    wecom,
                    f"{zh} {en}",
                    Role.sales_associate,
                    region=store.region,
                    store=store.code,
                    wecom_userid=wecom,
                )
            )
        advisors[store.code] = tuple(wecom for _, _, wecom in team)
    return Roster(tuple(staff), advisors)


ROSTER: Roster = _roster()


@dataclass(frozen=True, slots=True)
class OrgResult:
    """What `ensure_org` did: the admin user's id and how many users it created this time."""

    admin_user_id: int
    created_users: int


def ensure_org(session: Session, admin_password: str) -> OrgResult:
    """Create whatever regions, stores and users of the roster are missing; (re)set the admin's password.

    Existing rows are reused, never duplicated, so running the demo again on the same database is safe.
    Staff get random passwords nobody is told: only the admin login is printed.
    """
    region_ids = dict(session.execute(select(Region.code, Region.id)).all())
    missing_regions = [Region(code=r.code, name=r.name) for r in REGIONS if r.code not in region_ids]
    if missing_regions:
        session.add_all(missing_regions)
        session.flush()
        region_ids.update({r.code: r.id for r in missing_regions})

    store_ids = dict(session.execute(select(Store.code, Store.id)).all())
    missing_stores = [
        Store(code=s.code, name=s.name, city=s.city, region_id=region_ids[s.region])
        for s in STORES
        if s.code not in store_ids
    ]
    if missing_stores:
        session.add_all(missing_stores)
        session.flush()
        store_ids.update({s.code: s.id for s in missing_stores})

    wanted = [s.username for s in ROSTER.staff]
    existing = set(session.execute(select(User.username).where(User.username.in_(wanted))).scalars())
    created = 0
    for spec in ROSTER.staff:
        if spec.username in existing:
            continue
        auth_service.create_user(
            session,
            username=spec.username,
            password=secrets.token_urlsafe(16),
            role=spec.role,
            display_name=spec.display_name,
            region_id=region_ids[spec.region] if spec.region else None,
            store_id=store_ids[spec.store] if spec.store else None,
            wecom_userid=spec.wecom_userid,
        )
        created += 1

    admin = session.execute(select(User).where(User.username == ADMIN_USERNAME)).scalar_one_or_none()
    if admin is None:
        admin = auth_service.create_user(
            session,
            username=ADMIN_USERNAME,
            password=admin_password,
            role=Role.admin,
            display_name="Administrator",
        )
        created += 1
    else:
        # A rerun prints a new password, so the login shown always works.
        admin.password_hash = auth_service.hash_password(admin_password)
        admin.role = Role.admin
        admin.is_active = True
        session.flush()
    return OrgResult(admin_user_id=admin.id, created_users=created)
