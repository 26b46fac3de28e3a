"""One readable line per event, for people watching `tail` (scripts want `--json`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .events import ClientEvent, EventType


def _message(data: dict[str, Any]) -> str:
    message = data.get("message") or {}
    return f"#{data.get('conversationId')} {message.get('senderName')}: {message.get('content')}"


def _message_updated(data: dict[str, Any]) -> str:
    return f"{_message(data)} (edited)"


def _message_deleted(data: dict[str, Any]) -> str:
    return f"#{data.get('conversationId')} message {data.get('messageId')} deleted"


def _conversation(data: dict[str, Any]) -> str:
    conversation = data.get("conversation") or {}
    names = ", ".join(str(p.get("displayName")) for p in conversation.get("participants") or [])
    title = conversation.get("title") or names
    return f"#{data.get('conversationId')} {data.get('action')}: {title}"


def _typing(data: dict[str, Any]) -> str:
    doing = "is typing" if data.get("isTyping") else "stopped typing"
    return f"#{data.get('conversationId')} {data.get('userName')} {doing}"


def _unread(data: dict[str, Any]) -> str:
    return f"#{data.get('conversationId')} unread {data.get('count')} (total {data.get('total')})"


def _notification(data: dict[str, Any]) -> str:
    body = f": {data['body']}" if data.get("body") else ""
    return f"[{data.get('type')}] {data.get('title')}{body} (unread {data.get('unreadCount')})"


def _notification_read(data: dict[str, Any]) -> str:
    which = "all" if data.get("all") else f"#{data.get('id')}"
    return f"read {which} (unread {data.get('unreadCount')})"


def _presence(data: dict[str, Any]) -> str:
    return f"{data.get('userName')} is {data.get('status')}"


def _resync(data: dict[str, Any]) -> str:
    return f"history unavailable ({data.get('reason')}): refetch state over REST"


_DESCRIBERS: dict[str, Callable[[dict[str, Any]], str]] = {
    EventType.CHAT_MESSAGE: _message,
    EventType.CHAT_MESSAGE_UPDATED: _message_updated,
    EventType.CHAT_MESSAGE_DELETED: _message_deleted,
    EventType.CHAT_CONVERSATION: _conversation,
    EventType.CHAT_TYPING: _typing,
    EventType.CHAT_UNREAD_COUNT: _unread,
    EventType.NOTIFICATION_NEW: _notification,
    EventType.NOTIFICATION_READ: _notification_read,
    EventType.PRESENCE_UPDATE: _presence,
    EventType.RESYNC: _resync,
}


def describe(event: ClientEvent) -> str:
    """The event's gist; types this client does not know yet show their JSON."""
    describer = _DESCRIBERS.get(event.type)
    if describer is None:
        return json.dumps(event.data, ensure_ascii=False)
    return describer(event.data)
