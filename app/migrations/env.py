"""Alembic's environment: the app's models, the app's engine, one transaction per revision.

app/migrations/__init__.py runs Alembic with a connection of its own (passed in
`config.attributes["connection"]`, under the migration lock); the `alembic` CLI, pointed at
this folder, gets an engine made from DATABASE_URL (app/settings.py, the one settings module).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from app import models  # noqa: F401 - registers the tables on SQLModel.metadata
from app.migrations import migration_options


def _run(connection: Connection) -> None:
    context.configure(connection=connection, **migration_options())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from app.db import make_engine
    from app.settings import get_settings

    engine = make_engine(get_settings().database_url)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run them against a database")
run_migrations_online()
