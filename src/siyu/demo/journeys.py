"""The demo's journeys: the library's welcome, win-back, favourite and birthday journeys, published on the
demo's accounts and segments, with the content they link to, so the console shows them running."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.channels.models import ChannelAccount
from siyu.demo.channels import OA_NAME, WECOM_NAME
from siyu.journeys import library
from siyu.journeys import service as journeys
from siyu.journeys.models import Journey
from siyu.loyalty import vouchers
from siyu.loyalty.models import VoucherKind, VoucherTemplate
from siyu.messaging import service as messaging
from siyu.messaging.models import Asset, CapPeriod, FrequencyCap
from siyu.segments.models import Segment

ASSETS = (
    (
        "recommended-story",
        "article",
        "Su embroidery: a century of qipao",
        "https://tasteofsu.example/stories/su-embroidery",
    ),
    (
        "online-promotion",
        "link",
        "Autumn qipao, 15% off online this week",
        "https://tasteofsu.example/autumn",
    ),
    ("new-collection", "link", "The new Brocade collection", "https://tasteofsu.example/brocade"),
)
VOUCHERS = (("20 RMB welcome voucher", 2000), ("Win-back voucher", 5000))
# (library entry, name in the demo, the segment it listens to, enrol its current members when published)
PLAN = (
    ("welcome-and-nurture", "Welcome Hi-Po followers", "Hi-Po young professionals", True),
    ("lapsed-win-back", "Win back wavering buyers", "Wavering buyers", True),
    ("favourite-reminder", "Favourite reminder", None, False),
    ("birthday-alert", "Birthday: advisor's gift and wishes", None, False),
)


def ensure_journeys(session: Session) -> list[Journey]:
    """The demo's journeys, created and published once (existing ones are left as they are)."""
    for key, kind, title, url in ASSETS:
        if not session.execute(select(Asset.id).where(Asset.key == key)).first():
            messaging.create_asset(session, key=key, kind=kind, title=title, url=url)
    for name, fen in VOUCHERS:
        if not session.execute(select(VoucherTemplate.id).where(VoucherTemplate.name == name)).first():
            vouchers.create_template(
                session, name=name, kind=VoucherKind.amount_off, value=fen, valid_days=30
            )
    if not session.execute(select(FrequencyCap.id)).first():
        # The brand's own rule on top of WeChat's: at most 3 marketing messages a week per customer.
        messaging.create_cap(session, channel=None, period=CapPeriod.week, limit=3)
    accounts = {
        str(a.kind): a.id
        for a in session.execute(
            select(ChannelAccount).where(ChannelAccount.name.in_([OA_NAME, WECOM_NAME]))
        ).scalars()
    }
    out = []
    for key, name, segment_name, broadcast in PLAN:
        journey = session.execute(select(Journey).where(Journey.name == name)).scalar_one_or_none()
        if journey is None:
            segment_id = None
            if segment_name is not None:
                segment_id = session.execute(
                    select(Segment.id).where(Segment.name == segment_name)
                ).scalar_one()
            journey = library.instantiate(
                session,
                key,
                library.InstantiateIn(name=name, accounts=accounts, segment_id=segment_id),
                actor="demo",
            )
            if broadcast:
                journeys.update_draft(
                    session,
                    journey,
                    definition={
                        **journey.draft,
                        "entry": {**journey.draft["entry"], "include_existing": True},
                    },
                )
            journeys.publish(session, journey, actor="demo")
        out.append(journey)
    return out
