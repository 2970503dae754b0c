"""Customer 360 API: lookup, profile, timeline, unmerge."""

from __future__ import annotations

import base64
import datetime as dt
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth import service as auth_service
from siyu.auth.models import ApiKey, Role, User
from siyu.auth.principal import NAME_MASKED_ROLES, Principal
from siyu.clienteling.models import Store
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import BadRequest, Forbidden, NotFound
from siyu.identity import service as identity_service
from siyu.ingest.normalize import normalize_identifier
from siyu.journeys import service as journeys_service
from siyu.lifecycle import service as lifecycle_service
from siyu.messaging import service as messaging_service
from siyu.profiles import privacy
from siyu.profiles import service as profiles_service
from siyu.profiles.masking import mask_identifier, mask_name, mask_record
from siyu.profiles.models import Profile
from siyu.profiles.schemas import (
    Counters,
    EraseIn,
    EraseOut,
    IdentityOut,
    JourneyRefOut,
    LifecycleOut,
    MergeOut,
    MessageRefOut,
    ProfileOut,
    ProfileSummary,
    SegmentRefOut,
    StageChangeOut,
    TagIn,
    TagOut,
    TimelineEvent,
    TimelinePage,
    UnmergeIn,
    UnmergeOut,
)
from siyu.segments import service as segments_service

router = APIRouter(prefix="/api/v1/profiles", tags=["profiles"])


def summarize(profile: Profile, principal: Principal) -> ProfileSummary:
    """The row shown in a search result."""
    name = profile.name
    if name and principal.role in NAME_MASKED_ROLES:
        name = mask_name(name)
    return ProfileSummary(
        id=profile.id,
        name=name,
        orders=profile.orders_count,
        revenue_fen=profile.revenue_fen,
        last_seen_at=profile.last_seen_at,
    )


def _store_label(session: Session, store_id: int | None) -> str | None:
    if store_id is None:
        return None
    row = session.execute(select(Store.code, Store.name).where(Store.id == store_id)).one_or_none()
    return f"{row.code} {row.name}" if row else None


def _owner_label(session: Session, user_id: int | None) -> str | None:
    if user_id is None:
        return None
    row = session.execute(select(User.display_name, User.username).where(User.id == user_id)).one_or_none()
    return (row.display_name or row.username) if row else None


def build_profile_out(
    session: Session, principal: Principal, profile: Profile, *, requested_id: int, reveal: bool
) -> ProfileOut:
    """The full 360 of profile, masked for principal; a reveal is written to the audit log."""
    if reveal:
        if not principal.can_reveal():
            raise Forbidden(f"the {principal.role} role may not reveal personal data")
        auth_service.audit(
            session, principal, "profile.reveal", "profile", profile.id, {"fields": ["phone", "email"]}
        )
    mask_names = principal.role in NAME_MASKED_ROLES
    own_names = profiles_service.names_of(session, [profile.id])[profile.id] if mask_names else ()
    idents = profiles_service.identities(session, profile.id)
    state = lifecycle_service.get_state(session, profile.id)
    key_ids = {i.source_key_id for i in idents if i.source_key_id is not None}
    sources = (
        {k: v for k, v in session.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_(key_ids)))}
        if key_ids
        else {}
    )
    return ProfileOut(
        id=profile.id,
        requested_id=requested_id,
        name=mask_name(profile.name) if (profile.name and mask_names) else profile.name,
        traits=mask_record(profile.traits or {}, reveal=reveal, mask_names=mask_names, names=own_names),
        store_id=profile.store_id,
        store=_store_label(session, profile.store_id),
        owner_user_id=profile.owner_user_id,
        owner=_owner_label(session, profile.owner_user_id),
        created_at=profile.created_at,
        counters=Counters(
            events=profile.events_count,
            orders=profile.orders_count,
            revenue_fen=profile.revenue_fen,
            refunded_fen=profile.refunded_fen,
            first_seen_at=profile.first_seen_at,
            last_seen_at=profile.last_seen_at,
            first_order_at=profile.first_order_at,
            last_order_at=profile.last_order_at,
        ),
        identities=[
            IdentityOut(
                id=i.id,
                type=i.type,
                value=mask_identifier(i.type, i.value, reveal=reveal),
                source=sources.get(i.source_key_id) if i.source_key_id else None,
                first_seen_at=i.first_seen_at,
                last_seen_at=i.last_seen_at,
                shared=i.shared,
            )
            for i in idents
        ],
        merges=[
            MergeOut.model_validate(m, from_attributes=True)
            for m in profiles_service.merge_history(session, profile.id)
        ],
        revealed=reveal,
        erased_at=profile.erased_at,
        tags=[
            TagOut.model_validate(t, from_attributes=True) for t in profiles_service.tags(session, profile.id)
        ],
        lifecycle=LifecycleOut.model_validate(state, from_attributes=True) if state else None,
        stage_changes=[
            StageChangeOut.model_validate(c, from_attributes=True)
            for c in lifecycle_service.changes_of(session, profile.id, limit=20)
        ],
        segments=[
            SegmentRefOut(id=s.id, name=s.name) for s in segments_service.segments_of(session, profile.id)
        ],
        journeys=[
            JourneyRefOut(
                journey_id=e.journey_id,
                name=name,
                node=e.node,
                status=str(e.status),
                entered_at=e.entered_at,
                end_reason=e.end_reason,
            )
            for e, name in journeys_service.of_profile(session, profile.id, limit=10)
        ],
        messages=[
            MessageRefOut.model_validate(m, from_attributes=True)
            for m in messaging_service.list_messages(session, profile_id=profile.id, limit=10)
        ],
    )


def encode_cursor(timestamp: dt.datetime, event_id: int) -> str:
    return base64.urlsafe_b64encode(f"{timestamp.isoformat()}|{event_id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[dt.datetime, int]:
    try:
        ts, _, event_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return dt.datetime.fromisoformat(ts), int(event_id)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("cursor: not a cursor this API returned") from None


@router.get(
    "", response_model=list[ProfileSummary], summary="Search by phone, name, member id or any identifier"
)
def search(
    principal: ReaderDep,
    session: SessionDep,
    request: Request,
    response: Response,
    q: Annotated[str, Query(description="phone, name, member id or number, any identifier; none: list")] = "",
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
) -> list[ProfileSummary]:
    """One page of matches, most recently seen first; a `Link: <…>; rel="next"` header when there are more.

    Without `q`, the customers the caller may read: a store's, a region's or an associate's own (most
    recently seen first), or the whole brand's for brand-wide roles (newest first).
    """
    found = (
        profiles_service.search(session, principal, q, limit=limit + 1, offset=offset)
        if q.strip()
        else profiles_service.list_readable(session, principal, limit=limit + 1, offset=offset)
    )
    if len(found) > limit:
        after = request.url.include_query_params(offset=offset + limit, limit=limit)
        response.headers["Link"] = f'<{after}>; rel="next"'
    return [summarize(p, principal) for p in found[:limit]]


@router.get("/lookup", response_model=ProfileOut, summary="The profile holding an identifier")
def lookup(
    principal: ReaderDep,
    session: SessionDep,
    type: Annotated[str, Query(description="Identifier type, e.g. phone, member_id, wechat_openid")],
    value: str,
    reveal: bool = False,
) -> ProfileOut:
    if principal.role in NAME_MASKED_ROLES and type in ("phone", "email"):
        # She sees phones and emails masked: a lookup by one would tell her whose it is.
        raise Forbidden(f"the {principal.role} role cannot look customers up by {type}")
    profile = profiles_service.lookup(session, principal, type, value)
    if profile is None:
        raise NotFound(f"no profile holds {type}={value}")
    return build_profile_out(session, principal, profile, requested_id=profile.id, reveal=reveal)


@router.get("/{profile_id}", response_model=ProfileOut, summary="Customer 360")
def get(principal: ReaderDep, session: SessionDep, profile_id: int, reveal: bool = False) -> ProfileOut:
    profile = profiles_service.get_or_raise(session, principal, profile_id)
    return build_profile_out(session, principal, profile, requested_id=profile_id, reveal=reveal)


@router.get(
    "/{profile_id}/timeline", response_model=TimelinePage, summary="The profile's events, newest first"
)
def timeline(
    principal: ReaderDep,
    session: SessionDep,
    profile_id: int,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> TimelinePage:
    profile = profiles_service.get_or_raise(session, principal, profile_id)
    before = decode_cursor(cursor) if cursor else None
    events = profiles_service.timeline(session, profile.id, limit=limit, before=before)
    mask_names = principal.role in NAME_MASKED_ROLES
    # Events carry free text (notes, a phone given as userId, a shipping name): masked by shape as well as
    # by key, and for roles that see no names, her own names wherever they appear.
    names = profiles_service.names_of(session, [profile.id])[profile.id] if mask_names else ()

    def mask(value: Any, thing: bool = False) -> Any:
        return mask_record(value, reveal=False, mask_names=mask_names, names=names, thing=thing)

    items = [
        TimelineEvent(
            id=e.id,
            type=e.type,
            event=e.event,
            timestamp=e.timestamp,
            received_at=e.received_at,
            amount_fen=e.amount_fen,
            message_id=mask(e.message_id),
            # A track, page or screen call's "name" is the product's or the page's (Segment's spec).
            properties=mask(e.properties, thing=e.type in ("track", "page", "screen")),
            context=mask(e.context),
            traits=mask(e.traits) if e.traits else None,
        )
        for e in events
    ]
    next_cursor = encode_cursor(events[-1].timestamp, events[-1].id) if len(events) == limit else None
    return TimelinePage(items=items, next_cursor=next_cursor)


@router.post("/{profile_id}/unmerge", response_model=UnmergeOut, summary="Split off an identifier")
def unmerge(principal: ReaderDep, session: SessionDep, profile_id: int, body: UnmergeIn) -> UnmergeOut:
    """Split off the identifier and what was linked only through it; its events move with it."""
    value = normalize_identifier(body.type, body.value)
    result = identity_service.unmerge(session, principal, profile_id, body.type, value)
    return UnmergeOut(
        profile_id=result.profile_id,
        new_profile_id=result.new_profile_id,
        identifier_ids=result.identifier_ids,
        events_moved=result.events_moved,
    )


@router.get("/{profile_id}/tags", response_model=list[TagOut], summary="The customer's tags")
def list_tags(principal: ReaderDep, session: SessionDep, profile_id: int) -> list[TagOut]:
    profile = profiles_service.get_or_raise(session, principal, profile_id)
    return [
        TagOut.model_validate(t, from_attributes=True) for t in profiles_service.tags(session, profile.id)
    ]


@router.post("/{profile_id}/tags", response_model=TagOut, status_code=201, summary="Tag the customer")
def add_tag(principal: ReaderDep, session: SessionDep, profile_id: int, body: TagIn) -> TagOut:
    """201 with the tag (the existing one when the customer already has it)."""
    profile = profiles_service.get_or_raise(session, principal, profile_id)
    tag = profiles_service.add_tag(session, profile.id, body.name, actor=principal.actor)
    segments_service.refresh_for(session, [profile.id])
    return TagOut.model_validate(tag, from_attributes=True)


@router.delete("/{profile_id}/tags/{name}", status_code=204, summary="Remove a tag")
def remove_tag(principal: ReaderDep, session: SessionDep, profile_id: int, name: str) -> Response:
    """204; 404 when the customer does not have the tag."""
    profile = profiles_service.get_or_raise(session, principal, profile_id)
    if not profiles_service.remove_tag(session, profile.id, name):
        raise NotFound(f"profile {profile.id} has no tag {name!r}")
    segments_service.refresh_for(session, [profile.id])
    return Response(status_code=204)


PRIVACY_ROLES = frozenset({Role.admin, Role.hq})


@router.get("/{profile_id}/export", summary="Everything held about her (PIPL: a copy on request)")
def export_profile(profile_id: int, principal: ReaderDep, session: SessionDep) -> Response:
    """Unmasked JSON of her profile, identifiers, events, consents, messages, journeys, points; admin and hq, audited."""
    if principal.role not in PRIVACY_ROLES:
        raise Forbidden("exporting a person's data is for admin and hq")
    profile = profiles_service.get_or_raise(session, principal, profile_id)
    data = privacy.export(session, profile)
    counts = {k: len(v) for k, v in data.items() if isinstance(v, list)}
    auth_service.audit(session, principal, "profile.export", "profile", profile.id, counts)
    return Response(
        orjson.dumps(data, option=orjson.OPT_INDENT_2),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="profile-{profile.id}.json"'},
    )


@router.post(
    "/{profile_id}/erase",
    response_model=EraseOut,
    summary="Erase her personal data (PIPL), keeping counts and the ledger",
)
def erase_profile(profile_id: int, body: EraseIn, principal: ReaderDep, session: SessionDep) -> EraseOut:
    """Admin only; `confirm` must repeat the profile id. 409 when already erased. Audited with the counts."""
    if principal.role is not Role.admin:
        raise Forbidden("erasing a person's data is for admins")
    profile = profiles_service.get_or_raise(session, principal, profile_id)
    if body.confirm != profile.id:
        raise BadRequest(f"confirm: repeat the profile id ({profile.id}) to erase her data for good")
    erased = privacy.erase(session, profile)
    auth_service.audit(session, principal, "profile.erase", "profile", profile.id, erased)
    return EraseOut(profile_id=profile.id, erased=erased)
