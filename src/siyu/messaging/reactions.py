"""Reactors and jobs that keep messaging true to the platforms: reach, delivery receipts, confirmations.

Reach follows the channel events (a follow makes an openid reachable, an unfollow or a deleted WeCom
contact does not; a customer's own message opens the Official Account's 48-hour window). Receipts come
back as events too (TEMPLATESENDJOBFINISH → `Template Message Sent`) or, for WeCom messages the
associate must confirm, from polling get_groupmsg_send_result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from siyu.channels.models import ChannelAccount, ChannelKind, MassSendReceipt
from siyu.channels.outbound.base import WeChatError
from siyu.channels.outbound.wecom import WeComClient
from siyu.config import Settings, get_settings
from siyu.db import is_postgres, utcnow
from siyu.ingest.reactors import StoredEvent
from siyu.journeys.counts import count_messages
from siyu.messaging.models import REACH_ID_TYPE, Channel, Message, MessageStatus, Reach

FOLLOW = "Official Account Followed"
UNFOLLOW = "Official Account Unfollowed"
# Customer actions that open the customer-service window: a message for 48 h, the others briefly.
INBOUND = {
    "Official Account Message Received": "message",
    FOLLOW: "event",
    "QR Code Scanned": "event",
    "Menu Clicked": "event",
}
WECOM_ADDED, WECOM_DELETED = "WeCom Contact Added", "WeCom Contact Deleted"
RECEIPT = "Template Message Sent"
REACH_EVENTS = frozenset({*INBOUND, UNFOLLOW, WECOM_ADDED, WECOM_DELETED})


def _address(ev: StoredEvent, id_type: str) -> str | None:
    ids = (ev.context or {}).get("externalIds")
    for ext in ids if isinstance(ids, list) else []:
        if isinstance(ext, dict) and ext.get("type") == id_type and ext.get("id"):
            return str(ext["id"])
    return None


def _account_name(ev: StoredEvent) -> str | None:
    wechat = (ev.context or {}).get("wechat")
    return str(wechat.get("account")) if isinstance(wechat, dict) and wechat.get("account") else None


def track_reach(session: Session, events: Sequence[StoredEvent]) -> None:
    """Reactor: the reach of each address an Official Account or WeCom event names, latest event last."""
    names = {n for e in events if (n := _account_name(e))}
    if not names:
        return
    accounts = {
        name: (aid, kind)
        for aid, name, kind in session.execute(
            select(ChannelAccount.id, ChannelAccount.name, ChannelAccount.kind).where(
                ChannelAccount.name.in_(names)
            )
        )
    }
    state: dict[tuple[int, str], dict[str, Any]] = {}
    for ev in sorted(events, key=lambda e: e.timestamp_iso):
        account = accounts.get(_account_name(ev) or "")
        if account is None:
            continue
        aid, kind = account
        at = dt.datetime.fromisoformat(ev.timestamp_iso)
        if kind == ChannelKind.oa:
            address = _address(ev, REACH_ID_TYPE[kind])
            if address is None:
                continue
            row = state.setdefault((aid, address), {"id_type": REACH_ID_TYPE[kind]})
            if ev.event == UNFOLLOW:
                row.update(reachable=False, inbound_at=None, inbound_kind=None)
            elif ev.event in INBOUND:
                row.update(reachable=True, inbound_at=at, inbound_kind=INBOUND[ev.event])
        elif kind == ChannelKind.wecom:
            address = _address(ev, REACH_ID_TYPE[kind])
            if address is None or ev.event not in (WECOM_ADDED, WECOM_DELETED):
                continue
            row = state.setdefault((aid, address), {"id_type": REACH_ID_TYPE[kind]})
            row["reachable"] = ev.event == WECOM_ADDED
            if ev.event == WECOM_ADDED and ev.properties.get("associate"):
                row["associate"] = str(ev.properties["associate"])
        else:
            continue
        row["updated_at"] = at
    # One statement per shape of row (which fields the batch's events set), not one per address.
    shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for (aid, address), row in state.items():
        if "reachable" in row:
            shapes.setdefault(tuple(sorted(row)), []).append({"account_id": aid, "address": address, **row})
    insert = pg_insert if is_postgres(session) else sqlite_insert
    table = cast(Table, Reach.__table__)
    for fields, rows in shapes.items():
        statement = insert(table)
        # The rows as parameters (executemany): the statement compiles once per shape, not per row count.
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["account_id", "address"],
                set_={k: statement.excluded[k] for k in fields if k != "id_type"},
                # An older event arriving late does not undo a newer one.
                where=table.c.updated_at <= statement.excluded.updated_at,
            ),
            rows,
        )


def settle(session: Session, where: list[ColumnElement[bool]], error: str | None) -> int:
    """Mark the messages where says delivered (error None) or failed with error; count them per node."""
    new = MessageStatus.delivered if error is None else MessageStatus.failed
    done = session.execute(
        update(Message)
        .where(*where)
        .values(status=new, delivered_at=utcnow() if error is None else None, error=error)
        .returning(Message.journey_id, Message.version_id, Message.node),
        execution_options={"synchronize_session": False},
    ).all()
    count_messages(session, [(*r, str(new)) for r in done])
    return len(done)


def record_receipts(session: Session, events: Sequence[StoredEvent]) -> None:
    """Reactor: TEMPLATESENDJOBFINISH marks the template message delivered or failed."""
    for ev in events:
        msgid = str(ev.properties.get("wechat_msg_id") or "")
        if not msgid:
            continue
        status = str(ev.properties.get("status") or "")
        ok = status == "success"
        settle(
            session,
            [
                Message.channel == Channel.oa_template,
                Message.external_id == msgid,
                Message.status.in_([MessageStatus.sent, MessageStatus.unknown]),
            ],
            None if ok else f"WeChat: {status}",
        )


def apply_mass_receipts(session: Session) -> int:
    """Mass pushes whose job WeChat reported (MASSSENDJOBFINISH): delivered on "send success", else failed.

    WeChat reports a job, not each follower: a follower it filtered out (blocked, over the monthly limit)
    is counted in the job's `filter_count`, not named. Returns how many messages changed. Flushes.
    """
    jobs = session.execute(
        select(MassSendReceipt.account_id, MassSendReceipt.msg_id, MassSendReceipt.status)
        .join(
            Message,
            (Message.account_id == MassSendReceipt.account_id)
            & (Message.external_id == MassSendReceipt.msg_id),
        )
        .where(Message.channel == Channel.oa_mass, Message.status == MessageStatus.sent)
        .distinct()
    ).all()
    changed = 0
    for account_id, msg_id, status in jobs:
        ok = status == "send success"
        changed += settle(
            session,
            [
                Message.channel == Channel.oa_mass,
                Message.account_id == account_id,
                Message.external_id == msg_id,
                Message.status == MessageStatus.sent,
            ],
            None if ok else f"WeChat: {status}",
        )
    return changed


def poll_wecom_confirmations(factory: sessionmaker[Session], settings: Settings | None = None) -> int:
    """Ask WeCom which created messages their associates sent; returns how many changed."""
    settings = settings or get_settings()
    changed = 0
    with factory() as session:
        jobs = session.execute(
            select(Message.account_id, Message.external_id, Message.sender)
            .where(Message.status == MessageStatus.created, Message.external_id.is_not(None))
            .group_by(Message.account_id, Message.external_id, Message.sender)
            .limit(200)
        ).all()
        for account_id, msgid, sender in jobs:
            account = session.get(ChannelAccount, account_id)
            if account is None:
                continue
            try:
                with WeComClient(session, account, settings=settings) as client:
                    rows = client.group_msg_send_result(str(msgid), str(sender))
            except WeChatError:
                continue
            # WeCom's status: 0 not sent yet, 1 sent, 2 not a contact any more, 3 over the customer's limit.
            for row in rows:
                code = int(row.get("status") or 0)
                if code == 0:
                    continue
                error = (
                    None
                    if code == 1
                    else "WeCom: no longer a contact"
                    if code == 2
                    else "WeCom: over the customer's limit"
                )
                changed += settle(
                    session,
                    [
                        Message.external_id == msgid,
                        Message.recipient == str(row.get("external_userid")),
                        Message.status == MessageStatus.created,
                    ],
                    error,
                )
        session.commit()
    return changed
