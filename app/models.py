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
