"""The two databases the suite runs the app on, and what tests do to them from outside.

A test module opts in with `pytestmark = pytest.mark.databases("sqlite", "postgres")`: each of
its tests that uses a database (through `database_kind`: the `runtime`, `seeded` and
`make_runtime` fixtures, a backend of its own) runs once per kind, with ids `[sqlite]` and
`[postgres]`. A test that is about one database only says so with its own marker.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Literal

import psycopg
from sqlmodel import SQLModel

from app import models  # noqa: F401 - registers the tables on SQLModel.metadata

DatabaseKind = Literal["sqlite", "postgres"]
DATABASES: tuple[DatabaseKind, ...] = ("sqlite", "postgres")


def kind_of(database_url: str) -> DatabaseKind:
    return "sqlite" if database_url.startswith("sqlite") else "postgres"


def sqlite_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:///")


def libpq_dsn(database_url: str) -> str:
    """psycopg's form of a SQLAlchemy URL (`postgresql+psycopg://` -> `postgresql://`)."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


@contextlib.contextmanager
def write_lock(database_url: str) -> Iterator[None]:
    """Another process holds off every writer (a long migration, a backup) while readers
    carry on: SQLite's write lock; on PostgreSQL, every table of the app locked IN EXCLUSIVE
    MODE, which admits reads only."""
    if kind_of(database_url) == "sqlite":
        holder = sqlite3.connect(sqlite_path(database_url), isolation_level=None)
        try:
            holder.execute("BEGIN EXCLUSIVE")
            yield
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        return
    tables = ", ".join(f'"{table.name}"' for table in SQLModel.metadata.sorted_tables)
    with table_lock(database_url, f"LOCK TABLE {tables} IN EXCLUSIVE MODE"):
        yield


@contextlib.contextmanager
def table_lock(database_url: str, statement: str) -> Iterator[None]:
    """PostgreSQL: `statement` (a LOCK TABLE) holds in a transaction until the block ends."""
    with psycopg.connect(libpq_dsn(database_url)) as holder:
        holder.execute(statement)
        try:
            yield
        finally:
            holder.rollback()
