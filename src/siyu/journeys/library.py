"""Ready-made journeys from the case studies (domain.md §5, §8), created as drafts to adapt and publish.

Each entry carries its definition and the message templates it sends; instantiating one creates the
templates that do not exist yet on the accounts given, and the journey as a draft. Placeholders the
brand must fill (the segment, the WeChat template ids) are reported by `validate` until they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field
from sqlalchemy.orm import Session

from siyu.errors import BadRequest, NotFound
from siyu.journeys import service
from siyu.journeys.models import Journey
from siyu.messaging import service as messaging
from siyu.messaging.models import Channel
from siyu.schemas import Input

ORDER = {"event": "Order Completed"}


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    name: str
    description: str
    definition: dict[str, Any]
    templates: dict[str, dict[str, Any]]

    def needs(self) -> list[str]:
        """What the brand provides: accounts for the channels used, a segment, voucher templates."""
        kinds = {messaging.ACCOUNT_KIND.get(Channel(t["channel"])) for t in self.templates.values()}
        out = sorted(f"{kind} account" for kind in kinds if kind is not None)
        if self.definition["entry"].get("type") == "segment":
            out.append("segment_id")
        out += [
            f"voucher template {n['template']!r}"
            for n in self.definition["nodes"].values()
            if n["type"] == "voucher"
        ]
        return out


def _oa(title: str, first: str, remark: str, url: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"data": {"first": first, "keyword1": title, "remark": remark}}
    if url:
        body["url"] = url
    return {
        "channel": Channel.oa_template,
        "external_template_id": "REPLACE-WITH-WECHAT-TEMPLATE-ID",
        "body": body,
    }


def _wecom(text: str, channel: Channel = Channel.wecom_1to1) -> dict[str, Any]:
    return {"channel": channel, "body": {"text": text}}


ENTRIES = [
    Entry(
        "welcome-and-nurture",
        "Welcome and nurture (24 h / 72 h)",
        "A new follower in the Hi-Po segment gets a personalised welcome at once, a recommended story on "
        "day 2 and, without an order within 72 hours, a voucher (members) or an invitation to join "
        "(followers). Exit when she buys (the social-CRM conversion playbook).",
        {
            "entry": {"type": "segment", "segment_id": 0},
            "reentry": "never",
            "goals": [ORDER],
            "start": "welcome",
            "nodes": {
                "welcome": {
                    "type": "send",
                    "template": "Welcome — personalised",
                    "next": "day2",
                    "label": "Welcome",
                },
                "day2": {"type": "wait", "duration": "1d", "next": "story"},
                "story": {
                    "type": "send",
                    "template": "Recommended story",
                    "next": "buy",
                    "label": "Story on day 2",
                },
                "buy": {
                    "type": "wait_event",
                    "event": "Order Completed",
                    "timeout": "2d",
                    "next": "done",
                    "timeout_next": "member",
                },
                # Members get the voucher; followers who have not joined are invited to (10% off).
                "member": {
                    "type": "split",
                    "rule": {"identifier": "member_id"},
                    "yes": "voucher",
                    "no": "invite",
                },
                "invite": {"type": "send", "template": "Join and get 10% off", "next": "done"},
                "voucher": {"type": "voucher", "template": "20 RMB welcome voucher", "next": "voucher_msg"},
                "voucher_msg": {"type": "send", "template": "Your welcome voucher", "next": "done"},
                "done": {"type": "exit"},
            },
        },
        {
            "Welcome — personalised": _oa(
                "Welcome",
                "{{ first_name or 'Hello' }}, welcome to our world",
                "Join our follower group for first looks",
                "{{ track('https://example.com/group') }}",
            ),
            "Recommended story": _oa(
                "A story for you",
                "{{ first_name }}, a story we picked for you",
                "{{ asset('recommended-story').title }}",
                "{{ track(asset('recommended-story').url or 'https://example.com') }}",
            ),
            "Join and get 10% off": _oa(
                "Membership",
                "{{ first_name }}, join our membership: 10% off your first order",
                "Invite a friend and you both get 20 RMB",
                "{{ track('https://tos.example/join') }}",
            ),
            "Your welcome voucher": _oa(
                "Your voucher", "{{ first_name }}, 20 RMB off your first order", "Valid for 30 days"
            ),
        },
    ),
    Entry(
        "post-store-purchase",
        "After an in-store purchase, online promotions via the advisor",
        "A day after a store purchase the customer's advisor sends her the online promotions (as Liby's WeCom advisors do).",
        {
            "entry": {
                "type": "event",
                "event": "Order Completed",
                "where": [{"property": "channel", "op": "eq", "value": "store"}],
            },
            "reentry": "always",
            "goals": [],
            "start": "wait",
            "nodes": {
                "wait": {"type": "wait", "duration": "1d", "next": "promo"},
                "promo": {"type": "send", "template": "Online promotions from your advisor", "next": "done"},
                "done": {"type": "exit"},
            },
        },
        {
            "Online promotions from your advisor": _wecom(
                "Hi {{ first_name }}, thank you for visiting {{ store or 'our store' }}! This week online: "
                "{{ asset('online-promotion').title }} {{ track(asset('online-promotion').url or 'https://example.com') }}{{ ' — ' ~ sa_name if sa_name else '' }}"
            )
        },
    ),
    Entry(
        "favourite-reminder",
        "Favourite reminder",
        "Three days after a customer favourites a product she has not bought, a reminder (as Liby's WeCom advisors do).",
        {
            "entry": {"type": "event", "event": "Product Added to Wishlist"},
            "reentry": "after_exit",
            "goals": [ORDER],
            "start": "wait",
            "nodes": {
                "wait": {"type": "wait", "duration": "3d", "next": "remind"},
                "remind": {"type": "send", "template": "Your favourite is waiting", "next": "done"},
                "done": {"type": "exit"},
            },
        },
        {
            "Your favourite is waiting": _oa(
                "Still thinking about it?",
                "{{ first_name }}, {{ favourite_product or 'your favourite' }} is still here",
                "Tap to see it again",
            )
        },
    ),
    Entry(
        "birthday-alert",
        "Birthday: alert the advisor, then wish her well",
        "Three days before a customer's birthday her advisor gets a task; on the day, at the hour she was enrolled "
        "(10:00), a birthday message (as luxury brands do on WeChat).",
        {
            # Three days to the hour after the enrolment: a "wait until 10:00" would roll over to the next day
            # whenever the enrolment ran after 10:00 (a journey published in the afternoon).
            "entry": {"type": "date", "attribute": "birthday", "days_before": 3, "at": "10:00"},
            "reentry": "always",
            "goals": [],
            "start": "task",
            "nodes": {
                "task": {
                    "type": "task",
                    "title": "{{ name }}'s birthday is in 3 days: prepare a gift",
                    "due": "3d",
                    "next": "day",
                },
                "day": {"type": "wait", "duration": "3d", "next": "wish"},
                "wish": {"type": "send", "template": "Happy birthday", "next": "done"},
                "done": {"type": "exit"},
            },
        },
        {
            "Happy birthday": _wecom(
                "Happy birthday, {{ first_name }}! A gift is waiting for you at {{ store or 'our store' }}.{{ ' — ' ~ sa_name if sa_name else '' }}"
            )
        },
    ),
    Entry(
        "points-expiring",
        "Points expiring reminder",
        "Fourteen days before points expire, the member is told how many she has and what they buy.",
        {
            "entry": {"type": "date", "attribute": "points_expiry", "days_before": 14, "at": "10:00"},
            "reentry": "always",
            "goals": [],
            "start": "remind",
            "nodes": {
                "remind": {"type": "send", "template": "Points expiring", "next": "done"},
                "done": {"type": "exit"},
            },
        },
        {
            "Points expiring": _oa(
                "Points expiring",
                "{{ first_name }}, some of your {{ points }} points expire in 14 days",
                "Use them in the rewards shop",
            )
        },
    ),
    Entry(
        "lapsed-win-back",
        "Lapsed win-back (A/B with holdout)",
        "Customers entering the segment you choose (lapsed or wavering buyers) get a voucher (A) or a "
        "new-collection story (B; also those a voucher cannot be given to), 10% are held out to measure the "
        "uplift; exit when they buy.",
        {
            "entry": {"type": "segment", "segment_id": 0},
            "reentry": "after_exit",
            "goals": [ORDER],
            "holdout_days": 14,
            "start": "split",
            "nodes": {
                "split": {
                    "type": "ab",
                    "holdout": 10,
                    "variants": [
                        {"name": "voucher", "weight": 1, "next": "give"},
                        {"name": "story", "weight": 1, "next": "story"},
                    ],
                },
                # Not a member (no voucher to give): the story, not a message about a voucher she has not got.
                "give": {"type": "voucher", "template": "Win-back voucher", "next": "tell", "else": "story"},
                "tell": {"type": "send", "template": "We miss you — a voucher", "next": "wait"},
                "story": {"type": "send", "template": "We miss you — new collection", "next": "wait"},
                "wait": {
                    "type": "wait_event",
                    "event": "Order Completed",
                    "timeout": "14d",
                    "next": "done",
                    "timeout_next": "done",
                },
                "done": {"type": "exit"},
            },
        },
        {
            "We miss you — a voucher": _wecom(
                "{{ first_name }}, it has been a while! A voucher is waiting for you.{{ ' — ' ~ sa_name if sa_name else '' }}"
            ),
            "We miss you — new collection": _wecom(
                "{{ first_name }}, our new collection is in: {{ track(asset('new-collection').url or 'https://example.com') }}{{ ' — ' ~ sa_name if sa_name else '' }}"
            ),
        },
    ),
]
_BY_KEY = {e.key: e for e in ENTRIES}


def entries() -> list[Entry]:
    return list(ENTRIES)


class InstantiateIn(Input):
    name: str | None = Field(
        default=None, max_length=120, description="The journey's name (default: the entry's)"
    )
    accounts: dict[str, int] = Field(
        default_factory=dict, description="Channel account ids by kind: oa, wecom, miniprogram"
    )
    segment_id: int | None = None


def instantiate(session: Session, key: str, body: InstantiateIn, *, actor: str = "") -> Journey:
    """The library entry as a draft journey; its missing templates made on the accounts given."""
    entry = _BY_KEY.get(key)
    if entry is None:
        raise NotFound(f"no library journey {key!r} (one of {', '.join(_BY_KEY)})")
    _check_inputs(session, body)
    if entry.definition["entry"].get("type") == "segment" and body.segment_id is None:
        raise BadRequest(
            f"segment_id: “{entry.name}” enrols the customers who enter a segment: give its id "
            "(GET /api/v1/segments)"
        )
    for name, spec in entry.templates.items():
        if messaging.get_template_by_name(session, name) is not None:
            continue
        channel = Channel(spec["channel"])
        kind = messaging.ACCOUNT_KIND.get(channel)
        account_id = body.accounts.get(str(kind)) if kind is not None else None
        if kind is not None and account_id is None:
            # A journey whose messages have no account to go out on would only fail at publication.
            raise BadRequest(
                f"accounts.{kind}: “{entry.name}” sends {channel} messages (template {name!r}): give the id "
                f"of a {kind} account (GET /api/v1/channels), or create the template first"
            )
        messaging.create_template(
            session,
            name=name,
            channel=channel,
            account_id=account_id,
            external_template_id=spec.get("external_template_id"),
            body=spec["body"],
            actor=actor,
        )
    definition = {**entry.definition}
    if body.segment_id is not None and definition["entry"].get("type") == "segment":
        definition["entry"] = {**definition["entry"], "segment_id": body.segment_id}
    return service.create(
        session,
        name=body.name or entry.name,
        description=entry.description,
        definition=definition,
        actor=actor,
    )


def _check_inputs(session: Session, body: InstantiateIn) -> None:
    """BadRequest or NotFound naming an account or a segment that cannot be used (before anything is made)."""
    from siyu.channels.models import ChannelAccount, ChannelKind
    from siyu.segments.models import Segment

    kinds = {str(k) for k in ChannelKind}
    for kind, account_id in body.accounts.items():
        if kind not in kinds:
            raise BadRequest(f"accounts: unknown kind {kind!r} (one of {', '.join(sorted(kinds))})")
        account = session.get(ChannelAccount, account_id)
        if account is None:
            raise NotFound(f"accounts.{kind}: no channel account #{account_id}")
        if str(account.kind) != kind:
            raise BadRequest(
                f"accounts.{kind}: account #{account_id} ({account.name}) is of kind {account.kind}"
            )
    if body.segment_id is not None and session.get(Segment, body.segment_id) is None:
        raise NotFound(f"segment_id: no segment #{body.segment_id}")
