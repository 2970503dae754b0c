"""Shared base of request bodies."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Input(BaseModel):
    """A request body: a key it does not know is a 422 naming it (a typo must not be silently dropped)."""

    model_config = ConfigDict(extra="forbid")


class Output(BaseModel):
    """A response body built from an input's fields plus its own: extra attributes are ignored."""

    model_config = ConfigDict(extra="ignore")
