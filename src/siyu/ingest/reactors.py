"""The one place where domains subscribe to ingested events.

A reactor is called inside the ingest transaction with the batch's stored events; what it writes
commits or rolls back with them. Reactors that talk to the outside world write outbox rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """What a reactor sees of one event that was just stored."""

    id: int
    message_id: str
    type: str
    event: str | None
    profile_id: int
    timestamp_iso: str
    properties: dict[str, object]


Reactor = Callable[[Session, Sequence[StoredEvent]], None]
_reactors: list[tuple[frozenset[str] | None, Reactor]] = []


def subscribe(event_names: frozenset[str] | None, reactor: Reactor) -> None:
    """Call reactor for stored events named in event_names (None: every event)."""
    _reactors.append((event_names, reactor))


def unsubscribe(reactor: Reactor) -> None:
    """Stop calling reactor (tests use it to clean up)."""
    _reactors[:] = [(names, r) for names, r in _reactors if r is not reactor]


def dispatch(session: Session, events: Sequence[StoredEvent]) -> None:
    """Hand each subscribed reactor the events it asked for."""
    for names, reactor in _reactors:
        selected = events if names is None else [e for e in events if (e.event or e.type) in names]
        if selected:
            reactor(session, selected)
