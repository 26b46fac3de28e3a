"""The database engine and the one way to run blocking database work from async code."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, create_engine

from app import models  # noqa: F401 - registers the tables on SQLModel.metadata
from app.settings import PROJECT_ROOT

T = TypeVar("T")
logger = logging.getLogger(__name__)

# The default home of the SQLite database (settings._default_database_url).
DATA_FOLDER = PROJECT_ROOT / ".data"


class DatabaseUnavailable(Exception):
    """The database is locked or unreachable; callers answer 503."""


# How long a statement waits for SQLite's lock before its caller gets a 503.
BUSY_TIMEOUT_SECONDS = 5.0
# Once a call has waited that long in vain, calls in the next BUSY_TIMEOUT_SECONDS wait only
# this long: callers that queue up behind each other (a conversation's sends take turns)
# must not each wait out the full timeout, or the tenth answers after fifty seconds.
LOCKED_OUT_BUSY_TIMEOUT_SECONDS = 0.2


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        _prepare_sqlite_file(database_url)
        engine = create_engine(
            database_url,
            connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_SECONDS},
        )
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    return create_engine(database_url, pool_pre_ping=True)


def _prepare_sqlite_file(database_url: str) -> None:
    """The database file (password hashes, token digests, every message) and the folder
    the app makes for it, readable by this user only: 0600 and 0700.

    SQLite gives the -wal and -shm files the mode of the database file, so creating the
    file 0600 before SQLite opens it covers all three. A folder named in DATABASE_URL that
    already exists is left alone (it may be shared, like /tmp), except the app's own
    `.data`, which earlier versions created 0755.
    """
    path = database_url.split("///", 1)[-1].split("?", 1)[0]
    if not path or path == ":memory:":
        return
    database = Path(path)
    folder = database.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        if folder.resolve() == DATA_FOLDER.resolve():
            folder.chmod(0o700)
        os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))
        for file in (database, Path(f"{database}-wal"), Path(f"{database}-shm")):
            if file.exists():
                file.chmod(0o600)
    except OSError as exc:  # not ours to change (another owner): SQLite decides
        logger.warning("could not make the database private (%s)", exc)


def _tune_sqlite(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while one writer commits; busy_timeout waits for the lock.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_schema(engine: Engine, auto_migrate: bool = False) -> None:
    """Make the database ready for this code: an empty one is created at the newest schema;
    one whose schema is behind is migrated if `auto_migrate`, else the start is refused
    (app.migrations.SchemaNotCurrent, naming the command). Safe when several workers start
    at once: one does the work under a lock, the others then find it done."""
    from app.migrations import prepare_schema  # Alembic loads only when a schema is made

    prepare_schema(engine, auto_migrate=auto_migrate)


# Threads doing database work at once. More only contend: SQLite takes one writer at a
# time, and every extra thread fights the event loop for the GIL (profiled: 40 threads
# cost the fan-out a third of its CPU at 30 notifications a second).
DB_THREADS = 4


class Database:
    def __init__(self, engine: Engine, threads: int = DB_THREADS) -> None:
        self.engine = engine
        self._threads = anyio.CapacityLimiter(threads)
        self._sqlite = engine.dialect.name == "sqlite"
        # Until then (time.monotonic()), the database has just proved locked or unreachable.
        self._locked_out_until = 0.0

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run `work(session)` in a worker thread; the caller commits inside `work`."""
        return await anyio.to_thread.run_sync(self._run_sync, work, limiter=self._threads)

    def _run_sync(self, work: Callable[[Session], T]) -> T:
        try:
            with self.session() as session:
                if self._sqlite:
                    self._set_busy_timeout(session)
                return work(session)
        except OperationalError as exc:
            self._locked_out_until = time.monotonic() + BUSY_TIMEOUT_SECONDS
            raise DatabaseUnavailable(str(exc.orig)) from exc

    def _set_busy_timeout(self, session: Session) -> None:
        """The full wait normally; a short one right after a call found the database locked.
        Readers rarely wait at all (WAL), so only writers answer 503 sooner."""
        locked_out = time.monotonic() < self._locked_out_until
        seconds = LOCKED_OUT_BUSY_TIMEOUT_SECONDS if locked_out else BUSY_TIMEOUT_SECONDS
        connection = session.connection()
        if connection.info.get("busy_timeout") != seconds:  # a pooled connection keeps it
            connection.exec_driver_sql(f"PRAGMA busy_timeout={int(seconds * 1000)}")
            connection.info["busy_timeout"] = seconds
