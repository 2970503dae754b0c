"""Which column is which: built-in mappings of Tmall, JD and POS exports, and custom ones from JSON.

The Tmall and JD column names are those of their usual order exports (订单编号, 买家会员名, …); exports
differ by shop and by year, so any key can be overridden with `--mapping FILE`, a JSON object with the
same keys as these presets (missing keys keep the preset's value).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from siyu.errors import BadRequest

SOURCES = ("tmall", "jd", "pos", "generic")
KINDS = ("orders", "members", "products")
STATUSES = ("completed", "refunded", "skip")


@dataclass
class Mapping:
    """Column names per meaning; empty means the file has no such column."""

    order_id: str = ""
    identifiers: dict[str, str] = field(default_factory=dict)  # identifier type -> column
    amount: str = ""
    refund_amount: str = ""
    time: str = ""
    time_format: str = ""  # strptime format; empty: ISO 8601 or the usual Chinese export forms
    timezone: str = "Asia/Shanghai"  # of times written without an offset
    status: str = ""
    status_map: dict[str, str] = field(default_factory=dict)  # file value -> completed | refunded | skip
    store: str = ""
    associate: str = ""
    products: str = ""  # SKUs separated by , ; or |
    traits: dict[str, str] = field(default_factory=dict)  # members: trait -> column; products: attributes
    joined_at: str = ""
    sku: str = ""  # products
    name: str = ""
    category: str = ""
    price: str = ""


PRESETS: dict[tuple[str, str], Mapping] = {
    ("tmall", "orders"): Mapping(
        order_id="订单编号",
        identifiers={"tmall_buyer_id": "买家会员名", "phone": "收货人手机号"},
        amount="买家实际支付金额",
        refund_amount="退款金额",
        time="订单付款时间",
        status="订单状态",
        status_map={
            "交易成功": "completed",
            "卖家已发货，等待买家确认": "completed",
            "买家已付款，等待卖家发货": "completed",
            "交易关闭": "skip",
            "等待买家付款": "skip",
        },
        products="商家编码",
    ),
    ("jd", "orders"): Mapping(
        order_id="订单号",
        identifiers={"jd_buyer_id": "下单帐号", "phone": "联系电话"},
        amount="应付金额",
        refund_amount="退款金额",
        time="下单时间",
        status="订单状态",
        status_map={
            "完成": "completed",
            "等待出库": "completed",
            "等待确认收货": "completed",
            "已完成": "completed",
            "已取消": "skip",
            "锁定": "skip",
            "等待付款": "skip",
            "删除": "skip",
        },
        products="商品ID",
    ),
    ("pos", "orders"): Mapping(
        order_id="order_id",
        identifiers={"pos_card": "member_card", "member_id": "member_id", "phone": "phone"},
        amount="amount",
        refund_amount="refund_amount",
        time="time",
        status="status",
        status_map={"paid": "completed", "completed": "completed", "refunded": "refunded", "void": "skip"},
        store="store",
        associate="associate",
        products="skus",
    ),
    ("generic", "orders"): Mapping(
        order_id="order_id",
        identifiers={
            "member_id": "member_id",
            "phone": "phone",
            "email": "email",
            "wechat_unionid": "unionid",
            "wechat_openid": "openid",
            "tmall_buyer_id": "tmall_buyer_id",
            "jd_buyer_id": "jd_buyer_id",
            "pos_card": "pos_card",
        },
        amount="amount",
        refund_amount="refund_amount",
        time="time",
        status="status",
        status_map={
            "completed": "completed",
            "paid": "completed",
            "refunded": "refunded",
            "cancelled": "skip",
        },
        store="store",
        associate="associate",
        products="skus",
    ),
}
for _source in ("tmall", "jd", "pos", "generic"):
    PRESETS[(_source, "members")] = Mapping(
        identifiers={
            "member_id": "member_id",
            "phone": "phone",
            "email": "email",
            "wechat_unionid": "unionid",
            "pos_card": "member_card",
            "tmall_buyer_id": "tmall_buyer_id",
            "jd_buyer_id": "jd_buyer_id",
        },
        traits={"name": "name", "tier": "tier", "birthday": "birthday", "gender": "gender"},
        store="store",
        associate="associate",
        joined_at="joined_at",
    )


PRESETS[("tmall", "products")] = Mapping(sku="商家编码", name="宝贝标题", category="类目", price="价格")
PRESETS[("jd", "products")] = Mapping(sku="商品编号", name="商品名称", category="类目", price="京东价")
for _source in ("pos", "generic"):
    PRESETS[(_source, "products")] = Mapping(
        sku="sku",
        name="name",
        category="category",
        price="price",
        traits={"collection": "collection", "colour": "colour"},
    )


def load(kind: str, source: str, path: Path | None = None) -> Mapping:
    """The preset of (source, kind), overridden by the JSON mapping file at path; BadRequest if invalid."""
    if kind not in KINDS:
        raise BadRequest(f"kind: one of {', '.join(KINDS)}")
    if source not in SOURCES:
        raise BadRequest(f"source: one of {', '.join(SOURCES)}")
    base = PRESETS[(source, kind)]
    mapping = Mapping(**{f.name: getattr(base, f.name) for f in fields(Mapping)})
    if path is None:
        return mapping
    try:
        custom: Any = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise BadRequest(f"mapping: {path} is not readable JSON ({exc})") from exc
    if not isinstance(custom, dict):
        raise BadRequest("mapping: must be a JSON object")
    known = {f.name for f in fields(Mapping)}
    for key, value in custom.items():
        if key not in known:
            raise BadRequest(f"mapping: unknown key {key!r}; known keys: {', '.join(sorted(known))}")
        expected = dict if isinstance(getattr(mapping, key), dict) else str
        if not isinstance(value, expected):
            raise BadRequest(f"mapping.{key}: must be {'an object' if expected is dict else 'a string'}")
        setattr(mapping, key, value)
    bad = {v for v in mapping.status_map.values() if v not in STATUSES}
    if bad:
        raise BadRequest(
            f"mapping.status_map: values must be one of {', '.join(STATUSES)}, got {sorted(bad)}"
        )
    return mapping
