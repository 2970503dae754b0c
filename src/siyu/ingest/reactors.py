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
    # Order value in fen for Order Completed / Order Refunded (see normalize), else 0.
    amount_fen: int = 0
    context: dict[str, object] | None = None


Reactor = Callable[[Session, Sequence[StoredEvent]], None]
_reactors: list[tuple[frozenset[str] | None, Reactor]] = []


def subscribe(event_names: frozenset[str] | None, reactor: Reactor) -> None:
    """Call reactor for stored events named in event_names (None: every event)."""
    _reactors.append((event_names, reactor))


def unsubscribe(reactor: Reactor) -> None:
    """Stop calling reactor (tests use it to clean up)."""
    _reactors[:] = [(names, r) for names, r in _reactors if r is not reactor]


def _install_defaults() -> None:
    """Subscribe the domains' reactors: the one list of who reacts to what."""
    global _installed
    if _installed:
        return
    _installed = True
    # Imported here: those domains import this module for StoredEvent.
    from siyu.channels import service as channels_service
    from siyu.clienteling import service as clienteling_service
    from siyu.journeys import triggers as journey_triggers
    from siyu.lifecycle import service as lifecycle_service
    from siyu.loyalty import reactions as loyalty_reactions
    from siyu.messaging import reactions as messaging_reactions
    from siyu.profiles import service as profiles_service
    from siyu.profiles import tagging
    from siyu.segments import service as segments_service

    subscribe(
        frozenset({"Official Account Followed", "QR Code Scanned", "WeCom Contact Added"}),
        channels_service.count_attributions,
    )
    subscribe(frozenset({"WeCom Contact Deleted"}), clienteling_service.raise_churn_alerts)
    subscribe(profiles_service.CONSENT_EVENTS, profiles_service.record_consents)
    # Every event: earning rules may name any event; the reactor filters by the active rules.
    subscribe(None, loyalty_reactions.react)
    # Then automatic tags and the stage (it reads the tier), then segments (they read both): order matters.
    subscribe(tagging.RELEVANT, tagging.react)
    subscribe(None, lifecycle_service.react)
    subscribe(None, segments_service.react)
    # Who can be messaged where, and what the platforms reported of messages sent.
    subscribe(messaging_reactions.REACH_EVENTS, messaging_reactions.track_reach)
    subscribe(frozenset({messaging_reactions.RECEIPT}), messaging_reactions.record_receipts)
    # Last: journeys read segments, tags and stages as this batch left them.
    subscribe(None, journey_triggers.react)


_installed = False


def dispatch(session: Session, events: Sequence[StoredEvent]) -> None:
    """Hand each subscribed reactor the events it asked for."""
    _install_defaults()
    for names, reactor in _reactors:
        selected = events if names is None else [e for e in events if (e.event or e.type) in names]
        if selected:
            reactor(session, selected)
