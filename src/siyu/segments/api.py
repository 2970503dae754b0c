"""Segments API: define, preview while editing, compute, list members, export."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse

from siyu.auth.models import Role
from siyu.auth.principal import NAME_MASKED_ROLES, Principal
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import Forbidden
from siyu.segments import rules, service, wechat_tags
from siyu.segments.models import Segment
from siyu.segments.schemas import (
    ChangeOut,
    MembersOut,
    PreviewIn,
    PreviewOut,
    SegmentIn,
    SegmentOut,
    SegmentPatch,
    SizeOut,
    WechatTagIn,
    WechatTagOut,
)

router = APIRouter(prefix="/api/v1/segments", tags=["segments"])

# Segments span every store's customers: the brand's CRM team defines and exports them.
SEGMENT_ROLES = frozenset({Role.admin, Role.hq, Role.marketer})


def require_segments(principal: Principal, what: str = "brand-wide segments") -> None:
    """Forbidden unless the caller may see and define segments (or another brand-wide view) across the brand."""
    if principal.role not in SEGMENT_ROLES:
        raise Forbidden(f"a {principal.role} cannot use {what}")


def check_rule_for(principal: Principal, rule: Any) -> None:
    """422 at the node when a role that sees personal data masked asks for its value (see rules)."""
    if principal.role in NAME_MASKED_ROLES:
        rules.check_not_personal(rule)


def out(segment: Segment) -> SegmentOut:
    return SegmentOut.model_validate(segment, from_attributes=True)


@router.get("", response_model=list[SegmentOut], summary="Every segment")
def list_segments(principal: ReaderDep, session: SessionDep) -> list[SegmentOut]:
    require_segments(principal)
    return [out(s) for s in service.list_(session)]


@router.post("", response_model=SegmentOut, status_code=201, summary="Define a segment (computed now)")
def create_segment(body: SegmentIn, principal: ReaderDep, session: SessionDep) -> SegmentOut:
    """201; 422 with `path` pointing at the offending node of a bad rule; 409 for a taken name."""
    require_segments(principal)
    check_rule_for(principal, body.rule)
    segment = service.create(
        session,
        name=body.name,
        rule=body.rule,
        description=body.description,
        actor=principal.actor,
        compute=body.compute,
    )
    return out(segment)


@router.post("/preview", response_model=PreviewOut, summary="Size and a sample of a rule, not saved")
def preview(body: PreviewIn, principal: ReaderDep, session: SessionDep) -> PreviewOut:
    require_segments(principal)
    check_rule_for(principal, body.rule)
    result = service.preview(session, body.rule, sample=body.sample)
    return PreviewOut(size=result.size, sample=result.sample)


@router.get("/{segment_id}", response_model=SegmentOut, summary="A segment and the state of its computation")
def get_segment(segment_id: int, principal: ReaderDep, session: SessionDep) -> SegmentOut:
    require_segments(principal)
    return out(service.get_or_raise(session, segment_id))


@router.patch("/{segment_id}", response_model=SegmentOut, summary="Rename or change the rule (recomputes)")
def update_segment(
    segment_id: int, body: SegmentPatch, principal: ReaderDep, session: SessionDep
) -> SegmentOut:
    require_segments(principal)
    segment = service.get_or_raise(session, segment_id)
    if body.rule is not None:
        check_rule_for(principal, body.rule)
    service.update(session, segment, rule=body.rule, name=body.name, description=body.description)
    return out(segment)


@router.delete("/{segment_id}", status_code=204, summary="Delete a segment")
def delete_segment(segment_id: int, principal: ReaderDep, session: SessionDep) -> Response:
    require_segments(principal)
    service.delete_(session, service.get_or_raise(session, segment_id))
    return Response(status_code=204)


@router.post(
    "/{segment_id}/refresh",
    response_model=ChangeOut,
    responses={422: {"description": "The computation failed; the segment is marked failed with the reason"}},
    summary="Recompute everyone's membership now",
)
def refresh_segment(segment_id: int, principal: ReaderDep, session: SessionDep) -> ChangeOut | JSONResponse:
    """200 with what changed; 422 with the error when the computation fails (the segment shows it too)."""
    require_segments(principal)
    segment = service.get_or_raise(session, segment_id)
    change = service.refresh(session, segment, kind="full")
    if change is None:
        # Answered, not raised: the request's transaction must commit the segment's failed state.
        return JSONResponse({"detail": segment.error, "status": segment.status.value}, status_code=422)
    return ChangeOut(size=change.size, entered=change.entered, exited=change.exited)


@router.get("/{segment_id}/members", response_model=MembersOut, summary="Profile ids in the segment")
def list_members(
    segment_id: int,
    principal: ReaderDep,
    session: SessionDep,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> MembersOut:
    require_segments(principal)
    ids = list(service.members(session, service.get_or_raise(session, segment_id), limit=limit, after=after))
    return MembersOut(profile_ids=ids, next_after=ids[-1] if len(ids) == limit else None)


@router.get("/{segment_id}/history", response_model=list[SizeOut], summary="Size after each computation")
def size_history(segment_id: int, principal: ReaderDep, session: SessionDep) -> list[SizeOut]:
    require_segments(principal)
    segment = service.get_or_raise(session, segment_id)
    return [SizeOut.model_validate(h, from_attributes=True) for h in service.history(session, segment)]


@router.get("/{segment_id}/export.csv", summary="The members as CSV")
def export(segment_id: int, principal: ReaderDep, session: SessionDep) -> StreamingResponse:
    require_segments(principal)
    segment = service.get_or_raise(session, segment_id)
    filename = f"segment-{segment.id}.csv"
    return StreamingResponse(
        service.stream_csv(segment.id),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.put(
    "/{segment_id}/wechat-tag",
    response_model=WechatTagOut,
    status_code=202,
    summary="Mirror the segment as an Official Account user tag",
)
def link_wechat_tag(
    segment_id: int, body: WechatTagIn, principal: ReaderDep, session: SessionDep
) -> WechatTagOut:
    """202: the worker creates the tag and keeps the members' openids on it as the segment changes."""
    require_segments(principal)
    segment = service.get_or_raise(session, segment_id)
    return WechatTagOut.model_validate(
        wechat_tags.link(session, segment, body.account, tag_name=body.tag_name), from_attributes=True
    )


@router.get(
    "/{segment_id}/wechat-tags", response_model=list[WechatTagOut], summary="The segment's WeChat tags"
)
def list_wechat_tags(segment_id: int, principal: ReaderDep, session: SessionDep) -> list[WechatTagOut]:
    require_segments(principal)
    segment = service.get_or_raise(session, segment_id)
    return [
        WechatTagOut.model_validate(t, from_attributes=True) for t in wechat_tags.links(session, segment.id)
    ]
