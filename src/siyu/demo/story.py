"""Nancy and Lizzy: the canonical Taste of Su story (domain.md §8, seed 001) as raw channel events.

Nancy follows the Official Account and favourites a qipao in the Mini Program (a window customer).
On Saturday 24 October 2026 she visits the Shanghai Jing'an store (SH01) with her friend Lizzy. Advisor
Chen Jing (WeCom user id `chenjing`) adds Nancy on WeCom and offers 10% off if she joins the loyalty
programme on WeChat, and a 20 RMB voucher for both if she invites Lizzy. Nancy joins, sends Lizzy the
referral, buys the qipao with 10% off and gets a thank-you message on WeChat. Lizzy does not join but
follows the brand by scanning the store's QR code: Nancy goes Window -> First-Time, Lizzy Anonymous -> Window.

The identifiers below are fixed on every seed so tests, docs and demos can look the two up:

| who | identifier type | value |
|---|---|---|
| Nancy | member_id | TOS-NANCY |
| Nancy | phone | 13800000001 (stored as +8613800000001) |
| Nancy | wechat_openid (Official Account) | o_nancy_demo |
| Nancy | wechat_openid (Mini Program) | o_nancy_demo_mp |
| Nancy | wechat_unionid | ou_nancy_demo |
| Nancy | wecom_external_userid | wm_nancy_demo |
| Nancy | anonymous_id (her phone's Mini Program) | mp-device-nancy |
| Lizzy | wechat_openid (Official Account) | o_lizzy_demo |
| Lizzy | wechat_unionid | ou_lizzy_demo |
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from siyu.demo.catalogue import BY_ID, CURRENCY
from siyu.demo.org import STORY_ADVISOR, STORY_STORE
from siyu.demo.population import SCENES, TIER_NAME, WELCOME_COUPON, WELCOME_DISCOUNT, Event
from siyu.demo.timeline import CST, PUSHES, iso

NANCY_MEMBER_ID = "TOS-NANCY"
NANCY_PHONE = "13800000001"
NANCY_PHONE_E164 = "+8613800000001"
NANCY_OA_OPENID = "o_nancy_demo"
NANCY_MP_OPENID = "o_nancy_demo_mp"
NANCY_UNIONID = "ou_nancy_demo"
NANCY_WECOM_ID = "wm_nancy_demo"
NANCY_DEVICE = "mp-device-nancy"
NANCY_NAME = "Nancy Lin 林南希"
LIZZY_OA_OPENID = "o_lizzy_demo"
LIZZY_UNIONID = "ou_lizzy_demo"
LIZZY_NAME = "Lizzy Zhou 周丽丽"

# The qipao Nancy wants for her upcoming event, and the order she places for it.
NANCY_PRODUCT = BY_ID["QP-014"]
NANCY_ORDER_ID = f"POS-{STORY_STORE}-NANCY-1"
REFERRAL_CODE = "TOS-NANCY-R1"
REFERRAL_VOUCHER_CNY = 20

# The first push after Nancy follows, which she reads to the end.
_ARTICLE = next(p for p in PUSHES if p.article_id == "ART-20260814")
STORE_VISIT = dt.datetime(2026, 10, 24, 15, 0, tzinfo=CST)  # a Saturday afternoon


def _at(day: str, hm: str) -> dt.datetime:
    return dt.datetime.fromisoformat(f"{day}T{hm}:00+08:00")


def _ids(*pairs: tuple[str, str]) -> list[dict[str, str]]:
    return [{"id": value, "type": kind} for kind, value in pairs]


def events() -> list[Event]:
    """The story's events in time order, with fixed messageIds (the same on every run and seed)."""
    nancy_oa = _ids(("wechat_openid", NANCY_OA_OPENID))
    nancy_mp = _ids(("wechat_openid", NANCY_MP_OPENID), ("wechat_unionid", NANCY_UNIONID))
    product = NANCY_PRODUCT.properties()
    discount = round(NANCY_PRODUCT.price * WELCOME_DISCOUNT, 2)
    total = round(NANCY_PRODUCT.price - discount, 2)
    visit = STORE_VISIT
    minutes = dt.timedelta(minutes=1)
    script: list[tuple[str, dt.datetime, dict[str, Any]]] = [
        # Before the visit: Nancy is a window customer (follows the OA, favourites a qipao).
        (
            "nancy",
            _at("2026-08-11", "21:14"),
            {
                "event": "Official Account Followed",
                "properties": {"source": "search", "scene": SCENES["search"]},
                "context": {
                    "externalIds": _ids(("wechat_openid", NANCY_OA_OPENID), ("wechat_unionid", NANCY_UNIONID))
                },
            },
        ),
        (
            "nancy",
            _at("2026-08-14", "22:05"),
            {
                "event": "Article Read",
                "properties": {
                    "article_id": _ARTICLE.article_id,
                    "title": _ARTICLE.title,
                    "screens": float(_ARTICLE.screens),
                    "read_to_end": True,
                    "segmented": _ARTICLE.segmented,
                },
                "context": {"externalIds": nancy_oa},
            },
        ),
        (
            "nancy",
            _at("2026-09-05", "12:20"),
            {"event": "Mini Program Opened", "properties": {"scene": 1035}, "anonymousId": NANCY_DEVICE},
        ),
        (
            "nancy",
            _at("2026-09-05", "12:22"),
            {"event": "Product Viewed", "properties": product, "anonymousId": NANCY_DEVICE},
        ),
        (
            "nancy",
            _at("2026-09-05", "12:24"),
            {
                # Favouriting asks her to log in: the device id and her WeChat ids arrive together.
                "event": "Product Added to Wishlist",
                "properties": {**product, "wishlist_id": "favourites"},
                "anonymousId": NANCY_DEVICE,
                "context": {"externalIds": nancy_mp},
            },
        ),
        # Saturday 24 October 2026, the Shanghai Jing'an store.
        (
            "nancy",
            visit + 5 * minutes,
            {
                "event": "WeCom Contact Added",
                "properties": {
                    "associate": STORY_ADVISOR,
                    "store": STORY_STORE,
                    "state": f"{STORY_STORE}.{STORY_ADVISOR}.instore",
                },
                "context": {
                    "externalIds": _ids(
                        ("wecom_external_userid", NANCY_WECOM_ID), ("wechat_unionid", NANCY_UNIONID)
                    )
                },
            },
        ),
        (
            "nancy",
            visit + 8 * minutes,
            {
                "event": "Membership Joined",
                "userId": NANCY_MEMBER_ID,
                "anonymousId": NANCY_DEVICE,
                "properties": {
                    "member_id": NANCY_MEMBER_ID,
                    "channel": "mini_program",
                    "store": STORY_STORE,
                    "associate": STORY_ADVISOR,
                    "tier": TIER_NAME,
                    "invite_code": REFERRAL_CODE,
                    "welcome_benefit": "10% off",
                    "welcome_discount": WELCOME_DISCOUNT,
                    "referral_offer": {"amount": REFERRAL_VOUCHER_CNY, "currency": CURRENCY, "for": "both"},
                },
                "context": {"externalIds": nancy_mp, "traits": {"phone": NANCY_PHONE}},
            },
        ),
        (
            "nancy",
            visit + 9 * minutes,
            {
                "type": "identify",
                "userId": NANCY_MEMBER_ID,
                "traits": {
                    "name": NANCY_NAME,
                    "first_name": "Nancy",
                    "last_name": "Lin",
                    "phone": NANCY_PHONE,
                    "gender": "female",
                    "birthday": "1994-06-18",
                    "city": "Shanghai",
                    "occupation": "professional",
                    "home_store": STORY_STORE,
                    "advisor": STORY_ADVISOR,
                },
            },
        ),
        (
            "nancy",
            visit + 12 * minutes,
            {
                "event": "Referral Sent",
                "userId": NANCY_MEMBER_ID,
                "properties": {
                    "referral_code": REFERRAL_CODE,
                    "invitee": "Lizzy",
                    "channel": "wechat",
                    "reward": {
                        "type": "voucher",
                        "amount": REFERRAL_VOUCHER_CNY,
                        "currency": CURRENCY,
                        "for": "both",
                    },
                },
            },
        ),
        (
            "lizzy",
            visit + 14 * minutes,
            {
                # Lizzy does not join, but follows the brand through the store's QR code.
                "event": "Official Account Followed",
                "properties": {
                    "source": "qr_code",
                    "scene": SCENES["qr_code"],
                    "qr_scene": f"store:{STORY_STORE}",
                    "referral_code": REFERRAL_CODE,
                },
                "context": {
                    "externalIds": _ids(("wechat_openid", LIZZY_OA_OPENID), ("wechat_unionid", LIZZY_UNIONID))
                },
            },
        ),
        (
            "lizzy",
            visit + 15 * minutes,
            {
                # The store QR code's welcome page asks for a name to invite her to the follower group.
                "type": "identify",
                "traits": {
                    "name": LIZZY_NAME,
                    "gender": "female",
                    "city": "Shanghai",
                    "home_store": STORY_STORE,
                },
                "context": {"externalIds": _ids(("wechat_openid", LIZZY_OA_OPENID))},
            },
        ),
        (
            "nancy",
            visit + 32 * minutes,
            {
                "event": "Order Completed",
                "userId": NANCY_MEMBER_ID,
                "properties": {
                    "order_id": NANCY_ORDER_ID,
                    "channel": "store",
                    "affiliation": "Taste of Su Shanghai",
                    "store": STORY_STORE,
                    "associate": STORY_ADVISOR,
                    "total": total,
                    "revenue": total,
                    "discount": discount,
                    "coupon": WELCOME_COUPON,
                    "currency": CURRENCY,
                    "products": [{**product, "quantity": 1}],
                },
                "context": {"traits": {"phone": NANCY_PHONE}},
            },
        ),
        (
            "nancy",
            visit + 33 * minutes,
            {
                # WeChat's delivery receipt (TEMPLATESENDJOBFINISH) for the thank-you notification.
                "event": "Template Message Sent",
                "properties": {
                    "template": "order_thank_you",
                    "order_id": NANCY_ORDER_ID,
                    "status": "success",
                    "channel": "official_account",
                },
                "context": {"externalIds": nancy_oa},
            },
        ),
    ]
    out: list[Event] = []
    for n, (who, at, body) in enumerate(script):
        event: Event = {"type": "track", **body}
        event["messageId"] = f"tos-story-{who}-{n:02d}"
        event["timestamp"] = iso(at)
        out.append(event)
    return out
