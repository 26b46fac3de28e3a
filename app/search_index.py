"""The full-text index of message contents: an SQLite FTS5 table that triggers keep in step.

Deliberate choices:
- External content (`content='message'`): the text is stored once, in `message`; the index
  holds tokens only, and `snippet()` reads the text back from `message` by rowid.
- Triggers, not application code, keep it in step: whatever writes `message` (a send, an
  edit, a delete that blanks the content, a hand-run UPDATE) updates the index in the same
  transaction, so the index cannot drift from the table.
- `remove_diacritics 2`: "cafe" finds "café" and the reverse, in every script.
- SQLite only. Elsewhere (PostgreSQL) nothing is created here and app/domain/search.py falls
  back to LIKE.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from app.models import Message

MESSAGE_INDEX = "message_fts"
_MESSAGES = Message.__tablename__

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
    """
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
