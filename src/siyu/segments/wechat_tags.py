"""Segments mirrored as Official Account user tags, so a mass push or a menu can target them on WeChat.

Linking a segment to an account queues a sync; every later change of the segment's members queues another
(unless one is already waiting). A sync (outbox job, `siyu worker`) creates the tag on the first run, then
tags the members' openids that are not tagged yet and untags those who left, 50 per call as WeChat allows.
What siyu has tagged is kept (`segment_wechat_tagged`), so a sync is a difference, and a retried sync tags
nothing twice.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from siyu.channels import service as channels_service
from siyu.channels.models import ChannelAccount, ChannelKind
from siyu.channels.outbound.base import WeChatError
from siyu.channels.outbound.oa import OaClient
from siyu.db import utcnow
from siyu.errors import BadRequest, NotFound
from siyu.identity.models import Identifier
from siyu.outbox import service as outbox
from siyu.outbox.models import OutboxMessage, OutboxStatus
from siyu.segments.models import Segment, SegmentMember, WechatTagged, WechatTagLink

SYNC = "segments.wechat_tag.sync"
DUPLICATE_TAG_NAME = 45157


def links(session: Session, segment_id: int) -> Sequence[WechatTagLink]:
    """The accounts the segment is mirrored to."""
    statement = select(WechatTagLink).where(WechatTagLink.segment_id == segment_id).order_by(WechatTagLink.id)
    return session.execute(statement).scalars().all()


def link(
    session: Session, segment: Segment, account_name: str, *, tag_name: str | None = None
) -> WechatTagLink:
    """Mirror the segment to the Official Account's user tag (the existing link if there is one); queues a sync."""
    account = channels_service.get_account_by_name_or_raise(session, account_name)
    if account.kind is not ChannelKind.oa:
        raise BadRequest(f"account {account_name!r} is not an Official Account: only those have user tags")
    name = (tag_name or segment.name).strip()[:30]
    if not name:
        raise BadRequest("tag_name: a tag needs a name")
    existing = session.execute(
        select(WechatTagLink).where(
            WechatTagLink.segment_id == segment.id, WechatTagLink.account_id == account.id
        )
    ).scalar_one_or_none()
    if existing is not None:
        request_sync(session, [segment.id])
        return existing
    created = WechatTagLink(segment_id=segment.id, account_id=account.id, tag_name=name)
    session.add(created)
    session.flush()
    request_sync(session, [segment.id])
    return created


def request_sync(session: Session, segment_ids: Iterable[int], *, now: dt.datetime | None = None) -> int:
    """Queue a sync of every link of these segments that has none waiting; returns how many were queued."""
    ids = sorted(set(segment_ids))
    if not ids:
        return 0
    stamp = (now or utcnow()).isoformat()
    found = session.execute(select(WechatTagLink.id).where(WechatTagLink.segment_id.in_(ids))).scalars().all()
    queued = 0
    for link_id in found:
        # One waiting sync per link is enough: it reads the members when it runs, not when it was queued.
        waiting = session.execute(
            select(OutboxMessage.id).where(
                OutboxMessage.status == OutboxStatus.pending,
                OutboxMessage.idempotency_key.startswith(f"wxtag:{link_id}:"),
            )
        ).first()
        if waiting is None:
            outbox.enqueue(session, SYNC, {"link_id": link_id}, idempotency_key=f"wxtag:{link_id}:{stamp}")
            queued += 1
    return queued


def member_openids(session: Session, segment_id: int) -> set[str]:
    """The openids of the segment's members (a customer may have several)."""
    statement = (
        select(Identifier.value)
        .join(SegmentMember, SegmentMember.profile_id == Identifier.profile_id)
        .where(SegmentMember.segment_id == segment_id, Identifier.type == "wechat_openid")
    )
    return set(session.execute(statement).scalars())


def _create_or_find(client: OaClient, name: str) -> int:
    try:
        return int(client.create_tag(name)["tag"]["id"])
    except WeChatError as exc:
        if exc.errcode != DUPLICATE_TAG_NAME:
            raise
    # A sync that created the tag and then failed was rolled back: the tag exists on WeChat, find it.
    for tag in client.list_tags():
        if tag.get("name") == name:
            return int(tag["id"])
    raise BadRequest(f"WeChat says a tag named {name!r} exists but does not list it")


@outbox.handler(SYNC)
def sync(session: Session, payload: dict[str, Any]) -> None:
    """Bring the WeChat tag in line with the segment's members (create it first if needed)."""
    link_row = session.get(WechatTagLink, int(payload["link_id"]))
    if link_row is None:
        return  # the link was removed after the sync was queued
    account = session.get(ChannelAccount, link_row.account_id)
    if account is None:
        raise NotFound(f"channel account {link_row.account_id} is gone")
    wanted = member_openids(session, link_row.segment_id)
    tagged = set(
        session.execute(select(WechatTagged.openid).where(WechatTagged.link_id == link_row.id)).scalars()
    )
    add, remove = sorted(wanted - tagged), sorted(tagged - wanted)
    with OaClient(session, account) as client:
        if link_row.tag_id is None:
            link_row.tag_id = _create_or_find(client, link_row.tag_name)
            session.flush()
        if add:
            client.tag_users(link_row.tag_id, add)
        if remove:
            client.tag_users(link_row.tag_id, remove, untag=True)
    session.add_all(WechatTagged(link_id=link_row.id, openid=o) for o in add)
    for start in range(0, len(remove), 1000):
        chunk = remove[start : start + 1000]
        session.execute(
            delete(WechatTagged).where(WechatTagged.link_id == link_row.id, WechatTagged.openid.in_(chunk))
        )
    link_row.tagged = len(wanted)
    link_row.synced_at = utcnow()
    link_row.last_error = None
    session.flush()
