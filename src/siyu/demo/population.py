"""The customers of Taste of Su and the raw channel events they leave, generated lazily and reproducibly.

Customer `index` of seed `seed` draws from its own `random.Random`, so a customer never depends on how many
others are generated: a run of 200 customers is the first 200 customers of a run of 2,000, and nothing but
the current customer is ever held in memory.

Behaviour follows domain.md and the WeChat Luxury Index (seed 003): recruitment sources of followers
(search 41.4%, QR code 27.7%, then ads, word of mouth and other), about 9% monthly-active followers and 65%
inactive, a 0.4% unfollow rate per push, open rates around 7.7%, and a high-price low-frequency product:
most buyers buy once, some repeat, a few are loyal with four or more orders in a year.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import uuid
from collections.abc import Iterator
from random import Random
from typing import Any

from siyu.demo import names
from siyu.demo.catalogue import ACCESSORIES, CURRENCY, QIPAO, Product
from siyu.demo.channels import OA_NAME, WECOM_NAME
from siyu.demo.org import ROSTER, STORES, StoreSpec
from siyu.demo.timeline import (
    MONTH_STARTS,
    PUSH_TIMES,
    PUSHES,
    REFERENCE,
    START,
    at_active_hour,
    at_store_hour,
    day_of,
    iso,
)

Event = dict[str, Any]

# Where new Official Account followers come from (seed 003): search and QR codes as measured; the rest
# split so that media (ads) is about 1.15 / (1.15 + 11.85) of growth and word of mouth stays small.
RECRUITMENT: tuple[tuple[str, float], ...] = (
    ("search", 41.4),
    ("qr_code", 27.7),
    ("ad", 8.8),
    ("word_of_mouth", 8.0),
    ("other", 14.1),
)
_SOURCES = [s for s, _ in RECRUITMENT]
_SOURCE_CUM = list(itertools.accumulate(w for _, w in RECRUITMENT))
# The subscribe_scene WeChat reports with each source.
SCENES = {
    "search": "ADD_SCENE_SEARCH",
    "qr_code": "ADD_SCENE_QR_CODE",
    "ad": "ADD_SCENE_WECHAT_ADVERTISEMENT",
    "word_of_mouth": "ADD_SCENE_PROFILE_CARD",
    "other": "ADD_SCENE_OTHERS",
}

# How a customer first meets the brand.
# Of the customers who added an advisor on WeCom, those who delete her in the demo's last month.
CHURN_RATE = 0.08
_ENTRIES = ["follower", "mini_program", "marketplace", "store"]
_ENTRY_CUM = list(itertools.accumulate([0.62, 0.15, 0.12, 0.11]))

# Orders per buyer of a high-price, low-frequency product: mostly one, a few loyal (>= 4).
_ORDER_COUNTS = [1, 2, 3, 4, 5, 6]
_ORDER_CUM = list(itertools.accumulate([0.66, 0.18, 0.09, 0.04, 0.02, 0.01]))

# Follower engagement tiers: 65% inactive (seed 003); the active tier is sized so that about 9% of
# followers have more than four actions in a month.
_TIERS = ["inactive", "occasional", "active"]
_TIER_CUM = list(itertools.accumulate([0.65, 0.26, 0.09]))
_READ_PROBABILITY = {"inactive": 0.004, "occasional": 0.12, "active": 0.5}
UNFOLLOW_PER_PUSH = 0.004

# Follower actions by type (seed 003): menu clicks 70%, messages 11%, post interactions 13%, QR scans 6%.
_ACTIONS = ["menu", "message", "post", "qr"]
_ACTION_CUM = list(itertools.accumulate([70, 11, 13, 6]))
# Menu functions by category (seed 003): e-commerce 45%, information 33%, CRM 22%.
_MENUS: dict[str, list[tuple[str, str]]] = {
    "e-commerce": [("new_arrivals", "New Arrivals"), ("shop", "Shop"), ("tmall", "Tmall Flagship")],
    "information": [("stories", "Qipao Stories"), ("stores", "Store Locator"), ("sizes", "Size Guide")],
    "crm": [("member", "Member Centre"), ("advisor", "Book an Advisor"), ("credits", "My Credits")],
}
_MENU_CATEGORIES = list(_MENUS)
_MENU_CUM = list(itertools.accumulate([45, 33, 22]))

_MOBILE_PREFIXES = [
    "130", "131", "132", "133", "135", "136", "137", "138", "139", "150", "151", "152", "153", "155",
    "156", "157", "158", "159", "166", "170", "173", "175", "176", "177", "180", "181", "182", "183",
    "185", "186", "187", "188", "189", "191", "198", "199",
]  # fmt: skip
_OTHER_CITIES = ["Nanjing", "Wuhan", "Xiamen", "Changsha", "Qingdao", "Ningbo", "Kunming", "Hefei", "Dalian"]
_STORE_CUM = list(itertools.accumulate(s.traffic for s in STORES))
_QIPAO_BY_CATEGORY: dict[str, list[Product]] = {}
for _p in QIPAO:
    _QIPAO_BY_CATEGORY.setdefault(_p.category, []).append(_p)
_CATEGORIES = list(_QIPAO_BY_CATEGORY)
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_DAY = dt.timedelta(days=1)
_HOUR = dt.timedelta(hours=1)
WELCOME_DISCOUNT = 0.10
WELCOME_COUPON = "WELCOME10"
REFUND_RATE = 0.03
TIER_NAME = "Silk"

# Phone numbers, member cards: index -> 8 digits through a bijection of 0..10**8-1 (multiplier coprime
# with 10**8), so no two customers of a seed share a number and none needs a lookup to stay unique.
_PHONE_MULTIPLIER = 48_271
_CARD_MULTIPLIER = 69_621
RESERVED_PHONES = frozenset({"13800000001", "13900000002"})


# Events that reach siyu through an account's callback, and that account (see `siyu.channels.oa` / `wecom`).
_ACCOUNT_OF = {
    **dict.fromkeys(
        (
            "Official Account Followed",
            "Official Account Unfollowed",
            "Official Account Message Received",
            "QR Code Scanned",
            "Menu Clicked",
        ),
        OA_NAME,
    ),
    "WeCom Contact Added": WECOM_NAME,
    "WeCom Contact Deleted": WECOM_NAME,
}


def store_tablet(code: str) -> str:
    """The anonymousId of a store's shared sign-up tablet: many members use it, so it must not link them."""
    return f"tablet-{code.lower()}"


def _token(rng: Random, n: int) -> str:
    bits = rng.getrandbits(6 * n)
    return "".join(_ALPHABET[(bits >> (6 * i)) & 63] for i in range(n))


def _ext(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"id": value, "type": kind} for kind, value in pairs]


class Customer:
    """One generated customer: who they are, their identifiers, and the events of their history."""

    def __init__(self, seed: int, index: int) -> None:
        r = self.rng = Random(f"taste-of-su:{seed}:{index}")
        self.seed, self.index = seed, index
        self.gender = "female" if r.random() < 0.88 else "male"
        self.name = names.full_name(r, self.gender)
        year = int(r.triangular(1965, 2005, 1992))
        self.birthday = f"{year}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        self.store: StoreSpec = r.choices(STORES, cum_weights=_STORE_CUM)[0]
        self.local = r.random() < 0.8
        self.city = self.store.city if self.local else r.choice(_OTHER_CITIES)
        self.taste = r.choice(_CATEGORIES)
        suffix = (index * _PHONE_MULTIPLIER + seed * 7_919 + 12_345) % 10**8
        phone = f"{r.choice(_MOBILE_PREFIXES)}{suffix:08d}"
        # Nancy's and Lizzy's numbers are the story's alone.
        self.phone = "186" + phone[3:] if phone in RESERVED_PHONES else phone
        self.member_id = f"TOS{seed}-{index:07d}"
        self.pos_card = f"8860{(index * _CARD_MULTIPLIER + seed) % 10**8:08d}"
        self.unionid = "oU" + _token(r, 26)
        self.oa_openid = "oTsU" + _token(r, 24)
        self.mp_openid = "oMpS" + _token(r, 24)
        self.device = str(uuid.UUID(int=r.getrandbits(128), version=4))
        self.wecom_id = "wm" + _token(r, 30)
        self.tmall_id = "AAH" + _token(r, 21)
        self.jd_id = f"jd_{r.getrandbits(64):016x}"
        # State of the plan, decided before any event is emitted.
        self.join_at: dt.datetime | None = None
        # Whether joining logged the customer into the Mini Program (not on a store tablet or on Tmall).
        self.join_logs_in = True
        self.login_at: dt.datetime | None = None
        self.advisor: str | None = None
        self.added_at: dt.datetime | None = None
        self._events: list[tuple[dt.datetime, int, Event]] = []
        self._seq = 0
        self._orders = 0

    # --- the plan ------------------------------------------------------------------------------

    def events(self) -> list[Event]:
        """This customer's events in time order, with messageIds that are the same on every run."""
        r = self.rng
        entry = r.choices(_ENTRIES, cum_weights=_ENTRY_CUM)[0]
        n_orders = r.choices(_ORDER_COUNTS, cum_weights=_ORDER_CUM)[0]
        t0 = self._first_touch(loyal=n_orders >= 4)
        if entry == "follower":
            self._follower(t0, n_orders)
        elif entry == "mini_program":
            self._mini_program_first(t0, n_orders)
        elif entry == "marketplace":
            self._marketplace_first(t0, n_orders)
        else:
            self._walk_in(t0, n_orders)
        self._churn()
        self._events.sort(key=lambda e: (e[0], e[1]))
        out: list[Event] = []
        for ts, _, event in self._events:
            if not START <= ts < REFERENCE:
                continue
            event["messageId"] = f"tos-{self.seed}-{self.index}-{len(out)}"
            event["timestamp"] = iso(ts)
            out.append(event)
        return out

    def _first_touch(self, *, loyal: bool) -> dt.datetime:
        r = self.rng
        # Slightly more customers recently: the community grows (seed 003: 12-14% a half-year).
        offset = (r.random() ** 0.8) * (REFERENCE - START - 7 * _DAY).days
        if loyal:
            # A loyal customer's four or more orders fall in the trailing year.
            offset = max(offset, (REFERENCE - START).days - r.uniform(240, 365))
        return at_active_hour(r, (START + dt.timedelta(days=offset)).date())

    def _later(self, after: dt.datetime, mean_days: float, *, store: bool = False) -> dt.datetime:
        r = self.rng
        day = day_of(after + dt.timedelta(days=r.expovariate(1 / mean_days)))
        moment = at_store_hour(r, day) if store else at_active_hour(r, day)
        return moment if moment > after else after + dt.timedelta(minutes=r.randint(5, 90))

    def _order_times(self, first: dt.datetime, n: int) -> list[dt.datetime]:
        r = self.rng
        times = [first]
        for _ in range(n - 1):
            gap = r.uniform(25, 75) if n >= 4 else r.uniform(45, 300)
            times.append(times[-1] + dt.timedelta(days=gap))
        return [t for t in times if t < REFERENCE]

    def _plan_orders(
        self, first: dt.datetime, n: int, first_channel: str, later: tuple[tuple[str, float], ...]
    ) -> list[tuple[dt.datetime, str]]:
        """Up to n (time, channel) orders from first; later ones draw (channel, cumulative probability)."""
        r = self.rng
        plan: list[tuple[dt.datetime, str]] = []
        for i, t in enumerate(self._order_times(first, n)):
            u = r.random()
            plan.append((t, first_channel if i == 0 else next(c for c, p in later if u < p)))
        return plan

    def _follower(self, t0: dt.datetime, n_orders: int) -> None:
        r = self.rng
        source = r.choices(_SOURCES, cum_weights=_SOURCE_CUM)[0]
        in_store = source == "qr_code" and r.random() < 0.55
        parcel = source == "qr_code" and not in_store
        qr_scene: str | None = None
        marketplace = "tmall" if r.random() < 0.7 else "jd"
        orders: list[tuple[dt.datetime, str]] = []
        if in_store:
            self.local, self.city = True, self.store.city
            t0 = at_store_hour(r, day_of(t0))
            qr_scene = f"store:{self.store.code}"
        elif parcel:
            # The QR code on the card in a marketplace parcel: the order came first.
            first = max(t0 - dt.timedelta(days=r.uniform(2, 8)), START + _DAY)
            t0 = max(t0, first + 2 * _DAY)
            qr_scene = f"parcel:{marketplace}"
            orders = self._plan_orders(
                first, n_orders, marketplace, ((marketplace, 0.7), ("mini_program", 1))
            )
        self._oa(t0, source, qr_scene)

        if in_store and r.random() < 0.4:
            self._wecom(t0 + dt.timedelta(minutes=r.randint(2, 20)), in_store=True)
        elif not in_store and r.random() < 0.06:
            self._wecom(self._later(t0, 40), in_store=False)
        if in_store and r.random() < 0.45:
            first = (
                t0 + dt.timedelta(minutes=r.randint(20, 60))
                if r.random() < 0.6
                else self._later(t0, 30, store=True)
            )
            orders = self._plan_orders(first, n_orders, "store", (("store", 0.7), ("mini_program", 1)))
        elif not in_store and not parcel and r.random() < 0.18:
            online = (("mini_program", 0.55), ("store", 0.85), ("tmall", 1))
            u = r.random()
            channel = next(c for c, p in online if u < p)
            orders = self._plan_orders(self._later(t0, 35), n_orders, channel, online)
        if r.random() < (0.35 if in_store else 0.22):
            if in_store and orders and orders[0][1] == "store" and orders[0][0] - t0 < _HOUR:
                # Joined at the counter to get the welcome 10% off the purchase.
                self._join(orders[0][0] - dt.timedelta(minutes=r.randint(3, 10)), "store")
            else:
                self._join(self._later(t0, 45), "mini_program")
        uses_mp = r.random() < (0.3 if in_store else 0.45) or any(c == "mini_program" for _, c in orders)
        if uses_mp:
            self._mini_program(self._later(t0, 10), login_first=r.random() < 0.7, orders=orders)
        self._place_orders(orders, marketplace)

    def _mini_program_first(self, t0: dt.datetime, n_orders: int) -> None:
        r = self.rng
        orders: list[tuple[dt.datetime, str]] = []
        logs_in = r.random() < 0.4
        if logs_in and r.random() < 0.3:
            first = self._later(t0, 20)
            orders = self._plan_orders(first, n_orders, "mini_program", (("mini_program", 1),))
        if logs_in and r.random() < 0.35:
            # Signs up in the Mini Program: the event carries the device's anonymousId and the new userId.
            self.join_at = self._later(t0, 12)
            if orders:
                self.join_at = min(self.join_at, orders[0][0] - dt.timedelta(minutes=r.randint(2, 30)))
        self._mini_program(t0, login_first=False, orders=orders, logs_in=logs_in)
        if self.join_at is not None:
            self._join(self.join_at, "mini_program")
        self._place_orders(orders, "tmall")

    def _marketplace_first(self, t0: dt.datetime, n_orders: int) -> None:
        r = self.rng
        marketplace = "tmall" if r.random() < 0.7 else "jd"
        orders = self._plan_orders(t0, n_orders, marketplace, ((marketplace, 0.8), ("mini_program", 1)))
        if r.random() < 0.35:
            # Found by phone: the marketplace's member connect hands over the buyer's phone number.
            found = self._later(t0, 60)
            if marketplace == "tmall":
                self._join(found, "tmall")
            else:
                self._identify(found, ext=_ext(("jd_buyer_id", self.jd_id)), traits={"phone": self.phone})
        if r.random() < 0.2 or any(c == "mini_program" for _, c in orders):
            self._mini_program(self._later(t0, 50), login_first=r.random() < 0.5, orders=orders)
        self._place_orders(orders, marketplace)

    def _walk_in(self, t0: dt.datetime, n_orders: int) -> None:
        r = self.rng
        self.local, self.city = True, self.store.city
        t0 = at_store_hour(r, day_of(t0))
        orders: list[tuple[dt.datetime, str]] = []
        if r.random() < 0.75:
            first = t0 + dt.timedelta(minutes=r.randint(15, 70))
            orders = self._plan_orders(first, n_orders, "store", (("store", 0.85), ("mini_program", 1)))
        if r.random() < 0.55:
            self._wecom(t0 + dt.timedelta(minutes=r.randint(5, 40)), in_store=True, with_phone=bool(orders))
        if r.random() < 0.4:
            at = (orders[0][0] if orders else t0 + dt.timedelta(minutes=30)) - dt.timedelta(
                minutes=r.randint(3, 10)
            )
            self._join(at, "store")
        if any(c == "mini_program" for _, c in orders) or r.random() < 0.1:
            self._mini_program(self._later(t0, 20), login_first=True, orders=orders)
        self._place_orders(orders, "tmall")

    # --- touchpoints ---------------------------------------------------------------------------

    def _add(self, ts: dt.datetime, event: Event) -> None:
        self._events.append((ts, self._seq, event))
        self._seq += 1

    def _track(
        self,
        ts: dt.datetime,
        name: str,
        properties: dict[str, Any] | None = None,
        *,
        user_id: str | None = None,
        anonymous_id: str | None = None,
        ext: list[dict[str, str]] | None = None,
        traits: dict[str, Any] | None = None,
    ) -> None:
        event: Event = {"type": "track", "event": name, "properties": properties or {}}
        if user_id:
            event["userId"] = user_id
        if anonymous_id:
            event["anonymousId"] = anonymous_id
        context: dict[str, Any] = {}
        if ext:
            context["externalIds"] = ext
        if traits:
            context["traits"] = traits
        account = _ACCOUNT_OF.get(name)
        if account:
            # As the callbacks write it: the account the push came from, so the reach of its openids and
            # contacts is tracked and the demo's journeys have someone to message.
            context["wechat"] = {"account": account}
        if context:
            event["context"] = context
        self._add(ts, event)

    def _identify(
        self,
        ts: dt.datetime,
        *,
        traits: dict[str, Any],
        user_id: str | None = None,
        anonymous_id: str | None = None,
        ext: list[dict[str, str]] | None = None,
    ) -> None:
        event: Event = {"type": "identify", "traits": traits}
        if user_id:
            event["userId"] = user_id
        if anonymous_id:
            event["anonymousId"] = anonymous_id
        if ext:
            event["context"] = {"externalIds": ext}
        self._add(ts, event)

    def _member(self, ts: dt.datetime) -> str | None:
        return self.member_id if self.join_at is not None and ts >= self.join_at else None

    def _profile_traits(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phone": self.phone,
            "gender": self.gender,
            "birthday": self.birthday,
            "city": self.city,
        }

    def _oa(self, follow_at: dt.datetime, source: str, qr_scene: str | None) -> None:
        """Follow, read pushes, act in the menu, maybe unfollow: the Official Account history."""
        r = self.rng
        oa = _ext(("wechat_openid", self.oa_openid))
        props: dict[str, Any] = {"source": source, "scene": SCENES[source]}
        if qr_scene:
            props["qr_scene"] = qr_scene
        self._track(
            follow_at,
            "Official Account Followed",
            props,
            ext=_ext(("wechat_openid", self.oa_openid), ("wechat_unionid", self.unionid)),
        )
        tier = r.choices(_TIERS, cum_weights=_TIER_CUM)[0]
        read_p = _READ_PROBABILITY[tier]
        end = REFERENCE
        for push in PUSHES[bisect.bisect_right(PUSH_TIMES, follow_at) :]:
            if r.random() < UNFOLLOW_PER_PUSH:
                end = push.at + dt.timedelta(hours=r.uniform(0.2, 23.5))
                self._track(end, "Official Account Unfollowed", {"after_push": push.article_id}, ext=oa)
                break
            # Segmented pushes engage more: 7.86% against 6.33% (seed 003).
            if r.random() < read_p * (1.19 if push.segmented else 0.96):
                at = push.at + dt.timedelta(hours=min(r.expovariate(1 / 6), 72))
                # Readers drop 20% by 3.27 screens and 50% by screen 8 (seed 003): a Weibull fits both.
                screens = min(r.weibullvariate(10.69, 1.267), float(push.screens))
                self._track(
                    at,
                    "Article Read",
                    {
                        "article_id": push.article_id,
                        "title": push.title,
                        "screens": round(screens, 1),
                        "read_to_end": screens >= push.screens,
                        "segmented": push.segmented,
                    },
                    ext=oa,
                )
        first_month = bisect.bisect_right(MONTH_STARTS, follow_at) - 1
        for m in range(first_month, len(MONTH_STARTS) - 1):
            lo, hi = max(MONTH_STARTS[m], follow_at), min(MONTH_STARTS[m + 1], end)
            if lo >= hi:
                break
            u = r.random()
            if tier == "active":
                n = r.randint(5, 9) if u < 0.6 else r.randint(0, 2)
            elif tier == "occasional":
                n = r.randint(5, 6) if u < 0.05 else (1 if u < 0.35 else 0)
            else:
                n = 1 if u < 0.02 else 0
            span = (hi - lo).total_seconds()
            # A month cut short (by the follow, an unfollow or the reference date) gets its share of them.
            share = span / (MONTH_STARTS[m + 1] - MONTH_STARTS[m]).total_seconds()
            for _ in range(n):
                if share >= 1 or r.random() < share:
                    self._oa_action(lo + dt.timedelta(seconds=r.uniform(0, span)), oa)

    def _oa_action(self, ts: dt.datetime, oa: list[dict[str, str]]) -> None:
        r = self.rng
        kind = r.choices(_ACTIONS, cum_weights=_ACTION_CUM)[0]
        if kind == "menu":
            category = r.choices(_MENU_CATEGORIES, cum_weights=_MENU_CUM)[0]
            key, label = r.choice(_MENUS[category])
            self._track(ts, "Menu Clicked", {"menu_key": key, "menu": label, "category": category}, ext=oa)
        elif kind == "message":
            self._track(
                ts,
                "Official Account Message Received",
                {"msg_type": r.choice(["text", "text", "image"])},
                ext=oa,
            )
        elif kind == "post":
            push = PUSHES[max(0, bisect.bisect_right(PUSH_TIMES, ts) - 1)]
            interaction = r.choice(["like", "wow", "share", "comment"])
            self._track(
                ts, "Article Interacted", {"article_id": push.article_id, "interaction": interaction}, ext=oa
            )
        else:
            self._track(ts, "QR Code Scanned", {"scene": r.choice(["article", "event", "packaging"])}, ext=oa)

    def _churn(self) -> None:
        """A few customers delete their advisor on WeCom in the last month: the alerts of "My work"."""
        if self.advisor is None or self.added_at is None:
            return
        # Its own draws: every other event of the brand stays as the seed made it before churn was added.
        r = Random(f"taste-of-su:{self.seed}:{self.index}:churn")
        if r.random() >= CHURN_RATE:
            return
        ts = REFERENCE - dt.timedelta(days=r.uniform(0.5, 30))
        if ts <= self.added_at:
            return
        ext = _ext(("wecom_external_userid", self.wecom_id), ("wechat_unionid", self.unionid))
        self._track(
            ts,
            "WeCom Contact Deleted",
            {"change_type": "del_follow_user", "associate": self.advisor, "by": "customer"},
            ext=ext,
        )

    def _wecom(self, ts: dt.datetime, *, in_store: bool, with_phone: bool = False) -> None:
        """Adds a fashion advisor on WeCom through the store's channel QR code, who then owns them."""
        r = self.rng
        self.advisor = r.choice(ROSTER.advisors[self.store.code])
        self.added_at = ts
        campaign = "instore" if in_store else "online"
        ext = _ext(("wecom_external_userid", self.wecom_id), ("wechat_unionid", self.unionid))
        self._track(
            ts,
            "WeCom Contact Added",
            {
                "associate": self.advisor,
                "store": self.store.code,
                "state": f"{self.store.code}.{self.advisor}.{campaign}",
            },
            ext=ext,
            # The advisor notes the mobile number of a customer who just bought (WeCom remark_mobiles).
            traits={"phone": self.phone} if with_phone else None,
        )
        self._identify(
            ts + dt.timedelta(seconds=r.randint(30, 600)),
            traits={"name": self.name, "home_store": self.store.code, "advisor": self.advisor},
            ext=ext,
        )

    def _join(self, ts: dt.datetime, channel: str) -> None:
        """Joins the loyalty programme (Mini Program, store tablet or Tmall member connect)."""
        r = self.rng
        self.join_at = ts
        self.join_logs_in = channel == "mini_program"
        props: dict[str, Any] = {
            "member_id": self.member_id,
            "channel": channel,
            "tier": TIER_NAME,
            "welcome_benefit": "10% off",
            "welcome_discount": WELCOME_DISCOUNT,
        }
        traits = {"phone": self.phone}
        anonymous_id: str | None = None
        if channel == "store":
            props["store"] = self.store.code
            if r.random() < 0.5:
                anonymous_id = store_tablet(self.store.code)
                props["device"] = "store_tablet"
                ext = None
            else:
                self.join_logs_in = True
                ext = _ext(("wechat_openid", self.mp_openid), ("wechat_unionid", self.unionid))
        elif channel == "tmall":
            ext = _ext(("tmall_buyer_id", self.tmall_id))
        else:
            anonymous_id = self.device
            ext = _ext(("wechat_openid", self.mp_openid), ("wechat_unionid", self.unionid))
        self._track(
            ts,
            "Membership Joined",
            props,
            user_id=self.member_id,
            anonymous_id=anonymous_id,
            ext=ext,
            traits=traits,
        )
        traits = self._profile_traits()
        if channel == "store":
            traits["home_store"] = self.store.code
        self._identify(ts + dt.timedelta(seconds=r.randint(5, 120)), user_id=self.member_id, traits=traits)

    def _mp_ids(self, ts: dt.datetime) -> dict[str, Any]:
        if self.login_at is None or ts < self.login_at:
            return {"anonymous_id": self.device}
        return {
            "anonymous_id": self.device,
            "user_id": self._member(ts),
            "ext": _ext(("wechat_openid", self.mp_openid), ("wechat_unionid", self.unionid)),
        }

    def _mini_program(
        self,
        first: dt.datetime,
        *,
        login_first: bool,
        orders: list[tuple[dt.datetime, str]],
        logs_in: bool = True,
    ) -> None:
        """Browsing sessions in the Mini Program; the first ones may be anonymous (device id only)."""
        r = self.rng
        n = 1
        while n < 8 and r.random() < 0.55:
            n += 1
        starts = sorted([first] + [self._later(first, 90) for _ in range(n - 1)])
        if logs_in:
            login = starts[0] if login_first else starts[r.randrange(len(starts))]
            mp_orders = [t for t, c in orders if c == "mini_program"]
            if mp_orders:
                login = min(login, mp_orders[0] - dt.timedelta(minutes=20))
            if self.join_at is not None and self.join_logs_in:
                # Joining in the Mini Program (also on one's own phone in a store) is a login.
                login = min(login, self.join_at)
            self.login_at = login
        for start in starts:
            self._session(start)

    def _session(self, start: dt.datetime, product: Product | None = None) -> dt.datetime:
        r = self.rng
        ids = self._mp_ids(start)
        self._track(start, "Mini Program Opened", {"scene": r.choice([1001, 1089, 1035, 1007, 1047])}, **ids)
        ts = start
        for _ in range(r.randint(1, 4)):
            ts += dt.timedelta(seconds=r.randint(20, 240))
            viewed = product or self._pick_qipao()
            self._track(ts, "Product Viewed", viewed.properties(), **self._mp_ids(ts))
            if r.random() < 0.15:
                ts += dt.timedelta(seconds=r.randint(5, 60))
                self._track(
                    ts,
                    "Product Added to Wishlist",
                    {**viewed.properties(), "wishlist_id": "favourites"},
                    **self._mp_ids(ts),
                )
        return ts

    def _pick_qipao(self) -> Product:
        r = self.rng
        pool = _QIPAO_BY_CATEGORY[self.taste] if r.random() < 0.7 else QIPAO
        return r.choice(pool)

    def _place_orders(self, orders: list[tuple[dt.datetime, str]], marketplace: str) -> None:
        welcome_used = False
        for ts, channel in sorted(orders):
            if channel == "mini_program" and self.login_at is not None and ts < self.login_at:
                channel = marketplace
            items = self._basket()
            discount = 0.0
            coupon: str | None = None
            member = self._member(ts)
            if member and self.join_at is not None and not welcome_used and ts - self.join_at < 30 * _DAY:
                welcome_used = True
                coupon = WELCOME_COUPON
                discount = round(sum(p.price for p in items) * WELCOME_DISCOUNT, 2)
            self._order(ts, channel, items, discount, coupon)

    def _basket(self) -> list[Product]:
        r = self.rng
        if self._orders > 0 and r.random() < 0.15:
            # Repeat buyers come back for matching accessories and care (seed 001).
            return [r.choice(ACCESSORIES)]
        items = [self._pick_qipao()]
        if r.random() < 0.05:
            items.append(self._pick_qipao())
        if r.random() < 0.35:
            items.append(r.choice(ACCESSORIES))
        return items

    def _order(
        self, ts: dt.datetime, channel: str, items: list[Product], discount: float, coupon: str | None
    ) -> None:
        r = self.rng
        self._orders += 1
        n = self._orders
        subtotal = sum(p.price for p in items)
        total = round(subtotal - discount, 2)
        props: dict[str, Any] = {
            "order_id": "",
            "channel": channel,
            "total": total,
            "revenue": total,
            "discount": discount,
            "currency": CURRENCY,
            "products": [{**p.properties(), "quantity": 1} for p in items],
        }
        if coupon:
            props["coupon"] = coupon
        ids: dict[str, Any]
        if channel == "store":
            associate = self.advisor or r.choice(ROSTER.advisors[self.store.code])
            props.update(
                order_id=f"POS-{self.store.code}-{self.seed}-{self.index}-{n}",
                affiliation=f"Taste of Su {self.store.city}",
                store=self.store.code,
                associate=associate,
            )
            ids = {
                "user_id": self._member(ts),
                "ext": _ext(("pos_card", self.pos_card)),
                "traits": {"phone": self.phone},
            }
            if n == 1 or self.advisor is None:
                # The till records the customer: their store is now this one.
                self._identify(
                    ts + dt.timedelta(seconds=30),
                    user_id=self._member(ts),
                    ext=_ext(("pos_card", self.pos_card)),
                    traits={"name": self.name, "phone": self.phone, "home_store": self.store.code},
                )
        elif channel == "mini_program":
            props.update(order_id=f"MP-{self.seed}-{self.index}-{n}", affiliation="Taste of Su Mini Program")
            if self.advisor:
                # Social selling: the owning advisor is credited with the online order.
                props["associate"] = self.advisor
            browse = self._session(ts - dt.timedelta(minutes=r.randint(8, 40)), items[0])
            ts = max(ts, browse + dt.timedelta(seconds=30))
            self._track(
                ts - dt.timedelta(seconds=20),
                "Product Added",
                {**items[0].properties(), "quantity": 1},
                **self._mp_ids(ts),
            )
            ids = {**self._mp_ids(ts), "traits": {"phone": self.phone}}
        elif channel == "tmall":
            props.update(order_id=f"TM-{self.seed}-{self.index}-{n}", affiliation="Tmall Flagship Store")
            ids = {"ext": _ext(("tmall_buyer_id", self.tmall_id))}
        else:
            props.update(order_id=f"JD-{self.seed}-{self.index}-{n}", affiliation="JD Flagship Store")
            ids = {"ext": _ext(("jd_buyer_id", self.jd_id))}
        self._track(ts, "Order Completed", props, **ids)
        if r.random() < REFUND_RATE:
            refund = {
                k: props[k] for k in ("order_id", "channel", "total", "revenue", "currency", "products")
            }
            self._track(ts + dt.timedelta(days=r.uniform(3, 14)), "Order Refunded", refund, **ids)


def customer_events(seed: int, index: int) -> list[Event]:
    """The events of customer index of the brand generated with seed."""
    return Customer(seed, index).events()


def iter_customers(seed: int, count: int, first: int = 0) -> Iterator[list[Event]]:
    """Each customer's events, one customer at a time, without holding more than one in memory."""
    for index in range(first, first + count):
        yield customer_events(seed, index)
