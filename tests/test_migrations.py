"""The schema's migrations (app/migrations), on SQLite and on PostgreSQL: a database of the
previous release keeps every row through the upgrade and the app works on it; a database made
before migrations is adopted; the models and the migrations describe the same schema; a start
against a database that is behind stops with the command to run; several processes creating
or migrating at once is safe."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from app.db import create_schema, make_engine
from app.migrations import (
    ADVISORY_LOCK_KEY,
    BASELINE,
    SchemaNotCurrent,
    adopted_revision,
    downgrade,
    head,
    include_name,
    migration_lock,
    prepare_schema,
    schema_state,
    upgrade,
)
from app.runtime import Runtime
from app.security.passwords import hash_password
from app.settings import FIELDS, STARTUP_FAILURE, Settings, env_name
from tests.backend import ROOT, TEST_ENV, free_port, start_backend

NEW_COLUMNS = ("edited_at", "deleted_at")
# What the previous release stored, one row per table (and two messages), as an old
# database holds it. The user's password is real: the upgraded app signs her in.
PREVIOUS_RELEASE_ROWS: dict[str, list[dict[str, object]]] = {
    "tenant": [{"id": 1, "slug": "acme", "name": "Acme", "created_at": "2026-01-01 00:00:00"}],
    "user": [
        {
            "id": 1,
            "username": "alice",
            "display_name": "Alice",
            "password_hash": hash_password("alice-pass"),
            "default_tenant_id": 1,
            "is_active": True,
            "created_at": "2026-01-01 00:00:00",
        },
        {
            "id": 2,
            "username": "bob",
            "display_name": "Bob",
            "password_hash": "not a hash bob can sign in with",
            "default_tenant_id": 1,
            "is_active": True,
            "created_at": "2026-01-01 00:00:00",
        },
    ],
    "membership": [
        {"id": 1, "user_id": 1, "tenant_id": 1, "role": "admin", "created_at": "2026-01-01"},
        {"id": 2, "user_id": 2, "tenant_id": 1, "role": "member", "created_at": "2026-01-01"},
    ],
    "authtoken": [
        {
            "id": 1,
            "token_hash": "0" * 64,
            "user_id": 1,
            "tenant_id": 1,
            "created_at": "2026-01-01 00:00:00",
            "expires_at": "2027-01-01 00:00:00",
        }
    ],
    "notification": [
        {
            "id": 1,
            "tenant_id": 1,
            "user_id": 2,
            "type": "mention",
            "title": "Alice mentioned you",
            "body": "kept across the upgrade",
            "created_at": "2026-01-02 00:00:00",
        }
    ],
    "conversation": [
        {
            "id": 1,
            "tenant_id": 1,
            "kind": "group",
            "title": "Team",
            "created_by": 1,
            "created_at": "2026-01-01 00:00:00",
            "last_message_id": 8,
        }
    ],
    "conversationmember": [
        {"conversation_id": 1, "user_id": 1, "joined_at": "2026-01-01", "last_read_message_id": 8},
        {"conversation_id": 1, "user_id": 2, "joined_at": "2026-01-01", "unread_count": 2},
    ],
    "message": [
        {
            "id": 7,
            "conversation_id": 1,
            "tenant_id": 1,
            "sender_id": 1,
            "content": "kept across the upgrade",
            "created_at": "2026-01-02 00:00:00",
        },
        {
            "id": 8,
            "conversation_id": 1,
            "tenant_id": 1,
            "sender_id": 1,
            "content": "and this one, with ünïcode",
            "created_at": "2026-01-02 00:01:00",
        },
    ],
}
_ZERO_DEFAULTS = {"last_read_message_id": 0, "unread_count": 0}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chat.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


def _insert_previous_release_rows(engine: Engine) -> None:
    with engine.begin() as connection:
        for table, rows in PREVIOUS_RELEASE_ROWS.items():
            for row in rows:
                if table == "conversationmember":
                    row = {**_ZERO_DEFAULTS, **row}
                columns = ", ".join(f'"{name}"' for name in row)
                values = ", ".join(f":{name}" for name in row)
                connection.execute(
                    text(f'INSERT INTO "{table}" ({columns}) VALUES ({values})'), row
                )
            if engine.dialect.name == "postgresql" and "id" in rows[0]:
                # Ids given by hand leave the sequence behind; the old release's came from it.
                connection.execute(
                    text(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), :id)"),
                    {"id": max(int(str(row["id"])) for row in rows)},
                )


def _rows(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every row the previous release wrote, in its columns (in the previous release's order)."""
    snapshot = {}
    with engine.connect() as connection:
        for table in PREVIOUS_RELEASE_ROWS:
            columns = [c["name"] for c in inspect(connection).get_columns(table)]
            old = ", ".join(f'"{c}"' for c in columns if c not in NEW_COLUMNS)
            result = connection.execute(text(f'SELECT {old} FROM "{table}" ORDER BY 1, 2'))
            snapshot[table] = [tuple(row) for row in result]
    return snapshot


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": include_name})
        return list(compare_metadata(context, SQLModel.metadata))


def _revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return schema_state(connection).revision


def _settings(database_url: str) -> Settings:
    return replace(
        Settings(), database_url=database_url, sse_heartbeat_seconds=0, seed_demo_data=False
    )


# -- the upgrade keeps the data ---------------------------------------------------------------


async def test_a_previous_release_database_keeps_every_row_and_works_after_the_upgrade(
    engine: Engine, database_url: str
) -> None:
    upgrade(engine, BASELINE)
    assert _revision(engine) == BASELINE
    message_columns = {c["name"] for c in inspect(engine).get_columns("message")}
    assert message_columns.isdisjoint(NEW_COLUMNS)
    _insert_previous_release_rows(engine)
    before = _rows(engine)

    assert upgrade(engine) == (BASELINE, head())

    assert _revision(engine) == head()
    assert _rows(engine) == before
    with engine.connect() as connection:
        edits = connection.execute(
            text("SELECT id, edited_at, deleted_at FROM message ORDER BY id")
        )
        assert [tuple(row) for row in edits] == [(7, None, None), (8, None, None)]

    runtime = Runtime(_settings(database_url))
    await runtime.start()
    try:
        alice = (await runtime.accounts.sign_in("alice", "alice-pass", "127.0.0.1")).principal
        history = await runtime.messages.history(alice, 1, before=None, limit=10)
        assert [(m.id, m.content) for m in history.items] == [
            (8, "and this one, with ünïcode"),
            (7, "kept across the upgrade"),
        ]
        edited = await runtime.messages.edit(alice, 1, 7, "edited after the upgrade")
        assert edited.content == "edited after the upgrade"
        sent = await runtime.messages.send(alice, 1, "sent after the upgrade")
        assert sent.message.id > 8
        # The search index holds the messages from before it existed (SQLite's FTS5), and
        # follows the edit.
        hits = await runtime.search.search(alice, "upgrade")
        assert {hit.message_id for hit in hits} == {7, sent.message.id}
    finally:
        await runtime.stop()


@pytest.mark.parametrize("with_edits", [False, True], ids=["previous-release", "edits"])
def test_a_database_made_before_migrations_is_adopted_then_upgraded(
    engine: Engine, with_edits: bool
) -> None:
    """create_all as the releases before migrations ran it: no alembic_version."""
    legacy = MetaData()
    for table in SQLModel.metadata.sorted_tables:
        copy = table.to_metadata(legacy)
        if table.name == "message" and not with_edits:
            for name in NEW_COLUMNS:
                copy._columns.remove(copy.c[name])
    legacy.create_all(engine)
    _insert_previous_release_rows(engine)
    before = _rows(engine)

    with pytest.raises(SchemaNotCurrent) as refused:
        prepare_schema(engine)
    assert str(refused.value) == (
        f"database schema is at unversioned (made before migrations), the app needs {head()}: "
        "run `scripts/migrate` (or start with DATABASE_AUTO_MIGRATE=true)"
    )
    assert adopted_revision(engine) == ("r2_message_edits" if with_edits else BASELINE)

    assert upgrade(engine) == ("unversioned (made before migrations)", head())

    assert _rows(engine) == before
    assert _differences(engine) == []
    assert prepare_schema(engine) == "current"


async def test_a_rollback_to_the_previous_release_and_back_keeps_the_rows(
    engine: Engine, database_url: str
) -> None:
    """Downgrade for a rollback, the old release writes a message, upgrade again: every row
    is there and the search finds the message written while the index was gone."""
    upgrade(engine, BASELINE)
    _insert_previous_release_rows(engine)
    upgrade(engine)
    before = _rows(engine)

    assert downgrade(engine, BASELINE) == (head(), BASELINE)
    assert _rows(engine) == before
    assert {c["name"] for c in inspect(engine).get_columns("message")}.isdisjoint(NEW_COLUMNS)
    with engine.begin() as connection:  # the previous release at work
        connection.execute(
            text(
                "INSERT INTO message (conversation_id, tenant_id, sender_id, content, created_at)"
                " VALUES (1, 1, 1, 'written during the rollback', '2026-01-03 00:00:00')"
            )
        )
    upgrade(engine)
    assert _differences(engine) == []

    runtime = Runtime(_settings(database_url))
    await runtime.start()
    try:
        alice = (await runtime.accounts.sign_in("alice", "alice-pass", "127.0.0.1")).principal
        hits = await runtime.search.search(alice, "rollback")
        assert [hit.message_id for hit in hits] == [9]
    finally:
        await runtime.stop()


def test_a_database_with_only_some_of_the_tables_is_not_adopted(engine: Engine) -> None:
    SQLModel.metadata.tables["tenant"].create(engine)
    with pytest.raises(SchemaNotCurrent, match="not a database this app made"):
        upgrade(engine)


# -- models and migrations agree ----------------------------------------------------------------


def test_the_migrations_build_the_schema_the_models_describe(engine: Engine) -> None:
    """What makes "every schema change is a migration" hold: a model changed without a
    revision fails here (the baseline shows the comparison sees such a change)."""
    upgrade(engine, BASELINE)
    missing = {str(diff) for diff in _differences(engine)}
    assert len(missing) == 2
    assert all("add_column" in diff and "'message'" in diff for diff in missing)

    upgrade(engine)
    assert _differences(engine) == []


def test_an_empty_database_is_created_at_head_with_the_same_schema(engine: Engine) -> None:
    assert prepare_schema(engine) == "created"
    assert _revision(engine) == head()
    assert _differences(engine) == []
    assert prepare_schema(engine) == "current"
    if engine.dialect.name == "sqlite":
        assert "message_fts" in inspect(engine).get_table_names()


def test_create_schema_migrates_at_start_only_when_told_to(engine: Engine) -> None:
    upgrade(engine, BASELINE)
    _insert_previous_release_rows(engine)
    with pytest.raises(SchemaNotCurrent, match=f"at {BASELINE}, the app needs {head()}"):
        create_schema(engine)
    assert _revision(engine) == BASELINE

    create_schema(engine, auto_migrate=True)
    assert _revision(engine) == head()


def test_a_database_newer_than_the_code_is_refused(engine: Engine) -> None:
    prepare_schema(engine)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = 'r9_from_the_future'"))
    with pytest.raises(SchemaNotCurrent, match="newer than the code"):
        prepare_schema(engine, auto_migrate=True)


# -- the real starts refuse a database that is behind -------------------------------------------


def _clean_env(**values: str) -> dict[str, str]:
    names = {env_name(name) for name in FIELDS}
    env = {k: v for k, v in os.environ.items() if k not in names}
    return {**env, "BOOTSTRAP_LOCK": "requirements/test.txt", **values}


def _database_behind(engine: Engine) -> None:
    upgrade(engine, BASELINE)
    _insert_previous_release_rows(engine)


@pytest.mark.server
def test_scripts_serve_refuses_a_database_behind_with_the_command_to_run(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    _database_behind(engine)
    served = subprocess.run(
        [str(ROOT / "scripts" / "serve")],
        check=False,
        cwd=ROOT,
        env=_clean_env(
            **TEST_ENV,
            DATABASE_URL=database_url,
            REFLEX_WEB_WORKDIR=str(tmp_path / ".web"),
            REFLEX_STATES_WORKDIR=str(tmp_path / ".states"),
            HOST="127.0.0.1",
            PORT=str(free_port()),
            WORKERS="2",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert served.returncode == STARTUP_FAILURE
    assert served.stderr == (
        f"database schema is at {BASELINE}, the app needs {head()}: run `scripts/migrate` "
        "(or start with DATABASE_AUTO_MIGRATE=true)\n"
    )
    assert "Uvicorn running" not in served.stdout
    assert _revision(engine) == BASELINE


@pytest.mark.server
def test_reflex_run_refuses_a_database_behind_with_the_command_to_run(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    """`reflex run` has no step before the server: the runtime's start says it, and ends the
    process."""
    _database_behind(engine)
    with pytest.raises(RuntimeError) as raised:
        start_backend(tmp_path, {"DATABASE_URL": database_url}, backend_only=True)
    log = str(raised.value)
    assert log.startswith("the server exited early")
    assert f"database schema is at {BASELINE}, the app needs {head()}: run `scripts/migrate`" in log
    assert "Traceback" not in log
    assert _revision(engine) == BASELINE


def test_scripts_migrate_upgrades_and_says_from_what_to_what(
    engine: Engine, database_url: str
) -> None:
    _database_behind(engine)
    before = _rows(engine)
    migrated = subprocess.run(
        [str(ROOT / "scripts" / "migrate")],
        check=False,
        cwd=ROOT,
        env=_clean_env(DATABASE_URL=database_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.splitlines()[-1] == f"database schema: {BASELINE} -> {head()}"
    assert _rows(engine) == before


# -- several processes at once -----------------------------------------------------------------

PROCESSES = 4


@dataclass(frozen=True)
class Ended:
    returncode: int
    stdout: str
    stderr: str


def _waiting_for_the_lock(engine: Engine) -> int:
    """Processes blocked on the migration lock: PostgreSQL's ungranted advisory locks, or the
    kernel's blocked flocks on SQLite's lock file (/proc/locks marks them `->`)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as connection:
            waiting = connection.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND NOT granted AND objid = :key"
                ),
                {"key": ADVISORY_LOCK_KEY},
            ).scalar_one()
            return int(waiting)
    inode = os.stat(f"{engine.url.database}-migrations.lock").st_ino
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line and f":{inode} " in line)


def _at_once(engine: Engine, database_url: str, auto_migrate: bool) -> list[Ended]:
    """PROCESSES starts' `prepare`, let go together: the test holds the lock until every
    one of them waits for it (which also shows that they do wait)."""
    env = _clean_env(DATABASE_URL=database_url, DATABASE_AUTO_MIGRATE=str(auto_migrate).lower())
    with migration_lock(engine):
        started = [
            subprocess.Popen(
                [sys.executable, "-m", "app.migrations", "prepare"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(PROCESSES)
        ]
        deadline = time.monotonic() + 60
        while _waiting_for_the_lock(engine) < PROCESSES:
            assert all(p.poll() is None for p in started), "a start did not wait for the lock"
            assert time.monotonic() < deadline, "the starts did not all wait for the lock"
            time.sleep(0.05)
    ended = []
    for process in started:
        stdout, stderr = process.communicate(timeout=120)
        ended.append(Ended(process.returncode, stdout, stderr))
    return ended


def test_workers_starting_at_once_on_an_empty_database_create_it_once(
    engine: Engine, database_url: str
) -> None:
    ended = _at_once(engine, database_url, auto_migrate=False)
    assert [e.returncode for e in ended] == [0] * PROCESSES, [e.stderr for e in ended]
    outcomes = sorted(e.stdout.split()[2] for e in ended)
    assert outcomes == ["created"] + ["current"] * (PROCESSES - 1)
    assert _differences(engine) == []


def test_workers_migrating_at_once_migrate_once_and_keep_the_data(
    engine: Engine, database_url: str
) -> None:
    _database_behind(engine)
    before = _rows(engine)
    ended = _at_once(engine, database_url, auto_migrate=True)
    assert [e.returncode for e in ended] == [0] * PROCESSES, [e.stderr for e in ended]
    outcomes = sorted(e.stdout.split()[2] for e in ended)
    assert outcomes == ["current"] * (PROCESSES - 1) + ["migrated"]
    assert _rows(engine) == before
    assert _revision(engine) == head()
    assert _differences(engine) == []
