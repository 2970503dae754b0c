"""API keys and console users: create, list, revoke, disable, reset (admin only; every change audited)."""

from __future__ import annotations

import datetime as dt
import secrets

from fastapi import APIRouter
from pydantic import BaseModel, Field

from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.auth.principal import Principal
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import Forbidden
from siyu.schemas import Input

router = APIRouter(prefix="/api/v1/apikeys", tags=["auth"])
users = APIRouter(prefix="/api/v1/users", tags=["auth"])


def require_admin(principal: Principal, what: str) -> None:
    if principal.role is not Role.admin:
        raise Forbidden(f"only admins manage {what}")


class ApiKeyIn(Input):
    name: str = Field(max_length=120)
    role: Role | None = Field(default=None, description="source for a write key; admin, hq, … for API access")
    store: str | None = Field(default=None, description="store code: required for store roles")
    region: str | None = Field(default=None, description="region code: required for regional_manager")
    user: str | None = Field(
        default=None,
        description="a console user's username: the key acts as them (role, scope, alerts, tasks)",
    )


class ApiKeyOut(BaseModel):
    id: int
    name: str
    role: str
    prefix: str
    user_id: int | None
    region_id: int | None
    store_id: int | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str


@router.get("", response_model=list[ApiKeyOut], summary="Every API key, newest first (never the secret)")
def list_keys(principal: ReaderDep, session: SessionDep) -> list[ApiKeyOut]:
    require_admin(principal, "API keys")
    return [ApiKeyOut.model_validate(k, from_attributes=True) for k in auth_service.list_api_keys(session)]


@router.post("", response_model=ApiKeyCreated, status_code=201, summary="Create an API key")
def create_key(principal: ReaderDep, session: SessionDep, body: ApiKeyIn) -> ApiKeyCreated:
    """A new key; its secret is in this response only. 400 naming the field for a missing or wrong scope."""
    require_admin(principal, "API keys")
    key, secret = auth_service.create_api_key_for(
        session, name=body.name, role=body.role, store=body.store, region=body.region, username=body.user
    )
    auth_service.audit(session, principal, "apikey.create", "api_key", key.id, {"role": key.role})
    return ApiKeyCreated(**ApiKeyOut.model_validate(key, from_attributes=True).model_dump(), key=secret)


@router.post("/{key_id}/revoke", response_model=ApiKeyOut, summary="Revoke an API key")
def revoke_key(key_id: int, principal: ReaderDep, session: SessionDep) -> ApiKeyOut:
    """The key stops working at once; revoking it again keeps the first time."""
    require_admin(principal, "API keys")
    key = auth_service.get_api_key_or_raise(session, key_id)
    if key.id == principal.id and principal.kind == "api_key":
        raise Forbidden("a key cannot revoke itself: use another admin key")
    auth_service.revoke_api_key(session, key)
    auth_service.audit(session, principal, "apikey.revoke", "api_key", key.id, {})
    return ApiKeyOut.model_validate(key, from_attributes=True)


class UserIn(Input):
    username: str = Field(max_length=80)
    role: Role
    display_name: str = Field(default="", max_length=120)
    password: str | None = Field(default=None, description="generated and returned once when left out")
    store: str | None = Field(default=None, description="store code: required for store roles")
    region: str | None = Field(default=None, description="region code: required for regional_manager")
    wecom_userid: str | None = Field(default=None, max_length=64)


class UserPatch(Input):
    active: bool | None = Field(
        default=None, description="false: no login, and keys acting as them are revoked"
    )
    display_name: str | None = Field(default=None, max_length=120)
    reset_password: bool = Field(default=False, description="a new generated password, returned once")


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: str
    region_id: int | None
    store_id: int | None
    wecom_userid: str | None
    is_active: bool
    created_at: dt.datetime


class UserWithPassword(UserOut):
    password: str | None = None


@users.get("", response_model=list[UserOut], summary="Every console user")
def list_users(principal: ReaderDep, session: SessionDep) -> list[UserOut]:
    require_admin(principal, "users")
    return [UserOut.model_validate(u, from_attributes=True) for u in auth_service.list_users(session)]


@users.post("", response_model=UserWithPassword, status_code=201, summary="Create a console user")
def create_user(principal: ReaderDep, session: SessionDep, body: UserIn) -> UserWithPassword:
    """409 for a taken username or WeCom UserID; a generated password is in this response only."""
    require_admin(principal, "users")
    password = body.password or secrets.token_urlsafe(12)
    user = auth_service.create_user_for(
        session,
        username=body.username,
        password=password,
        role=body.role,
        display_name=body.display_name,
        store=body.store,
        region=body.region,
        wecom_userid=body.wecom_userid,
    )
    auth_service.audit(session, principal, "user.create", "user", user.id, {"role": user.role})
    out = UserOut.model_validate(user, from_attributes=True).model_dump()
    return UserWithPassword(**out, password=None if body.password else password)


@users.patch("/{user_id}", response_model=UserWithPassword, summary="Disable, enable, rename, reset password")
def update_user(user_id: int, body: UserPatch, principal: ReaderDep, session: SessionDep) -> UserWithPassword:
    """A reset password is in this response only; disabling or a reset ends the user's console sessions."""
    require_admin(principal, "users")
    user = auth_service.get_user_or_raise(session, user_id)
    if body.active is False and principal.user_id == user.id:
        raise Forbidden("you cannot disable yourself: ask another admin")
    password = secrets.token_urlsafe(12) if body.reset_password else None
    auth_service.update_user(
        session, user, active=body.active, password=password, display_name=body.display_name
    )
    changed = body.model_dump(exclude_unset=True, exclude_defaults=True)
    auth_service.audit(session, principal, "user.update", "user", user.id, changed)
    return UserWithPassword(
        **UserOut.model_validate(user, from_attributes=True).model_dump(), password=password
    )
