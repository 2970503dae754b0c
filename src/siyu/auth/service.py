"""Users, API keys, password hashing and the audit log."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.auth.models import ApiKey, AuditLog, Role, User
from siyu.auth.principal import Principal
from siyu.db import is_postgres, utcnow
from siyu.errors import BadRequest, Conflict

_hasher = PasswordHasher()
KEY_PREFIX = "sy_"
SCOPED_ROLES = {Role.regional_manager: "region", Role.store_manager: "store", Role.sales_associate: "store"}


def hash_key(secret: str) -> str:
    """The stored form of an API key: its SHA-256 (keys are random, so no salt or slow hash is needed)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    session: Session,
    *,
    name: str,
    role: Role,
    user: User | None = None,
    region_id: int | None = None,
    store_id: int | None = None,
) -> tuple[ApiKey, str]:
    """A new API key and its secret, which is shown once and never stored."""
    if not name.strip():
        raise BadRequest("name: must not be empty")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name.strip(),
        role=role,
        prefix=secret[:10],
        key_hash=hash_key(secret),
        user_id=user.id if user else None,
        region_id=region_id if region_id is not None else (user.region_id if user else None),
        store_id=store_id if store_id is not None else (user.store_id if user else None),
    )
    session.add(key)
    session.flush()
    return key, secret


def get_api_key_by_secret(session: Session, secret: str) -> ApiKey | None:
    """The live API key whose secret this is, or None."""
    if not secret:
        return None
    key = session.execute(select(ApiKey).where(ApiKey.key_hash == hash_key(secret))).scalar_one_or_none()
    if key is None or key.revoked_at is not None:
        return None
    return key


def principals_read(session: Session, secrets: Iterable[str]) -> bulk.Read[dict[str, Principal]]:
    """The principal of each secret that is a live API key, as a read to run with others (bulk.read_all)."""
    hashes = {hash_key(secret): secret for secret in secrets if secret}
    postgres = is_postgres(session)
    value = bulk.among_value(ApiKey.key_hash, sorted(hashes), postgres=postgres)
    query = bulk.Query(_live_keys(postgres), {"hashes": value}) if hashes else None
    return bulk.Read(query, lambda rows: {hashes[row.key_hash]: principal_for_key(row) for row in rows})


@functools.cache
def _live_keys(postgres: bool) -> Select[*tuple[Any, ...]]:
    # Built once: the posting lane looks keys up for every group of requests.
    k = ApiKey
    return select(k.id, k.name, k.role, k.user_id, k.region_id, k.store_id, k.key_hash).where(
        bulk.among(k.key_hash, "hashes", postgres=postgres), k.revoked_at.is_(None)
    )


def list_api_keys(session: Session) -> Sequence[ApiKey]:
    """Every API key, newest first."""
    return session.execute(select(ApiKey).order_by(ApiKey.id.desc())).scalars().all()


class _KeyFields(Protocol):
    id: int
    name: str
    role: str
    user_id: int | None
    region_id: int | None
    store_id: int | None


def principal_for_key(key: ApiKey | _KeyFields) -> Principal:
    """The principal an API key acts as."""
    return Principal(
        kind="api_key",
        id=key.id,
        name=key.name,
        role=Role(key.role),
        user_id=key.user_id,
        region_id=key.region_id,
        store_id=key.store_id,
    )


def principal_for_user(user: User) -> Principal:
    """The principal a logged-in user acts as."""
    return Principal(
        kind="user",
        id=user.id,
        name=user.username,
        role=Role(user.role),
        user_id=user.id,
        region_id=user.region_id,
        store_id=user.store_id,
    )


def hash_password(password: str) -> str:
    """An argon2id hash of password."""
    return _hasher.hash(password)


def create_user(
    session: Session,
    *,
    username: str,
    password: str,
    role: Role,
    display_name: str = "",
    region_id: int | None = None,
    store_id: int | None = None,
    wecom_userid: str | None = None,
) -> User:
    """A new console user; a username already taken is a Conflict."""
    username = username.strip()
    if not username:
        raise BadRequest("username: must not be empty")
    if len(password) < 8:
        raise BadRequest("password: must be at least 8 characters")
    if session.execute(select(User.id).where(User.username == username)).first() is not None:
        raise Conflict(f"username {username!r} is taken")
    user = User(
        username=username,
        display_name=display_name or username,
        role=role,
        password_hash=hash_password(password),
        region_id=region_id,
        store_id=store_id,
        wecom_userid=wecom_userid,
    )
    session.add(user)
    session.flush()
    return user


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, or None (the same for a wrong name or password)."""
    user = session.execute(select(User).where(User.username == username.strip())).scalar_one_or_none()
    if user is None or not user.is_active:
        # Hash anyway so a wrong username takes as long as a wrong password.
        _hasher.hash(password)
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return user


def audit(
    session: Session,
    principal: Principal,
    action: str,
    subject_type: str,
    subject_id: int | None,
    detail: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> None:
    """Append one audit-log row in the caller's transaction."""
    session.add(
        AuditLog(
            at=at or utcnow(),
            actor=principal.actor,
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            detail=detail or {},
        )
    )


def list_audit(session: Session, *, limit: int = 100) -> Sequence[AuditLog]:
    """The newest audit-log rows."""
    return session.execute(select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)).scalars().all()
