"""Demo tests: staff passwords are hashed with cheap argon2 parameters so creating 53 users stays fast."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from siyu.auth import service as auth_service


@pytest.fixture(autouse=True)
def _fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 with its smallest parameters: the demo creates every staff user with a real hash."""
    monkeypatch.setattr(auth_service, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
