"""Organisation API (regions and stores: read by every role, added by admin and hq) and each user's alerts and tasks."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from siyu.auth import service as auth_service
from siyu.auth.models import Role
from siyu.auth.principal import NAME_MASKED_ROLES, Principal
from siyu.clienteling import org
from siyu.clienteling import service as clienteling_service
from siyu.clienteling.models import Alert, Task
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import Forbidden
from siyu.profiles import service as profiles_service
from siyu.profiles.masking import mask_content
from siyu.schemas import Input, Output

router = APIRouter(prefix="/api/v1/org", tags=["organisation"])
ORG_ADMIN_ROLES = frozenset({Role.admin, Role.hq})


class RegionIn(Input):
    code: str = Field(max_length=40)
    name: str = Field(max_length=120)


class RegionOut(RegionIn):
    model_config = Output.model_config

    id: int


class RegionPatch(Input):
    name: str = Field(max_length=120)


class StoreIn(Input):
    code: str = Field(max_length=40)
    name: str = Field(max_length=120)
    region: str = Field(max_length=40, description="the region's code")
    city: str = Field(default="", max_length=60)


class StorePatch(Input):
    name: str | None = Field(default=None, max_length=120)
    city: str | None = Field(default=None, max_length=60)
    region: str | None = Field(default=None, max_length=40, description="move it to this region (its code)")


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


me = APIRouter(prefix="/api/v1/me", tags=["my work"])


class AlertOut(BaseModel):
    id: int
    profile_id: int
    profile_readable: bool = Field(
        default=True, description="Whether the caller may open the customer now (she may have moved on)"
    )
    kind: str
    title: str
    detail: dict[str, Any]
    created_at: dt.datetime
    read_at: dt.datetime | None


class TaskOut(BaseModel):
    id: int
    profile_id: int
    profile_readable: bool = Field(
        default=True, description="Whether the caller may open the customer now (she may have moved on)"
    )
    title: str
    detail: dict[str, Any]
    source: str
    due_at: dt.datetime | None
    created_at: dt.datetime
    done_at: dt.datetime | None


class TeamTaskOut(TaskOut):
    user_id: int = Field(description="Whose task it is")


_Out = TypeVar("_Out", AlertOut, TaskOut, TeamTaskOut)


def _masked(
    session: Session, principal: Principal, items: Sequence[Alert | Task], out: type[_Out]
) -> list[_Out]:
    """Alerts or tasks as the caller may read them: titles and details are rendered text, masked (PIPL)."""
    mask_names = principal.role in NAME_MASKED_ROLES
    names = profiles_service.names_of(session, {i.profile_id for i in items}) if mask_names else {}
    # A merged customer is opened at the profile she is part of now; one moved out of reach is flagged.
    readable = profiles_service.readable_ids(session, principal, {i.profile_id for i in items})
    rows = []
    for item in items:
        own = names.get(item.profile_id, ())
        rows.append(
            out.model_validate(item, from_attributes=True).model_copy(
                update={
                    "profile_id": readable.get(item.profile_id, item.profile_id),
                    "profile_readable": item.profile_id in readable,
                    "title": mask_content(item.title, mask_names=mask_names, names=own),
                    "detail": mask_content(item.detail or {}, mask_names=mask_names, names=own),
                }
            )
        )
    return rows


def _user_id(principal: Principal) -> int:
    if principal.user_id is None:
        raise Forbidden("alerts and tasks belong to a person: call with a console user's key (or log in)")
    return principal.user_id


@me.get("/alerts", response_model=list[AlertOut], summary="My alerts, newest first")
def my_alerts(
    principal: ReaderDep,
    session: SessionDep,
    unread: Annotated[bool, Query(description="only the unread ones")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[AlertOut]:
    alerts = clienteling_service.list_alerts(session, _user_id(principal), unread_only=unread, limit=limit)
    return _masked(session, principal, alerts, AlertOut)


@me.post("/alerts/{alert_id}/read", response_model=AlertOut, summary="Mark one of my alerts read")
def read_alert(alert_id: int, principal: ReaderDep, session: SessionDep) -> AlertOut:
    """Idempotent: reading it again keeps the first time; 404 for someone else's alert."""
    alert = clienteling_service.mark_alert_read(session, _user_id(principal), alert_id)
    return _masked(session, principal, [alert], AlertOut)[0]


@me.get("/tasks", response_model=list[TaskOut], summary="My tasks: open ones by due time")
def my_tasks(
    principal: ReaderDep,
    session: SessionDep,
    include_done: Annotated[bool, Query(description="also the done ones, newest first")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[TaskOut]:
    tasks = clienteling_service.list_tasks(
        session, _user_id(principal), open_only=not include_done, limit=limit
    )
    return _masked(session, principal, tasks, TaskOut)


@me.post("/tasks/{task_id}/done", response_model=TaskOut, summary="Mark one of my tasks done")
def finish_task(task_id: int, principal: ReaderDep, session: SessionDep) -> TaskOut:
    """Idempotent: finishing it again keeps the first time; 404 for someone else's task."""
    task = clienteling_service.complete_task(session, _user_id(principal), task_id)
    return _masked(session, principal, [task], TaskOut)[0]


@me.get("/team/tasks", response_model=list[TeamTaskOut], summary="My team's tasks: open ones by due time")
def team_tasks(
    principal: ReaderDep,
    session: SessionDep,
    include_done: Annotated[bool, Query(description="also the done ones, newest first")] = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[TeamTaskOut]:
    """A store manager's store (a regional manager's region): whose each task is, so none is lost."""
    tasks = clienteling_service.list_team_tasks(session, principal, open_only=not include_done, limit=limit)
    return _masked(session, principal, tasks, TeamTaskOut)


@router.patch(
    "/stores/{code}", response_model=StoreOut, summary="Rename a store or move it to another region"
)
def update_store(code: str, body: StorePatch, principal: ReaderDep, session: SessionDep) -> StoreOut:
    """Its staff and customers stay with it (a moved store's managers now belong to the new region)."""
    _require_admin(principal)
    store = org.get_store_by_code_or_raise(session, code)
    org.update_store(session, store, **body.model_dump(exclude_unset=True))
    auth_service.audit(
        session, principal, "org.store.update", "store", store.id, body.model_dump(exclude_unset=True)
    )
    return StoreOut.model_validate(store, from_attributes=True)


@router.delete("/stores/{code}", status_code=204, summary="Remove a store nothing points at")
def delete_store(code: str, principal: ReaderDep, session: SessionDep) -> Response:
    """409 naming what still points at it (customers, staff, keys, QR codes): move those first."""
    _require_admin(principal)
    store = org.get_store_by_code_or_raise(session, code)
    store_id, store_code = store.id, store.code
    org.delete_store(session, store)
    auth_service.audit(session, principal, "org.store.delete", "store", store_id, {"code": store_code})
    return Response(status_code=204)


@router.patch("/regions/{code}", response_model=RegionOut, summary="Rename a region")
def update_region(code: str, body: RegionPatch, principal: ReaderDep, session: SessionDep) -> RegionOut:
    _require_admin(principal)
    region = org.update_region(session, org.get_region_by_code_or_raise(session, code), name=body.name)
    auth_service.audit(session, principal, "org.region.update", "region", region.id, {"name": region.name})
    return RegionOut.model_validate(region, from_attributes=True)


@router.delete("/regions/{code}", status_code=204, summary="Remove a region with no store and no one in it")
def delete_region(code: str, principal: ReaderDep, session: SessionDep) -> Response:
    """409 naming what is left in it (stores, staff, keys)."""
    _require_admin(principal)
    region = org.get_region_by_code_or_raise(session, code)
    region_id, region_code = region.id, region.code
    org.delete_region(session, region)
    auth_service.audit(session, principal, "org.region.delete", "region", region_id, {"code": region_code})
    return Response(status_code=204)
