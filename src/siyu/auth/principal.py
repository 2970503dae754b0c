"""Who is calling: a console user or an API key, with the role and scope it acts in."""

from __future__ import annotations

from dataclasses import dataclass

from siyu.auth.models import Role

# Roles that may reveal a full phone number or email (each reveal is written to the audit log).
REVEAL_ROLES = frozenset({Role.admin, Role.hq, Role.store_manager, Role.sales_associate})
# Roles that see customers' names masked: they work on segments and content, not on people.
NAME_MASKED_ROLES = frozenset({Role.marketer})
# Roles that may change the identity graph (unmerge, review decisions).
IDENTITY_ADMIN_ROLES = frozenset({Role.admin, Role.hq})
# Roles that see brand-wide operations: ingestion health and the merge review queue.
HQ_ROLES = frozenset({Role.admin, Role.hq, Role.marketer})


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller; every scoped read takes one."""

    kind: str  # "user" or "api_key"
    id: int
    name: str
    role: Role
    user_id: int | None = None
    region_id: int | None = None
    store_id: int | None = None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"{self.kind}:{self.id}:{self.name}"

    def can_reveal(self) -> bool:
        return self.role in REVEAL_ROLES

    def can_edit_identity(self) -> bool:
        return self.role in IDENTITY_ADMIN_ROLES
