"""The full-text index of messages, filled with the messages already there.

app/search_index.py owns the index (SQLite FTS5 today; whatever each database gets there):
this revision calls it, so a database gets the index the same way whether it was created at
head or migrated. It is idempotent, and it runs on a connection of its own: the revision
before it has committed (transaction_per_migration in env.py), so nothing of ours holds a
lock it would wait for.

Revision ID: r3_search_index
Revises: r2_message_edits
"""

from __future__ import annotations

from alembic import op

from app.search_index import MESSAGE_INDEX, POSTGRES_INDEX, create_search_index

revision = "r3_search_index"
down_revision = "r2_message_edits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_search_index(op.get_bind().engine)


def downgrade() -> None:
    """Removed, not left behind: the older release writes messages without updating it, and
    the upgrade back fills an index only when it creates it."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP INDEX IF EXISTS {POSTGRES_INDEX}")
        return
    for name in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {MESSAGE_INDEX}_{name}")
    op.execute(f"DROP TABLE IF EXISTS {MESSAGE_INDEX}")
