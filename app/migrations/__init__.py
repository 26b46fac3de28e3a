"""The database schema's versions: Alembic migrations, the start-up check, and the command.

Deliberate choices, so that nobody "fixes" them:
- Alembic directly, not `reflex db init/makemigrations/migrate`. Reflex's wrapper does see
  our tables (its registry's metadata is SQLModel.metadata) and reads our DATABASE_URL
  (rxconfig.py passes it as `db_url`), but its `migrate` and its schema check run Alembic
  without env.py: no migration lock (several workers would migrate at once), no adoption of a
  database made before migrations, and no filter for the full-text index's tables, which its
  check (run by every `reflex run` once an `alembic.ini` is in the project root) would call
  schema drift (tried with an alembic.ini there: "Detected database schema changes" on a
  database at head, "Target database is not up to date" on an empty one, at every start;
  `reflex db makemigrations` would write a revision dropping the index). So there is no
  alembic.ini in the root, Reflex's `db` commands stay unused, and `python -m
  app.migrations` (scripts/migrate) is the command.
- An empty database is created from the models (`create_all`, the search index) and stamped
  at head, not walked through every revision: quick for the tests' thousands of fresh
  databases. tests/test_migrations.py proves both ways give the same schema.
- A database at an older revision stops the start with one line naming the command, unless
  DATABASE_AUTO_MIGRATE is on. Migrating is an operator's decision (a backup first, one
  process doing it); a half-upgraded fleet must not do it by accident.
- A database made before migrations (tables, no `alembic_version`) counts as behind; the
  command adopts it: it stamps the revision whose schema it has, then upgrades.
- Everything that creates, stamps or migrates holds one lock: on PostgreSQL an advisory
  lock, on SQLite an flock on `<database>-migrations.lock` (not SQLite's own lock: the search
  index is created on a connection of its own and would wait for it). Whoever comes second
  finds the work done.
- The search index (app/search_index.py, idempotent) is also ensured on every start at head:
  it is derived from `message`, so a dropped one is rebuilt rather than refused.
- One transaction per revision: the search index revision runs on a connection of its own,
  which must not wait for locks the revisions before it took.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from app import models  # noqa: F401 - registers the tables on SQLModel.metadata
from app.search_index import MESSAGE_INDEX, POSTGRES_INDEX, create_search_index

logger = logging.getLogger(__name__)

FOLDER = Path(__file__).resolve().parent
# The command an operator runs; every refusal names it.
UPGRADE_COMMAND = "scripts/migrate"
# pg_advisory_lock's key for "the schema is being created or migrated" (any fixed number).
ADVISORY_LOCK_KEY = 727_001_017
BASELINE = "r1_previous_release"
# What a database made by create_all before migrations has, newest first: the revision to
# stamp when every one of these columns is there.
_LEGACY_MARKERS: tuple[tuple[str, set[str]], ...] = (
    ("r2_message_edits", {"edited_at", "deleted_at"}),
)

Outcome = Literal["created", "current", "migrated"]


class SchemaNotCurrent(Exception):
    """The database's schema is not the one this code needs; the message says what to run."""


@dataclass(frozen=True)
class SchemaState:
    revision: str | None  # alembic_version's, None when there is none
    has_tables: bool  # any of the app's tables

    @property
    def empty(self) -> bool:
        return self.revision is None and not self.has_tables

    def describe(self) -> str:
        if self.revision is not None:
            return self.revision
        return "unversioned (made before migrations)"


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """What Alembic compares: not the search index's tables and indexes, which
    app/search_index.py owns (FTS5 makes several shadow tables named after it; PostgreSQL
    has one GIN index over an expression, which no model declares)."""
    return not (name or "").startswith(MESSAGE_INDEX) and name != POSTGRES_INDEX


def migration_options() -> dict[str, Any]:
    return {
        "target_metadata": SQLModel.metadata,
        "render_as_batch": True,  # SQLite's ALTER TABLE does little; batch copies the table
        "transaction_per_migration": True,
        "include_name": include_name,
    }


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(FOLDER))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    revision = _scripts().get_current_head()
    assert revision is not None, "app/migrations/versions has no revision"
    return revision


def schema_state(connection: Connection) -> SchemaState:
    revision = MigrationContext.configure(connection).get_current_revision()
    tables = set(inspect(connection).get_table_names())
    return SchemaState(revision, bool(tables & set(SQLModel.metadata.tables)))


def prepare_schema(engine: Engine, auto_migrate: bool = False) -> Outcome:
    """What a start does: an empty database is created at head; one at head is left alone;
    one behind is migrated when `auto_migrate`, refused otherwise (SchemaNotCurrent)."""
    with migration_lock(engine):
        with engine.connect() as connection:
            state = schema_state(connection)
        if state.empty:
            _create_at_head(engine)
            return "created"
        target = head()
        if state.revision == target:
            # Derived data, idempotent and cheap when present: a lost index comes back.
            create_search_index(engine)
            return "current"
        if not _scripts_know(state.revision):
            raise SchemaNotCurrent(
                f"database schema is at {state.revision}, which this release does not know "
                f"(its newest is {target}): the database is newer than the code"
            )
        if not auto_migrate:
            raise SchemaNotCurrent(
                f"database schema is at {state.describe()}, the app needs {target}: run "
                f"`{UPGRADE_COMMAND}` (or start with DATABASE_AUTO_MIGRATE=true)"
            )
        _upgrade_locked(engine, state, "head")
        return "migrated"


def upgrade(engine: Engine, revision: str = "head") -> tuple[str, str]:
    """The operator's command: adopt a database made before migrations, then upgrade it.
    An empty database is built revision by revision. Returns (from, to)."""
    with migration_lock(engine):
        with engine.connect() as connection:
            state = schema_state(connection)
        _upgrade_locked(engine, state, revision)
        with engine.connect() as connection:
            reached = schema_state(connection).describe()
    return state.describe() if not state.empty else "empty", reached


def downgrade(engine: Engine, revision: str) -> tuple[str, str]:
    """Back to `revision`, keeping the rows (a column a revision added goes with it).
    Returns (from, to)."""
    with migration_lock(engine):
        with engine.connect() as connection:
            before = schema_state(connection).describe()
        _run(engine, lambda config: command.downgrade(config, revision))
        with engine.connect() as connection:
            return before, schema_state(connection).describe()


def _scripts_know(revision: str | None) -> bool:
    if revision is None:
        return True
    try:
        return _scripts().get_revision(revision) is not None
    except CommandError:  # an id none of our revisions has
        return False


def _create_at_head(engine: Engine) -> None:
    SQLModel.metadata.create_all(engine)
    create_search_index(engine)
    _run(engine, lambda config: command.stamp(config, "head"))


def _upgrade_locked(engine: Engine, state: SchemaState, revision: str) -> None:
    if state.revision is None and state.has_tables:
        adopted = adopted_revision(engine)
        logger.warning("adopting a database made before migrations: stamped %s", adopted)
        _run(engine, lambda config: command.stamp(config, adopted))
    _run(engine, lambda config: command.upgrade(config, revision))


def adopted_revision(engine: Engine) -> str:
    """The revision whose schema a database made by `create_all` (no alembic_version) has."""
    inspector = inspect(engine)
    missing = set(SQLModel.metadata.tables) - set(inspector.get_table_names())
    if missing:
        raise SchemaNotCurrent(
            f"the database has some of the app's tables but not {', '.join(sorted(missing))}, "
            "and no alembic_version: it is not a database this app made"
        )
    message_columns = {column["name"] for column in inspector.get_columns("message")}
    for revision, columns in _LEGACY_MARKERS:
        if columns <= message_columns:
            return revision
    return BASELINE


def _run(engine: Engine, step: Any) -> None:
    with engine.connect() as connection:
        step(alembic_config(connection))
        connection.commit()


@contextlib.contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Held by whoever creates, stamps or migrates the schema; others wait for it."""
    if engine.dialect.name == "postgresql":
        with _advisory_lock(engine):
            yield
        return
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:":
        yield  # one process only (in memory), or a database without our lock
        return
    descriptor = os.open(f"{database}-migrations.lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the flock


@contextlib.contextmanager
def _advisory_lock(engine: Engine) -> Iterator[None]:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
