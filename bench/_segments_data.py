"""The synthetic brand of bench/segments.py, generated with numpy and loaded by each engine's fastest path.

A womenswear brand with stores in three regions and two years of Mini Program history up to AS_OF:

* regions EAST / NORTH / SOUTH, three stores in each of ten cities, 20 sales associates (users);
* profiles: traits `{"city", "age", "gender"}` (5% without a city), a home store for 85%, an owner for 20%;
  0.5% were merged into an older profile (they keep their traits, stage and tags, nothing else);
* identifiers: a `wechat_openid` for every live profile, a `phone` for 40%, a `member_id` for 30%;
* events: `events_per_profile` x profiles, spread over profiles by a heavy-tailed activity (lognormal),
  over two years with more of them recently (12% in the last 30 days), in time order (ids follow time, as
  an ingest pipeline writes them); the names follow EVENT_MIX. Product events carry
  `properties.category` (8 categories, qipao 15%), `price` and `sku`; `Order Completed` carries
  `amount_fen` and `properties.total` in yuan;
* lifecycle_states for everyone, the stage derived from the orders (Window: no order yet but a phone or
  a member id; Lapsed: last order over 180 days ago; ...); profile_tags for ~10% (vip 6%);
* consents: `marketing` for 35% of live profiles, a quarter of them withdrawn later and some of those
  given again; `phone_number` for half the phone owners.

Everything is a function of (profiles, events_per_profile, seed). Tables come out as pyarrow tables in
chunks with the database's column names; JSON columns are JSON text, times are UTC microseconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import itertools
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

AS_OF = dt.datetime(2026, 11, 23, 4, 0, tzinfo=dt.UTC)
SPAN_DAYS = 730
US_PER_DAY = 86_400_000_000
AS_OF_US = int(AS_OF.timestamp()) * 1_000_000
CHUNK = 1_000_000  # rows per chunk of a loaded table

REGIONS = [(1, "EAST", "East China"), (2, "NORTH", "North China"), (3, "SOUTH", "South China")]
# (city, store code prefix, region id, share of the profiles)
CITIES = [
    ("Shanghai", "SHA", 1, 0.16),
    ("Hangzhou", "HGH", 1, 0.10),
    ("Suzhou", "SZV", 1, 0.08),
    ("Nanjing", "NKG", 1, 0.07),
    ("Beijing", "PEK", 2, 0.14),
    ("Tianjin", "TSN", 2, 0.06),
    ("Qingdao", "TAO", 2, 0.05),
    ("Guangzhou", "CAN", 3, 0.12),
    ("Shenzhen", "SZX", 3, 0.13),
    ("Xiamen", "XMN", 3, 0.09),
]
STORES_PER_CITY = 3
USERS = 20
CATEGORIES = [
    ("qipao", 0.15, 1280),
    ("dresses", 0.20, 690),
    ("blouses", 0.15, 390),
    ("knitwear", 0.12, 560),
    ("outerwear", 0.10, 1490),
    ("skirts", 0.12, 420),
    ("accessories", 0.10, 190),
    ("shoes", 0.06, 890),
]
# (event name, share of the events)
EVENT_MIX = [
    ("Product Viewed", 0.50),
    ("Product Searched", 0.08),
    ("Product Added", 0.10),
    ("Product Added to Wishlist", 0.05),
    ("Order Completed", 0.08),
    ("Official Account Followed", 0.03),
    ("Membership Joined", 0.02),
    ("Coupon Redeemed", 0.04),
    ("Store Visited", 0.05),
    ("Article Read", 0.05),
]
EVENT_NAMES = [name for name, _ in EVENT_MIX]
PRODUCT_KINDS = [
    EVENT_NAMES.index(n) for n in ("Product Viewed", "Product Added", "Product Added to Wishlist")
]
ORDER_KIND = EVENT_NAMES.index("Order Completed")
# properties of the other events: {"<key>":"<one of the words>"}
OTHER_PROPERTIES = {
    "Product Searched": ("query", ["qipao silk", "linen dress", "cashmere", "wedding", "sale"]),
    "Official Account Followed": ("scene", ["qr_store", "article", "search", "mini_program"]),
    "Membership Joined": ("tier", ["Silver", "Gold"]),
    "Coupon Redeemed": ("coupon", ["NEW50", "VIP100", "BDAY88"]),
    "Store Visited": ("store", ["SHA-01", "HGH-02", "PEK-01", "CAN-03"]),
    "Article Read": ("article", ["how-to-wear-qipao", "spring-lookbook", "care-guide"]),
}
TAGS = [("vip", 0.06), ("wholesale", 0.025), ("kol", 0.015)]
MERGED_SHARE = 0.005

TS = pa.timestamp("us", tz="UTC")
JSON_COLUMNS = frozenset({"traits", "properties", "context", "seen_member_ids"})


def _ts(us: np.ndarray) -> pa.Array:
    return pa.array(us, TS)


def _us(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1_000_000)


@dataclass(slots=True)
class Brand:
    """The generated brand: numpy columns, from which each table's chunks are built."""

    profiles: int
    events_per_profile: int
    seed: int
    # profiles, indexed by id - 1
    merged_into: np.ndarray  # 0 = live
    city: np.ndarray  # index into CITIES, -1 = no city
    age: np.ndarray
    female: np.ndarray
    store_id: np.ndarray  # 0 = none
    owner: np.ndarray  # 0 = none
    weight: np.ndarray  # activity, sums to 1 (0 for merged profiles)
    created: np.ndarray
    # identifiers
    openid_id: np.ndarray  # identifier id of the profile's openid (0 for merged profiles)
    phone: np.ndarray
    member: np.ndarray
    # events, in time order (id = index + 1)
    e_pid: np.ndarray
    e_kind: np.ndarray
    e_ts: np.ndarray
    e_cat: np.ndarray
    e_price: np.ndarray
    e_amount: np.ndarray
    e_word: np.ndarray
    # per profile, from the events
    events_count: np.ndarray
    orders_count: np.ndarray
    orders_365: np.ndarray
    revenue: np.ndarray
    first_seen: np.ndarray  # -1 = none
    last_seen: np.ndarray
    first_order: np.ndarray
    last_order: np.ndarray
    stage: np.ndarray  # index into STAGES
    # consents (profile id, purpose index, granted, at), in id order
    c_pid: np.ndarray
    c_purpose: np.ndarray
    c_granted: np.ndarray
    c_at: np.ndarray
    # tags (profile id, tag index)
    t_pid: np.ndarray
    t_tag: np.ndarray

    @property
    def events(self) -> int:
        return len(self.e_pid)

    @property
    def live_ids(self) -> np.ndarray:
        return np.flatnonzero(self.merged_into == 0) + 1


STAGES = ["Anonymous", "Window", "First-Time", "Repeat", "Loyal", "Indecisive", "Lapsed"]
PURPOSES = ["marketing", "phone_number"]


def _per_profile(n: int, pid: np.ndarray, values: np.ndarray, reduce: np.ufunc, empty: int) -> np.ndarray:
    out = np.full(n + 1, empty, dtype=np.int64)
    reduce.at(out, pid, values)
    return out[1:]


def generate(profiles: int, events_per_profile: int, seed: int) -> Brand:
    """The brand for these sizes; the same arrays for the same arguments."""
    rng = np.random.default_rng(seed)
    n = profiles
    ids = np.arange(1, n + 1, dtype=np.int64)

    # --- profiles
    merged = rng.random(n) < MERGED_SHARE
    merged[0] = False
    live_ids = ids[~merged]
    merged_into = np.zeros(n, dtype=np.int64)
    older_live = np.searchsorted(live_ids, ids[merged])  # live profiles with a smaller id
    merged_into[merged] = live_ids[(rng.random(merged.sum()) * older_live).astype(np.int64)]
    shares = np.array([s for _, _, _, s in CITIES])
    city = rng.choice(len(CITIES), n, p=shares / shares.sum())
    city[rng.random(n) < 0.05] = -1
    age = rng.integers(18, 66, n)
    female = rng.random(n) < 0.82
    home_city = np.where(city >= 0, city, rng.integers(0, len(CITIES), n))
    store_id = home_city * STORES_PER_CITY + rng.integers(1, STORES_PER_CITY + 1, n)
    store_id[rng.random(n) < 0.15] = 0
    owner = rng.integers(1, USERS + 1, n)
    owner[rng.random(n) >= 0.20] = 0
    weight = rng.lognormal(0.0, 1.0, n)
    weight[merged] = 0.0
    weight /= weight.sum()
    created = AS_OF_US - (rng.random(n) * SPAN_DAYS * US_PER_DAY).astype(np.int64)

    # --- identifiers
    openid_id = np.zeros(n, dtype=np.int64)
    openid_id[~merged] = np.arange(1, len(live_ids) + 1)
    phone = ~merged & (rng.random(n) < 0.40)
    member = ~merged & np.where(phone, rng.random(n) < 0.65, rng.random(n) < 0.067)

    # --- events
    total = n * events_per_profile
    e_pid = rng.choice(n, total, p=weight).astype(np.int64) + 1
    mix = np.array([s for _, s in EVENT_MIX])
    e_kind = rng.choice(len(EVENT_MIX), total, p=mix / mix.sum()).astype(np.int8)
    # More events recently: the age of an event is SPAN * U^1.6 (12% fall in the last 30 days).
    age_us = (np.power(rng.random(total), 1.6) * SPAN_DAYS * US_PER_DAY).astype(np.int64)
    e_ts = AS_OF_US - 1_000_000 - age_us
    order = np.argsort(e_ts, kind="stable")
    e_pid, e_kind, e_ts = e_pid[order], e_kind[order], e_ts[order]
    del order, age_us
    cat_shares = np.array([s for _, s, _ in CATEGORIES])
    e_cat = rng.choice(len(CATEGORIES), total, p=cat_shares / cat_shares.sum()).astype(np.int8)
    base = np.array([p for _, _, p in CATEGORIES], dtype=np.float64)
    e_price = np.round(base[e_cat] * rng.lognormal(0.0, 0.25, total)).astype(np.int64)
    is_order = e_kind == ORDER_KIND
    e_amount = np.zeros(total, dtype=np.int64)
    e_amount[is_order] = np.maximum(990, rng.lognormal(np.log(40_000), 0.9, int(is_order.sum()))).astype(
        np.int64
    )
    e_word = rng.integers(0, 5, total).astype(np.int8)

    # --- per profile
    events_count = np.bincount(e_pid, minlength=n + 1)[1:]
    o_pid, o_ts = e_pid[is_order], e_ts[is_order]
    orders_count = np.bincount(o_pid, minlength=n + 1)[1:]
    recent = o_ts >= AS_OF_US - 365 * US_PER_DAY
    orders_365 = np.bincount(o_pid[recent], minlength=n + 1)[1:]
    revenue = np.bincount(o_pid, weights=e_amount[is_order], minlength=n + 1)[1:].astype(np.int64)
    big = np.iinfo(np.int64).max
    first_seen = _per_profile(n, e_pid, e_ts, np.minimum, big)
    last_seen = _per_profile(n, e_pid, e_ts, np.maximum, -1)
    first_order = _per_profile(n, o_pid, o_ts, np.minimum, big)
    last_order = _per_profile(n, o_pid, o_ts, np.maximum, -1)
    first_seen[first_seen == big] = -1
    first_order[first_order == big] = -1
    created = np.where(first_seen >= 0, np.minimum(created, first_seen), created)

    stage = np.where(phone | member, STAGES.index("Window"), STAGES.index("Anonymous"))
    indecisive = (stage == STAGES.index("Window")) & (events_count >= 10) & (rng.random(n) < 0.15)
    stage[indecisive] = STAGES.index("Indecisive")
    stage[orders_count == 1] = STAGES.index("First-Time")
    stage[(orders_count >= 2) & (orders_count <= 3)] = STAGES.index("Repeat")
    stage[orders_count >= 4] = STAGES.index("Loyal")
    stage[(orders_count > 0) & (last_order < AS_OF_US - 180 * US_PER_DAY)] = STAGES.index("Lapsed")

    # --- consents: marketing given, a quarter withdrawn later, 30% of those given again; phone_number
    gets = live_ids[rng.random(len(live_ids)) < 0.35]
    t1 = AS_OF_US - (rng.random(len(gets)) * SPAN_DAYS * US_PER_DAY).astype(np.int64)
    withdrawn = rng.random(len(gets)) < 0.25
    w_pid, w_t1 = gets[withdrawn], t1[withdrawn]
    t2 = w_t1 + (rng.random(len(w_pid)) * (AS_OF_US - w_t1)).astype(np.int64)
    again = rng.random(len(w_pid)) < 0.30
    t3 = t2[again] + (rng.random(int(again.sum())) * (AS_OF_US - t2[again])).astype(np.int64)
    p_pid = ids[phone & (rng.random(n) < 0.5)]
    p_at = AS_OF_US - (rng.random(len(p_pid)) * SPAN_DAYS * US_PER_DAY).astype(np.int64)
    c_pid = np.concatenate([gets, w_pid, w_pid[again], p_pid])
    c_purpose = np.concatenate(
        [
            np.zeros(len(gets) + len(w_pid) + int(again.sum()), dtype=np.int8),
            np.ones(len(p_pid), dtype=np.int8),
        ]
    )
    c_granted = np.concatenate(
        [
            np.ones(len(gets), bool),
            np.zeros(len(w_pid), bool),
            np.ones(int(again.sum()), bool),
            np.ones(len(p_pid), bool),
        ]
    )
    c_at = np.concatenate([t1, t2, t3, p_at])

    # --- tags (merged profiles keep theirs)
    t_pid_parts, t_tag_parts = [], []
    for i, (_, share) in enumerate(TAGS):
        chosen = ids[rng.random(n) < share]
        t_pid_parts.append(chosen)
        t_tag_parts.append(np.full(len(chosen), i, dtype=np.int8))
    t_pid = np.concatenate(t_pid_parts)
    t_tag = np.concatenate(t_tag_parts)

    return Brand(
        profiles=n,
        events_per_profile=events_per_profile,
        seed=seed,
        merged_into=merged_into,
        city=city,
        age=age,
        female=female,
        store_id=store_id,
        owner=owner,
        weight=weight,
        created=created,
        openid_id=openid_id,
        phone=phone,
        member=member,
        e_pid=e_pid,
        e_kind=e_kind,
        e_ts=e_ts,
        e_cat=e_cat,
        e_price=e_price,
        e_amount=e_amount,
        e_word=e_word,
        events_count=events_count,
        orders_count=orders_count,
        orders_365=orders_365,
        revenue=revenue,
        first_seen=first_seen,
        last_seen=last_seen,
        first_order=first_order,
        last_order=last_order,
        stage=stage,
        c_pid=c_pid,
        c_purpose=c_purpose,
        c_granted=c_granted,
        c_at=c_at,
        t_pid=t_pid,
        t_tag=t_tag,
    )


# --- the tables, as pyarrow chunks with the database's column names ------------------------------------


def _str(values: np.ndarray | pa.Array) -> pa.Array:
    return pc.cast(pa.array(values) if isinstance(values, np.ndarray) else values, pa.string())


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _optional_ts(us: np.ndarray) -> pa.Array:
    return pa.array(us, TS, mask=us < 0)


def _optional_int(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.int64(), mask=values == 0)


def regions(brand: Brand) -> Iterator[pa.Table]:
    ids, codes, names = zip(*REGIONS, strict=True)
    yield pa.table({"id": pa.array(ids, pa.int64()), "code": codes, "name": names})


def stores(brand: Brand) -> Iterator[pa.Table]:
    rows = [
        (
            c * STORES_PER_CITY + k + 1,
            f"{code}-{k + 1:02d}",
            f"{name} store {k + 1}",
            name,
            region,
        )
        for c, (name, code, region, _) in enumerate(CITIES)
        for k in range(STORES_PER_CITY)
    ]
    ids, codes, names, cities, region_ids = zip(*rows, strict=True)
    yield pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "code": codes,
            "name": names,
            "city": cities,
            "region_id": pa.array(region_ids, pa.int64()),
        }
    )


def users(brand: Brand) -> Iterator[pa.Table]:
    ids = np.arange(1, USERS + 1)
    store = (ids - 1) % (len(CITIES) * STORES_PER_CITY) + 1
    region = np.array([CITIES[(s - 1) // STORES_PER_CITY][2] for s in store])
    yield pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "username": [f"guide{i:03d}" for i in ids],
            "display_name": [f"Guide {i}" for i in ids],
            "role": ["sales_associate"] * USERS,
            "password_hash": ["!bench"] * USERS,
            "wecom_userid": pa.nulls(USERS, pa.string()),
            "region_id": pa.array(region, pa.int64()),
            "store_id": pa.array(store, pa.int64()),
            "is_active": pa.array([True] * USERS),
            "created_at": _ts(np.full(USERS, AS_OF_US - SPAN_DAYS * US_PER_DAY)),
        }
    )


def profiles(brand: Brand) -> Iterator[pa.Table]:
    cities = pa.array([name for name, _, _, _ in CITIES])
    for start in range(0, brand.profiles, CHUNK):
        s = slice(start, min(start + CHUNK, brand.profiles))
        n = s.stop - s.start
        city = brand.city[s]
        city_part = pc.if_else(
            pa.array(city >= 0),
            _join('"city":"', pc.take(cities, pa.array(np.maximum(city, 0))), '",'),
            pa.array([""] * n),
        )
        gender = pc.if_else(pa.array(brand.female[s]), "f", "m")
        traits = _join("{", city_part, '"age":', _str(brand.age[s]), ',"gender":"', gender, '"}')
        yield pa.table(
            {
                "id": pa.array(np.arange(s.start + 1, s.stop + 1), pa.int64()),
                "created_at": _ts(brand.created[s]),
                "updated_at": _ts(np.full(n, AS_OF_US)),
                "merged_into_id": _optional_int(brand.merged_into[s]),
                "name": pa.nulls(n, pa.string()),
                "traits": traits,
                "store_id": _optional_int(brand.store_id[s]),
                "owner_user_id": _optional_int(brand.owner[s]),
                "events_count": pa.array(brand.events_count[s], pa.int64()),
                "orders_count": pa.array(brand.orders_count[s], pa.int64()),
                "revenue_fen": pa.array(brand.revenue[s], pa.int64()),
                "refunded_fen": pa.array(np.zeros(n, np.int64)),
                "first_seen_at": _optional_ts(brand.first_seen[s]),
                "last_seen_at": _optional_ts(brand.last_seen[s]),
                "first_order_at": _optional_ts(brand.first_order[s]),
                "last_order_at": _optional_ts(brand.last_order[s]),
            }
        )


def identifiers(brand: Brand) -> Iterator[pa.Table]:
    ids = np.arange(1, brand.profiles + 1, dtype=np.int64)
    live = brand.merged_into == 0
    parts = [("wechat_openid", "oBENCH", ids[live]), ("phone", "+86138", ids[brand.phone])]
    parts.append(("member_id", "M", ids[brand.member]))
    next_id = 1
    for kind, prefix, pids in parts:
        for start in range(0, len(pids), CHUNK):
            chunk = pids[start : start + CHUNK]
            n = len(chunk)
            seen = np.where(
                brand.first_seen[chunk - 1] >= 0, brand.first_seen[chunk - 1], brand.created[chunk - 1]
            )
            last = np.maximum(brand.last_seen[chunk - 1], seen)
            yield pa.table(
                {
                    "id": pa.array(np.arange(next_id, next_id + n), pa.int64()),
                    "type": pa.array([kind] * n),
                    "value": _join(prefix, pc.utf8_lpad(_str(chunk), 9, "0")),
                    "profile_id": pa.array(chunk, pa.int64()),
                    "source_key_id": pa.nulls(n, pa.int64()),
                    "first_seen_at": _ts(seen),
                    "last_seen_at": _ts(last),
                    "shared": pa.array(np.zeros(n, bool)),
                    "seen_member_ids": pa.nulls(n, pa.string()),
                }
            )
            next_id += n


def _event_properties(brand: Brand, s: slice) -> pa.Array:
    """properties as JSON text.

    {"category","price","sku"} for products, {"order_id","total","currency"} for orders, {"<key>":"<word>"}
    for the others.
    """
    kind = brand.e_kind[s]
    is_product = np.isin(kind, PRODUCT_KINDS)
    is_order = kind == ORDER_KIND
    categories = pa.array([c for c, _, _ in CATEGORIES])
    cat = pc.take(categories, pa.array(brand.e_cat[s]))
    price = _str(brand.e_price[s])
    product = _join(
        '{"category":"',
        cat,
        '","price":',
        price,
        ',"sku":"SKU-',
        _str(brand.e_cat[s]),
        _str(brand.e_word[s]),
        '"}',
    )
    ids = _str(np.arange(s.start + 1, s.stop + 1))
    total = _str(np.round(brand.e_amount[s] / 100.0, 2))
    order = _join('{"order_id":"O', ids, '","total":', total, ',"currency":"CNY"}')
    # The other events: one key and one of a few words, looked up from (kind, word).
    lookup, starts = [], np.zeros(len(EVENT_NAMES), dtype=np.int64)
    for k, name in enumerate(EVENT_NAMES):
        starts[k] = len(lookup)
        key, words = OTHER_PROPERTIES.get(name, ("x", ["-"]))
        lookup.extend(f'{{"{key}":"{w}"}}' for w in words)
    sizes = np.array([len(OTHER_PROPERTIES.get(name, ("x", ["-"]))[1]) for name in EVENT_NAMES])
    other = pc.take(pa.array(lookup), pa.array(starts[kind] + brand.e_word[s] % sizes[kind]))
    return pc.if_else(pa.array(is_product), product, pc.if_else(pa.array(is_order), order, other))


def events(brand: Brand) -> Iterator[pa.Table]:
    names = pa.array(EVENT_NAMES)
    for start in range(0, brand.events, CHUNK):
        s = slice(start, min(start + CHUNK, brand.events))
        n = s.stop - s.start
        ids = np.arange(s.start + 1, s.stop + 1, dtype=np.int64)
        pid = brand.e_pid[s]
        ts = _ts(brand.e_ts[s])
        yield pa.table(
            {
                "id": pa.array(ids),
                "message_id": _join("bench-", pc.utf8_lpad(_str(ids), 10, "0")),
                "type": pa.array(["track"] * n),
                "event": pc.take(names, pa.array(brand.e_kind[s])),
                "profile_id": pa.array(pid),
                "identifier_id": pa.array(brand.openid_id[pid - 1]),
                "user_id": pa.nulls(n, pa.string()),
                "anonymous_id": pa.nulls(n, pa.string()),
                "timestamp": ts,
                "received_at": ts,
                "source_key_id": pa.nulls(n, pa.int64()),
                "amount_fen": pa.array(brand.e_amount[s]),
                "properties": _event_properties(brand, s),
                "context": pa.array(["{}"] * n),
                "traits": pa.nulls(n, pa.string()),
            }
        )


def lifecycle_states(brand: Brand) -> Iterator[pa.Table]:
    rng = np.random.default_rng(brand.seed + 1)
    stages = pa.array(STAGES)
    for start in range(0, brand.profiles, CHUNK):
        s = slice(start, min(start + CHUNK, brand.profiles))
        n = s.stop - s.start
        buyer = brand.orders_count[s] > 0
        scores = [np.where(buyer, rng.integers(1, 6, n), 0) for _ in range(3)]
        since = np.maximum(brand.created[s], AS_OF_US - (rng.random(n) * 90 * US_PER_DAY).astype(np.int64))
        yield pa.table(
            {
                "profile_id": pa.array(np.arange(s.start + 1, s.stop + 1), pa.int64()),
                "stage": pc.take(stages, pa.array(brand.stage[s])),
                "since": _ts(since),
                "reason": pa.array(["bench"] * n),
                "purchase_days": pa.array(brand.orders_count[s], pa.int64()),
                "purchase_days_365": pa.array(brand.orders_365[s], pa.int64()),
                "first_purchase_at": _optional_ts(brand.first_order[s]),
                "last_purchase_at": _optional_ts(brand.last_order[s]),
                "median_gap_days": pa.nulls(n, pa.float64()),
                "intent_actions_30d": pa.array(np.zeros(n, np.int64)),
                "recency_score": _optional_int(scores[0]),
                "frequency_score": _optional_int(scores[1]),
                "monetary_score": _optional_int(scores[2]),
                "p_alive": pa.nulls(n, pa.float64()),
                "expected_purchases": pa.nulls(n, pa.float64()),
                "expected_order_value_fen": pa.nulls(n, pa.float64()),
                "clv_fen": pa.nulls(n, pa.float64()),
                "updated_at": _ts(np.full(n, AS_OF_US)),
            }
        )


def profile_tags(brand: Brand) -> Iterator[pa.Table]:
    n = len(brand.t_pid)
    yield pa.table(
        {
            "id": pa.array(np.arange(1, n + 1), pa.int64()),
            "profile_id": pa.array(brand.t_pid, pa.int64()),
            "name": pc.take(pa.array([t for t, _ in TAGS]), pa.array(brand.t_tag)),
            "source": pa.array(["manual"] * n),
            "rule": pa.nulls(n, pa.string()),
            "created_at": _ts(brand.created[brand.t_pid - 1]),
            "created_by": pa.array(["bench"] * n),
        }
    )


def consents(brand: Brand) -> Iterator[pa.Table]:
    n = len(brand.c_pid)
    ids = np.arange(1, n + 1, dtype=np.int64)
    yield pa.table(
        {
            "id": pa.array(ids),
            "profile_id": pa.array(brand.c_pid, pa.int64()),
            "purpose": pc.take(pa.array(PURPOSES), pa.array(brand.c_purpose)),
            "granted": pa.array(brand.c_granted),
            "source": pa.array(["mini_program"] * n),
            "message_id": _join("consent-", _str(ids)),
            "at": _ts(brand.c_at),
            "recorded_at": _ts(brand.c_at),
        }
    )


# Parents first: the foreign keys hold at every step.
TABLES: list[tuple[str, Callable[[Brand], Iterator[pa.Table]]]] = [
    ("regions", regions),
    ("stores", stores),
    ("users", users),
    ("profiles", profiles),
    ("identifiers", identifiers),
    ("events", events),
    ("lifecycle_states", lifecycle_states),
    ("profile_tags", profile_tags),
    ("consents", consents),
]


# --- loading ------------------------------------------------------------------------------------------


Progress = Callable[[str], None]
T = TypeVar("T")


def _prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """The items, produced by a background thread: generating the next chunk overlaps loading this one."""
    done = object()
    pending: queue.Queue[Any] = queue.Queue(maxsize=depth)

    def produce() -> None:
        try:
            for item in items:
                pending.put(item)
        except BaseException as exc:  # handed to the consumer, which raises it
            pending.put(exc)
        pending.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := pending.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def _pg_deferred(conn: psycopg.Connection[Any], table: str) -> tuple[list[str], list[str]]:
    """The statements that recreate the table's secondary indexes, then its unique and foreign keys."""
    constraints = conn.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype IN ('u', 'f') ORDER BY contype DESC, conname",
        (table,),
    ).fetchall()
    indexes = conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s"
        " AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)"
        " ORDER BY indexname",
        (table, table),
    ).fetchall()
    drop = [f'DROP INDEX "{name}"' for name, _ in indexes]
    drop += [f'ALTER TABLE {table} DROP CONSTRAINT "{name}"' for name, _, _ in constraints]
    create = [definition for _, definition in indexes]
    create += [
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for name, _, definition in constraints
    ]
    return drop, create


def load_postgresql(brand: Brand, dsn: str, progress: Progress) -> None:
    """COPY every table (CSV written by pyarrow), then set the sequences and VACUUM (ANALYZE).

    As PostgreSQL's "Populating a Database" advises, each table's secondary indexes, unique and foreign
    keys are dropped for the COPY and created again afterwards with the definitions read from the
    migrated schema (the foreign keys are validated then, in one pass); the schema is checked to be the
    same afterwards. Autovacuum may be off on the server, so the load ends with VACUUM (ANALYZE): the
    state of a running database.
    """
    options = pacsv.WriteOptions(include_header=False, batch_size=CHUNK)

    def csv_chunks(chunks: Iterator[pa.Table]) -> Iterator[tuple[list[str], int, bytes]]:
        for chunk in chunks:
            buffer = io.BytesIO()
            pacsv.write_csv(chunk, buffer, options)
            yield chunk.column_names, chunk.num_rows, buffer.getvalue()

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '1GB'")
        before = _pg_schema(conn)
        for table, chunks in TABLES:
            started, rows = time.perf_counter(), 0
            drop, create = _pg_deferred(conn, table)
            with conn.transaction():
                for statement in drop:
                    conn.execute(statement)
                pending = _prefetch(csv_chunks(chunks(brand)))
                head = next(pending)
                names = head[0]
                columns = ", ".join(f'"{c}"' for c in names)
                statement = f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)"
                with conn.cursor() as cursor, cursor.copy(statement) as copy:
                    for _, count, body in itertools.chain([head], pending):
                        copy.write(body)
                        rows += count
                        if table == "events":
                            progress(
                                f"    events: {rows:,} / {brand.events:,} "
                                f"({time.perf_counter() - started:.0f} s)"
                            )
                copied = time.perf_counter()
                for statement in create:
                    conn.execute(statement)
            progress(
                f"    {table}: {rows:,} rows in {time.perf_counter() - started:.1f} s "
                f"(indexes and keys {time.perf_counter() - copied:.1f} s)"
            )
        if _pg_schema(conn) != before:
            raise RuntimeError("the indexes or constraints differ from the migrated schema after the load")
        for table, _ in TABLES:
            if table != "lifecycle_states":
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
        started = time.perf_counter()
        for table, _ in TABLES:
            conn.execute(f"VACUUM (ANALYZE) {table}")
        progress(f"    VACUUM (ANALYZE) in {time.perf_counter() - started:.1f} s")


def _pg_schema(conn: psycopg.Connection[Any]) -> set[tuple[str, ...]]:
    names = [t for t, _ in TABLES]
    rows = conn.execute(
        "SELECT tablename, indexname, indexdef FROM pg_indexes"
        " WHERE schemaname = current_schema() AND tablename = ANY(%s)",
        (names,),
    ).fetchall()
    rows += conn.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid::regclass::text = ANY(%s)",
        (names,),
    ).fetchall()
    return {tuple(r) for r in rows}


def _sqlite_rows(chunk: pa.Table) -> list[tuple[Any, ...]]:
    columns = []
    for column in chunk.columns:
        if pa.types.is_timestamp(column.type):
            # SQLAlchemy's storage format on SQLite: naive UTC, six fractional digits (%S prints them).
            columns.append(pc.strftime(column, "%Y-%m-%d %H:%M:%S").to_pylist())
        elif pa.types.is_boolean(column.type):
            columns.append(pc.cast(column, pa.int64()).to_pylist())
        else:
            columns.append(column.to_pylist())
    return list(zip(*columns, strict=True))


def load_sqlite(brand: Brand, path: Path, progress: Progress) -> None:
    """executemany per chunk, one transaction per table, WAL with synchronous=OFF; then ANALYZE.

    Each table's secondary indexes (CREATE INDEX statements of the migrated schema) are dropped for the
    inserts and created again afterwards; the unique constraints inside CREATE TABLE stay. Foreign keys
    are not enforced by this connection (SQLite's default): the rows are consistent by construction.
    """
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-1048576")  # 1 GB while loading
        before = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
        for table, chunks in TABLES:
            started, rows = time.perf_counter(), 0
            indexes = conn.execute(
                "SELECT name, sql FROM sqlite_master"
                " WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL",
                (table,),
            ).fetchall()
            conn.execute("BEGIN")
            for name, _ in indexes:
                conn.execute(f'DROP INDEX "{name}"')
            for chunk in _prefetch(chunks(brand)):
                names = ", ".join(f'"{c}"' for c in chunk.column_names)
                marks = ", ".join("?" for _ in chunk.column_names)
                conn.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", _sqlite_rows(chunk))
                rows += chunk.num_rows
                if table == "events":
                    progress(
                        f"    events: {rows:,} / {brand.events:,} ({time.perf_counter() - started:.0f} s)"
                    )
            inserted = time.perf_counter()
            for _, sql in indexes:
                conn.execute(sql)
            conn.execute("COMMIT")
            progress(
                f"    {table}: {rows:,} rows in {time.perf_counter() - started:.1f} s "
                f"(indexes {time.perf_counter() - inserted:.1f} s)"
            )
        after = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
        if after != before:
            raise RuntimeError("the indexes differ from the migrated schema after the load")
        started = time.perf_counter()
        conn.execute("ANALYZE")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        progress(f"    ANALYZE in {time.perf_counter() - started:.1f} s")


def write_parquet(
    brand: Brand, folder: Path, schemas: dict[str, pa.Schema], progress: Progress
) -> dict[str, Path]:
    """One Parquet file per table the rules read, with exactly the columns (and types) of `schemas`."""
    paths = {}
    for table, chunks in TABLES:
        if table not in schemas:
            continue
        started, rows = time.perf_counter(), 0
        schema = schemas[table]
        path = folder / f"{table}.parquet"
        with pq.ParquetWriter(path, schema) as writer:
            for chunk in chunks(brand):
                writer.write_table(chunk.select(schema.names).cast(schema))
                rows += chunk.num_rows
        paths[table] = path
        progress(f"    {table}.parquet: {rows:,} rows in {time.perf_counter() - started:.1f} s")
    return paths
