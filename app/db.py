"""The database engine and the one way to run blocking database work from async code."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.pool import ConnectionPoolEntry
from sqlmodel import Session, create_engine

from app import models  # noqa: F401 - registers the tables on SQLModel.metadata
from app.settings import PROJECT_ROOT

T = TypeVar("T")
logger = logging.getLogger(__name__)

# Threads doing database work at once. More only contend: SQLite takes one writer at a
# time, and every extra thread fights the event loop for the GIL (profiled: 40 threads
# cost the fan-out a third of its CPU at 30 notifications a second). On PostgreSQL the
# pool holds one connection per thread: N processes open about N x DB_THREADS connections.
DB_THREADS = 4

# The default home of the SQLite database (settings._default_database_url).
DATA_FOLDER = PROJECT_ROOT / ".data"


class DatabaseUnavailable(Exception):
    """The database is locked or unreachable; callers answer 503."""


# How long a statement waits for a lock (SQLite's file, PostgreSQL's row or table) before its
# caller gets a 503; on PostgreSQL also how long a connection attempt may take.
BUSY_TIMEOUT_SECONDS = 5.0
# PostgreSQL: the longest a statement may run at all, waits included. Every database thread
# stuck behind a runaway query would stall the whole process.
STATEMENT_TIMEOUT_SECONDS = 30.0
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
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return _postgres_engine(url)
    return create_engine(database_url, pool_pre_ping=True)


# PostgreSQL connections a process opens beyond one per database thread (DB_THREADS): the
# schema check at start, a sweep that runs while every thread is busy.
POOL_OVERFLOW = 2
# libpq's connection options the app sets unless DATABASE_URL sets them itself (`?name=`).
_POSTGRES_CONNECT_DEFAULTS: dict[str, object] = {
    "connect_timeout": int(BUSY_TIMEOUT_SECONDS),
    "application_name": "chat",
    # A server that vanished mid-query (a failover, a cut cable) is noticed within about
    # 25 s instead of the kernel's two hours.
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}


def _postgres_engine(url: URL) -> Engine:
    """A pool of one connection per database thread (plus a little), each checked before
    use (a restarted server leaves dead ones behind) and renewed after half an hour; waits
    for locks and for a free connection bounded like SQLite's busy timeout."""
    connect_args = {k: v for k, v in _POSTGRES_CONNECT_DEFAULTS.items() if k not in url.query}
    engine = create_engine(
        url,
        pool_size=DB_THREADS,
        max_overflow=POOL_OVERFLOW,
        pool_timeout=BUSY_TIMEOUT_SECONDS,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    event.listen(engine, "connect", _tune_postgres)
    return engine


def _tune_postgres(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # Outside any transaction, so that they hold for the connection's life.
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    cursor = dbapi_connection.cursor()
    cursor.execute(f"SET lock_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
    cursor.execute(f"SET statement_timeout = {int(STATEMENT_TIMEOUT_SECONDS * 1000)}")
    # The columns are `timestamp without time zone` holding UTC. The ORM's typed values
    # arrive as such, but PostgreSQL converts anything else (an untyped aware datetime,
    # now(), CURRENT_TIMESTAMP in a hand-run statement) in the session's zone.
    cursor.execute("SET TIME ZONE 'UTC'")
    cursor.close()
    dbapi_connection.autocommit = autocommit


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


class Database:
    def __init__(self, engine: Engine, threads: int = DB_THREADS) -> None:
        self.engine = engine
        self._threads = anyio.CapacityLimiter(threads)
        self._sqlite = engine.dialect.name == "sqlite"
        self._postgres = engine.dialect.name == "postgresql"
        # Until then (time.monotonic()), the database has just proved locked or unreachable.
        self._locked_out_until = 0.0
        # Work running in threads: a cancelled caller's thread runs on to the end.
        self._running = 0
        self._idle = threading.Condition()

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run `work(session)` in a worker thread; the caller commits inside `work`."""
        return await anyio.to_thread.run_sync(self._run_sync, work, limiter=self._threads)

    def close(self, timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
        """Close the pool once the work still running in threads is done (up to `timeout`):
        a connection handed back after the pool was closed would be left open until the
        garbage collector found it."""
        with self._idle:
            self._idle.wait_for(lambda: self._running == 0, timeout)
        self.engine.dispose()

    def _run_sync(self, work: Callable[[Session], T]) -> T:
        with self._idle:
            self._running += 1
        try:
            return self._run_in_session(work)
        finally:
            with self._idle:
                self._running -= 1
                self._idle.notify_all()

    def _run_in_session(self, work: Callable[[Session], T]) -> T:
        try:
            with self.session() as session:
                if self._sqlite:
                    self._set_busy_timeout(session)
                elif self._postgres and time.monotonic() < self._locked_out_until:
                    self._shorten_lock_timeout(session)
                return work(session)
        # Locked (SQLite's busy timeout, PostgreSQL's lock or statement timeout, a deadlock),
        # unreachable (refused, reset, a restart), or no pooled connection free in time.
        except (OperationalError, InterfaceError, PoolTimeout) as exc:
            self._locked_out_until = time.monotonic() + BUSY_TIMEOUT_SECONDS
            raise DatabaseUnavailable(str(getattr(exc, "orig", None) or exc)) from exc

    @staticmethod
    def _shorten_lock_timeout(session: Session) -> None:
        """PostgreSQL's `_set_busy_timeout`: the short wait right after a call found the
        database locked, for this call's (first) transaction only. SET LOCAL, because a
        plain SET would be undone with the transaction a lock timeout aborts."""
        lock_timeout = int(LOCKED_OUT_BUSY_TIMEOUT_SECONDS * 1000)
        session.connection().exec_driver_sql(f"SET LOCAL lock_timeout = {lock_timeout}")

    def _set_busy_timeout(self, session: Session) -> None:
        """The full wait normally; a short one right after a call found the database locked.
        Readers rarely wait at all (WAL), so only writers answer 503 sooner."""
        locked_out = time.monotonic() < self._locked_out_until
        seconds = LOCKED_OUT_BUSY_TIMEOUT_SECONDS if locked_out else BUSY_TIMEOUT_SECONDS
        connection = session.connection()
        if connection.info.get("busy_timeout") != seconds:  # a pooled connection keeps it
            connection.exec_driver_sql(f"PRAGMA busy_timeout={int(seconds * 1000)}")
            connection.info["busy_timeout"] = seconds
