"""Route names, and the in-app links that point into them, in one place."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from app.domain.ids import parse_id

LOGIN = "/login"
CHAT = "/"

# The query parameter of an in-app link to a conversation: "/?c=12".
CONVERSATION_PARAM = "c"
# And of a message in it, which the link opens at: "/?c=12&m=345".
MESSAGE_PARAM = "m"


def conversation_link(conversation_id: int) -> str:
    return f"{CHAT}?{CONVERSATION_PARAM}={conversation_id}"


def conversation_in_link(link: str) -> int | None:
    """The conversation an in-app link opens on the chat page, or None."""
    parts = urlsplit(link)
    if parts.scheme or parts.netloc or parts.path != CHAT:
        return None
    return _one_id(parse_qs(parts.query).get(CONVERSATION_PARAM, []))


def message_link(conversation_id: int, message_id: int) -> str:
    return f"{conversation_link(conversation_id)}&{MESSAGE_PARAM}={message_id}"


def message_in_link(link: str) -> int | None:
    """The message an in-app link opens its conversation at, or None (also for a link that
    opens no conversation)."""
    if conversation_in_link(link) is None:
        return None
    return _one_id(parse_qs(urlsplit(link).query).get(MESSAGE_PARAM, []))


def _one_id(values: list[str]) -> int | None:
    """The id a query parameter given exactly once holds."""
    return parse_id(values[0]) if len(values) == 1 else None
