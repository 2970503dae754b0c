"""What the console pages show, built from the services' masked outputs (no template queries the database)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from siyu.auth.principal import NAME_MASKED_ROLES, Principal
from siyu.console.rendering import DISPLAY_TZ
from siyu.db import utcnow
from siyu.identity.models import Identifier, MergeKind, MergeReview
from siyu.ingest.models import DeadLetter, QueuedBatch
from siyu.profiles import api as profiles_api
from siyu.profiles import service as profiles_service
from siyu.profiles.masking import (
    mask_identifier,
    mask_raw_payload,
    mask_text,
)
from siyu.profiles.schemas import MergeOut, ProfileOut, TimelinePage

TIMELINE_PAGE = 20
PAYLOAD_PREVIEW = 120


@dataclass(frozen=True, slots=True)
class MergeRow:
    """One line of the merge history, told from the point of view of the profile shown."""

    merge: MergeOut
    summary: str
    other_id: int | None


def merge_rows(profile_id: int, merges: Sequence[MergeOut]) -> list[MergeRow]:
    """The merge history of profile_id with a sentence and the other profile of each entry."""
    rows = []
    for m in merges:
        if m.kind == MergeKind.merge:
            if m.profile_id == profile_id:
                summary, other = f"Merged profile #{m.other_profile_id} into this profile", m.other_profile_id
            elif m.other_profile_id == profile_id:
                summary, other = f"This profile was merged into #{m.profile_id}", m.profile_id
            else:
                summary = f"#{m.profile_id} absorbed #{m.other_profile_id} before joining this profile"
                other = m.other_profile_id
        elif m.profile_id == profile_id:
            summary, other = f"Split profile #{m.other_profile_id} off this profile", m.other_profile_id
        elif m.other_profile_id == profile_id:
            summary, other = f"Split off from profile #{m.profile_id}", m.profile_id
        else:
            summary = f"#{m.profile_id} was split into #{m.other_profile_id}"
            other = m.other_profile_id
        rows.append(MergeRow(m, summary, other))
    return rows


def has_hidden_contact(profile: ProfileOut) -> bool:
    """Whether the profile holds a phone or email that a reveal would show in full."""
    # Masking leaves its mark (****, ***@): phones are also found by shape, in any identifier or trait.
    if any(i.type in ("phone", "email") or "****" in i.value for i in profile.identities):
        return True
    return "****" in json.dumps(profile.traits, ensure_ascii=False) or "***@" in json.dumps(profile.traits)


def trait_items(traits: dict[str, Any]) -> list[tuple[str, str]]:
    """Traits as (key, text) sorted by key; structured values as compact JSON."""
    items = []
    for key in sorted(traits):
        value = traits[key]
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        items.append((key, text))
    return items


def timeline_page(
    session: Session, principal: Principal, profile_id: int, cursor: str | None
) -> TimelinePage:
    """One page of the profile's events, newest first, masked exactly as the timeline API masks them."""
    # The API function is the one place that pairs the keyset cursor with the masking rules.
    return profiles_api.timeline(principal, session, profile_id, limit=TIMELINE_PAGE, cursor=cursor)


@dataclass(frozen=True, slots=True)
class ReviewRow:
    review: MergeReview
    identifier_a: str
    identifier_b: str
    live_a: int
    live_b: int


def review_rows(session: Session, reviews: Sequence[MergeReview]) -> list[ReviewRow]:
    """Reviews with their two identifiers (masked) and the live profiles they now belong to."""
    ids = {r.identifier_a_id for r in reviews} | {r.identifier_b_id for r in reviews}
    idents = {i.id: i for i in session.execute(select(Identifier).where(Identifier.id.in_(ids))).scalars()}

    def label(identifier_id: int) -> str:
        ident = idents.get(identifier_id)
        if ident is None:
            return f"identifier #{identifier_id}"
        return f"{ident.type} {mask_identifier(ident.type, ident.value, reveal=False)}"

    return [
        ReviewRow(
            r,
            label(r.identifier_a_id),
            label(r.identifier_b_id),
            profiles_service.live_id(session, r.profile_a_id),
            profiles_service.live_id(session, r.profile_b_id),
        )
        for r in reviews
    ]


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    letter: DeadLetter
    reason: str
    preview: str
    payload: str
    truncated: bool


def _masked_body(raw: str, mask_names: bool) -> tuple[str, str, bool]:
    """A stored body masked for display: (indented text, one-line preview, whether the preview is cut)."""
    text = mask_raw_payload(raw, reveal=False, mask_names=mask_names, indent=2)
    flat = " ".join(text.split())
    truncated = len(flat) > PAYLOAD_PREVIEW
    return text, (flat[: PAYLOAD_PREVIEW - 1] + "…" if truncated else flat), truncated


def dead_letter_rows(principal: Principal, letters: Sequence[DeadLetter]) -> list[DeadLetterRow]:
    """Dead letters with their payload masked as the 360 masks traits, and a one-line preview."""
    mask_names = principal.role in NAME_MASKED_ROLES
    rows = []
    for letter in letters:
        text, preview, truncated = _masked_body(letter.payload, mask_names)
        reason = mask_text(letter.reason, reveal=False, mask_names=mask_names)
        rows.append(DeadLetterRow(letter, reason, preview, text, truncated))
    return rows


@dataclass(frozen=True, slots=True)
class FailedBatchRow:
    batch: QueuedBatch
    error: str
    preview: str
    events: str


def failed_batch_rows(principal: Principal, batches: Sequence[QueuedBatch]) -> list[FailedBatchRow]:
    """Parked batches with their error and events masked as dead letters are."""
    mask_names = principal.role in NAME_MASKED_ROLES
    rows = []
    for batch in batches:
        text, preview, _ = _masked_body(batch.events, mask_names)
        error = mask_text(batch.last_error or "", reveal=False, mask_names=mask_names)
        rows.append(FailedBatchRow(batch, error, preview, text))
    return rows


def chart_series(series: Sequence[tuple[str, int]]) -> dict[str, list[Any]]:
    """events_per_minute's (HH:MM UTC, count) pairs as chart data labelled in the display time zone."""
    offset = DISPLAY_TZ.utcoffset(None)
    labels = [(dt.datetime.strptime(minute, "%H:%M") + offset).strftime("%H:%M") for minute, _ in series]
    return {"labels": labels, "counts": [n for _, n in series]}


@dataclass(frozen=True, slots=True)
class Membership:
    """The member card of the 360 page: balance, tier and its progress, lots, latest postings, vouchers."""

    member: Any
    lots: Sequence[Any]
    postings: Sequence[Any]
    vouchers: Sequence[Any]
    qualifying_points: int
    next_tier: str | None
    next_threshold: int | None


def membership(session: Session, profile_id: int) -> Membership | None:
    """The profile's membership, or None when the customer is not a member."""
    from siyu.loyalty import service as loyalty
    from siyu.loyalty import tiers, vouchers

    member = loyalty.get_member_by_profile(session, profile_id)
    if member is None:
        return None
    points, _spend = tiers.qualifying(session, member, utcnow())
    ranked = [t for t in tiers.list_tiers(session) if t.threshold_points is not None]
    current = next((t.rank for t in tiers.list_tiers(session) if t.name == member.tier), -1)
    upcoming = next((t for t in ranked if t.rank > current), None)
    return Membership(
        member=member,
        lots=loyalty.lots(session, member.id),
        postings=loyalty.history(session, member.id, limit=10),
        vouchers=vouchers.member_vouchers(session, member.id)[:10],
        qualifying_points=points,
        next_tier=upcoming.name if upcoming else None,
        next_threshold=upcoming.threshold_points if upcoming else None,
    )
