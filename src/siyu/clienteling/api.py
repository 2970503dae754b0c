"""Organisation API: regions and stores (read by every role, added by admin and hq)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.auth.principal import Principal
from siyu.clienteling import org
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import Forbidden

router = APIRouter(prefix="/api/v1/org", tags=["organisation"])
ORG_ADMIN_ROLES = frozenset({Role.admin, Role.hq})


class RegionIn(BaseModel):
    code: str = Field(max_length=40)
    name: str = Field(max_length=120)


class RegionOut(RegionIn):
    id: int


class StoreIn(BaseModel):
    code: str = Field(max_length=40)
    name: str = Field(max_length=120)
    region: str = Field(max_length=40, description="the region's code")
    city: str = Field(default="", max_length=60)


class StoreOut(BaseModel):
    id: int
    code: str
    name: str
    city: str
    region_id: int


def _require_admin(principal: Principal) -> None:
    if principal.role not in ORG_ADMIN_ROLES:
        raise Forbidden("regions and stores are set up by admin and hq")


@router.get("/regions", response_model=list[RegionOut], summary="Every region")
def list_regions(principal: ReaderDep, session: SessionDep) -> list[RegionOut]:
    return [RegionOut.model_validate(r, from_attributes=True) for r in org.list_regions(session)]


@router.post("/regions", response_model=RegionOut, status_code=201, summary="Add a region")
def create_region(body: RegionIn, principal: ReaderDep, session: SessionDep) -> RegionOut:
    """409 when the code exists."""
    _require_admin(principal)
    region = org.create_region(session, code=body.code, name=body.name)
    auth_service.audit(session, principal, "org.region.create", "region", region.id, {"code": region.code})
    return RegionOut.model_validate(region, from_attributes=True)


@router.get("/stores", response_model=list[StoreOut], summary="Every store")
def list_stores(principal: ReaderDep, session: SessionDep) -> list[StoreOut]:
    return [StoreOut.model_validate(s, from_attributes=True) for s in org.list_stores(session)]


@router.post("/stores", response_model=StoreOut, status_code=201, summary="Add a store to a region")
def create_store(body: StoreIn, principal: ReaderDep, session: SessionDep) -> StoreOut:
    """404 when the region does not exist, 409 when the store code does."""
    _require_admin(principal)
    store = org.create_store(session, code=body.code, name=body.name, region=body.region, city=body.city)
    auth_service.audit(session, principal, "org.store.create", "store", store.id, {"code": store.code})
    return StoreOut.model_validate(store, from_attributes=True)
