"""cap slots keyed by the slot, queued messages out of the receipts index

Revision ID: bc5f02a20ade
Revises: 6c93370dd8ca
Create Date: 2026-12-04 08:25:06.130596
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bc5f02a20ade"
down_revision: str | None = "6c93370dd8ca"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SLOT = ["profile_id", "cap", "window", "n"]
WHERE = sa.text("external_id IS NOT NULL")


def upgrade() -> None:
    # Autogenerate sees neither a primary key's columns nor an index's predicate: written by hand.
    with op.batch_alter_table("message_cap_slots", recreate="always") as batch_op:
        batch_op.drop_constraint("uq_message_cap_slots_profile_id_cap_window_n", type_="unique")
        batch_op.drop_constraint("pk_message_cap_slots", type_="primary")
        batch_op.drop_column("id")
        batch_op.create_primary_key("pk_message_cap_slots", SLOT)
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_index("ix_messages_channel")
        batch_op.create_index(
            "ix_messages_channel", ["channel", "external_id"], postgresql_where=WHERE, sqlite_where=WHERE
        )


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch_op:
        batch_op.drop_index("ix_messages_channel")
        batch_op.create_index("ix_messages_channel", ["channel", "external_id"])
    with op.batch_alter_table("message_cap_slots", recreate="always") as batch_op:
        batch_op.drop_constraint("pk_message_cap_slots", type_="primary")
        batch_op.add_column(
            sa.Column(
                "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), sa.Identity(), nullable=False
            )
        )
        batch_op.create_primary_key("pk_message_cap_slots", ["id"])
        batch_op.create_unique_constraint("uq_message_cap_slots_profile_id_cap_window_n", SLOT)
