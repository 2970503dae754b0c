"""The generated events themselves: reproducible, lazy, valid, and shaped like the seed figures."""

from __future__ import annotations

import bisect
import collections
import datetime as dt
from dataclasses import dataclass, field

import orjson
import pytest

from siyu.demo import BATCH_SIZE, STORY_CUSTOMERS, iter_batches, story
from siyu.demo.catalogue import PRODUCTS, QIPAO
from siyu.demo.population import RECRUITMENT, Event, customer_events, store_tablet
from siyu.demo.timeline import CST, PUSH_TIMES, REFERENCE, START
from siyu.ingest.normalize import normalizer


def flatten(seed: int, customers: int) -> list[Event]:
    return [e for batch, _ in iter_batches(seed, customers) for e in batch]


def dump(events: list[Event]) -> bytes:
    return orjson.dumps(events, option=orjson.OPT_SORT_KEYS)


class TestDeterminism:
    def test_same_seed_gives_the_same_events(self) -> None:
        assert dump(flatten(7, 120)) == dump(flatten(7, 120))

    def test_a_different_seed_gives_different_events(self) -> None:
        a, b = flatten(7, 120), flatten(8, 120)
        assert dump(a) != dump(b)
        assert {e["messageId"] for e in a}.isdisjoint(
            e["messageId"] for e in b if "story" not in e["messageId"]
        )

    def test_a_customer_does_not_depend_on_how_many_are_generated(self) -> None:
        small, large = flatten(7, 60), flatten(7, 150)
        assert dump(large[: len(small)]) == dump(small)

    def test_the_story_is_the_same_on_every_seed(self) -> None:
        n = len(story.events())
        assert dump(flatten(1, 2)[:n]) == dump(flatten(99, 2)[:n]) == dump(story.events())


class TestLaziness:
    def test_batches_are_bounded_and_count_customers(self) -> None:
        batches = list(iter_batches(7, 300))
        assert all(0 < len(b) <= BATCH_SIZE for b, _ in batches)
        assert [done for _, done in batches] == sorted(done for _, done in batches)
        assert batches[-1][1] == 300

    def test_a_million_customers_are_generated_one_batch_at_a_time(self) -> None:
        batches = iter_batches(7, 1_000_000)
        first, done = next(batches)
        assert len(first) == BATCH_SIZE
        # Only the customers needed for one batch were generated, not the million.
        assert done < 100
        second, _ = next(batches)
        assert second[0]["messageId"] != first[0]["messageId"]

    def test_fewer_than_two_customers_still_tell_the_story(self) -> None:
        assert flatten(7, 0) == story.events()


class TestValidity:
    def test_every_event_passes_the_pipeline_normalizer(self) -> None:
        norm = normalizer()
        now = dt.datetime.now(dt.UTC)
        events = flatten(7, 400)
        ids = [e["messageId"] for e in events]
        assert len(ids) == len(set(ids))
        for event in events:
            normalized = norm.normalize(event, now)
            assert START <= normalized.timestamp < REFERENCE, event

    def test_phones_are_unique_mainland_mobiles(self) -> None:
        norm = normalizer()
        phones = [p for p in (_phone(7, i) for i in range(300)) if p is not None]
        assert len(phones) > 50
        assert len(set(phones)) == len(phones)
        assert all(norm.normalize_phone(p).startswith("+861") for p in phones)
        assert story.NANCY_PHONE not in phones

    def test_orders_use_catalogue_prices_in_cny(self) -> None:
        prices = {p.id: p.price for p in PRODUCTS}
        assert all(800 <= p.price <= 3000 for p in QIPAO)
        assert all(100 <= p.price <= 500 for p in PRODUCTS if p not in QIPAO)
        orders = [e for e in flatten(7, 300) if e.get("event") == "Order Completed"]
        assert orders
        for order in orders:
            props = order["properties"]
            assert props["currency"] == "CNY"
            subtotal = sum(prices[item["product_id"]] * item["quantity"] for item in props["products"])
            assert props["total"] == pytest.approx(subtotal - props["discount"])

    def test_a_store_tablet_is_used_by_several_members(self) -> None:
        tablets = collections.Counter(
            e["anonymousId"]
            for e in flatten(7, 1500)
            if e.get("event") == "Membership Joined" and e.get("anonymousId", "").startswith("tablet-")
        )
        assert store_tablet("SH01") in tablets
        assert max(tablets.values()) > 3  # above the shared-device threshold


def _phone(seed: int, index: int) -> str | None:
    for e in customer_events(seed, index):
        traits = e.get("traits") or e.get("context", {}).get("traits") or {}
        if "phone" in traits:
            return str(traits["phone"])
    return None


@dataclass
class Figures:
    """Aggregates of a larger run, computed once, one customer at a time."""

    customers: int = 0
    sources: collections.Counter[str] = field(default_factory=collections.Counter)
    orders_per_buyer: list[int] = field(default_factory=list)
    loyal: int = 0
    followers_in_october: int = 0
    active_in_october: int = 0
    silent_in_october: int = 0
    reads: int = 0
    deliveries: int = 0


@pytest.fixture(scope="module")
def figures() -> Figures:
    f = Figures()
    october = dt.datetime(2026, 10, 1, tzinfo=CST)
    year_ago = REFERENCE - dt.timedelta(days=365)
    for index in range(3000):
        f.customers += 1
        followed = unfollowed = None
        actions = orders = recent_orders = 0
        for e in customer_events(7, index):
            ts = dt.datetime.fromisoformat(e["timestamp"])
            name = e.get("event")
            if name == "Official Account Followed":
                followed = ts
                f.sources[e["properties"]["source"]] += 1
            elif name == "Official Account Unfollowed":
                unfollowed = ts
            elif name == "Order Completed":
                orders += 1
                recent_orders += ts >= year_ago
            elif name == "Article Read":
                f.reads += 1
            if followed and ts >= october and name != "Official Account Followed":
                actions += 1
        if followed and followed < october and unfollowed is None:
            f.followers_in_october += 1
            f.active_in_october += actions > 4
            f.silent_in_october += actions == 0
        if followed:
            # Pushes this follower received while following: the open rate's denominator.
            end = unfollowed or REFERENCE
            f.deliveries += bisect.bisect_left(PUSH_TIMES, end) - bisect.bisect_right(PUSH_TIMES, followed)
        if orders:
            f.orders_per_buyer.append(orders)
            f.loyal += recent_orders >= 4
    return f


class TestSeedFigures:
    def test_recruitment_sources_follow_the_wechat_luxury_index(self, figures: Figures) -> None:
        total = sum(figures.sources.values())
        share = {s: n / total for s, n in figures.sources.items()}
        assert set(share) == {s for s, _ in RECRUITMENT}
        assert 0.36 <= share["search"] <= 0.47  # 41.4%
        assert 0.23 <= share["qr_code"] <= 0.33  # 27.7%
        assert max(share["ad"], share["word_of_mouth"], share["other"]) < share["qr_code"]

    def test_most_customers_follow_the_official_account(self, figures: Figures) -> None:
        assert 0.5 <= sum(figures.sources.values()) / figures.customers <= 0.75

    def test_about_one_follower_in_eleven_is_active_in_a_month(self, figures: Figures) -> None:
        active = figures.active_in_october / figures.followers_in_october
        silent = figures.silent_in_october / figures.followers_in_october
        assert 0.05 <= active <= 0.15  # 9.33% with more than 4 actions in the month
        assert 0.55 <= silent <= 0.75  # 65% inactive

    def test_open_rate_is_near_the_benchmark(self, figures: Figures) -> None:
        assert 0.05 <= figures.reads / figures.deliveries <= 0.11  # 7.68% of recipients open a push

    def test_a_high_price_product_is_bought_rarely(self, figures: Figures) -> None:
        buyers = figures.orders_per_buyer
        assert 0.25 <= len(buyers) / figures.customers <= 0.5
        once = sum(1 for n in buyers if n == 1) / len(buyers)
        assert 0.6 <= once <= 0.85
        assert 0.01 <= figures.loyal / len(buyers) <= 0.1


def test_story_customers_count_among_customers() -> None:
    assert STORY_CUSTOMERS == 2
    assert list(iter_batches(7, 2)) == [(story.events(), 2)]
