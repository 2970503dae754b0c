"""Templates, assets, caps, and queueing messages through every rule; flushes, never commits.

`queue` is the one way a message is made: it renders the template for each customer, applies quiet
hours, consent, reach and caps, and writes each message (queued, or suppressed with the rule that
stopped it) under its idempotency key, in the caller's transaction. `siyu worker` sends what is queued.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import and_, delete, select, tuple_
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.auth.models import User
from siyu.channels.models import ChannelAccount, ChannelKind
from siyu.config import Settings, get_settings
from siyu.db import is_postgres, utcnow
from siyu.errors import BadRequest, Conflict, NotFound
from siyu.identity.models import Identifier
from siyu.messaging import policy, render
from siyu.messaging.models import (
    REACH_ID_TYPE,
    WECOM_CHANNELS,
    Asset,
    AssetKind,
    CapPeriod,
    CapSlot,
    Channel,
    FrequencyCap,
    Message,
    MessageStatus,
    MessageTemplate,
    Purpose,
    Reach,
)
from siyu.profiles.masking import is_name_key, mask_content, mask_name, mask_payload
from siyu.profiles.models import Consent, Profile

ACCOUNT_KIND = {
    Channel.oa_template: ChannelKind.oa,
    Channel.oa_kefu: ChannelKind.oa,
    Channel.oa_mass: ChannelKind.oa,
    Channel.mp_subscribe: ChannelKind.miniprogram,
    Channel.wecom_1to1: ChannelKind.wecom,
    Channel.wecom_mass: ChannelKind.wecom,
}
# The body keys each channel takes; the first list is required.
BODY_KEYS: dict[Channel, tuple[tuple[str, ...], tuple[str, ...]]] = {
    Channel.oa_template: (("data",), ("url", "miniprogram")),
    Channel.mp_subscribe: (("data",), ("page",)),
    Channel.oa_kefu: (("text",), ()),
    Channel.oa_mass: (("text",), ()),
    Channel.wecom_1to1: (("text",), ("attachments",)),
    Channel.wecom_mass: (("text",), ("attachments",)),
    Channel.sms: (("text",), ()),
}
# No id: the database numbers the messages (nothing in the batch refers to them), saving a round trip.
MESSAGE_COLUMNS: bulk.Columns = [
    ("idempotency_key", "text"),
    ("template_id", "int"),
    ("channel", "text"),
    ("account_id", "int"),
    ("profile_id", "int"),
    ("recipient", "text"),
    ("sender", "text"),
    ("content", "json"),
    ("status", "text"),
    ("rule", "text"),
    ("attempts", "int"),
    ("available_at", "ts"),
    ("journey_id", "int"),
    ("version_id", "int"),
    ("node", "text"),
    ("enrolment_id", "int"),
    ("created_at", "ts"),
]


# --- templates, assets, caps ----------------------------------------------------------------------


def check_template(session: Session, t: MessageTemplate) -> None:
    """Refuse a template that cannot be sent: wrong account, missing fields, a bad placeholder."""
    kind = ACCOUNT_KIND.get(t.channel)
    if kind is None:
        t.account_id = None
    else:
        account = session.get(ChannelAccount, t.account_id) if t.account_id is not None else None
        if account is None or account.kind != kind:
            raise BadRequest(f"account_id: a {t.channel} template needs a {kind} account")
    if t.channel in (Channel.oa_template, Channel.mp_subscribe) and not t.external_template_id:
        raise BadRequest(f"external_template_id: WeChat's template id is required for {t.channel}")
    required, optional = BODY_KEYS[t.channel]
    body = t.body or {}
    for key in required:
        if not body.get(key):
            raise BadRequest(f"body.{key}: required for {t.channel}")
    extra = sorted(set(body) - set(required) - set(optional))
    if extra:
        raise BadRequest(
            f"body.{extra[0]}: not a field of {t.channel} (fields: {', '.join(required + optional)})"
        )
    if "data" in body and not (
        isinstance(body["data"], dict) and all(isinstance(v, str) for v in body["data"].values())
    ):
        raise BadRequest("body.data: an object of field name -> text")
    attachments = body.get("attachments") or []
    if attachments:
        if not isinstance(attachments, list) or len(attachments) > 9:
            raise BadRequest("body.attachments: a list of at most 9 asset keys")
        found = set(session.execute(select(Asset.key).where(Asset.key.in_(attachments))).scalars())
        missing = [a for a in attachments if a not in found]
        if missing:
            raise BadRequest(f"body.attachments: no asset {missing[0]!r}")
    render.names(body)


def create_template(session: Session, *, actor: str = "", **fields: Any) -> MessageTemplate:
    """A new template, checked; Conflict for a taken name."""
    if session.execute(select(MessageTemplate.id).where(MessageTemplate.name == fields["name"])).first():
        raise Conflict(f"a template named {fields['name']!r} exists")
    template = MessageTemplate(**fields, created_by=actor)
    check_template(session, template)
    session.add(template)
    session.flush()
    return template


def update_template(session: Session, template: MessageTemplate, **fields: Any) -> MessageTemplate:
    """Change a template's fields (checked again); messages already queued keep what they rendered."""
    for key, value in fields.items():
        setattr(template, key, value)
    check_template(session, template)
    template.updated_at = utcnow()
    session.flush()
    return template


def get_template_or_raise(session: Session, template_id: int) -> MessageTemplate:
    template = session.get(MessageTemplate, template_id)
    if template is None:
        raise NotFound(f"no message template {template_id}")
    return template


def get_template_by_name(session: Session, name: str) -> MessageTemplate | None:
    return session.execute(select(MessageTemplate).where(MessageTemplate.name == name)).scalar_one_or_none()


def list_templates(session: Session) -> Sequence[MessageTemplate]:
    return session.execute(select(MessageTemplate).order_by(MessageTemplate.name)).scalars().all()


def create_asset(session: Session, **fields: Any) -> Asset:
    """A new library item; BadRequest for one that cannot be sent, Conflict for a taken key."""
    _check_asset(fields)
    if session.execute(select(Asset.id).where(Asset.key == fields["key"])).first():
        raise Conflict(f"an asset with key {fields['key']!r} exists")
    asset = Asset(**{**fields, "kind": AssetKind(fields["kind"])})
    session.add(asset)
    session.flush()
    return asset


def _check_asset(fields: dict[str, Any]) -> None:
    # What WeCom needs to attach each kind: a link's URL, a Mini Program's app id and page.
    kind, url = AssetKind(fields["kind"]), (fields.get("url") or "").strip()
    if url and not _WEB_URL.match(url):
        raise BadRequest(f"url: an http(s) address, got {url[:80]!r}")
    if kind is AssetKind.link and not url:
        raise BadRequest("url: a link needs its address")
    if kind is AssetKind.miniprogram and not (fields.get("appid") and fields.get("page")):
        raise BadRequest("appid, page: a Mini Program item needs its app id and the page to open")


_WEB_URL = re.compile(r"^https?://[^\s/?#]+(?:[/?#]\S*)?$", re.IGNORECASE)


def list_assets(session: Session) -> Sequence[Asset]:
    return session.execute(select(Asset).order_by(Asset.key)).scalars().all()


def create_cap(session: Session, *, channel: Channel | None, period: CapPeriod, limit: int) -> FrequencyCap:
    """A brand cap on marketing messages per customer (a channel's, or all channels' when None)."""
    if limit < 0:
        raise BadRequest("limit: 0 or more messages")
    cap = FrequencyCap(channel=channel, period=period, limit=limit, active=True)
    session.add(cap)
    session.flush()
    return cap


def list_caps(session: Session) -> Sequence[FrequencyCap]:
    return session.execute(select(FrequencyCap).order_by(FrequencyCap.id)).scalars().all()


def set_cap_active(session: Session, cap_id: int, active: bool) -> FrequencyCap:
    cap = session.get(FrequencyCap, cap_id)
    if cap is None:
        raise NotFound(f"no frequency cap {cap_id}")
    cap.active = active
    session.flush()
    return cap


# --- queueing -------------------------------------------------------------------------------------


# Not frozen: a frozen dataclass sets each field through object.__setattr__, and a batch makes a thousand.
@dataclass(slots=True)
class Request:
    """One message to make: for whom, under which idempotency key, and from where (journey, node)."""

    profile_id: int
    key: str
    journey_id: int | None = None
    version_id: int | None = None
    node: str | None = None
    enrolment_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """queued, suppressed (with the rule), deferred (until the end of quiet hours) or exists (a replay)."""

    status: str
    rule: str | None = None
    until: dt.datetime | None = None


QUEUED = Outcome("queued")


@dataclass(slots=True)
class _Address:
    recipient: str | None = None
    sender: str | None = None
    rule: str | None = None
    inbound_at: dt.datetime | None = None
    inbound_kind: str | None = None


def queue(
    session: Session,
    template: MessageTemplate,
    requests: Sequence[Request],
    *,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
) -> list[Outcome]:
    """Make each request's message, in order: the outcome says what became of it."""
    settings = settings or get_settings()
    now = now or utcnow()
    outcomes: list[Outcome | None] = [None] * len(requests)
    existing = _existing(session, [r.key for r in requests])
    live: list[int] = []
    for i, r in enumerate(requests):
        if r.key in existing:
            outcomes[i] = Outcome("exists", existing[r.key][1])
        else:
            live.append(i)
    pids = sorted({requests[i].profile_id for i in live})
    rule: dict[int, str] = {}
    used = render.names(template.body)
    quiet_hours = template.purpose == Purpose.marketing and bool(settings.quiet_hours.strip())
    # One read of the customers for both the time zones (in their traits) and the personalisation.
    ctx = render.contexts(session, pids, used | {"traits"} if quiet_hours else used)
    if quiet_hours:
        zone_of = _zones(ctx, settings)
        # The batch shares one moment: quiet hours are worked out once per time zone.
        quiet: dict[str, dt.datetime | None] = {}
        kept: list[int] = []
        for i in live:
            zone = zone_of.get(requests[i].profile_id, settings.timezone)
            if zone not in quiet:
                quiet[zone] = policy.quiet_until(now, settings.quiet_hours, zone)
            until = quiet[zone]
            if until is None:
                kept.append(i)
            else:
                outcomes[i] = Outcome("deferred", "quiet_hours", until)
        live = kept
    pids = sorted({requests[i].profile_id for i in live})
    addresses = _addresses(session, template, pids)
    # The address first: a customer the channel cannot reach at all is recorded so, whatever her consents.
    for pid in pids:
        address = addresses.get(pid) or _Address(rule="no_recipient")
        if address.rule:
            rule.setdefault(pid, address.rule)
    for pid, purpose_rule in _consent_rules(session, template, pids).items():
        rule.setdefault(pid, purpose_rule)
    # Calendar caps, and the customer-service window's own cap.
    brand = list(session.execute(select(FrequencyCap).where(FrequencyCap.active)).scalars())
    account = session.get(ChannelAccount, template.account_id) if template.account_id is not None else None
    caps = policy.caps_for(template.channel, template.purpose, brand, settings, account=account)
    # The calendar windows are the batch's, not each customer's: worked out once.
    calendar = [
        (c.key, policy.window(c.period, now, settings.timezone), c.limit, c.label) for c in caps if c.period
    ]
    wants: dict[int, list[tuple[str, str, int, str]]] = {}
    keys: dict[int, str] = {}
    for i in live:
        r = requests[i]
        if r.profile_id in rule:
            continue
        if r.profile_id in keys:
            # Two messages of one batch to one customer: the second waits for a batch of its own.
            continue
        want = list(calendar)
        if template.channel == Channel.oa_kefu:
            address = addresses[r.profile_id]
            opened = address.inbound_at
            span = dt.timedelta(
                hours=settings.oa_kefu_window_hours if address.inbound_kind == "message" else 1 / 60
            )
            if opened is None or now - opened > span:
                rule[r.profile_id] = "cs_window"
                continue
            limit = settings.oa_kefu_messages if address.inbound_kind == "message" else 3
            want.append(
                ("oa_kefu", opened.strftime("%Y%m%d%H%M%S"), limit, f"customer-service window {limit}")
            )
        wants[r.profile_id] = want
        keys[r.profile_id] = r.key
    for pid, blocked in _claim(session, wants, keys).items():
        if blocked is not None:
            rule[pid] = blocked
    # Render what goes out; a template that fails for one customer fails that message, not the batch.
    asset = render.asset_lookup(session)
    renderer = render.Renderer(template.body, used)
    rows: list[tuple[Any, ...]] = []
    account_id = template.account_id
    for i in live:
        r = requests[i]
        pid = r.profile_id
        blocked = rule.get(pid)
        if blocked is None and keys[pid] != r.key:
            # A second message to her in this batch: its caps were not counted; it waits for the next.
            outcomes[i] = Outcome("deferred", "one_per_batch", now)
            continue
        content: dict[str, Any] = {}
        error_rule = blocked
        if blocked is None:
            content, error = renderer.render(
                ctx[pid],
                lambda: {**ctx[pid], **r.extra, "asset": asset, "track": render.tracker(r.key)},  # noqa: B023
            )
            if error is not None:
                # A template that fails for one customer fails that message, not the batch.
                error_rule, content = "render", {"error": error}
                release(session, [r.key])
        address = addresses.get(pid) or _Address()
        status = MessageStatus.queued if error_rule is None else MessageStatus.suppressed
        rows.append(
            (
                r.key,
                template.id,
                str(template.channel),
                account_id,
                pid,
                address.recipient,
                address.sender,
                content,
                str(status),
                error_rule,
                0,
                now,
                r.journey_id,
                r.version_id,
                r.node,
                r.enrolment_id,
                now,
            )
        )
        outcomes[i] = QUEUED if error_rule is None else Outcome("suppressed", error_rule)
    bulk.insert_rows(session, "messages", MESSAGE_COLUMNS, rows)
    done = [o for o in outcomes if o is not None]
    if len(done) != len(requests):
        raise RuntimeError("queue: a request was left without an outcome")
    return done


def _existing(session: Session, keys: Sequence[str]) -> dict[str, tuple[str, str | None]]:
    found: dict[str, tuple[str, str | None]] = {}
    for chunk in bulk.chunks(keys):
        for key, status, rule in session.execute(
            select(Message.idempotency_key, Message.status, Message.rule).where(
                bulk.matches(session, Message.idempotency_key, chunk)
            )
        ):
            found[key] = (str(status), rule)
    return found


def zones(session: Session, pids: Sequence[int], settings: Settings) -> dict[int, str]:
    """Each customer's time zone: the `timezone` trait when it names one, else the brand's."""
    out: dict[int, str] = {}
    for chunk in bulk.chunks(pids):
        rows = session.execute(
            select(Profile.id, Profile.traits["timezone"].as_string()).where(
                bulk.matches(session, Profile.id, chunk)
            )
        )
        out.update((pid, policy.zone_or(zone, settings.timezone)) for pid, zone in rows if zone)
    return out


def _zones(ctx: dict[int, dict[str, Any]], settings: Settings) -> dict[int, str]:
    """As `zones`, from contexts that hold the customers' traits."""
    traits = ((pid, (values.get("traits") or {}).get("timezone")) for pid, values in ctx.items())
    return {pid: policy.zone_or(zone, settings.timezone) for pid, zone in traits if zone}


def _addresses(session: Session, template: MessageTemplate, pids: Sequence[int]) -> dict[int, _Address]:
    """Who receives the message on its channel, or the rule that says no one can."""
    out: dict[int, _Address] = {}
    if not pids:
        return out
    if template.channel == Channel.sms:
        for chunk in bulk.chunks(pids):
            for pid, phone in session.execute(
                select(Identifier.profile_id, Identifier.value).where(
                    Identifier.type == "phone", bulk.matches(session, Identifier.profile_id, chunk)
                )
            ):
                out[pid] = _Address(recipient=phone)
        return out
    owners: dict[int, str] = {}
    if template.channel in WECOM_CHANNELS:
        for chunk in bulk.chunks(pids):
            owners.update(
                (int(pid), str(userid))
                for pid, userid in session.execute(
                    select(Profile.id, User.wecom_userid)
                    .join(User, User.id == Profile.owner_user_id)
                    .where(bulk.matches(session, Profile.id, chunk), User.wecom_userid.is_not(None))
                )
            )
    id_type = REACH_ID_TYPE.get(ACCOUNT_KIND.get(template.channel, ""), "")
    for chunk in bulk.chunks(pids):
        rows = session.execute(
            select(
                Identifier.profile_id,
                Reach.address,
                Reach.reachable,
                Reach.associate,
                Reach.inbound_at,
                Reach.inbound_kind,
            )
            .join(Identifier, and_(Identifier.value == Reach.address, Identifier.type == Reach.id_type))
            .where(
                Reach.account_id == template.account_id,
                bulk.matches(session, Identifier.profile_id, chunk),
                # Only the customer's identifiers of the account's kind can be its addresses: the others
                # (member id, phone) are not looked for in its reach.
                *([Identifier.type == id_type] if id_type else []),
            )
            .order_by(Reach.updated_at)
        )
        for pid, address, reachable, associate, inbound_at, inbound_kind in rows:
            current = out.get(pid)
            if not reachable:
                if current is None:
                    out[pid] = _Address(rule="unsubscribed")
                continue
            candidate = _Address(address, associate, None, inbound_at, inbound_kind)
            # WeCom: the customer's own associate sends, when she is one of the customer's contacts.
            if current is None or current.rule or (associate is not None and associate == owners.get(pid)):
                out[pid] = candidate
    if template.channel in WECOM_CHANNELS:
        for found in out.values():
            if found.rule is None and not found.sender:
                found.rule = "no_associate"
    return out


def _consent_rules(session: Session, template: MessageTemplate, pids: Sequence[int]) -> dict[int, str]:
    """Customers whose latest consent forbids this message: marketing withdrawn, or SMS never granted."""
    purposes = []
    if template.purpose == Purpose.marketing:
        purposes.append("marketing")
    if template.channel == Channel.sms and template.purpose == Purpose.marketing:
        purposes.append("sms")
    if not purposes or not pids:
        return {}
    latest: dict[tuple[int, str], bool] = {}
    for chunk in bulk.chunks(pids):
        for pid, purpose, granted in session.execute(
            select(Consent.profile_id, Consent.purpose, Consent.granted)
            .where(bulk.matches(session, Consent.profile_id, chunk), Consent.purpose.in_(purposes))
            .order_by(Consent.at, Consent.id)
        ):
            latest[(pid, purpose)] = bool(granted)
    out: dict[int, str] = {}
    for pid in pids:
        if latest.get((pid, "marketing")) is False:
            out[pid] = "consent:marketing"
        elif "sms" in purposes and latest.get((pid, "sms")) is not True:
            # PIPL: marketing by SMS needs the customer's opt-in, not only the absence of an opt-out.
            out[pid] = "consent:sms"
    return out


def _claim(
    session: Session, wants: dict[int, list[tuple[str, str, int, str]]], keys: dict[int, str]
) -> dict[int, str | None]:
    """Take one slot of every cap each customer's message counts against; the label of a full cap else."""
    result: dict[int, str | None] = {pid: None for pid, w in wants.items()}
    pending = {pid: w for pid, w in wants.items() if w}
    pairs = {(c, w) for want in pending.values() for c, w, _, _ in want}
    for _attempt in range(8):
        if not pending:
            break
        taken: dict[tuple[int, str, str], set[int]] = {}
        ids = sorted(pending)
        for chunk in bulk.chunks(ids):
            for pid, cap, window, n in session.execute(
                select(CapSlot.profile_id, CapSlot.cap, CapSlot.window, CapSlot.n).where(
                    bulk.matches(session, CapSlot.profile_id, chunk),
                    tuple_(CapSlot.cap, CapSlot.window).in_(sorted(pairs)),
                )
            ):
                taken.setdefault((pid, cap, window), set()).add(n)
        rows: list[dict[str, Any]] = []
        for pid, want in list(pending.items()):
            mine: list[dict[str, Any]] = []
            for cap, window, limit, label in want:
                used = taken.get((pid, cap, window), set())
                free = next((n for n in range(1, limit + 1) if n not in used), None)
                if free is None:
                    result[pid] = f"cap:{label}"
                    mine = []
                    break
                mine.append(
                    {"profile_id": pid, "cap": cap, "window": window, "n": free, "message_key": keys[pid]}
                )
            if result[pid] is not None:
                del pending[pid]
            rows.extend(mine)
        inserted = _insert_slots(session, rows)
        lost = {r["profile_id"] for r in rows if (r["profile_id"], r["cap"]) not in inserted}
        for pid in list(pending):
            if pid not in lost:
                del pending[pid]
        if lost:
            # Another worker took a slot first: give back what these took and count again.
            release(session, [keys[pid] for pid in lost])
    for pid in pending:
        result[pid] = "cap:contended"
    return result


def _insert_slots(session: Session, rows: list[dict[str, Any]]) -> set[tuple[int, str]]:
    """Insert slot rows; (profile, cap) of those inserted (a slot another worker holds is skipped)."""
    if not rows:
        return set()
    conn = bulk.driver_connection(session)
    columns = 'profile_id, cap, "window", n, message_key'
    if is_postgres(session):
        inserted: set[tuple[int, str]] = set()
        with conn.cursor() as cursor:
            for chunk in bulk.chunks(rows):
                cursor.execute(
                    f"INSERT INTO message_cap_slots ({columns}) SELECT {columns} FROM json_to_recordset(%s::json) "
                    'AS v(profile_id bigint, cap text, "window" text, n int, message_key text) '
                    "ON CONFLICT DO NOTHING RETURNING profile_id, cap",
                    [orjson.dumps(chunk).decode()],
                )
                inserted.update((int(p), str(c)) for p, c in cursor.fetchall())
        return inserted
    # SQLite: this transaction holds the database's write lock since it began, so the slots read above
    # cannot have been taken since; a conflict here would be a bug, and raises.
    conn.executemany(
        f"INSERT INTO message_cap_slots ({columns}) VALUES (?, ?, ?, ?, ?)",
        [(r["profile_id"], r["cap"], r["window"], r["n"], r["message_key"]) for r in rows],
    )
    return {(r["profile_id"], r["cap"]) for r in rows}


def release(session: Session, message_keys: Sequence[str]) -> None:
    """Give back the cap slots of messages that did not go out (suppressed late, lost a race, failed for good)."""
    for chunk in bulk.chunks(message_keys):
        session.execute(delete(CapSlot).where(bulk.matches(session, CapSlot.message_key, chunk)))


# --- reading ---------------------------------------------------------------------------------------


def list_messages(
    session: Session,
    *,
    profile_id: int | None = None,
    journey_id: int | None = None,
    status: MessageStatus | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Sequence[Message]:
    """Messages, newest first, filtered; the next page starts before the last id of this one."""
    statement = select(Message)
    if before_id is not None:
        statement = statement.where(Message.id < before_id)
    if profile_id is not None:
        statement = statement.where(Message.profile_id == profile_id)
    if journey_id is not None:
        statement = statement.where(Message.journey_id == journey_id)
    if status is not None:
        statement = statement.where(Message.status == status)
    return session.execute(statement.order_by(Message.id.desc()).limit(limit)).scalars().all()


def preview(
    session: Session, template: MessageTemplate, profile_id: int, *, mask_names: bool = False
) -> dict[str, Any]:
    """The template rendered for one real customer (nothing is queued; tracked links are marked preview).

    Phones and emails come out masked wherever the template put them (PIPL: a preview is not a reveal);
    mask_names also masks her name (王**), for roles that do not see customers' names.
    """
    used = render.names(template.body)
    ctx = render.contexts(session, [profile_id], used)[profile_id]
    names = tuple(str(ctx[k]) for k in ("name", "first_name") if ctx.get(k))
    if "traits" in ctx:
        names += tuple(str(v) for k, v in ctx["traits"].items() if is_name_key(k) and isinstance(v, str))
        ctx["traits"] = mask_payload(ctx["traits"], reveal=False, mask_names=mask_names)
    if mask_names:
        ctx.update({k: mask_name(str(ctx[k])) for k in ("name", "first_name") if ctx.get(k)})
    content = render.render(
        template.body,
        {**ctx, "asset": render.asset_lookup(session), "track": render.tracker(f"preview:{template.id}")},
    )
    masked: dict[str, Any] = mask_content(content, mask_names=mask_names, names=names)
    return masked
