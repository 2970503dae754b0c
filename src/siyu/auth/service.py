"""Users, API keys, password hashing and the audit log."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import secrets
import time
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import ColumnElement, Select, func, or_, select, update
from sqlalchemy.orm import Session

from siyu import bulk
from siyu.auth.models import ApiKey, AuditLog, Role, User
from siyu.auth.principal import Principal
from siyu.db import is_postgres, utcnow
from siyu.errors import BadRequest, Conflict, NotFound

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
    if user is not None and not user.is_active:
        raise Conflict(f"user: {user.username} is disabled: enable them first (siyu users enable)")
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


def create_api_key_for(
    session: Session,
    *,
    name: str,
    role: Role | None = None,
    store: str | None = None,
    region: str | None = None,
    username: str | None = None,
) -> tuple[ApiKey, str]:
    """A key for a role and its scope (store or region code), or one that acts as the console user `username`.

    The same checks as a user's: a store role names its store, a regional manager its region, and a
    key acting as a user takes that user's role and scope (naming another is a BadRequest).
    """
    from siyu.clienteling import org  # the organisation is a domain above auth

    if username is not None:
        person = get_user_by_username_or_raise(session, username)
        if (role is not None and role != person.role) or store or region:
            raise BadRequest(f"user: the key acts as this {person.role}; leave out role, store and region")
        return create_api_key(session, name=name, role=Role(person.role), user=person)
    if role is None:
        raise BadRequest("role: required (or user, for a key that acts as a console user)")
    if role is Role.sales_associate:
        # An associate reads her own customers: a key of the role but of nobody would read none.
        raise BadRequest(
            "role: a sales_associate key acts as the associate: give user (--user USERNAME) instead"
        )
    if role is Role.source:
        if store or region:
            raise BadRequest("store, region: a source key only sends events; leave them out")
        return create_api_key(session, name=name, role=role)
    region_id, store_id = org.scope_of(session, role, store=store, region=region)
    return create_api_key(session, name=name, role=role, region_id=region_id, store_id=store_id)


def get_api_key_or_raise(session: Session, key_id: int) -> ApiKey:
    """The API key with this id, or NotFound."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"no API key #{key_id}")
    return key


def revoke_api_key(session: Session, key: ApiKey) -> ApiKey:
    """Stop a key from working, at once and for good; revoking it again keeps the first time."""
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key


def get_api_key_by_secret(session: Session, secret: str) -> ApiKey | None:
    """The live API key whose secret this is, or None."""
    if not secret:
        return None
    return session.execute(
        select(ApiKey).where(ApiKey.key_hash == hash_key(secret), *_live_key_conditions())
    ).scalar_one_or_none()


# How often a key's last_used_at is written: a per-request write would cost ingest and the ledger a row
# lock per call, and "used in the last minute" is all an admin deciding what to revoke needs.
TOUCH_EVERY = 60.0
_touched: dict[str, float] = {}  # key_hash -> monotonic time of this process's last write


def touch_keys(session: Session, used: dict[int, str]) -> None:
    """Record that these keys ({id: key_hash}) were used now, at most once a minute per key and process."""
    now = time.monotonic()
    due = [
        key_id
        for key_id, key_hash in used.items()
        if now - _touched.get(key_hash, -TOUCH_EVERY) >= TOUCH_EVERY
    ]
    if not due:
        return
    for key_hash in (used[i] for i in due):
        _touched[key_hash] = now
    at = utcnow()
    session.execute(
        update(ApiKey)
        .where(
            ApiKey.id.in_(due),
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < at - dt.timedelta(seconds=TOUCH_EVERY)),
        )
        .values(last_used_at=at)
        .execution_options(synchronize_session=False)
    )


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
        bulk.among(k.key_hash, "hashes", postgres=postgres), *_live_key_conditions()
    )


def _live_key_conditions() -> tuple[ColumnElement[bool], ...]:
    """A key works until revoked, and one acting for a person only while they may act."""
    person_active = select(User.is_active).where(User.id == ApiKey.user_id).scalar_subquery()
    return ApiKey.revoked_at.is_(None), or_(ApiKey.user_id.is_(None), person_active.is_(True))


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
    username = canonical_username(username)
    if not username:
        raise BadRequest("username: must not be empty")
    if re.search(r"\s", username) or len(username) > 80:
        raise BadRequest(
            f"username: {username!r} has a space: letters, digits, '.', '_', '-' or '@', up to 80"
        )
    lookalike = _lookalike(username)
    if lookalike:
        raise BadRequest(
            f"username: {username!r} mixes Latin letters with {lookalike!r}, which looks like one: "
            "such a name can pass for another user's"
        )
    if role is Role.source:
        raise BadRequest("role: source is for write keys (siyu apikeys create --role source), not for people")
    if len(password) < 8:
        raise BadRequest("password: must be at least 8 characters")
    # Case-insensitive: "Wang" beside "wang" is the same person to everyone who reads the staff list.
    taken = session.execute(
        select(User.username).where(func.lower(User.username) == username.lower())
    ).scalar()
    if taken is not None:
        raise Conflict(f"username {username!r} is taken" + (f" (as {taken!r})" if taken != username else ""))
    wecom_userid = (wecom_userid or "").strip() or None  # blank is none, never a taken ""
    if wecom_userid:
        # WeCom UserIDs are case-insensitive (WeCom's member API): ZhangSan and zhangsan are one person.
        holder = session.execute(
            select(User.username).where(func.lower(User.wecom_userid) == wecom_userid.lower())
        ).scalar()
        if holder is not None:
            raise Conflict(f"wecom_userid {wecom_userid!r} already belongs to user {holder!r}")
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


def list_users(session: Session) -> Sequence[User]:
    """Every console user, by username."""
    return session.execute(select(User).order_by(User.username)).scalars().all()


def get_user_by_username_or_raise(session: Session, username: str) -> User:
    """The console user with this username (any case), or NotFound."""
    user = _by_username(session, username)
    if user is None:
        raise NotFound(f"no console user {username!r}")
    return user


def _lookalike(username: str) -> str:
    """The first letter of username that imitates a Latin one beside ASCII letters (a Cyrillic a, a Greek
    omicron, a dotless i); "" when there is none. Accented letters (josé), names in Chinese, or wholly in
    another script are fine."""
    if not any("a" <= c.lower() <= "z" for c in username):
        return ""
    for c in username:
        if not c.isalpha() or c.isascii():
            continue
        name = unicodedata.name(c, "")
        if name.startswith(("CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")):
            return c
        if name.startswith("LATIN") and not unicodedata.normalize("NFKD", c)[0].isascii():
            return c  # a Latin letter with no plain base: dotless i, script g, Latin alpha
    return ""


def canonical_username(username: str) -> str:
    """username as stored and compared: NFKC (a full-width ADMIN is ADMIN), no surrounding space."""
    return unicodedata.normalize("NFKC", username).strip()


def _by_username(session: Session, username: str) -> User | None:
    """The user named so: the exact spelling first (older installations may hold two that differ by case)."""
    username = canonical_username(username)
    return session.execute(
        select(User)
        .where(func.lower(User.username) == username.lower())
        .order_by((User.username == username).desc(), User.id)
        .limit(1)
    ).scalar_one_or_none()


def get_user_or_raise(session: Session, user_id: int) -> User:
    """The console user with this id, or NotFound."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no console user #{user_id}")
    return user


def update_user(
    session: Session,
    user: User,
    *,
    active: bool | None = None,
    password: str | None = None,
    display_name: str | None = None,
) -> User:
    """Enable or disable a user, set a new password, rename; see the effects on keys and sessions below.

    Disabling revokes the keys that act as the user (a key must not outlive the person's access) and ends
    their console sessions; a new password ends their sessions too (sessions carry `session_stamp`).
    """
    if password is not None:
        if len(password) < 8:
            raise BadRequest("password: must be at least 8 characters")
        user.password_hash = hash_password(password)
    if display_name is not None:
        user.display_name = display_name.strip() or user.username
    if active is not None:
        if not active and user.is_active and user.role is Role.admin:
            others = session.execute(
                select(func.count())
                .select_from(User)
                .where(User.role == Role.admin, User.is_active, User.id != user.id)
            ).scalar_one()
            if not others:
                raise Conflict(
                    f"{user.username} is the last active admin: create or enable another admin first"
                )
        user.is_active = active
        if not active:
            # Sessions opened before (even if the user is enabled again later) are over.
            user.sessions_ended_at = utcnow()
            for key in session.execute(
                select(ApiKey).where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
            ).scalars():
                key.revoked_at = utcnow()
    session.flush()
    return user


def session_stamp(user: User) -> str:
    """What a console session remembers of its user: a new password, or being disabled, ends it."""
    stamped = user.password_hash
    if user.sessions_ended_at is not None:  # only then: sessions of users never disabled survive an upgrade
        stamped += "|" + user.sessions_ended_at.isoformat()
    return hashlib.sha256(stamped.encode()).hexdigest()[:16]


def create_user_for(
    session: Session,
    *,
    username: str,
    password: str,
    role: Role,
    display_name: str = "",
    store: str | None = None,
    region: str | None = None,
    wecom_userid: str | None = None,
) -> User:
    """A console user scoped by store or region code (as their role needs), else BadRequest naming the field."""
    from siyu.clienteling import org  # the organisation is a domain above auth

    region_id, store_id = org.scope_of(session, role, store=store, region=region)
    return create_user(
        session,
        username=username,
        password=password,
        role=role,
        display_name=display_name,
        region_id=region_id,
        store_id=store_id,
        wecom_userid=wecom_userid or None,
    )


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with these credentials, or None (the same for a wrong name or password)."""
    user = _by_username(session, username)
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
