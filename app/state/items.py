"""Plain rows the pages render, built from the same payloads the stream carries."""

from __future__ import annotations

import dataclasses
from typing import Any

from app.domain.conversations import ConversationView


@dataclasses.dataclass
class MessageItem:
    id: int
    conversation_id: int
    content: str
    sender_id: int
    sender_name: str
    created_at: str
    mine: bool


@dataclasses.dataclass
class ConversationItem:
    id: int
    name: str
    kind: str
    member_names: str
    last_message: str
    last_message_at: str
    last_message_id: int
    unread_count: int


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
    )


def conversation_item(view: ConversationView, me: int) -> ConversationItem:
    others = [p.display_name for p in view.participants if p.id != me]
    name = view.title or ", ".join(others) or "Just you"
    last = view.last_message
    return ConversationItem(
        id=view.id,
        name=name,
        kind=view.kind,
        member_names=", ".join(p.display_name for p in view.participants),
        last_message=_preview(last.sender_name, last.content, last.sender_id == me) if last else "",
        last_message_at=last.created_at if last else view.created_at,
        last_message_id=last.id if last else 0,
        unread_count=view.unread_count,
    )


def _preview(sender: str, content: str, mine: bool) -> str:
    text = " ".join(content.split())
    prefix = "You" if mine else sender
    return f"{prefix}: {text[:80]}"


def with_new_message(item: ConversationItem, message: MessageItem) -> ConversationItem:
    return dataclasses.replace(
        item,
        last_message=_preview(message.sender_name, message.content, message.mine),
        last_message_at=message.created_at,
        last_message_id=message.id,
    )


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
