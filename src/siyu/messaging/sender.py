"""The sender: claims queued messages, hands them to their channel, records what the platform answered.

A message is leased (a `message_leases` row) and committed before any call is made; the answers are
written in a second transaction. A sender killed in between leaves its leases behind; when a lease
ends its message becomes `unknown`, not queued again: a template message has no idempotency
key on WeChat's side, so resending could deliver it twice, and siyu never does that (decision 0011).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import httpx
import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from siyu import bulk
from siyu.channels.models import ChannelAccount
from siyu.channels.outbound.base import ApiClient, WeChatError
from siyu.channels.outbound.miniprogram import MiniProgramClient
from siyu.channels.outbound.oa import OaClient
from siyu.channels.outbound.wecom import WeComClient
from siyu.config import Settings, get_settings
from siyu.db import in_index_order, is_postgres, utcnow
from siyu.journeys.counts import count_messages
from siyu.messaging import service
from siyu.messaging.models import QUEUED, Asset, Channel, Message, MessageLease, MessageStatus, Reach

log = structlog.get_logger(__name__)
# Answers that mean this customer cannot receive on this address: not retried, and reach is updated.
UNREACHABLE = frozenset({43004, 40003, 84061, 43019})
# Answers that mean this message cannot go now, for a reason that is the customer's (window, consent).
REFUSED = frozenset({43101, 45015, 45047})


@dataclass(frozen=True, slots=True)
class Result:
    status: MessageStatus | None  # None: try again later
    external_id: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A leased message as the adapters see it: read as plain columns (ORM objects cost 30 µs apiece)."""

    id: int
    idempotency_key: str
    template_id: int
    channel: Channel
    account_id: int | None
    profile_id: int
    recipient: str | None
    sender: str | None
    content: dict[str, Any]
    status: MessageStatus
    attempts: int
    available_at: dt.datetime
    journey_id: int | None
    version_id: int | None
    node: str | None


_OUTGOING = [getattr(Message, f.name) for f in fields(Outgoing)]


@dataclass(slots=True)
class Clients:
    """One API client per account for a run, so tokens are fetched once."""

    session: Session
    settings: Settings
    made: dict[int, ApiClient] = field(default_factory=dict)

    def get(self, account_id: int | None, kind: type[ApiClient]) -> Any:
        if account_id is None:
            raise LookupError("the message has no channel account")
        client = self.made.get(account_id)
        if client is None:
            account = self.session.get(ChannelAccount, account_id)
            if account is None:
                raise LookupError(f"channel account {account_id} is gone")
            client = kind(self.session, account, settings=self.settings)
            self.made[account_id] = client
        return client

    def close(self) -> None:
        for client in self.made.values():
            client.close()


Adapter = Callable[[Clients, Sequence[Outgoing]], dict[int, Result]]


def _each(send: Callable[[Clients, Outgoing], Result]) -> Adapter:
    def adapter(clients: Clients, messages: Sequence[Outgoing]) -> dict[int, Result]:
        out: dict[int, Result] = {}
        for m in messages:
            try:
                out[m.id] = send(clients, m)
            except WeChatError as exc:
                out[m.id] = _wechat_failure(clients, m, exc)
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                out[m.id] = Result(None, error=f"{type(exc).__name__}: {exc}")
        return out

    return adapter


def _wechat_failure(clients: Clients, m: Outgoing, exc: WeChatError) -> Result:
    if exc.errcode in UNREACHABLE and m.account_id is not None and m.recipient:
        clients.session.execute(
            update(Reach)
            .where(Reach.account_id == m.account_id, Reach.address == m.recipient)
            .values(reachable=False, updated_at=utcnow())
        )
    if exc.errcode in (-1, 45009, 45011, 45033):
        return Result(None, error=exc.message)
    return Result(MessageStatus.failed, error=exc.message)


def _oa_template(clients: Clients, m: Outgoing) -> Result:
    client: OaClient = clients.get(m.account_id, OaClient)
    template = service.get_template_or_raise(clients.session, m.template_id)
    c = m.content
    answer = client.send_template(
        str(m.recipient),
        str(template.external_template_id),
        dict(c.get("data") or {}),
        url=c.get("url") or None,
        miniprogram=c.get("miniprogram") or None,
        idempotency_key=m.idempotency_key,
    )
    return Result(MessageStatus.sent, external_id=str(answer.get("msgid") or ""))


def _oa_kefu(clients: Clients, m: Outgoing) -> Result:
    client: OaClient = clients.get(m.account_id, OaClient)
    client.send_custom(str(m.recipient), str(m.content.get("text") or ""), idempotency_key=m.idempotency_key)
    return Result(MessageStatus.sent)


def _mp_subscribe(clients: Clients, m: Outgoing) -> Result:
    client: MiniProgramClient = clients.get(m.account_id, MiniProgramClient)
    template = service.get_template_or_raise(clients.session, m.template_id)
    client.send_subscribe(
        str(m.recipient),
        str(template.external_template_id),
        dict(m.content.get("data") or {}),
        page=m.content.get("page") or None,
        idempotency_key=m.idempotency_key,
    )
    return Result(MessageStatus.sent)


def _attachments(session: Session, keys: list[str]) -> list[dict[str, Any]]:
    """WeCom attachments (wechat-protocol.md §3.4) of the library items a template names."""
    out: list[dict[str, Any]] = []
    rows = {a.key: a for a in session.execute(select(Asset).where(Asset.key.in_(keys))).scalars()}
    for key in keys:
        a = rows.get(key)
        if a is None:
            continue
        if a.kind == "miniprogram":
            out.append(
                {
                    "msgtype": "miniprogram",
                    "miniprogram": {
                        "title": a.title,
                        "appid": a.appid,
                        "page": a.page,
                        "pic_media_id": a.media_id,
                    },
                }
            )
        elif a.kind == "image" and a.media_id:
            out.append({"msgtype": "image", "image": {"media_id": a.media_id}})
        else:
            out.append({"msgtype": "link", "link": {"title": a.title, "url": a.url, "desc": a.description}})
    return out


def _wecom(clients: Clients, messages: Sequence[Outgoing]) -> dict[int, Result]:
    """add_msg_template: one call per associate and identical content (a mass message), one per 1:1."""
    out: dict[int, Result] = {}
    groups: dict[tuple[Any, ...], list[Outgoing]] = {}
    for m in messages:
        text = str(m.content.get("text") or "")
        attachments = tuple(m.content.get("attachments") or ())
        # A 1:1 message is its own call; mass messages with the same text share one.
        key = (m.account_id, m.sender, text, attachments, m.id if m.channel == Channel.wecom_1to1 else 0)
        groups.setdefault(key, []).append(m)
    for (account_id, sender, text, attachments, _), group in groups.items():
        client: WeComClient = clients.get(account_id, WeComClient)
        try:
            answer = client.add_msg_template(
                str(sender),
                [str(m.recipient) for m in group],
                text,
                attachments=_attachments(clients.session, list(attachments)) or None,
                idempotency_key="wecom-msg:" + ",".join(str(m.id) for m in group),
            )
        except WeChatError as exc:
            for m in group:
                out[m.id] = _wechat_failure(clients, m, exc)
            continue
        except (httpx.TransportError, httpx.HTTPStatusError) as exc:
            for m in group:
                out[m.id] = Result(None, error=f"{type(exc).__name__}: {exc}")
            continue
        failed = set(answer.get("fail_list") or [])
        for m in group:
            if m.recipient in failed:
                out[m.id] = Result(
                    MessageStatus.failed, error="WeCom: not the associate's contact (fail_list)"
                )
            else:
                # Created: it goes out only when the associate confirms it in WeCom.
                out[m.id] = Result(MessageStatus.created, external_id=str(answer.get("msgid") or ""))
    return out


def _sms(clients: Clients, m: Outgoing) -> Result:
    url = clients.settings.sms_webhook_url
    if not url:
        return Result(MessageStatus.failed, error="no SMS provider configured (SIYU_SMS_WEBHOOK_URL)")
    response = httpx.post(
        url,
        json={"to": m.recipient, "text": m.content.get("text"), "id": m.idempotency_key},
        timeout=clients.settings.wechat_http_timeout_seconds,
    )
    if response.status_code >= 500:
        return Result(None, error=f"SMS provider answered {response.status_code}")
    if response.status_code >= 400:
        return Result(
            MessageStatus.failed, error=f"SMS provider refused: {response.status_code} {response.text[:200]}"
        )
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    return Result(MessageStatus.sent, external_id=str(body.get("id") or "") or None)


def _oa_mass(clients: Clients, messages: Sequence[Outgoing]) -> dict[int, Result]:
    """mass/send by openid: one job per account and identical text, 2 to 10,000 followers each.

    WeChat refuses a job of one follower: a lone message waits for company (the next batch) and fails only
    after its last attempt. `clientmsgid` (the messages' ids) makes a retried job a no-op on WeChat's side.
    """
    out: dict[int, Result] = {}
    groups: dict[tuple[int | None, str], list[Outgoing]] = {}
    for m in messages:
        groups.setdefault((m.account_id, str(m.content.get("text") or "")), []).append(m)
    for (account_id, text_), group in groups.items():
        if len(group) < 2:
            out[group[0].id] = Result(
                None, error="a mass push needs at least two followers: waiting for others"
            )
            continue
        client: OaClient = clients.get(account_id, OaClient)
        for chunk in bulk.chunks(group):
            client_msg_id = f"{chunk[0].id}-{chunk[-1].id}-{len(chunk)}"
            try:
                answer = client.mass_send(
                    client_msg_id=client_msg_id, openids=[str(m.recipient) for m in chunk], text=text_
                )
            except WeChatError as exc:
                out.update({m.id: _wechat_failure(clients, m, exc) for m in chunk})
                continue
            except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                out.update({m.id: Result(None, error=f"{type(exc).__name__}: {exc}") for m in chunk})
                continue
            msg_id = str(answer.get("msg_id") or "")
            out.update({m.id: Result(MessageStatus.sent, external_id=msg_id) for m in chunk})
    return out


ADAPTERS: dict[Channel, Adapter] = {
    Channel.oa_template: _each(_oa_template),
    Channel.oa_kefu: _each(_oa_kefu),
    Channel.oa_mass: _oa_mass,
    Channel.mp_subscribe: _each(_mp_subscribe),
    Channel.wecom_1to1: _wecom,
    Channel.wecom_mass: _wecom,
    Channel.sms: _each(_sms),
}


@dataclass(slots=True)
class SendRun:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    retried: int = 0
    lost: int = 0


def expire_leases(session: Session, now: dt.datetime) -> int:
    """Messages whose sender died mid-call become unknown (never resent); returns how many. Flushes."""
    ids = [
        int(i)
        for i in session.execute(select(MessageLease.message_id).where(MessageLease.until < now)).scalars()
    ]
    if not ids:
        return 0
    rows = session.execute(
        update(Message)
        .where(bulk.matches(session, Message.id, ids), Message.status == MessageStatus.queued)
        .values(status=MessageStatus.unknown, error="the sender stopped before recording the answer")
        .returning(Message.journey_id, Message.version_id, Message.node),
        execution_options={"synchronize_session": False},
    ).all()
    session.execute(delete(MessageLease).where(bulk.matches(session, MessageLease.message_id, ids)))
    count_messages(session, [(*r, str(MessageStatus.unknown)) for r in rows])
    return len(rows)


def _candidates(due: str, limit: str) -> str:
    """Due queued messages no sender holds, oldest first (due and limit: the driver's placeholders)."""
    return (
        f"SELECT messages.id FROM messages WHERE {QUEUED} AND messages.available_at <= {due} "
        "AND NOT EXISTS (SELECT 1 FROM message_leases WHERE message_leases.message_id = messages.id) "
        f"ORDER BY messages.available_at, messages.id LIMIT {limit}"
    )


def claim(session: Session, limit: int, now: dt.datetime, settings: Settings) -> list[int]:
    """Lease up to limit due queued messages to this sender; returns their ids. Flushes.

    On PostgreSQL the candidates are locked with SKIP LOCKED, and the lease's primary key settles the
    rare race where another sender read them just before this one committed: it keeps only the leases
    it inserted. On SQLite the transaction holds the write lock from its start: no race.
    """
    until = bulk.bind_time(session, now + dt.timedelta(seconds=settings.messages_lease_seconds))
    due = bulk.bind_time(session, now)
    conn = bulk.driver_connection(session)
    if is_postgres(session):
        with in_index_order(session), conn.cursor() as cursor:
            cursor.execute(
                f"WITH c AS ({_candidates('%(due)s', '%(limit)s')} FOR UPDATE OF messages SKIP LOCKED) "
                "INSERT INTO message_leases (message_id, until) SELECT id, %(until)s FROM c "
                "ON CONFLICT DO NOTHING RETURNING message_id",
                {"due": due, "limit": limit, "until": until},
            )
            return sorted(int(r[0]) for r in cursor.fetchall())
    ids = [int(r[0]) for r in conn.execute(_candidates("?", "?"), (due, limit)).fetchall()]
    conn.executemany(
        "INSERT INTO message_leases (message_id, until) VALUES (?, ?)", [(i, until) for i in ids]
    )
    return ids


def deliver(session: Session, ids: Sequence[int], *, now: dt.datetime, settings: Settings) -> SendRun:
    """Send the leased messages and record each answer; flushes, the caller commits."""
    run = SendRun(claimed=len(ids))
    # By primary key, the status checked here: with `status = 'queued'` in the query PostgreSQL walks the
    # partial index of queued messages and filters by id (120 ms a batch with a million queued).
    read = session.execute(select(*_OUTGOING).where(bulk.matches(session, Message.id, list(ids))))
    messages = [m for m in (Outgoing(*row) for row in read) if m.status == MessageStatus.queued]
    by_channel: dict[Channel, list[Outgoing]] = {}
    for m in messages:
        by_channel.setdefault(m.channel, []).append(m)
    clients = Clients(session, settings)
    results: dict[int, Result] = {}
    try:
        for channel, group in by_channel.items():
            try:
                results.update(ADAPTERS[channel](clients, group))
            except LookupError as exc:
                results.update({m.id: Result(MessageStatus.failed, error=str(exc)) for m in group})
    finally:
        clients.close()
    rows: list[tuple[Any, ...]] = []
    released: list[str] = []
    counted: list[tuple[int | None, int | None, str | None, str]] = []
    for m in messages:
        r = results.get(m.id)
        if r is None:
            continue
        status, available, error, attempts = r.status, m.available_at, r.error, m.attempts + 1
        if status is None:
            if attempts >= settings.messages_max_attempts:
                status = MessageStatus.failed
                run.failed += 1
            else:
                status = MessageStatus.queued
                # Back off 30 s, 60 s, 2 min … so a platform outage is not hammered.
                available = now + dt.timedelta(seconds=30 * 2 ** (attempts - 1))
                run.retried += 1
        elif status == MessageStatus.failed:
            run.failed += 1
        else:
            run.sent += 1
        if status == MessageStatus.failed:
            released.append(m.idempotency_key)
        if status != MessageStatus.queued:
            counted.append((m.journey_id, m.version_id, m.node, str(status)))
        sent_at = now if status in (MessageStatus.sent, MessageStatus.created) else None
        rows.append((m.id, str(status), r.external_id, error, sent_at, available, attempts))
    bulk.update_rows(
        session,
        "messages",
        [
            ("status", "text"),
            ("external_id", "text"),
            ("error", "text"),
            ("sent_at", "ts"),
            ("available_at", "ts"),
            ("attempts", "int"),
        ],
        rows,
    )
    session.execute(delete(MessageLease).where(bulk.matches(session, MessageLease.message_id, list(ids))))
    service.release(session, released)
    count_messages(session, counted)
    return run


# When this process last looked for expired leases. A lease lasts minutes, so looking every tenth of that is
# soon enough, and the look reads the whole lease table, which a busy sender fills and empties every batch
# (at a million messages it was a tenth of the send time).
_leases_checked: dt.datetime | None = None


def _leases_due(now: dt.datetime, settings: Settings) -> bool:
    global _leases_checked
    last = _leases_checked
    if last is not None and last <= now < last + dt.timedelta(seconds=settings.messages_lease_seconds / 10):
        return False
    _leases_checked = now
    return True


def run_once(
    factory: sessionmaker[Session], settings: Settings | None = None, *, now: dt.datetime | None = None
) -> SendRun:
    """Claim, send and record one batch of messages due at now; returns what happened."""
    settings = settings or get_settings()
    now = now or utcnow()
    with factory() as session:
        lost = expire_leases(session, now) if _leases_due(now, settings) else 0
        ids = claim(session, settings.messages_batch_size, now, settings)
        session.commit()
    if not ids:
        return SendRun(lost=lost)
    with factory() as session:
        run = deliver(session, ids, now=max(now, utcnow()), settings=settings)
        session.commit()
    run.lost = lost
    log.debug("messages.sent", claimed=run.claimed, sent=run.sent, failed=run.failed, retried=run.retried)
    return run
