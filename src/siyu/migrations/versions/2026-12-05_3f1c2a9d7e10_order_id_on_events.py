"""order_id on events: a refund is checked against what its order brought in

Revision ID: 3f1c2a9d7e10
Revises: 6980ed2476c4
Create Date: 2026-12-05 11:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3f1c2a9d7e10"
down_revision: str | None = "6980ed2476c4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = sa.text("order_id IS NOT NULL")


def upgrade() -> None:
    # Autogenerate does not see an index's predicate: written by hand. Events stored before keep no order id
    # (their refunds are not re-checked); orders from now on are.
    with op.batch_alter_table("events") as batch_op:
        batch_op.add_column(sa.Column("order_id", sa.String(length=100), nullable=True))
        batch_op.create_index("ix_events_order_id", ["order_id"], postgresql_where=WHERE, sqlite_where=WHERE)


def downgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_index("ix_events_order_id")
        batch_op.drop_column("order_id")
