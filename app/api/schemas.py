"""Request and response bodies of the REST API (camelCase on the wire)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from app.domain.ids import MAX_ID  # ids are SQL BIGINTs: a larger number can name nothing
from app.domain.principal import Principal
from app.settings import get_settings


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_max_length=10_000,
        # JSON types as sent: "true" is not a boolean and "2" is not an id.
        strict=True,
    )

    @field_validator("*", mode="after")
    @classmethod
    def _text_is_unicode(cls, value: Any) -> Any:
        # JSON may smuggle lone surrogates ("\ud800"): no database or UTF-8 stream takes them.
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("text must be valid Unicode (no lone surrogates)") from None
        return value


class TokenRequest(ApiModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=get_settings().max_password_chars)
    tenant: int | None = Field(default=None, ge=1, le=MAX_ID)


class MembershipOut(ApiModel):
    tenant_id: int
    tenant_name: str
    tenant_slug: str
    role: str


class UserOut(ApiModel):
    id: int
    username: str
    display_name: str
    tenant_id: int
    role: str
    memberships: list[MembershipOut]

    @classmethod
    def of(cls, principal: Principal) -> UserOut:
        return cls(
            id=principal.user_id,
            username=principal.username,
            display_name=principal.display_name,
            tenant_id=principal.tenant_id,
            role=principal.membership.role,
            memberships=[
                MembershipOut(
                    tenant_id=m.tenant_id,
                    tenant_name=m.tenant_name,
                    tenant_slug=m.tenant_slug,
                    role=m.role,
                )
                for m in principal.memberships
            ],
        )


class TokenResponse(BaseModel):
    """OAuth 2.0 names on purpose (snake_case), as the contract says."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    user: UserOut


class NotificationCreate(ApiModel):
    user_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    tenant: bool = False
    type: str = Field(default="info", max_length=40)
    title: str = Field(max_length=10_000)
    body: str = Field(default="", max_length=10_000)
    link: str | None = Field(default=None, max_length=10_000)


class ConversationCreate(ApiModel):
    participant_ids: list[int] = Field(min_length=1, max_length=1000)
    title: str | None = Field(default=None, max_length=10_000)

    @field_validator("participant_ids")
    @classmethod
    def _ids_in_range(cls, value: list[int]) -> list[int]:
        if any(not 1 <= user_id <= MAX_ID for user_id in value):
            raise ValueError("participant ids are positive integers")
        return value


class ConversationRename(ApiModel):
    # Required, and null (or blank) for no title: a body that forgets it changes nothing.
    title: str | None = Field(max_length=10_000)


class ParticipantsAdd(ApiModel):
    user_ids: list[int] = Field(min_length=1, max_length=1000)

    @field_validator("user_ids")
    @classmethod
    def _ids_in_range(cls, value: list[int]) -> list[int]:
        if any(not 1 <= user_id <= MAX_ID for user_id in value):
            raise ValueError("user ids are positive integers")
        return value


class MessageCreate(ApiModel):
    content: str = Field(max_length=60_000)


class MessageEdit(ApiModel):
    content: str = Field(max_length=60_000)


class TypingUpdate(ApiModel):
    is_typing: bool


class ReadUpdate(ApiModel):
    message_id: int | None = Field(default=None, ge=1, le=MAX_ID)


class PresenceChoice(ApiModel):
    status: Literal["online", "away"]


class MemberOut(ApiModel):
    id: int
    username: str
    display_name: str
    role: str
    joined_at: str | None


class MemberList(ApiModel):
    items: list[MemberOut]
