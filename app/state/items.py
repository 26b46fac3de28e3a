"""Plain rows the pages render, built from the same payloads the stream carries."""

from __future__ import annotations

import dataclasses
from typing import Any

from app.domain.conversations import ConversationView, conversation_name
from app.domain.text import shorten


@dataclasses.dataclass
class MessageItem:
    id: int
    conversation_id: int
    content: str
    sender_id: int
    sender_name: str
    created_at: str
    mine: bool
    edited: bool
    deleted: bool  # its content is "": the page shows a placeholder


@dataclasses.dataclass
class ConversationItem:
    id: int
    # The title, or the other members' names: for sorting, and the row's data-name.
    name: str
    # What the name is made of, each shown as its own bidi isolate (app/components/bidi.py):
    # [title], or each other member's name.
    name_parts: list[str]
    kind: str
    members: list[str]  # every participant's display name
    # The preview of the last message: "You", or its sender's name, and the start of it.
    preview_sender: str
    preview_text: str
    last_message_at: str
    last_message_id: int
    unread_count: int


@dataclasses.dataclass
class MentionOption:
    """A member of the open conversation, as the composer's "@" offers them."""

    username: str
    name: str


@dataclasses.dataclass
class PersonItem:
    user_id: int
    name: str
    status: str
    last_seen: str


@dataclasses.dataclass
class NotificationItem:
    id: int
    type: str
    title: str
    body: str
    link: str
    created_at: str
    read: bool


def message_item(data: dict[str, Any], me: int) -> MessageItem:
    """From a `chat:message` payload's `message`, or a history row: the same shape."""
    return MessageItem(
        id=data["id"],
        conversation_id=data["conversationId"],
        content=data["content"],
        sender_id=data["senderId"],
        sender_name=data["senderName"],
        created_at=data["createdAt"],
        mine=data["senderId"] == me,
        edited=data["editedAt"] is not None,
        deleted=data["deleted"],
    )


def conversation_item(view: ConversationView, me: int) -> ConversationItem:
    others = [p.display_name for p in view.participants if p.id != me]
    name_parts = [view.title] if view.title else others or ["Just you"]
    last = view.last_message
    return ConversationItem(
        id=view.id,
        name=conversation_name(view, me),
        name_parts=name_parts,
        kind=view.kind,
        members=[p.display_name for p in view.participants],
        preview_sender=("You" if last.sender_id == me else last.sender_name) if last else "",
        preview_text=message_preview(last.content, last.deleted) if last else "",
        last_message_at=last.created_at if last else view.created_at,
        last_message_id=last.id if last else 0,
        unread_count=view.unread_count,
    )


PREVIEW_CHARS = 80
DELETED_PREVIEW = "Message deleted"


def message_preview(content: str, deleted: bool) -> str:
    """What the conversation list shows of its last message."""
    return DELETED_PREVIEW if deleted else preview(content)


def preview(content: str) -> str:
    """The start of a message on one line: whole up to PREVIEW_CHARS characters, else cut
    at a word within them, then "…"."""
    return shorten(content, PREVIEW_CHARS + 1, whole_up_to=PREVIEW_CHARS)


def person_item(data: dict[str, Any]) -> PersonItem:
    return PersonItem(
        user_id=data["userId"],
        name=data["userName"],
        status=data["status"],
        last_seen=data.get("lastSeen") or "",
    )


def notification_item(data: dict[str, Any], read: bool = False) -> NotificationItem:
    return NotificationItem(
        id=data["id"],
        type=data["type"],
        title=data["title"],
        body=data["body"],
        link=data.get("link") or "",
        created_at=data["createdAt"],
        read=read,
    )
