"""Every table, imported in one place so Alembic and the metadata see the whole schema."""

from siyu.auth.models import ApiKey, AuditLog, Role, User
from siyu.catalogue.models import Product
from siyu.channels.imports.models import FileImport
from siyu.channels.models import (
    ChannelAccount,
    ChannelCall,
    ContactWay,
    MassSendReceipt,
    MpSession,
    OaMenuItem,
    WechatQrCode,
)
from siyu.clienteling.models import Alert, Region, Store, Task
from siyu.db import Base
from siyu.identity.models import (
    BlockedLink,
    Identifier,
    IdentifierType,
    IdentityLink,
    IdentityMerge,
    MergeReview,
)
from siyu.ingest.models import DeadLetter, Event
from siyu.journeys.models import Enrolment, Journey, JourneyTrigger, JourneyVersion, NodeCount
from siyu.lifecycle.models import LifecycleChange, LifecycleState, Stage, StageCount, ValueModel
from siyu.loyalty.models import (
    BlindBox,
    BlindBoxDraw,
    BlindBoxPrize,
    EarningRule,
    Lot,
    LotDraw,
    Member,
    Posting,
    Referral,
    ReferralProgram,
    Tier,
    Voucher,
    VoucherTemplate,
)
from siyu.messaging.models import Asset, CapSlot, FrequencyCap, Message, MessageLease, MessageTemplate, Reach
from siyu.outbox.models import OutboxMessage
from siyu.profiles.models import Consent, Profile, Tag
from siyu.segments.models import Segment, SegmentMember, SegmentSize, WechatTagged, WechatTagLink

__all__ = [
    "Alert",
    "ApiKey",
    "Asset",
    "AuditLog",
    "Base",
    "BlindBox",
    "BlindBoxDraw",
    "BlindBoxPrize",
    "BlockedLink",
    "CapSlot",
    "ChannelAccount",
    "ChannelCall",
    "Consent",
    "ContactWay",
    "DeadLetter",
    "EarningRule",
    "Enrolment",
    "Event",
    "FileImport",
    "FrequencyCap",
    "Identifier",
    "IdentifierType",
    "IdentityLink",
    "IdentityMerge",
    "Journey",
    "JourneyTrigger",
    "JourneyVersion",
    "LifecycleChange",
    "LifecycleState",
    "Lot",
    "LotDraw",
    "MassSendReceipt",
    "Member",
    "MergeReview",
    "Message",
    "MessageLease",
    "MessageTemplate",
    "MpSession",
    "NodeCount",
    "OaMenuItem",
    "OutboxMessage",
    "Posting",
    "Product",
    "Profile",
    "Reach",
    "Referral",
    "ReferralProgram",
    "Region",
    "Role",
    "Segment",
    "SegmentMember",
    "SegmentSize",
    "Stage",
    "StageCount",
    "Store",
    "Tag",
    "Task",
    "Tier",
    "User",
    "ValueModel",
    "Voucher",
    "VoucherTemplate",
    "WechatQrCode",
    "WechatTagLink",
    "WechatTagged",
]
