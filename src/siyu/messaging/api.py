"""Messaging API: templates (with a preview on a real customer), the asset library, caps, messages.

`GET /m/click` is public: the tracked link in a message, which records the click and redirects.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import urlparse

from fastapi import APIRouter, Query
from fastapi.responses import RedirectResponse
from sqlalchemy import select, update

from siyu.auth.principal import NAME_MASKED_ROLES, Principal
from siyu.db import utcnow
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import BadRequest, Forbidden, NotFound
from siyu.ingest import service as ingest_service
from siyu.journeys.api import JOURNEY_ROLES
from siyu.messaging import render, service
from siyu.messaging.models import Channel, Message, MessageStatus
from siyu.messaging.schemas import (
    AssetIn,
    AssetOut,
    CapIn,
    CapOut,
    CapPatch,
    MessageOut,
    PreviewIn,
    TemplateIn,
    TemplateOut,
    TemplatePatch,
)
from siyu.profiles import service as profiles
from siyu.profiles.masking import mask_content, mask_identifier

router = APIRouter(prefix="/api/v1/messages", tags=["messages"])
clicks = APIRouter(tags=["messages"])


def require_messaging(principal: Principal) -> None:
    if principal.role not in JOURNEY_ROLES:
        raise Forbidden(f"a {principal.role} cannot manage messages")


@router.get("/templates", response_model=list[TemplateOut], summary="Message templates")
def list_templates(principal: ReaderDep, session: SessionDep) -> list[TemplateOut]:
    require_messaging(principal)
    return [TemplateOut.model_validate(t, from_attributes=True) for t in service.list_templates(session)]


@router.post("/templates", response_model=TemplateOut, status_code=201, summary="Create a template")
def create_template(body: TemplateIn, principal: ReaderDep, session: SessionDep) -> TemplateOut:
    """400 naming the field for a wrong account or a missing field; 422 with `path` for a bad placeholder."""
    require_messaging(principal)
    template = service.create_template(session, actor=principal.actor, **body.model_dump())
    return TemplateOut.model_validate(template, from_attributes=True)


@router.patch("/templates/{template_id}", response_model=TemplateOut, summary="Edit a template")
def update_template(
    template_id: int, body: TemplatePatch, principal: ReaderDep, session: SessionDep
) -> TemplateOut:
    require_messaging(principal)
    template = service.get_template_or_raise(session, template_id)
    fields = body.model_dump(exclude_unset=True)
    return TemplateOut.model_validate(
        service.update_template(session, template, **fields), from_attributes=True
    )


@router.post("/templates/{template_id}/preview", summary="The template rendered for one real customer")
def preview_template(
    template_id: int, body: PreviewIn, principal: ReaderDep, session: SessionDep
) -> dict[str, object]:
    require_messaging(principal)
    template = service.get_template_or_raise(session, template_id)
    profile = profiles.get_or_raise(session, principal, body.profile_id)
    masked = principal.role in NAME_MASKED_ROLES
    return {
        "profile_id": profile.id,
        "content": service.preview(session, template, profile.id, mask_names=masked),
    }


@router.get("/assets", response_model=list[AssetOut], summary="The brand's content library")
def list_assets(principal: ReaderDep, session: SessionDep) -> list[AssetOut]:
    require_messaging(principal)
    return [AssetOut.model_validate(a, from_attributes=True) for a in service.list_assets(session)]


@router.post("/assets", response_model=AssetOut, status_code=201, summary="Add to the content library")
def create_asset(body: AssetIn, principal: ReaderDep, session: SessionDep) -> AssetOut:
    require_messaging(principal)
    return AssetOut.model_validate(service.create_asset(session, **body.model_dump()), from_attributes=True)


@router.get("/caps", response_model=list[CapOut], summary="The brand's frequency caps")
def list_caps(principal: ReaderDep, session: SessionDep) -> list[CapOut]:
    require_messaging(principal)
    return [CapOut.model_validate(c, from_attributes=True) for c in service.list_caps(session)]


@router.post("/caps", response_model=CapOut, status_code=201, summary="Add a frequency cap")
def create_cap(body: CapIn, principal: ReaderDep, session: SessionDep) -> CapOut:
    require_messaging(principal)
    cap = service.create_cap(session, channel=body.channel, period=body.period, limit=body.limit)
    return CapOut.model_validate(cap, from_attributes=True)


@router.patch("/caps/{cap_id}", response_model=CapOut, summary="Switch a cap on or off")
def update_cap(cap_id: int, body: CapPatch, principal: ReaderDep, session: SessionDep) -> CapOut:
    require_messaging(principal)
    return CapOut.model_validate(service.set_cap_active(session, cap_id, body.active), from_attributes=True)


@router.get("", response_model=list[MessageOut], summary="Messages, newest first")
def list_messages(
    principal: ReaderDep,
    session: SessionDep,
    profile_id: int | None = None,
    journey_id: int | None = None,
    status: MessageStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[
        int | None, Query(description="the next page: the last id of the previous one")
    ] = None,
) -> list[MessageOut]:
    require_messaging(principal)
    rows = service.list_messages(
        session,
        profile_id=profile_id,
        journey_id=journey_id,
        status=status,
        limit=limit,
        before_id=before_id,
    )
    # Sent content is free text: phones and emails are masked wherever they are, and for a role that sees
    # no names, the customer's own names too (PIPL). The customer's 360 reveals, audited.
    mask_names = principal.role in NAME_MASKED_ROLES
    names = profiles.names_of(session, {m.profile_id for m in rows}) if mask_names else {}
    out = []
    for m in rows:
        item = MessageOut.model_validate(m, from_attributes=True)
        item.content = mask_content(item.content, mask_names=mask_names, names=names.get(m.profile_id, ()))
        if m.channel == Channel.sms and item.recipient:
            item.recipient = mask_identifier("phone", item.recipient, reveal=False)
        out.append(item)
    return out


@clicks.get("/m/click", include_in_schema=False)
def click(k: str, u: str, t: str, session: SessionDep) -> RedirectResponse:
    """A tracked link: the first click is recorded on the message and the customer's timeline."""
    if not hmac.compare_digest(render.track_token(k, u), t):
        raise NotFound("no such link")
    if urlparse(u).scheme not in ("http", "https"):
        raise BadRequest("u: not a web address")
    message = session.execute(select(Message).where(Message.idempotency_key == k)).scalar_one_or_none()
    if message is not None and message.clicked_at is None:
        now = utcnow()
        session.execute(update(Message).where(Message.id == message.id).values(clicked_at=now))
        ingest_service.enqueue_for_profiles(
            session,
            [
                (
                    message.profile_id,
                    {
                        "type": "track",
                        "event": "Message Clicked",
                        "messageId": f"click:{message.id}",
                        "timestamp": now.isoformat(),
                        "properties": {
                            "message_id": message.id,
                            "channel": str(message.channel),
                            "journey_id": message.journey_id,
                            "node": message.node,
                            "url": u,
                        },
                    },
                )
            ],
            channel="messages",
        )
    return RedirectResponse(u, status_code=302)
