"""Messages can be edited and deleted: `message.edited_at` and `message.deleted_at`.

Nullable, so existing rows need no value. `batch_alter_table` is what SQLite needs for
ALTERs in general (it copies the table when it must); adding a column it does in place.

Revision ID: r2_message_edits
Revises: r1_previous_release
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r2_message_edits"
down_revision = "r1_previous_release"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("edited_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("message") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("edited_at")
