"""The search box: the caller's messages in the active tenant, best match first."""

from __future__ import annotations

import dataclasses
from typing import Any

import reflex as rx

from app.domain.errors import DomainError
from app.domain.principal import Principal
from app.runtime import get_runtime
from app.state import replies
from app.state.session import SessionState

RESULTS_SHOWN = 20


@dataclasses.dataclass
class SnippetPart:
    text: str
    hit: bool


@dataclasses.dataclass
class SearchResult:
    message_id: int
    conversation_id: int
    conversation_name: str
    sender_name: str
    created_at: str
    snippet: list[SnippetPart]


class SearchState(rx.State):
    query: str = ""
    results: rx.Field[list[SearchResult]] = rx.field(default_factory=list)
    searched: bool = False  # a search ran: "nothing found" rather than nothing at all
    error: str = ""

    async def _principal(self) -> Principal | None:
        session = await self.get_state(SessionState)
        return await session._principal()

    @rx.event
    async def search(self, form_data: dict[str, Any]):
        query = form_data.get("q", "")
        if not isinstance(query, str) or not query.strip():
            self.clear_search()  # type: ignore[operator]  # mypy sees @rx.event handlers as EventNamespace, not EventCallback
            return None
        principal = await self._principal()
        if principal is None:
            return replies.signed_out()
        try:
            hits = await get_runtime().search.search(principal, query, RESULTS_SHOWN)
        except DomainError as exc:
            self.error, self.results, self.searched = exc.message, [], False
            return None
        self.query, self.error, self.searched = query.strip(), "", True
        self.results = [
            SearchResult(
                message_id=h.message_id,
                conversation_id=h.conversation_id,
                conversation_name=h.conversation_name,
                sender_name=h.sender_name,
                created_at=h.created_at,
                snippet=[SnippetPart(s.text, s.hit) for s in h.snippet],
            )
            for h in hits
        ]
        return None

    @rx.event
    def clear_search(self) -> None:
        self.query, self.results, self.searched, self.error = "", [], False, ""
