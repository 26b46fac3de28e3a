"""SQLModel tables. Every tenant-owned row carries `tenant_id`; queries filter on it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from app.timeutil import utcnow


class Role(StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class Tenant(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(index=True, unique=True, max_length=64)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    # Stored lower-cased: sign-in is case-insensitive on the username.
    username: str = Field(index=True, unique=True, max_length=64)
    display_name: str = Field(max_length=200)
    password_hash: str = Field(max_length=512)
    default_tenant_id: int | None = Field(default=None, foreign_key="tenant.id")
    is_active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class Membership(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("user_id", "tenant_id"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="user.id", index=True)
    tenant_id: int = Field(foreign_key="tenant.id", index=True)
    role: str = Field(default=Role.MEMBER.value, max_length=16)
    created_at: datetime = Field(default_factory=utcnow)
    # When the user was last seen in this tenant (presence is per tenant).
    last_seen_at: datetime | None = None


class AuthToken(SQLModel, table=True):
    """A bearer token. Only its SHA-256 is stored: a database leak yields no usable token."""

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(index=True, unique=True, max_length=64)
    user_id: int = Field(foreign_key="user.id", index=True)
    tenant_id: int = Field(foreign_key="tenant.id")
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    revoked_at: datetime | None = None


class Notification(SQLModel, table=True):
    __table_args__ = (Index("ix_notification_inbox", "tenant_id", "user_id", "read_at"),)

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = Field(foreign_key="tenant.id")
    user_id: int = Field(foreign_key="user.id")
    type: str = Field(max_length=40)
    title: str = Field(max_length=200)
    body: str = Field(default="", max_length=4000)
    link: str | None = Field(default=None, max_length=2000)
    created_by: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow)
    read_at: datetime | None = None


class ConversationKind(StrEnum):
    DIRECT = "direct"
    GROUP = "group"


class Conversation(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    tenant_id: int = Field(foreign_key="tenant.id", index=True)
    kind: str = Field(max_length=16)
    title: str | None = Field(default=None, max_length=200)
    # "<low user id>:<high user id>" for a 1:1, so a second one cannot be created.
    direct_key: str | None = Field(default=None, max_length=64)
    created_by: int | None = Field(default=None, foreign_key="user.id")
    created_at: datetime = Field(default_factory=utcnow)
    last_message_id: int | None = None

    __table_args__ = (UniqueConstraint("tenant_id", "direct_key"),)


class ConversationMember(SQLModel, table=True):
    """A participant and their read cursor; `unread_count` is kept in step with it."""

    conversation_id: int = Field(foreign_key="conversation.id", primary_key=True)
    user_id: int = Field(foreign_key="user.id", primary_key=True, index=True)
    joined_at: datetime = Field(default_factory=utcnow)
    last_read_message_id: int = 0
    unread_count: int = 0


class Message(SQLModel, table=True):
    __table_args__ = (Index("ix_message_conversation", "conversation_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    conversation_id: int = Field(foreign_key="conversation.id")
    tenant_id: int = Field(foreign_key="tenant.id")
    sender_id: int = Field(foreign_key="user.id")
    content: str = Field(max_length=20000)
    created_at: datetime = Field(default_factory=utcnow)
    edited_at: datetime | None = None
    # A deleted message keeps its row (and its place in history) with the content blanked.
    deleted_at: datetime | None = None
