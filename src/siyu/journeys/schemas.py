"""API shapes of journeys."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from siyu.journeys.models import EnrolmentStatus, JourneyStatus
from siyu.schemas import Input


class JourneyIn(Input):
    name: str = Field(min_length=1, max_length=120)
    description: str = ""
    definition: dict[str, Any] = Field(default_factory=dict, description="A definition of docs/journeys.md")


class JourneyPatch(Input):
    name: str | None = Field(default=None, min_length=1, max_length=120)
    description: str | None = None
    definition: dict[str, Any] | None = None


class ProblemOut(BaseModel):
    path: str
    problem: str


class JourneyOut(BaseModel):
    id: int
    name: str
    description: str
    status: JourneyStatus
    draft: dict[str, Any]
    current_version_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: str


class PublishIn(Input):
    in_flight: Literal["keep", "migrate"] = Field(
        default="keep",
        description="Customers in flight on the previous version: keep it, or move to the same node of the new one",
    )


class PublishOut(BaseModel):
    version_id: int
    number: int
    migrated: int
    kept: int
    enrolled: int


class VersionOut(BaseModel):
    id: int
    number: int
    definition: dict[str, Any]
    published_at: dt.datetime
    published_by: str
    migration: dict[str, Any]


class IdentifierIn(Input):
    type: str
    value: str


class EnrolIn(Input):
    profile_ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        default_factory=list, max_length=10_000
    )
    identifiers: list[IdentifierIn] = Field(default_factory=list, max_length=10_000)
    key: str = Field(
        default="manual", max_length=120, description="Names this entry: the same key twice enrols once"
    )


class InvalidIdentifier(BaseModel):
    index: int = Field(description="Its place in `identifiers`")
    reason: str


class EnrolOut(BaseModel):
    entered: int
    not_found: list[IdentifierIn]
    not_found_profile_ids: list[int] = Field(default_factory=list)
    invalid: list[InvalidIdentifier] = Field(
        default_factory=list, description="Identifiers that are not one (a phone that is no number): left out"
    )


class EnrolmentOut(BaseModel):
    id: int
    version_id: int
    profile_id: int
    node: str
    status: EnrolmentStatus
    due_at: dt.datetime | None
    wait_event: str | None
    variant: str | None
    entered_at: dt.datetime
    ended_at: dt.datetime | None
    end_reason: str | None
    path: list[list[str]] = Field(description="The nodes passed, oldest first: [node, outcome, ISO time]")


class LibraryOut(BaseModel):
    key: str
    name: str
    description: str
    needs: list[str]
