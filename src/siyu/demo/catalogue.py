"""The Taste of Su product catalogue: qipao (800-3,000 CNY) and accessories (100-500 CNY).

Fixed, not seeded: every demo brand sells the same products, so docs and tests can name them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CURRENCY = "CNY"


@dataclass(frozen=True, slots=True)
class Product:
    """One product as the Segment e-commerce spec describes it; price in whole CNY."""

    id: str
    name: str
    name_zh: str
    category: str
    price: int

    @property
    def is_qipao(self) -> bool:
        """Whether this is a qipao (the high-price, low-frequency item) rather than an accessory."""
        return self.id.startswith("QP-")

    def properties(self) -> dict[str, Any]:
        """The Segment v2 product properties of this product."""
        return {
            "product_id": self.id,
            "sku": self.id,
            "name": self.name,
            "category": self.category,
            "price": self.price,
            "currency": CURRENCY,
        }


_QIPAO: list[tuple[str, str, str, int]] = [
    # (name, Chinese name, collection, price in CNY)
    ("Jasmine Silk Office Qipao", "茉莉真丝通勤旗袍", "Qipao/Office", 1280),
    ("Indigo Linen Office Qipao", "靛蓝亚麻通勤旗袍", "Qipao/Office", 980),
    ("Pearl Grey Wool Office Qipao", "珍珠灰羊毛通勤旗袍", "Qipao/Office", 1680),
    ("Ink Bamboo Office Qipao", "墨竹通勤旗袍", "Qipao/Office", 1180),
    ("Celadon Crepe Office Qipao", "青瓷双绉通勤旗袍", "Qipao/Office", 1380),
    ("Plum Blossom Cotton Qipao", "梅花纯棉旗袍", "Qipao/Everyday", 860),
    ("Su Embroidery Day Qipao", "苏绣日常旗袍", "Qipao/Everyday", 1580),
    ("Lotus Pond Everyday Qipao", "荷塘日常旗袍", "Qipao/Everyday", 920),
    ("Willow Green Short Qipao", "柳绿短款旗袍", "Qipao/Everyday", 880),
    ("Peony Print Midi Qipao", "牡丹印花中长旗袍", "Qipao/Everyday", 1080),
    ("Blue Calico Qipao", "蓝印花布旗袍", "Qipao/Everyday", 820),
    ("Osmanthus Knit Qipao", "桂花针织旗袍", "Qipao/Everyday", 1160),
    ("Crimson Velvet Evening Qipao", "绯红丝绒晚宴旗袍", "Qipao/Evening", 2380),
    ("Moonlight Satin Evening Qipao", "月光缎面晚宴旗袍", "Qipao/Evening", 2680),
    ("Black Lace Evening Qipao", "黑色蕾丝晚宴旗袍", "Qipao/Evening", 2180),
    ("Golden Phoenix Brocade Qipao", "金凤织锦旗袍", "Qipao/Evening", 2880),
    ("Midnight Sequin Qipao", "午夜亮片旗袍", "Qipao/Evening", 2480),
    ("Xiang Cloud Silk Qipao", "香云纱旗袍", "Qipao/Evening", 2980),
    ("Red Double Happiness Bridal Qipao", "红色囍字婚礼旗袍", "Qipao/Bridal", 2980),
    ("Champagne Toast Qipao", "香槟敬酒旗袍", "Qipao/Bridal", 2580),
    ("Rose Gold Engagement Qipao", "玫瑰金订婚旗袍", "Qipao/Bridal", 2280),
    ("Cheongsam Heritage Long Qipao", "海派传承长款旗袍", "Qipao/Heritage", 1980),
    ("Shanghai 1930s Qipao", "三十年代海派旗袍", "Qipao/Heritage", 1880),
    ("Hand-Knotted Button Qipao", "手工盘扣旗袍", "Qipao/Heritage", 1780),
    ("Kesi Silk Tapestry Qipao", "缂丝旗袍", "Qipao/Heritage", 2980),
    ("Modern Wrap Qipao Dress", "现代裹身旗袍裙", "Qipao/Modern", 1080),
    ("Qipao Blazer Dress", "旗袍西装裙", "Qipao/Modern", 1480),
    ("Asymmetric Collar Qipao", "不对称立领旗袍", "Qipao/Modern", 1280),
]

_ACCESSORIES: list[tuple[str, str, str, int]] = [
    ("Silk Twill Scarf", "真丝斜纹围巾", "Accessories/Scarf", 380),
    ("Cashmere Shawl", "羊绒披肩", "Accessories/Scarf", 480),
    ("Sandalwood Folding Fan", "檀香折扇", "Accessories/Fan", 180),
    ("Embroidered Silk Fan", "刺绣绢扇", "Accessories/Fan", 260),
    ("Beaded Evening Clutch", "珠绣手包", "Accessories/Bag", 460),
    ("Brocade Coin Purse", "织锦零钱包", "Accessories/Bag", 160),
    ("Jade Hairpin", "玉簪", "Accessories/Jewellery", 320),
    ("Freshwater Pearl Brooch", "淡水珍珠胸针", "Accessories/Jewellery", 280),
    ("Knotted Pearl Earrings", "盘扣珍珠耳环", "Accessories/Jewellery", 240),
    ("Silk Care Kit", "真丝护理套装", "Accessories/Care", 120),
    ("Padded Qipao Hanger", "旗袍衣架", "Accessories/Care", 100),
    ("Garment Travel Bag", "旗袍收纳袋", "Accessories/Care", 150),
]

QIPAO: tuple[Product, ...] = tuple(
    Product(f"QP-{i:03d}", name, zh, category, price)
    for i, (name, zh, category, price) in enumerate(_QIPAO, start=1)
)
ACCESSORIES: tuple[Product, ...] = tuple(
    Product(f"AC-{i:03d}", name, zh, category, price)
    for i, (name, zh, category, price) in enumerate(_ACCESSORIES, start=1)
)
PRODUCTS: tuple[Product, ...] = QIPAO + ACCESSORIES
BY_ID: dict[str, Product] = {p.id: p for p in PRODUCTS}
