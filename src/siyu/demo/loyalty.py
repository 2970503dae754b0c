"""The demo brand's membership programme: the mechanics of the seeds, configured as a brand would.

Tiers Silk, Brocade and Kesi (缂丝, the most precious silk); credits for the first Mini Program visit,
favourites, shares, check-ins and purchases (qipao count double); Membership Day (11 November) doubles purchase credits; a 10 % welcome
voucher; "invite a friend, both get 20 RMB" (seed 001); a reward catalogue and a blind box (seed 000).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.loyalty.models import (
    BlindBox,
    BlindBoxPrize,
    EarningRule,
    ReferralProgram,
    ReferralTrigger,
    RuleMode,
    Tier,
    VoucherKind,
    VoucherTemplate,
)

SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def ensure_programme(session: Session) -> None:
    """Create the programme once (an existing one is left as it is)."""
    if session.execute(select(Tier.id).limit(1)).first() is not None:
        return
    session.add_all(
        [
            Tier(name="Silk", rank=0, multiplier=1.0, benefits=["birthday_gift"]),
            Tier(name="Brocade", rank=1, threshold_points=2000, multiplier=1.2, benefits=["early_access"]),
            Tier(
                name="Kesi",
                rank=2,
                threshold_points=8000,
                threshold_spend_fen=3_000_000,
                multiplier=1.5,
                benefits=["early_access", "event_invitations", "private_styling"],
            ),
        ]
    )
    session.add_all(
        [
            EarningRule(
                name="First Mini Program visit",
                event="Mini Program Opened",
                mode=RuleMode.fixed,
                amount=50,
                first_only=True,
            ),
            EarningRule(
                name="Favourite",
                event="Product Added to Wishlist",
                mode=RuleMode.fixed,
                amount=5,
                cap_per_day=20,
            ),
            EarningRule(
                name="Share to Win Credits",
                event="Product Shared",
                mode=RuleMode.fixed,
                amount=10,
                cap_per_member=200,
            ),
            EarningRule(
                name="Daily check-in", event="Checked In", mode=RuleMode.fixed, amount=2, cap_per_day=2
            ),
            EarningRule(
                name="Purchases, every channel",
                event="Order Completed",
                mode=RuleMode.per_yuan,
                amount=1,
                item_multipliers={"category:qipao": 2.0},
            ),
            EarningRule(
                name="Membership Day x2",
                event="Order Completed",
                mode=RuleMode.multiplier,
                amount=2,
                starts_at=dt.datetime(2026, 11, 11, tzinfo=SHANGHAI),
                ends_at=dt.datetime(2026, 11, 12, tzinfo=SHANGHAI),
            ),
        ]
    )
    welcome = VoucherTemplate(
        name="Welcome: 10% off", kind=VoucherKind.percent_off, value=10, valid_days=90, welcome=True, issued=0
    )
    referral = VoucherTemplate(
        name="20 RMB for the next purchase",
        kind=VoucherKind.amount_off,
        value=2000,
        min_spend_fen=20000,
        valid_days=60,
        issued=0,
    )
    scarf = VoucherTemplate(
        name="Silk scarf",
        kind=VoucherKind.free_gift,
        gift_sku="ACC-SCARF-01",
        points_cost=1200,
        stock=500,
        valid_days=180,
        issued=0,
    )
    fifty = VoucherTemplate(
        name="50 RMB off",
        kind=VoucherKind.amount_off,
        value=5000,
        min_spend_fen=50000,
        points_cost=500,
        valid_days=90,
        issued=0,
    )
    session.add_all([welcome, referral, scarf, fifty])
    session.flush()
    session.add(
        ReferralProgram(
            name="Invite a friend, both get 20 RMB",
            trigger=ReferralTrigger.sign_up,
            referrer_template_id=referral.id,
            friend_template_id=referral.id,
            cap_per_30_days=10,
        )
    )
    box = BlindBox(name="Qipao lucky box", points_cost=200, active=True)
    session.add(box)
    session.flush()
    session.add_all(
        [
            BlindBoxPrize(
                box_id=box.id, name="Silk scarf", weight=5, stock=50, awarded=0, voucher_template_id=scarf.id
            ),
            BlindBoxPrize(box_id=box.id, name="100 credits back", weight=35, awarded=0, bonus_points=100),
            BlindBoxPrize(box_id=box.id, name="Thank you", weight=60, awarded=0),
        ]
    )
    session.flush()
