"""Channel accounts and their attribution codes; flushes, never commits."""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from siyu import vault
from siyu.channels.crypto import CryptoError, MessageCrypto, aes_key
from siyu.channels.models import ChannelAccount, ChannelKind, ContactWay, OaType, WechatQrCode
from siyu.errors import BadRequest, Conflict, NotFound
from siyu.ingest.reactors import StoredEvent

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Credentials:
    """An account's unsealed secrets, for the callback and the outbound client; never rendered."""

    app_id: str
    secret: str
    token: str | None
    aes_key: str | None

    def crypto(self) -> MessageCrypto | None:
        """The envelope crypto of the account, when it has a token and an EncodingAESKey."""
        if self.token is None or self.aes_key is None:
            return None
        return MessageCrypto(self.token, self.aes_key, self.app_id)


def create_account(
    session: Session,
    *,
    kind: ChannelKind,
    name: str,
    app_id: str,
    secret: str,
    token: str | None = None,
    aes_key_text: str | None = None,
    oa_type: OaType | None = None,
    agent_id: str | None = None,
    welcome_text: str = "",
) -> ChannelAccount:
    """A new account with its secrets sealed; BadRequest names a missing or malformed field."""
    if not NAME_RE.match(name):
        raise BadRequest("name: lowercase letters, digits, '-' and '_', up to 64, e.g. 'taste-of-su-oa'")
    if not app_id.strip():
        raise BadRequest("app_id: required (the app id, or WeCom's corp id)")
    if not re.fullmatch(r"w[wx][A-Za-z0-9]{8,30}", app_id):
        # WeChat's app ids (wx + 16 hex) and WeCom's corp ids (ww or wx + 16): a typo or a pasted space
        # would only surface as every callback failing to decrypt.
        raise BadRequest(f"app_id: {app_id!r} is not an app id or a corp id (wx… or ww…, letters and digits)")
    if not secret:
        raise BadRequest("secret: required")
    if kind == ChannelKind.oa and oa_type is None:
        raise BadRequest("oa_type: service or subscription (it decides the mass-send limits)")
    if kind != ChannelKind.oa and oa_type is not None:
        raise BadRequest("oa_type: only for an Official Account")
    if kind in (ChannelKind.oa, ChannelKind.wecom) and not token:
        raise BadRequest("token: required, the callback token set in the WeChat console")
    if kind == ChannelKind.wecom and not aes_key_text:
        raise BadRequest("aes_key: required, WeCom callbacks are always encrypted")
    if token is not None and not re.fullmatch(r"[A-Za-z0-9]{3,32}", token):
        raise BadRequest("token: 3 to 32 letters or digits, as WeChat requires")
    if aes_key_text:
        try:
            aes_key(aes_key_text)
        except CryptoError as exc:
            raise BadRequest(f"aes_key: {exc}") from exc
    if session.execute(select(ChannelAccount.id).where(ChannelAccount.name == name)).first():
        raise Conflict(f"a channel account named {name!r} exists")
    if session.execute(
        select(ChannelAccount.id).where(ChannelAccount.kind == kind, ChannelAccount.app_id == app_id)
    ).first():
        raise Conflict(f"the {kind} account {app_id} is already configured")
    account = ChannelAccount(
        name=name,
        kind=kind,
        app_id=app_id.strip(),
        oa_type=oa_type,
        agent_id=agent_id,
        secret_sealed=vault.seal(secret),
        token_sealed=vault.seal(token) if token else None,
        aes_key_sealed=vault.seal(aes_key_text) if aes_key_text else None,
        welcome_text=welcome_text,
    )
    session.add(account)
    session.flush()
    return account


def get_account(session: Session, kind: ChannelKind, name: str) -> ChannelAccount | None:
    """The enabled account of that kind and name."""
    return session.execute(
        select(ChannelAccount).where(
            ChannelAccount.kind == kind, ChannelAccount.name == name, ChannelAccount.disabled_at.is_(None)
        )
    ).scalar_one_or_none()


def get_account_or_raise(session: Session, kind: ChannelKind, name: str) -> ChannelAccount:
    """The enabled account of that kind and name, or NotFound."""
    account = get_account(session, kind, name)
    if account is None:
        raise NotFound(f"no {kind} channel account named {name!r}")
    return account


def get_account_by_name_or_raise(session: Session, name: str) -> ChannelAccount:
    """The enabled account with that name, whatever its kind, or NotFound."""
    account = session.execute(
        select(ChannelAccount).where(ChannelAccount.name == name, ChannelAccount.disabled_at.is_(None))
    ).scalar_one_or_none()
    if account is None:
        raise NotFound(f"no channel account named {name!r}")
    return account


def list_accounts(session: Session) -> Sequence[ChannelAccount]:
    """Every account, by kind then name."""
    return (
        session.execute(select(ChannelAccount).order_by(ChannelAccount.kind, ChannelAccount.name))
        .scalars()
        .all()
    )


def credentials(account: ChannelAccount) -> Credentials:
    """The unsealed secrets of account (cached by their sealed values, so a changed secret is re-read)."""
    return _unsealed(account.app_id, account.secret_sealed, account.token_sealed, account.aes_key_sealed)


@functools.lru_cache(maxsize=256)
def _unsealed(app_id: str, secret: str, token: str | None, aes: str | None) -> Credentials:
    # Every callback needs the token and key: unsealing them (Fernet) on each push is wasted work.
    return Credentials(
        app_id=app_id,
        secret=vault.unseal(secret),
        token=vault.unseal(token) if token else None,
        aes_key=vault.unseal(aes) if aes else None,
    )


def get_contact_way(session: Session, account_id: int, state: str) -> ContactWay | None:
    """The account's 「联系我」 code with that state."""
    return session.execute(
        select(ContactWay).where(ContactWay.account_id == account_id, ContactWay.state == state)
    ).scalar_one_or_none()


def count_attributions(session: Session, events: Sequence[StoredEvent]) -> None:
    """Reactor: scans and follows per QR code, adds per contact way (each stored event counts once)."""
    scans: Counter[int] = Counter()
    follows: Counter[int] = Counter()
    adds: Counter[int] = Counter()
    for ev in events:
        qr = ev.properties.get("qr_code_id")
        way = ev.properties.get("contact_way_id")
        if isinstance(qr, int) and ev.event == "Official Account Followed":
            # A follow through a code is also a scan of it.
            follows[qr] += 1
            scans[qr] += 1
        elif isinstance(qr, int) and ev.event == "QR Code Scanned":
            scans[qr] += 1
        elif isinstance(way, int) and ev.event == "WeCom Contact Added":
            adds[way] += 1
    for qr_id, n in follows.items():
        session.execute(
            update(WechatQrCode).where(WechatQrCode.id == qr_id).values(follows=WechatQrCode.follows + n)
        )
    for qr_id, n in scans.items():
        session.execute(
            update(WechatQrCode).where(WechatQrCode.id == qr_id).values(scans=WechatQrCode.scans + n)
        )
    for way_id, n in adds.items():
        session.execute(update(ContactWay).where(ContactWay.id == way_id).values(adds=ContactWay.adds + n))
