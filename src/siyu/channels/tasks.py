"""Outbox jobs of the channels: enrichment after a follow or an add, and the WeCom welcome message.

Each runs in `siyu worker` in its own transaction (enrichment of followers: up to 100 in one); the calls
they make are in `channel_calls`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from siyu.channels.models import ChannelAccount, ChannelCall
from siyu.channels.outbound.base import WeChatError
from siyu.channels.outbound.oa import SUBSCRIBE_SCENES, USER_INFO_BATCH, OaClient
from siyu.channels.outbound.wecom import WeComClient
from siyu.errors import NotFound
from siyu.ingest.service import ingest_batch
from siyu.outbox import service as outbox

OA_USER_INFO = "wechat.oa.user_info"
WECOM_CONTACT = "wechat.wecom.contact"
WECOM_WELCOME = "wechat.wecom.welcome"


def _account(session: Session, account_id: Any) -> ChannelAccount:
    account = session.get(ChannelAccount, int(account_id))
    if account is None:
        raise NotFound(f"channel account {account_id} is gone")
    return account


@outbox.batch_handler(OA_USER_INFO, size=USER_INFO_BATCH)
def oa_user_info(session: Session, payloads: list[dict[str, Any]]) -> None:
    """New followers' unionids and follow sources, ingested as identifies on their openids.

    One user/info/batchget call per account for up to 100 followers: a QR campaign brings thousands of
    follows an hour, and a call per follower would queue them behind WeChat's round trips (and quota).
    """
    openids: dict[int, dict[str, None]] = {}  # per account, each follower once, in order
    for payload in payloads:
        openids.setdefault(int(payload["account_id"]), {})[str(payload["openid"])] = None
    events = []
    for account_id, wanted in openids.items():
        account = _account(session, account_id)
        with OaClient(session, account) as client:
            infos = client.user_info_batch(list(wanted))
        events += [_follower(account, info) for info in infos if info.get("openid")]
    if events:
        ingest_batch(session, events, source_key_id=None)


def _follower(account: ChannelAccount, info: dict[str, Any]) -> dict[str, Any]:
    """The identify event of one follower's user/info answer."""
    openid = str(info["openid"])
    ids = [{"id": openid, "type": "wechat_openid"}]
    if info.get("unionid"):
        # The unionid is what stitches the follower to the Mini Program and WeCom.
        ids.append({"id": str(info["unionid"]), "type": "wechat_unionid"})
    scene = str(info.get("subscribe_scene") or "")
    traits: dict[str, Any] = {
        "oa_subscribe_scene": scene,
        "oa_follow_source": SUBSCRIBE_SCENES.get(scene, "other"),
    }
    if info.get("qr_scene_str"):
        traits["oa_qr_scene"] = str(info["qr_scene_str"])
    return {
        "type": "identify",
        "messageId": f"wx-oa-userinfo:{account.app_id}:{openid}:{info.get('subscribe_time', '')}",
        "traits": traits,
        "context": {"channel": "wechat_oa", "externalIds": ids, "wechat": {"account": account.name}},
    }


@outbox.handler(WECOM_CONTACT)
def wecom_contact(session: Session, payload: dict[str, Any]) -> None:
    """A new WeCom contact's profile (externalcontact/get): name, unionid, remark phones, as an identify."""
    account = _account(session, payload["account_id"])
    external = str(payload["external_userid"])
    with WeComClient(session, account) as client:
        answer = client.get_external_contact(external)
    contact = answer.get("external_contact") or {}
    ids: list[dict[str, str]] = [{"id": external, "type": "wecom_external_userid"}]
    if contact.get("unionid"):
        ids.append({"id": str(contact["unionid"]), "type": "wechat_unionid"})
    traits: dict[str, Any] = {"wecom_contact_type": "wechat" if contact.get("type") == 1 else "wecom"}
    if contact.get("name"):
        traits["wecom_name"] = str(contact["name"])
    gender = {1: "male", 2: "female"}.get(int(contact.get("gender") or 0))
    if gender:
        traits["gender"] = gender
    follow = next(
        (f for f in answer.get("follow_user") or [] if f.get("userid") == payload.get("associate")), None
    )
    if follow is not None:
        traits["wecom_add_way"] = follow.get("add_way")
        if follow.get("remark"):
            traits["wecom_remark"] = str(follow["remark"])
    event = {
        "type": "identify",
        "messageId": f"wx-wecom-contact:{account.app_id}:{external}:{payload.get('create_time', '')}",
        "traits": traits,
        "context": {"channel": "wecom", "externalIds": ids, "wechat": {"account": account.name}},
    }
    ingest_batch(session, [event], source_key_id=None)


@outbox.handler(WECOM_WELCOME)
def wecom_welcome(session: Session, payload: dict[str, Any]) -> None:
    """The account's welcome message, sent with the add's WelcomeCode (valid once, for 20 s)."""
    account = _account(session, payload["account_id"])
    with WeComClient(session, account) as client:
        client.send_welcome_msg(
            str(payload["welcome_code"]),
            str(payload["text"]),
            idempotency_key=f"welcome:{payload['welcome_code']}",
        )


@outbox.on_failure
def keep_failed_call(session: Session, exc: Exception) -> None:
    """A job that failed on a WeChat error still leaves its call in channel_calls."""
    if isinstance(exc, WeChatError) and exc.call is not None:
        session.add(ChannelCall(**exc.call))
