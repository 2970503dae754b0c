"""users.sessions_ended_at: disabling a user ends their sessions for good

Revision ID: 5d7e9a1c3b20
Revises: 8b2d4e6f1a30
Create Date: 2026-12-05 17:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import siyu.db

revision: str = "5d7e9a1c3b20"
down_revision: str | None = "8b2d4e6f1a30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sessions_ended_at", siyu.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("sessions_ended_at")
