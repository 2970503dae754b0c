"""The merge review queue."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter
from pydantic import BaseModel

from siyu.auth.principal import HQ_ROLES
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import Forbidden
from siyu.identity import service as identity_service
from siyu.identity.models import MergeReview, ReviewStatus

router = APIRouter(prefix="/api/v1/identity", tags=["identity"])


class ReviewOut(BaseModel):
    id: int
    profile_a_id: int
    profile_b_id: int
    identifier_a_id: int
    identifier_b_id: int
    message_id: str | None
    reason: str
    status: str
    created_at: dt.datetime
    decided_at: dt.datetime | None
    decided_by: str | None


@router.get("/reviews", response_model=list[ReviewOut], summary="Merges the guards held back")
def list_reviews(
    principal: ReaderDep, session: SessionDep, status: ReviewStatus | None = ReviewStatus.open
) -> list[MergeReview]:
    # The queue names profiles of every store: brand-wide roles see it (as the console's Reviews page).
    if principal.role not in HQ_ROLES:
        raise Forbidden(f"the {principal.role} role cannot see merge reviews")
    return list(identity_service.list_reviews(session, status))


@router.post("/reviews/{review_id}/approve", response_model=ReviewOut, summary="Merge the two profiles")
def approve(principal: ReaderDep, session: SessionDep, review_id: int) -> MergeReview:
    return identity_service.decide_review(session, principal, review_id, approve=True)


@router.post("/reviews/{review_id}/reject", response_model=ReviewOut, summary="Keep them apart for good")
def reject(principal: ReaderDep, session: SessionDep, review_id: int) -> MergeReview:
    return identity_service.decide_review(session, principal, review_id, approve=False)
