"""API keys: create and list (admin only)."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from pydantic import BaseModel

from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import Forbidden

router = APIRouter(prefix="/api/v1/apikeys", tags=["auth"])


class ApiKeyIn(BaseModel):
    name: str
    role: Role
    region_id: int | None = None
    store_id: int | None = None


class ApiKeyOut(BaseModel):
    id: int
    name: str
    role: str
    prefix: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str


@router.get("", response_model=list[ApiKeyOut])
def list_keys(principal: ReaderDep, session: SessionDep) -> list[ApiKeyOut]:
    if principal.role is not Role.admin:
        raise Forbidden("only admins manage API keys")
    return [ApiKeyOut.model_validate(k, from_attributes=True) for k in auth_service.list_api_keys(session)]


@router.post("", response_model=ApiKeyCreated, status_code=201)
def create_key(principal: ReaderDep, session: SessionDep, body: ApiKeyIn) -> ApiKeyCreated:
    """A new key; its secret is in this response only."""
    if principal.role is not Role.admin:
        raise Forbidden("only admins manage API keys")
    key, secret = auth_service.create_api_key(
        session, name=body.name, role=body.role, region_id=body.region_id, store_id=body.store_id
    )
    auth_service.audit(session, principal, "apikey.create", "api_key", key.id, {"role": body.role})
    return ApiKeyCreated(**ApiKeyOut.model_validate(key, from_attributes=True).model_dump(), key=secret)
