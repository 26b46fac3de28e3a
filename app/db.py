"""The database engine and the one way to run blocking database work from async code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.to_thread
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel, create_engine

from app import models  # noqa: F401 - registers the tables on SQLModel.metadata

T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """The database is locked or unreachable; callers answer 503."""


def make_engine(database_url: str) -> Engine:
    if database_url.startswith("sqlite"):
        _ensure_sqlite_folder(database_url)
        engine = create_engine(
            database_url,
            connect_args={"check_same_thread": False, "timeout": 5},
        )
        event.listen(engine, "connect", _tune_sqlite)
        return engine
    return create_engine(database_url, pool_pre_ping=True)


def _ensure_sqlite_folder(database_url: str) -> None:
    path = database_url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _tune_sqlite(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    cursor = dbapi_connection.cursor()
    # WAL lets readers run while one writer commits; busy_timeout waits for the lock.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_schema(engine: Engine, attempts: int = 5) -> None:
    """Create missing tables. Several workers start at once: when another one created a
    table between our check and our CREATE, look again instead of failing."""
    for attempt in range(attempts):
        try:
            SQLModel.metadata.create_all(engine)
            return
        except OperationalError as exc:
            if "already exists" not in str(exc.orig) or attempt == attempts - 1:
                raise


# Threads doing database work at once. More only contend: SQLite takes one writer at a
# time, and every extra thread fights the event loop for the GIL (profiled: 40 threads
# cost the fan-out a third of its CPU at 30 notifications a second).
DB_THREADS = 4


class Database:
    def __init__(self, engine: Engine, threads: int = DB_THREADS) -> None:
        self.engine = engine
        self._threads = anyio.CapacityLimiter(threads)

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run `work(session)` in a worker thread; the caller commits inside `work`."""
        return await anyio.to_thread.run_sync(self._run_sync, work, limiter=self._threads)

    def _run_sync(self, work: Callable[[Session], T]) -> T:
        try:
            with self.session() as session:
                return work(session)
        except OperationalError as exc:
            raise DatabaseUnavailable(str(exc.orig)) from exc
