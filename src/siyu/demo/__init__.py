"""The deterministic "Taste of Su" demo brand (domain.md §8), sent through the ingest pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console


@dataclass(frozen=True, slots=True)
class DemoResult:
    """What `siyu demo` prints: how to log in and how to send events."""

    admin_username: str
    admin_password: str
    api_key: str
    write_key: str
    customers: int
    events: int


def run(*, customers: int, seed: int, console: Console | None = None) -> DemoResult:
    """Generate the demo brand into the configured database."""
    raise NotImplementedError("the demo generator is being written")
