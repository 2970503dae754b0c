"""Console page of the organisation: regions and stores, with their people and customers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from siyu.auth import service as auth_service
from siyu.auth.models import Role, User
from siyu.clienteling import org
from siyu.clienteling.api import ORG_ADMIN_ROLES
from siyu.console.rendering import render
from siyu.console.routes import see_other
from siyu.console.security import (
    OperationsDep,
    OperationsWriterDep,
    PageError,
    ReadSession,
    WriteSession,
    flash,
)
from siyu.profiles.models import Profile

router = APIRouter(include_in_schema=False)


@router.get("/stores", response_class=HTMLResponse)
def stores_page(request: Request, session: ReadSession, viewer: OperationsDep) -> Response:
    """Regions and their stores: staff and customers per store."""
    customers = dict(
        session.execute(
            select(Profile.store_id, func.count())
            .where(Profile.merged_into_id.is_(None), Profile.store_id.is_not(None))
            .group_by(Profile.store_id)
        ).all()
    )
    staff = {
        (store_id, role): n
        for store_id, role, n in session.execute(
            select(User.store_id, User.role, func.count())
            .where(User.store_id.is_not(None), User.is_active.is_(True))
            .group_by(User.store_id, User.role)
        )
    }
    regions = org.list_regions(session)
    stores = org.list_stores(session)
    rows = [
        (
            region,
            [
                (
                    s,
                    staff.get((s.id, Role.store_manager), 0),
                    staff.get((s.id, Role.sales_associate), 0),
                    customers.get(s.id, 0),
                )
                for s in stores
                if s.region_id == region.id
            ],
        )
        for region in regions
    ]
    no_store = session.execute(
        select(func.count()).where(Profile.merged_into_id.is_(None), Profile.store_id.is_(None))
    ).scalar_one()
    context = {
        "regions": rows,
        "no_store": no_store,
        "can_edit": viewer.role in ORG_ADMIN_ROLES,
        "nav": "stores",
    }
    return render(request, "stores.html", context)


def _require_admin(role: Role) -> None:
    if role not in ORG_ADMIN_ROLES:
        raise PageError(403, f"The {role} role cannot change the organisation.")


@router.post("/stores/regions")
def add_region(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    code: Annotated[str, Form()],
    name: Annotated[str, Form()],
) -> Response:
    """Add a region (admin, hq)."""
    _require_admin(viewer.role)
    region = org.create_region(session, code=code, name=name)
    auth_service.audit(
        session, viewer.principal, "org.region.create", "region", region.id, {"code": region.code}
    )
    flash(request, f"Region {region.code} added.")
    return see_other("/stores")


@router.post("/stores")
def add_store(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    code: Annotated[str, Form()],
    name: Annotated[str, Form()],
    region: Annotated[str, Form()],
    city: Annotated[str, Form()] = "",
) -> Response:
    """Add a store to a region (admin, hq)."""
    _require_admin(viewer.role)
    store = org.create_store(session, code=code, name=name, region=region, city=city)
    auth_service.audit(session, viewer.principal, "org.store.create", "store", store.id, {"code": store.code})
    flash(request, f"Store {store.code} added.")
    return see_other("/stores")


@router.post("/stores/{code}/edit")
def edit_store(
    request: Request,
    session: WriteSession,
    viewer: OperationsWriterDep,
    code: str,
    name: Annotated[str, Form()],
    region: Annotated[str, Form()],
    city: Annotated[str, Form()] = "",
) -> Response:
    """Rename a store, change its city or move it to another region (admin, hq); its staff follow."""
    _require_admin(viewer.role)
    store = org.get_store_by_code_or_raise(session, code)
    org.update_store(session, store, name=name, city=city, region=region)
    auth_service.audit(
        session, viewer.principal, "org.store.update", "store", store.id, {"name": name, "region": region}
    )
    flash(request, f"Store {store.code} saved.")
    return see_other("/stores")


@router.post("/stores/{code}/delete")
def remove_store(request: Request, session: WriteSession, viewer: OperationsWriterDep, code: str) -> Response:
    """Remove a store nothing points at (admin, hq); otherwise the page says what still does."""
    _require_admin(viewer.role)
    store = org.get_store_by_code_or_raise(session, code)
    store_id, store_code = store.id, store.code
    org.delete_store(session, store)
    auth_service.audit(session, viewer.principal, "org.store.delete", "store", store_id, {"code": store_code})
    flash(request, f"Store {store_code} removed.")
    return see_other("/stores")
