"""The Official Account callback: verify, decrypt, turn each push into an ingest event, queue it.

WeChat waits 5 s and then retries (three tries in all). The push is queued durably, in one transaction
with the pushes that arrived with it (`receiver`, decision 0014), and answered `success`; the ingest
processor stores it. A retry carries the same MsgId, or
the same FromUserName + CreateTime + Event, from which the messageId is derived, so it is stored once.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, bindparam, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from siyu.auth.models import User
from siyu.channels import callbacks, service, tasks, xml
from siyu.channels.crypto import CryptoError, signature_matches
from siyu.channels.models import ChannelAccount, MassSendReceipt, OaMenuItem, WechatQrCode
from siyu.clienteling.models import Store
from siyu.config import Settings
from siyu.db import is_postgres
from siyu.errors import Forbidden
from siyu.outbox import service as outbox

FOLLOW_SOURCES = ("search", "qr_code", "word_of_mouth", "ad", "other")
MENU_EVENTS = ("click", "view")


def verify_url(account: ChannelAccount, query: dict[str, str], now: dt.datetime, settings: Settings) -> str:
    """The echostr to answer the GET URL verification with, or Forbidden."""
    creds = service.credentials(account)
    timestamp = callbacks.query_value(query, "timestamp")
    nonce = callbacks.query_value(query, "nonce")
    echostr = callbacks.query_value(query, "echostr")
    if not signature_matches(callbacks.query_value(query, "signature"), creds.token or "", timestamp, nonce):
        raise Forbidden("signature does not match")
    # URL verification is done once when the URL is saved in the WeChat console: no freshness
    # check, or a server with a wrong clock could not even be configured.
    return echostr


def open_push(
    account: ChannelAccount, query: dict[str, str], body: bytes, now: dt.datetime, settings: Settings
) -> dict[str, Any]:
    """The push's fields after the signature (and, in safe or compatible mode, decryption) checks.

    Forbidden for a forged or stale request; xml.XmlError for a body that is not a WeChat message.
    """
    creds = service.credentials(account)
    timestamp = callbacks.query_value(query, "timestamp")
    nonce = callbacks.query_value(query, "nonce")
    encrypted = query.get("encrypt_type", "raw") == "aes"
    # Every mode signs the URL; safe and compatible modes sign the envelope as well (msg_signature).
    if not signature_matches(callbacks.query_value(query, "signature"), creds.token or "", timestamp, nonce):
        raise Forbidden("signature does not match")
    callbacks.check_fresh(timestamp, now, settings)
    fields = xml.parse(body)
    if not encrypted:
        return fields
    crypto = creds.crypto()
    if crypto is None:
        raise Forbidden("encrypted push, but this account has no EncodingAESKey")
    envelope = fields.get("Encrypt")
    if not isinstance(envelope, str) or not envelope:
        raise xml.XmlError("Encrypt: missing in an encrypted push")
    try:
        inner = crypto.open(callbacks.query_value(query, "msg_signature"), timestamp, nonce, envelope)
    except CryptoError as exc:
        raise Forbidden(f"envelope: {exc}") from exc
    return xml.parse(inner)


def message_id(account: ChannelAccount, msg: dict[str, Any]) -> str:
    """The idempotency key of a push: MsgId for messages, sender + time + event (+ key) for events."""
    if msg.get("MsgType") != "event" and msg.get("MsgId"):
        return f"wx-oa:{account.app_id}:msg:{msg['MsgId']}"
    parts = [msg.get("FromUserName", ""), msg.get("CreateTime", ""), msg.get("Event", "")]
    if msg.get("EventKey"):
        parts.append(str(msg["EventKey"])[:100])
    if msg.get("MsgID"):
        parts.append(str(msg["MsgID"]))
    return f"wx-oa:{account.app_id}:" + ":".join(str(p) for p in parts)


# Built once: every group of pushes runs them.
_QR_CODES = (
    select(
        WechatQrCode.account_id,
        WechatQrCode.scene,
        WechatQrCode.id,
        WechatQrCode.name,
        WechatQrCode.purpose,
        WechatQrCode.campaign,
        WechatQrCode.placement,
        Store.code.label("store"),
        func.coalesce(User.wecom_userid, User.username).label("associate"),
    )
    .outerjoin(Store, Store.id == WechatQrCode.store_id)
    .outerjoin(User, User.id == WechatQrCode.user_id)
    .where(
        WechatQrCode.account_id.in_(bindparam("accounts", expanding=True)),
        WechatQrCode.scene.in_(bindparam("scenes", expanding=True)),
    )
)
_MENU_ITEMS = select(OaMenuItem.account_id, OaMenuItem.key, OaMenuItem.label, OaMenuItem.category).where(
    OaMenuItem.account_id.in_(bindparam("accounts", expanding=True)),
    OaMenuItem.key.in_(bindparam("keys", expanding=True)),
)


@dataclass(slots=True)
class Lookups:
    """The QR codes and menu items a group of pushes names, each kind read with one query."""

    qr_codes: dict[tuple[int, str], dict[str, Any]]
    menu_items: dict[tuple[int, str], tuple[str, str]]

    @classmethod
    def load(cls, session: Session, pushes: Sequence[tuple[ChannelAccount, dict[str, Any]]]) -> Lookups:
        """What pushes need: attribution of each QR scene, label and category of each menu key."""
        scenes: set[str] = set()
        keys: set[str] = set()
        accounts: set[int] = set()
        for account, msg in pushes:
            kind, key = _event_and_key(msg)
            scene = _qr_scene(kind, key)
            if scene is not None:
                scenes.add(scene)
            elif kind in MENU_EVENTS:
                keys.add(key)
            else:
                continue
            accounts.add(account.id)
        qr_codes: dict[tuple[int, str], dict[str, Any]] = {}
        menu_items: dict[tuple[int, str], tuple[str, str]] = {}
        if scenes:
            rows = session.execute(_QR_CODES, {"accounts": sorted(accounts), "scenes": sorted(scenes)})
            for row in rows:
                qr_codes[(row.account_id, row.scene)] = _attribution(row)
        if keys:
            items = session.execute(_MENU_ITEMS, {"accounts": sorted(accounts), "keys": sorted(keys)})
            for account_id, key, label, category in items:
                menu_items[(account_id, key)] = (label, category)
        return cls(qr_codes, menu_items)


def _event_and_key(msg: dict[str, Any]) -> tuple[str, str]:
    """The lower-cased Event of an event push and its EventKey ("" for messages or no key)."""
    if msg.get("MsgType") != "event":
        return "", ""
    key = msg.get("EventKey")
    return str(msg.get("Event") or "").lower(), key if isinstance(key, str) else ""


def _qr_scene(kind: str, key: str) -> str | None:
    """The QR scene a follow through a parametric code (`qrscene_…`) or a scan names; None otherwise."""
    if kind == "subscribe":
        return key[len("qrscene_") :] if key.startswith("qrscene_") else None
    return key if kind == "scan" else None


def _attribution(qr: Row[*tuple[Any, ...]]) -> dict[str, Any]:
    """The properties a QR code adds to a follow or scan: which code, store, associate, campaign."""
    out: dict[str, Any] = {"qr_code_id": qr.id, "qr_code": qr.name, "qr_purpose": qr.purpose}
    if qr.store is not None:
        out["store"] = qr.store
    if qr.associate is not None:
        out["associate"] = qr.associate
    if qr.campaign:
        out["campaign"] = qr.campaign
    if qr.placement:
        out["placement"] = qr.placement
    return out


def to_event(
    session: Session, account: ChannelAccount, msg: dict[str, Any], now: dt.datetime, lookups: Lookups
) -> dict[str, Any] | None:
    """The Segment-spec track event of a push, or None for an account-level report (mass-send result).

    lookups must hold what the push names (`Lookups.load` over it or its whole group).
    """
    openid = msg.get("FromUserName")
    if not isinstance(openid, str) or not openid:
        raise xml.XmlError("FromUserName: missing")
    msg_type = str(msg.get("MsgType") or "")
    name: str
    props: dict[str, Any] = {}
    if msg_type == "event":
        kind = str(msg.get("Event") or "")
        lowered, key = _event_and_key(msg)
        scene = _qr_scene(lowered, key)
        if scene is not None:
            props["scene"] = scene
            props.update(lookups.qr_codes.get((account.id, scene), {}))
        if lowered == "subscribe":
            name = "Official Account Followed"
            props["source"] = "qr_code" if scene else "other"
        elif lowered == "unsubscribe":
            name = "Official Account Unfollowed"
        elif lowered == "scan":
            name = "QR Code Scanned"
        elif lowered in MENU_EVENTS:
            name = "Menu Clicked"
            props["action"] = lowered
            props["menu_key" if lowered == "click" else "url"] = key
            item = lookups.menu_items.get((account.id, key))
            if item is not None:
                props.update(menu=item[0], category=item[1])
        elif lowered == "location":
            name = "Location Reported"
            props.update(
                latitude=_number(msg.get("Latitude")),
                longitude=_number(msg.get("Longitude")),
                precision=_number(msg.get("Precision")),
            )
        elif lowered == "templatesendjobfinish":
            name = "Template Message Sent"
            props.update(status=str(msg.get("Status") or ""), wechat_msg_id=str(msg.get("MsgID") or ""))
        elif lowered == "masssendjobfinish":
            _keep_mass_send_receipt(session, account, msg, now)
            return None
        else:
            # An event siyu does not interpret yet is still kept on the customer's timeline.
            name = "Official Account Event Received"
            props["wechat_event"] = kind
            if key:
                props["event_key"] = key
    else:
        name = "Official Account Message Received"
        props["msg_type"] = msg_type or "unknown"
        if msg.get("MsgId"):
            props["msg_id"] = str(msg["MsgId"])
        if msg_type == "text":
            props["content"] = str(msg.get("Content") or "")
        elif msg_type == "location":
            props.update(latitude=_number(msg.get("Location_X")), longitude=_number(msg.get("Location_Y")))
    return {
        "type": "track",
        "event": name,
        "messageId": message_id(account, msg),
        "timestamp": callbacks.iso(msg.get("CreateTime"), now),
        "properties": props,
        "context": {
            "channel": "wechat_oa",
            "externalIds": [
                {"id": openid, "type": "wechat_openid", "collection": "users", "encoding": "none"}
            ],
            "wechat": {"account": account.name, "app_id": account.app_id, "push": msg},
        },
    }


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _keep_mass_send_receipt(
    session: Session, account: ChannelAccount, msg: dict[str, Any], now: dt.datetime
) -> None:
    values = {
        "account_id": account.id,
        "msg_id": str(msg.get("MsgID") or msg.get("MsgId") or ""),
        "status": str(msg.get("Status") or "")[:64],
        "total_count": _int(msg.get("TotalCount")),
        "filter_count": _int(msg.get("FilterCount")),
        "sent_count": _int(msg.get("SentCount")),
        "error_count": _int(msg.get("ErrorCount")),
        "finished_at": dt.datetime.fromisoformat(callbacks.iso(msg.get("CreateTime"), now)),
        "received_at": now,
    }
    insert = pg_insert if is_postgres(session) else sqlite_insert
    # WeChat's retry of the same report changes nothing.
    session.execute(
        insert(MassSendReceipt)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["account_id", "msg_id"])
    )


def accept(
    session: Session, account: ChannelAccount, msg: dict[str, Any], now: dt.datetime, lookups: Lookups
) -> tuple[dict[str, Any] | None, list[outbox.Job]]:
    """The ingest event of an opened push and the jobs it sets going; xml.XmlError if it names no follower.

    A follow asks the worker for the follower's unionid and follow source (user/info); a mass-send
    report is kept (in the caller's transaction) and gives no event.
    """
    event = to_event(session, account, msg, now, lookups)
    if event is None or event["event"] != "Official Account Followed":
        return event, []
    job = outbox.Job(
        tasks.OA_USER_INFO,
        {"account_id": account.id, "openid": msg["FromUserName"]},
        f"{tasks.OA_USER_INFO}:{event['messageId']}",
    )
    return event, [job]
