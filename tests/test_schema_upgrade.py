"""A database made by the previous release (messages without `edited_at` and `deleted_at`,
no full-text index) keeps its data and works after an upgrade's first start."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import MetaData, inspect, text
from sqlalchemy.schema import CreateTable
from sqlmodel import SQLModel

from app.db import add_missing_columns, create_schema, make_engine

NEW_COLUMNS = {"edited_at", "deleted_at"}


def _old_database(path: Path) -> str:
    """Today's schema less what this release added, with a tenant, users and a message."""
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    old = MetaData()
    for table in SQLModel.metadata.sorted_tables:
        copy = table.to_metadata(old)
        if table.name == "message":
            for name in NEW_COLUMNS:
                copy._columns.remove(copy.c[name])
    with engine.begin() as connection:
        for table in old.sorted_tables:
            connection.execute(CreateTable(table))
        connection.execute(
            text(
                "INSERT INTO tenant (id, name, slug, created_at) VALUES (1, 'Acme', 'acme', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO user (id, username, display_name, password_hash, is_active, created_at)"
                " VALUES (1, 'alice', 'Alice', 'x', 1, '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO conversation (id, tenant_id, kind, created_at) VALUES (1, 1, 'group', '2026-01-01')"
            )
        )
        connection.execute(
            text(
                "INSERT INTO message (id, conversation_id, tenant_id, sender_id, content, created_at)"
                " VALUES (7, 1, 1, 1, 'kept across the upgrade', '2026-01-02')"
            )
        )
    engine.dispose()
    return url


def test_an_older_database_gets_the_new_columns_and_keeps_its_messages(tmp_path: Path) -> None:
    url = _old_database(tmp_path / "old.db")
    engine = make_engine(url)
    assert NEW_COLUMNS.isdisjoint(c["name"] for c in inspect(engine).get_columns("message"))

    create_schema(engine)

    columns = {c["name"] for c in inspect(engine).get_columns("message")}
    assert NEW_COLUMNS <= columns
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT content, edited_at, deleted_at FROM message WHERE id = 7")
        ).one()
        assert tuple(row) == ("kept across the upgrade", None, None)
        # The full-text index holds the messages that were there before it.
        found = connection.execute(
            text("SELECT rowid FROM message_fts WHERE message_fts MATCH 'upgrade'")
        ).all()
        assert [r[0] for r in found] == [7]
    # A second start finds nothing more to add.
    assert add_missing_columns(engine) == []
