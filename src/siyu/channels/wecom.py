"""The WeCom callback: customer-contact changes (「客户联系」) become ingest events on the external user id.

WeCom callbacks are always encrypted. An add through a 「联系我」 code carries the code's `state`, which
names the sales associate's store and campaign; the associate (UserID) becomes the customer's owner.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.channels import callbacks, service, tasks, xml
from siyu.channels.crypto import CryptoError
from siyu.channels.models import ChannelAccount
from siyu.clienteling.models import Store
from siyu.config import Settings
from siyu.errors import BadRequest, Forbidden
from siyu.outbox import service as outbox

CHANGE_EVENTS = {
    "add_external_contact": "WeCom Contact Added",
    "add_half_external_contact": "WeCom Contact Requested",
    "edit_external_contact": "WeCom Contact Updated",
    "del_external_contact": "WeCom Contact Deleted",
    "del_follow_user": "WeCom Contact Deleted",
    "transfer_fail": "WeCom Transfer Failed",
}


def _crypto(account: ChannelAccount) -> Any:
    crypto = service.credentials(account).crypto()
    if crypto is None:
        raise Forbidden("this WeCom account has no token and EncodingAESKey")
    return crypto


def verify_url(account: ChannelAccount, query: dict[str, str]) -> str:
    """The decrypted echostr that answers WeCom's GET verification, or Forbidden."""
    try:
        return str(
            _crypto(account).open(
                callbacks.query_value(query, "msg_signature"),
                callbacks.query_value(query, "timestamp"),
                callbacks.query_value(query, "nonce"),
                callbacks.query_value(query, "echostr"),
            )
        )
    except CryptoError as exc:
        raise Forbidden(f"echostr: {exc}") from exc


def open_push(
    account: ChannelAccount, query: dict[str, str], body: bytes, now: dt.datetime, settings: Settings
) -> dict[str, Any]:
    """The fields of a push after the freshness, signature and decryption checks."""
    timestamp = callbacks.query_value(query, "timestamp")
    nonce = callbacks.query_value(query, "nonce")
    msg_signature = callbacks.query_value(query, "msg_signature")
    callbacks.check_fresh(timestamp, now, settings)
    try:
        envelope = xml.parse(body)
    except xml.XmlError as exc:
        # Not authenticated yet: refused, and not kept.
        raise BadRequest(f"envelope: {exc}") from exc
    encrypted = envelope.get("Encrypt")
    if not isinstance(encrypted, str) or not encrypted:
        raise BadRequest("envelope: Encrypt is missing")
    try:
        inner = _crypto(account).open(msg_signature, timestamp, nonce, encrypted)
    except CryptoError as exc:
        raise Forbidden(f"envelope: {exc}") from exc
    return xml.parse(inner)


def message_id(account: ChannelAccount, msg: dict[str, Any]) -> str:
    """The idempotency key of a push: external user, staff member, time and change type."""
    parts = [
        msg.get("ExternalUserID", ""),
        msg.get("UserID", ""),
        msg.get("CreateTime", ""),
        msg.get("ChangeType", "") or msg.get("Event", ""),
    ]
    return f"wx-wecom:{account.app_id}:" + ":".join(str(p) for p in parts)


def to_event(
    session: Session, account: ChannelAccount, msg: dict[str, Any], now: dt.datetime
) -> dict[str, Any]:
    """The Segment-spec track event of a customer-contact push; XmlError when it names no customer."""
    external = msg.get("ExternalUserID")
    if msg.get("Event") != "change_external_contact" or not isinstance(external, str) or not external:
        raise xml.XmlError(
            f"not a customer-contact push (Event {msg.get('Event')!r}, no ExternalUserID): kept, not stored"
        )
    change = str(msg.get("ChangeType") or "")
    associate = str(msg.get("UserID") or "")
    props: dict[str, Any] = {"change_type": change, "associate": associate}
    traits: dict[str, Any] = {}
    state = msg.get("State")
    if isinstance(state, str) and state:
        props["state"] = state
    name = CHANGE_EVENTS.get(change, "WeCom Contact Event Received")
    if change == "add_external_contact":
        props["welcome_code"] = bool(msg.get("WelcomeCode"))
        # The associate the customer added owns the customer from now on.
        traits["advisor"] = associate
        way = (
            service.get_contact_way(session, account.id, state) if isinstance(state, str) and state else None
        )
        if way is not None:
            props["contact_way_id"] = way.id
            props["contact_way"] = way.name
            if way.campaign:
                props["campaign"] = way.campaign
            if way.store_id is not None:
                code = session.execute(select(Store.code).where(Store.id == way.store_id)).scalar_one()
                props["store"] = code
                traits["home_store"] = code
    elif change == "del_external_contact":
        props["by"] = "transfer" if msg.get("Source") == "DELETE_BY_TRANSFER" else "associate"
    elif change == "del_follow_user":
        # The customer deleted the associate: the churn signal that raises alerts.
        props["by"] = "customer"
    elif change == "transfer_fail":
        props["reason"] = str(msg.get("FailReason") or "")
    context: dict[str, Any] = {
        "channel": "wecom",
        "externalIds": [
            {"id": external, "type": "wecom_external_userid", "collection": "users", "encoding": "none"}
        ],
        "wechat": {"account": account.name, "corp_id": account.app_id, "push": msg},
    }
    if traits:
        context["traits"] = traits
    return {
        "type": "track",
        "event": name,
        "messageId": message_id(account, msg),
        "timestamp": callbacks.iso(msg.get("CreateTime"), now),
        "properties": props,
        "context": context,
    }


def accept(
    session: Session, account: ChannelAccount, msg: dict[str, Any], now: dt.datetime
) -> tuple[dict[str, Any] | None, list[outbox.Job]]:
    """The ingest event of an opened push and the jobs it sets going.

    A new contact is enriched by the worker (externalcontact/get) and welcomed within WeCom's 20 s.
    A push signed and readable but not about a customer (an internal contact change) is kept for
    inspection, in the caller's transaction, and gives no event: a retry would not change it.
    """
    try:
        event = to_event(session, account, msg, now)
    except xml.XmlError as exc:
        callbacks.keep_unreadable(session, orjson.dumps(msg), f"WeCom {account.name}: {exc}", now)
        return None, []
    if event["event"] != "WeCom Contact Added":
        return event, []
    key = event["messageId"]
    contact = {
        "account_id": account.id,
        "external_userid": msg["ExternalUserID"],
        "associate": msg.get("UserID"),
        "create_time": msg.get("CreateTime"),
    }
    jobs = [outbox.Job(tasks.WECOM_CONTACT, contact, f"{tasks.WECOM_CONTACT}:{key}")]
    if msg.get("WelcomeCode") and account.welcome_text:
        # Written with the push, so the worker can send it well inside WeCom's 20 s.
        welcome = {"account_id": account.id, "welcome_code": msg["WelcomeCode"], "text": account.welcome_text}
        jobs.append(outbox.Job(tasks.WECOM_WELCOME, welcome, f"{tasks.WECOM_WELCOME}:{key}"))
    return event, jobs
