"""Journeys API: drafts, checks, publishing, enrolment, analytics, the library of ready-made journeys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from siyu.auth.models import Role
from siyu.auth.principal import NAME_MASKED_ROLES, Principal
from siyu.deps import ReaderDep, SessionDep
from siyu.errors import BadRequest, Forbidden
from siyu.journeys import library, service
from siyu.journeys.models import Journey, JourneyStatus
from siyu.journeys.schemas import (
    EnrolIn,
    EnrolmentOut,
    EnrolOut,
    IdentifierIn,
    InvalidIdentifier,
    JourneyIn,
    JourneyOut,
    JourneyPatch,
    LibraryOut,
    ProblemOut,
    PublishIn,
    PublishOut,
    VersionOut,
)
from siyu.profiles import service as profiles

router = APIRouter(prefix="/api/v1/journeys", tags=["journeys"])
# Journeys message the brand's customers: the CRM team's to define, as segments are.
JOURNEY_ROLES = frozenset({Role.admin, Role.hq, Role.marketer})


def require_journeys(principal: Principal) -> None:
    """Forbidden unless the caller may define brand-wide journeys."""
    if principal.role not in JOURNEY_ROLES:
        raise Forbidden(f"a {principal.role} cannot manage journeys")


def out(journey: Journey) -> JourneyOut:
    return JourneyOut.model_validate(journey, from_attributes=True)


@router.get("", response_model=list[JourneyOut], summary="Every journey")
def list_journeys(principal: ReaderDep, session: SessionDep) -> list[JourneyOut]:
    require_journeys(principal)
    return [out(j) for j in service.list_(session)]


@router.post("", response_model=JourneyOut, status_code=201, summary="Create a journey (as a draft)")
def create_journey(body: JourneyIn, principal: ReaderDep, session: SessionDep) -> JourneyOut:
    """201; 409 for a taken name. The draft may be incomplete: `validate` lists what is missing."""
    require_journeys(principal)
    journey = service.create(
        session,
        name=body.name,
        description=body.description,
        definition=body.definition,
        actor=principal.actor,
    )
    return out(journey)


@router.get("/library", response_model=list[LibraryOut], summary="Ready-made journeys from the case studies")
def list_library(principal: ReaderDep) -> list[LibraryOut]:
    require_journeys(principal)
    return [
        LibraryOut(key=e.key, name=e.name, description=e.description, needs=e.needs())
        for e in library.entries()
    ]


@router.post(
    "/library/{key}", response_model=JourneyOut, status_code=201, summary="Create a journey from the library"
)
def create_from_library(
    key: str, body: library.InstantiateIn, principal: ReaderDep, session: SessionDep
) -> JourneyOut:
    """The journey as a draft, with its message templates created on the given accounts when missing."""
    require_journeys(principal)
    return out(library.instantiate(session, key, body, actor=principal.actor))


@router.get("/{journey_id}", response_model=JourneyOut, summary="One journey")
def get_journey(journey_id: int, principal: ReaderDep, session: SessionDep) -> JourneyOut:
    require_journeys(principal)
    return out(service.get_or_raise(session, journey_id))


@router.patch("/{journey_id}", response_model=JourneyOut, summary="Edit the draft")
def update_journey(
    journey_id: int, body: JourneyPatch, principal: ReaderDep, session: SessionDep
) -> JourneyOut:
    require_journeys(principal)
    journey = service.get_or_raise(session, journey_id)
    return out(
        service.update_draft(
            session, journey, definition=body.definition, name=body.name, description=body.description
        )
    )


@router.post(
    "/{journey_id}/validate", response_model=list[ProblemOut], summary="What stops the draft being published"
)
def validate_journey(journey_id: int, principal: ReaderDep, session: SessionDep) -> list[ProblemOut]:
    """Every problem with the JSONPath of its node; an empty list means it can be published."""
    require_journeys(principal)
    journey = service.get_or_raise(session, journey_id)
    return [ProblemOut(path=p.path, problem=p.problem) for p in service.problems(session, journey.draft)]


@router.post("/{journey_id}/publish", response_model=PublishOut, summary="Publish the draft as a new version")
def publish_journey(
    journey_id: int, body: PublishIn, principal: ReaderDep, session: SessionDep
) -> PublishOut:
    """422 with every problem when the draft cannot run; in_flight chooses what happens to customers in it."""
    require_journeys(principal)
    journey = service.get_or_raise(session, journey_id)
    published = service.publish(session, journey, in_flight=body.in_flight, actor=principal.actor)
    return PublishOut(
        version_id=published.version.id,
        number=published.version.number,
        migrated=published.migrated,
        kept=published.kept,
        enrolled=published.enrolled,
    )


@router.get("/{journey_id}/versions", response_model=list[VersionOut], summary="Published versions")
def list_versions(journey_id: int, principal: ReaderDep, session: SessionDep) -> list[VersionOut]:
    require_journeys(principal)
    service.get_or_raise(session, journey_id)
    return [VersionOut.model_validate(v, from_attributes=True) for v in service.versions(session, journey_id)]


def _status(journey_id: int, status: JourneyStatus, principal: Principal, session: SessionDep) -> JourneyOut:
    require_journeys(principal)
    return out(service.set_status(session, service.get_or_raise(session, journey_id), status))


@router.post("/{journey_id}/pause", response_model=JourneyOut, summary="Pause: no one enters or moves")
def pause_journey(journey_id: int, principal: ReaderDep, session: SessionDep) -> JourneyOut:
    return _status(journey_id, JourneyStatus.paused, principal, session)


@router.post("/{journey_id}/resume", response_model=JourneyOut, summary="Resume a paused journey")
def resume_journey(journey_id: int, principal: ReaderDep, session: SessionDep) -> JourneyOut:
    return _status(journey_id, JourneyStatus.active, principal, session)


@router.post("/{journey_id}/archive", response_model=JourneyOut, summary="Archive: everyone in flight leaves")
def archive_journey(journey_id: int, principal: ReaderDep, session: SessionDep) -> JourneyOut:
    return _status(journey_id, JourneyStatus.archived, principal, session)


@router.post("/{journey_id}/enrol", response_model=EnrolOut, summary="Enrol a list of customers")
def enrol(journey_id: int, body: EnrolIn, principal: ReaderDep, session: SessionDep) -> EnrolOut:
    """Customers by profile id or identifier into an active manual journey; the same `key` twice enrols once.

    409 for a journey that is not active or enrols on its own entry (event, segment, date). A merged
    profile's id enrols the profile it is now part of; ids and identifiers that name no customer the
    caller may see come back in `not_found_profile_ids` and `not_found`.
    """
    require_journeys(principal)
    personal = sorted({i.type for i in body.identifiers if i.type in ("phone", "email")})
    if personal and principal.role in NAME_MASKED_ROLES:
        # She sees phones and emails masked: who entered and who was not found would unmask them.
        raise Forbidden(
            f"the {principal.role} role cannot enrol by {' or '.join(personal)}: use member ids, "
            "profile ids or a segment (or ask an admin or hq)"
        )
    journey = service.get_or_raise(session, journey_id)
    service.check_manual_entry(session, journey)
    readable = profiles.readable_ids(session, principal, body.profile_ids)
    pids = set(readable.values())
    lost = sorted(set(body.profile_ids) - set(readable))
    missing: list[IdentifierIn] = []
    invalid: list[InvalidIdentifier] = []
    for i, ident in enumerate(body.identifiers):
        try:
            profile = profiles.lookup(session, principal, ident.type, ident.value)
        except BadRequest as exc:
            # One mistyped phone in a list of thousands is reported, not a reason to enrol nobody.
            invalid.append(InvalidIdentifier(index=i, reason=exc.message))
            continue
        if profile is None:
            missing.append(ident)
        else:
            pids.add(profile.id)
    entered = service.enrol(session, journey, [(pid, f"manual:{body.key}", {}) for pid in sorted(pids)])
    return EnrolOut(entered=entered, not_found=missing, not_found_profile_ids=lost, invalid=invalid)


@router.delete("/{journey_id}/enrolments/{profile_id}", status_code=204, summary="Take a customer out")
def remove_customer(journey_id: int, profile_id: int, principal: ReaderDep, session: SessionDep) -> Response:
    require_journeys(principal)
    service.remove(session, service.get_or_raise(session, journey_id), profile_id)
    return Response(status_code=204)


@router.get("/{journey_id}/enrolments", response_model=list[EnrolmentOut], summary="Customers in the journey")
def list_enrolments(
    journey_id: int,
    principal: ReaderDep,
    session: SessionDep,
    profile_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[
        int | None, Query(description="the next page: the last id of the previous one")
    ] = None,
) -> list[EnrolmentOut]:
    """Newest first, `limit` at a time."""
    require_journeys(principal)
    service.get_or_raise(session, journey_id)
    return [
        EnrolmentOut.model_validate(e, from_attributes=True)
        for e in service.enrolments(
            session, journey_id, profile_id=profile_id, limit=limit, before_id=before_id
        )
    ]


@router.get("/{journey_id}/stats", summary="Per node: passed, waiting, messages; conversions; A/B results")
def journey_stats(journey_id: int, principal: ReaderDep, session: SessionDep) -> dict[str, object]:
    require_journeys(principal)
    return service.stats(session, service.get_or_raise(session, journey_id))
