"""The full-text index of message contents: on SQLite an FTS5 table that triggers keep in step,
on PostgreSQL a GIN index over the messages' `tsvector`.

Deliberate choices (SQLite):
- External content (`content='message'`): the text is stored once, in `message`; the index
  holds tokens only, and `snippet()` reads the text back from `message` by rowid.
- Triggers, not application code, keep it in step: whatever writes `message` (a send, an
  edit, a delete that blanks the content, a hand-run UPDATE) updates the index in the same
  transaction, so the index cannot drift from the table.
- `remove_diacritics 2`: "cafe" finds "café" and the reverse, in every script.

Deliberate choices (PostgreSQL):
- An expression index (`to_tsvector('chat_search', content)`), no column: the table is the
  same on both databases, and PostgreSQL keeps the index in step with every write by itself.
  Queries must spell the expression as `message_vector()` does to use it.
- A text search configuration of our own, `chat_search`: the `simple` dictionary (no stop
  words, no stemming: FTS5's unicode61 has neither) behind `unaccent`, so diacritics do not
  matter either way, as with `remove_diacritics 2`. Hyphenated words are indexed by their
  parts only ("foo-bar" is "foo" then "bar"), as FTS5 splits them.
- `unaccent` is a trusted extension (PostgreSQL 13+): a role that may create objects in the
  database may create it. Without that right, the configuration is made without it and
  diacritics matter (a warning says so); an operator can `CREATE EXTENSION unaccent` and
  drop `chat_search` to have it rebuilt at the next start.
- Several workers start at once: a transaction-scoped advisory lock lets one create at a time.
- Elsewhere (neither database) nothing is created here and app/domain/search.py falls back to
  LIKE.
"""

from __future__ import annotations

import logging

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from app.models import Message

logger = logging.getLogger(__name__)

MESSAGE_INDEX = "message_fts"
_MESSAGES = Message.__tablename__

# PostgreSQL: the text search configuration and the index.
SEARCH_CONFIG = "chat_search"
POSTGRES_INDEX = "ix_message_search"
# Any constant of ours: pg_advisory_xact_lock takes a bigint.
_CREATE_LOCK = 7_301_917
# Token types that carry words: unaccented, then lower-cased (`simple`).
_WORD_TOKENS = "asciiword, word, numword, hword_asciipart, hword_part, hword_numpart"
# A hyphenated word as a whole: not indexed, its parts are.
_COMPOUND_TOKENS = "asciihword, hword, numhword"


def message_vector(content: str = "content") -> str:
    """The indexed expression, over `content` (a column reference, qualified or not)."""
    return f"to_tsvector('{SEARCH_CONFIG}'::regconfig, {content})"


_CREATE_TABLE = f"""
CREATE VIRTUAL TABLE IF NOT EXISTS {MESSAGE_INDEX} USING fts5(
    content, content='{_MESSAGES}', content_rowid='id',
    tokenize='unicode61 remove_diacritics 2'
)
"""
# An external-content index forgets a row by being told its old text ('delete').
_TRIGGERS = (
    f"""
    CREATE TRIGGER IF NOT EXISTS {MESSAGE_INDEX}_insert AFTER INSERT ON {_MESSAGES} BEGIN
        INSERT INTO {MESSAGE_INDEX}(rowid, content) VALUES (new.id, new.content);
    END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS {MESSAGE_INDEX}_delete AFTER DELETE ON {_MESSAGES} BEGIN
        INSERT INTO {MESSAGE_INDEX}({MESSAGE_INDEX}, rowid, content)
            VALUES ('delete', old.id, old.content);
    END
    """,
    f"""
    CREATE TRIGGER IF NOT EXISTS {MESSAGE_INDEX}_update AFTER UPDATE OF content ON {_MESSAGES}
    BEGIN
        INSERT INTO {MESSAGE_INDEX}({MESSAGE_INDEX}, rowid, content)
            VALUES ('delete', old.id, old.content);
        INSERT INTO {MESSAGE_INDEX}(rowid, content) VALUES (new.id, new.content);
    END
    """,
)
_REBUILD = f"INSERT INTO {MESSAGE_INDEX}({MESSAGE_INDEX}) VALUES ('rebuild')"


def create_search_index(engine: Engine) -> bool:
    """Create the index and its triggers if missing; True when it was created now, and
    filled with the messages that were already there.

    Idempotent, and safe when several workers start at once: everything happens in one
    IMMEDIATE transaction, so exactly one of them sees the table missing and rebuilds.
    On PostgreSQL: the text search configuration and the GIN index (built over the
    messages already there).
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as postgres:
            return _create_postgres_index(postgres)
    if engine.dialect.name != "sqlite":
        return False
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            existed = (
                cursor.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                    (MESSAGE_INDEX,),
                ).fetchone()
                is not None
            )
            cursor.execute(_CREATE_TABLE)
            for trigger in _TRIGGERS:
                cursor.execute(trigger)
            if not existed:
                cursor.execute(_REBUILD)
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
    finally:
        connection.close()
    return not existed


def _create_postgres_index(connection: Connection) -> bool:
    connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK})
    config_exists = connection.execute(
        text("SELECT 1 FROM pg_ts_config WHERE cfgname = :name AND pg_ts_config_is_visible(oid)"),
        {"name": SEARCH_CONFIG},
    ).first()
    if config_exists is None:
        dictionaries = "unaccent, simple" if _unaccent_available(connection) else "simple"
        connection.execute(
            text(f"CREATE TEXT SEARCH CONFIGURATION {SEARCH_CONFIG} (COPY = simple)")
        )
        connection.execute(
            text(
                f"ALTER TEXT SEARCH CONFIGURATION {SEARCH_CONFIG} "
                f"ALTER MAPPING FOR {_WORD_TOKENS} WITH {dictionaries}"
            )
        )
        connection.execute(
            text(
                f"ALTER TEXT SEARCH CONFIGURATION {SEARCH_CONFIG} DROP MAPPING FOR {_COMPOUND_TOKENS}"
            )
        )
    index_exists = connection.execute(
        text("SELECT to_regclass(:name)"), {"name": POSTGRES_INDEX}
    ).scalar()
    if index_exists is not None:
        return False
    connection.execute(
        text(f"CREATE INDEX {POSTGRES_INDEX} ON {_MESSAGES} USING gin (({message_vector()}))")
    )
    return True


def _unaccent_available(connection: Connection) -> bool:
    """Creates the extension if it can; False (with a warning) if this role may not."""
    savepoint = connection.begin_nested()
    try:
        connection.execute(text("CREATE EXTENSION IF NOT EXISTS unaccent"))
    except DBAPIError as exc:
        savepoint.rollback()
        logger.warning(
            "search: the unaccent extension is unavailable (%s); diacritics will matter",
            str(exc.orig).strip(),
        )
        return False
    savepoint.commit()
    return True
