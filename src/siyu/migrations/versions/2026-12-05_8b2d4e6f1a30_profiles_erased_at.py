"""profiles.erased_at: a person's data erased on request (PIPL)

Revision ID: 8b2d4e6f1a30
Revises: 3f1c2a9d7e10
Create Date: 2026-12-05 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from siyu.db import UTCDateTime

revision: str = "8b2d4e6f1a30"
down_revision: str | None = "3f1c2a9d7e10"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("profiles") as batch_op:
        batch_op.add_column(sa.Column("erased_at", UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("profiles") as batch_op:
        batch_op.drop_column("erased_at")
