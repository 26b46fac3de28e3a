"""Search: the caller's messages in their active tenant, ranked, with highlighted snippets.

Deliberate choices:
- The caller's text never reaches FTS5 as query syntax. Each whitespace-separated term
  becomes a quoted string (inner quotes doubled), the last one a prefix (`"term"*`), so
  `AND`, `NEAR(`, `*`, `-x`, `col:` and stray quotes are words like any other.
- Snippets are segments `[{text, hit}]`, never HTML: the client decides how to mark a hit.
  They come from FTS5's `snippet()`, which knows where the tokenizer found each term
  (diacritics and prefixes included; Python could only guess). It is told to wrap hits in
  markers made of private-use characters around a random nonce per search, which a message
  cannot forge; we split on those, then drop the private-use marker characters that are
  left (the user's own), so a segment never carries one.
- On PostgreSQL the same promises hold with its own full-text search (app/search_index.py):
  each term becomes `phraseto_tsquery` of it (the caller's text is never tsquery syntax),
  the last one with its last word a prefix, all of them AND-ed; ranked by `ts_rank_cd`
  normalised by length (as bm25 ranks: `ts_rank`'s normalisation let "x second x" fall
  below "x first"), then newest first; the snippet is `ts_headline`'s
  fragment around the hits, with the same nonce markers, and an ellipsis added where it
  does not reach an end of the message. Where PostgreSQL's parser differs from FTS5's, its
  way holds: a host name, an e-mail address, a URL or a decimal number is one word
  ("example.com", not "example" and "com").
- Elsewhere (neither SQLite nor PostgreSQL), or when asked (`full_text=False`): a
  case-insensitive LIKE on every term, newest first, highlighted in Python. Diacritics then
  matter.
- Deleted messages are never found: `deleted_at` set, or the content blanked.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnClause, ColumnElement, Text, cast, column, literal_column, table
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlmodel import Session, and_, col, func, select
from sqlmodel.sql.expression import Select

from app.db import Database
from app.domain.conversations import conversation_name, conversation_views
from app.domain.errors import InvalidInput, RateLimited
from app.domain.principal import Principal
from app.domain.text import ELLIPSIS
from app.models import Conversation, ConversationMember, Message, User
from app.search_index import MESSAGE_INDEX, SEARCH_CONFIG, message_vector
from app.security.rate_limit import RateLimiter
from app.timeutil import iso

QUERY_MAX_CHARS = 200
LIMIT_MAX = 50
# Tokens of context FTS5 shows around the hits (64 at most); the fallback shows characters.
SNIPPET_TOKENS = 24
# ts_headline's one fragment, in words: at most SNIPPET_TOKENS, at least half as many.
_HEADLINE = (
    f"MaxFragments=1, MaxWords={SNIPPET_TOKENS}, MinWords={SNIPPET_TOKENS // 2}, ShortWord=0"
)
FALLBACK_SNIPPET_CHARS = 160
_MARK_OPEN, _MARK_CLOSE = "\ue000", "\ue001"
_MARKER_CHARS = re.compile(f"[{_MARK_OPEN}{_MARK_CLOSE}]")

_index = table(MESSAGE_INDEX, column("rowid"))
# The FTS5 table's name as a column: `message_fts MATCH ...`, `bm25(message_fts)`.
_index_column: ColumnClause[Any] = literal_column(MESSAGE_INDEX)


@dataclass(frozen=True, slots=True)
class Segment:
    text: str
    hit: bool


@dataclass(frozen=True, slots=True)
class SearchHit:
    message_id: int
    conversation_id: int
    conversation_name: str  # as the caller sees it (a 1:1 is named after the other person)
    sender_id: int
    sender_name: str
    created_at: str
    snippet: tuple[Segment, ...]

    def to_data(self) -> dict[str, Any]:
        return {
            "messageId": self.message_id,
            "conversationId": self.conversation_id,
            "conversationName": self.conversation_name,
            "senderId": self.sender_id,
            "senderName": self.sender_name,
            "createdAt": self.created_at,
            "snippet": [{"text": s.text, "hit": s.hit} for s in self.snippet],
        }


def search_terms(query: str) -> list[str]:
    """The caller's words; InvalidInput for an empty or overlong query."""
    if len(query) > QUERY_MAX_CHARS:
        raise InvalidInput(f"q is longer than {QUERY_MAX_CHARS} characters.")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("q must be valid Unicode (no lone surrogates).") from None
    # NUL ends a C string inside SQLite: a separator like any other to us.
    terms = query.replace("\x00", " ").split()
    if not terms:
        raise InvalidInput("q must contain something to search for.")
    return terms


def match_expression(terms: list[str]) -> str:
    """An FTS5 query that means "every term, the last one as a prefix", whatever the terms."""
    quoted = ['"' + term.replace('"', '""') + '"' for term in terms]
    quoted[-1] += "*"
    return " ".join(quoted)


def split_marked(marked: str, open_mark: str, close_mark: str) -> tuple[Segment, ...]:
    """The segments of a `snippet()` result whose hits are wrapped in the given marks.
    Neighbours of one kind are one segment: PostgreSQL's parser cuts some words in two
    (`2e702f073aea` is the number `2e702`, then `f073aea`) and marks each part."""
    segments: list[Segment] = []
    hit = False
    for piece in re.split(f"({re.escape(open_mark)}|{re.escape(close_mark)})", marked):
        if piece == open_mark:
            hit = True
        elif piece == close_mark:
            hit = False
        else:
            text = _MARKER_CHARS.sub("", piece)
            if text and segments and segments[-1].hit == hit:
                segments[-1] = Segment(segments[-1].text + text, hit)
            elif text:
                segments.append(Segment(text, hit))
    return tuple(segments)


def highlight_terms(content: str, terms: list[str]) -> tuple[Segment, ...]:
    """The fallback's snippet: a window of `content` around the first hit, every
    case-insensitive occurrence of a term marked."""
    pattern = re.compile(
        "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)), re.IGNORECASE
    )
    first = pattern.search(content)
    start = max(0, (first.start() if first else 0) - FALLBACK_SNIPPET_CHARS // 4)
    end = min(len(content), start + FALLBACK_SNIPPET_CHARS)
    window = content[start:end]
    segments = [Segment(ELLIPSIS, False)] if start > 0 else []
    position = 0
    for found in pattern.finditer(window):
        if found.start() > position:
            segments.append(Segment(window[position : found.start()], False))
        segments.append(Segment(found.group(), True))
        position = found.end()
    if position < len(window):
        segments.append(Segment(window[position:], False))
    if end < len(content):
        segments.append(Segment(ELLIPSIS, False))
    return tuple(segments)


class Search:
    def __init__(
        self, db: Database, *, full_text: bool | None = None, limiter: RateLimiter | None = None
    ) -> None:
        """`full_text=False` searches with LIKE even where the database has an index;
        `limiter` bounds each user's searches (None: unbounded, for tests of ranking)."""
        self._db = db
        self._limiter = limiter
        dialect = db.engine.dialect.name
        if full_text is False or dialect not in ("sqlite", "postgresql"):
            self._hits = self._like_hits
        elif dialect == "postgresql":
            self._hits = self._postgres_hits
        else:
            self._hits = self._full_text_hits

    async def search(self, principal: Principal, query: str, limit: int = 20) -> list[SearchHit]:
        """The best `limit` matches among the messages of the caller's conversations in
        their active tenant: by relevance (bm25), then newest first."""
        terms = search_terms(query)
        if not 1 <= limit <= LIMIT_MAX:
            raise InvalidInput(f"limit must be between 1 and {LIMIT_MAX}.")
        if self._limiter is not None:
            retry_after = await self._limiter.take(f"search:{principal.user_id}")
            if retry_after is not None:
                raise RateLimited("You are searching too fast: try again in a moment.", retry_after)

        def load(session: Session) -> list[SearchHit]:
            found = self._hits(session, principal, terms, limit)
            conversation_ids = sorted({f.conversation_id for f in found})
            views = conversation_views(session, principal, conversation_ids)
            names = {v.id: conversation_name(v, principal.user_id) for v in views}
            return [
                SearchHit(
                    message_id=f.message_id,
                    conversation_id=f.conversation_id,
                    conversation_name=names[f.conversation_id],
                    sender_id=f.sender_id,
                    sender_name=f.sender_name,
                    created_at=iso(f.created_at),
                    snippet=f.snippet,
                )
                for f in found
            ]

        return await self._db.run(load)

    def _full_text_hits(
        self, session: Session, principal: Principal, terms: list[str], limit: int
    ) -> list[_Found]:
        open_mark, close_mark = _new_marks()
        snippet = func.snippet(_index_column, 0, open_mark, close_mark, ELLIPSIS, SNIPPET_TOKENS)
        query: Select[int, int, int, str, datetime, str, str] = (
            _visible_messages(principal)  # type: ignore[assignment]  # add_columns() is typed as returning SQLAlchemy's Select; it is SQLModel's
            .add_columns(snippet)
            .join(_index, _index.c.rowid == col(Message.id))
            .where(_index_column.op("MATCH")(match_expression(terms)))
            .order_by(func.bm25(_index_column), col(Message.id).desc())
            .limit(limit)
        )
        rows = session.exec(query).all()
        return [_Found(*row[:5], split_marked(row[6], open_mark, close_mark)) for row in rows]

    def _postgres_hits(
        self, session: Session, principal: Principal, terms: list[str], limit: int
    ) -> list[_Found]:
        open_mark, close_mark = _new_marks()
        query = _tsquery(terms)
        vector: ColumnClause[Any] = literal_column(
            message_vector(f"{Message.__tablename__}.content")
        )
        options = f"StartSel={open_mark}, StopSel={close_mark}, {_HEADLINE}"
        headline = func.ts_headline(_SEARCH_CONFIG, col(Message.content), query, options)
        statement: Select[int, int, int, str, datetime, str, str] = (
            _visible_messages(principal)  # type: ignore[assignment]  # add_columns() is typed as returning SQLAlchemy's Select; it is SQLModel's
            .add_columns(headline)
            .where(vector.op("@@")(query))
            .order_by(func.ts_rank_cd(vector, query, 1).desc(), col(Message.id).desc())
            .limit(limit)
        )
        rows = session.exec(statement).all()
        return [
            _Found(*row[:5], _with_ellipses(split_marked(row[6], open_mark, close_mark), row[5]))
            for row in rows
        ]

    def _like_hits(
        self, session: Session, principal: Principal, terms: list[str], limit: int
    ) -> list[_Found]:
        query = _visible_messages(principal)
        for term in terms:
            escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            query = query.where(col(Message.content).ilike(f"%{escaped}%", escape="\\"))
        query = query.order_by(col(Message.id).desc()).limit(limit)
        rows = session.exec(query).all()
        return [_Found(*row[:5], highlight_terms(row[5], terms)) for row in rows]


def _new_marks() -> tuple[str, str]:
    """The highlight's opening and closing markers for one search: private-use characters
    around a random nonce, which no message can forge."""
    nonce = secrets.token_hex(8)
    return f"{_MARK_OPEN}{nonce}{_MARK_OPEN}", f"{_MARK_CLOSE}{nonce}{_MARK_CLOSE}"


_SEARCH_CONFIG: ColumnClause[Any] = literal_column(f"'{SEARCH_CONFIG}'::regconfig")


def _tsquery(terms: list[str]) -> ColumnElement[Any]:
    """Every term as a phrase of its words (`phraseto_tsquery`: nothing the caller types is
    tsquery syntax), the last word of the last term a prefix, all of them AND-ed. A term
    without words (punctuation only) is an empty query, which `&&` leaves out, as FTS5 does."""
    phrases: list[ColumnElement[Any]] = [
        func.phraseto_tsquery(_SEARCH_CONFIG, term) for term in terms
    ]
    # The text form ends with the last word's closing quote: `'it' <-> 's'` -> `... 's':*`.
    as_prefix = func.regexp_replace(cast(phrases[-1], Text), "'$", "':*")
    phrases[-1] = cast(as_prefix, TSQUERY)
    query = phrases[0]
    for phrase in phrases[1:]:
        query = query.op("&&")(phrase)
    return query


def _with_ellipses(segments: tuple[Segment, ...], content: str) -> tuple[Segment, ...]:
    """A headline as FTS5's snippet shows it: an ellipsis where it stops short of an end."""
    shown = "".join(segment.text for segment in segments)
    content = _MARKER_CHARS.sub("", content)
    start = content.find(shown)
    if not shown or start < 0:
        return segments
    before = (Segment(ELLIPSIS, False),) if start > 0 else ()
    after = (Segment(ELLIPSIS, False),) if start + len(shown) < len(content) else ()
    return before + segments + after


class _Found(NamedTuple):
    message_id: int
    conversation_id: int
    sender_id: int
    sender_name: str
    created_at: datetime
    snippet: tuple[Segment, ...]


def _visible_messages(principal: Principal) -> Select[int, int, int, str, datetime, str]:
    """Id, conversation, sender id and name, time and content of every message the caller
    may find: in a conversation of theirs, in their active tenant, not deleted."""
    columns: Select[int, int, int, str, datetime, str] = select(  # type: ignore[call-overload]  # SQLModel types select() for up to four columns
        Message.id,
        Message.conversation_id,
        Message.sender_id,
        User.display_name,
        Message.created_at,
        Message.content,
    )
    return (
        columns.join(
            ConversationMember,
            and_(
                col(ConversationMember.conversation_id) == col(Message.conversation_id),
                col(ConversationMember.user_id) == principal.user_id,
            ),
        )
        .join(Conversation, col(Conversation.id) == col(Message.conversation_id))
        .join(User, col(User.id) == col(Message.sender_id))
        .where(col(Message.tenant_id) == principal.tenant_id)
        .where(col(Conversation.tenant_id) == principal.tenant_id)
        .where(col(Message.deleted_at).is_(None))
        .where(col(Message.content) != "")
    )
