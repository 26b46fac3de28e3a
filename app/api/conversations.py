"""Conversations, messages, typing and read cursors over REST."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response

from app.api.deps import ActivePrincipalDep, PrincipalDep, RuntimeDep
from app.api.schemas import (
    MAX_ID,
    ConversationCreate,
    ConversationRename,
    MessageCreate,
    MessageEdit,
    ParticipantsAdd,
    ReadUpdate,
    TypingUpdate,
)
from app.domain.conversations import ConversationView

router = APIRouter(prefix="/api/conversations", tags=["conversations"])

ConversationId = Annotated[int, Path(ge=1, le=MAX_ID)]
MessageId = Annotated[int, Path(ge=1, le=MAX_ID)]
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]


def _conversation_out(view: ConversationView) -> dict[str, Any]:
    return {
        "id": view.id,
        "kind": view.kind,
        "title": view.title,
        "participants": [
            {"id": p.id, "username": p.username, "displayName": p.display_name}
            for p in view.participants
        ],
        "lastMessage": view.last_message.to_data() if view.last_message else None,
        "unreadCount": view.unread_count,
        "createdAt": view.created_at,
    }


@router.get("")
async def list_conversations(principal: PrincipalDep, runtime: RuntimeDep) -> dict[str, Any]:
    """Latest activity first, with participants, last message and unread counts."""
    views, total = await runtime.conversations.list_for(principal)
    return {"items": [_conversation_out(v) for v in views], "totalUnread": total}


@router.post("", status_code=201)
async def create_conversation(
    body: ConversationCreate, principal: ActivePrincipalDep, runtime: RuntimeDep, response: Response
) -> dict[str, Any]:
    """201 with a new conversation; 200 with the existing one for a repeated 1:1."""
    view, created = await runtime.conversations.create(principal, body.participant_ids, body.title)
    if not created:
        response.status_code = 200
    return _conversation_out(view)


@router.get("/{conversation_id}")
async def get_conversation(
    conversation_id: ConversationId, principal: PrincipalDep, runtime: RuntimeDep
) -> dict[str, Any]:
    return _conversation_out(await runtime.conversations.get(principal, conversation_id))


@router.patch("/{conversation_id}")
async def rename_conversation(
    conversation_id: ConversationId,
    body: ConversationRename,
    principal: ActivePrincipalDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """A group's title, `null` or blank for none (422 for a 1:1)."""
    view = await runtime.conversations.rename(principal, conversation_id, body.title)
    return _conversation_out(view)


@router.post("/{conversation_id}/participants")
async def add_participants(
    conversation_id: ConversationId,
    body: ParticipantsAdd,
    principal: ActivePrincipalDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Members of your tenant join a group; those already in it are left alone."""
    view = await runtime.conversations.add_people(principal, conversation_id, body.user_ids)
    return _conversation_out(view)


@router.delete(
    "/{conversation_id}/participants/{user_id}",
    response_model=None,
    responses={204: {"description": "You left the conversation."}},
)
async def remove_participant(
    conversation_id: ConversationId,
    user_id: UserId,
    principal: ActivePrincipalDep,
    runtime: RuntimeDep,
) -> dict[str, Any] | Response:
    """Another participant of a group: 200 with the conversation. Your own id: you leave,
    204."""
    if user_id == principal.user_id:
        await runtime.conversations.leave(principal, conversation_id)
        return Response(status_code=204)
    view = await runtime.conversations.remove_person(principal, conversation_id, user_id)
    return _conversation_out(view)


@router.get("/{conversation_id}/messages")
async def list_messages(
    conversation_id: ConversationId,
    principal: PrincipalDep,
    runtime: RuntimeDep,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> dict[str, Any]:
    """Newest first. For older pages pass the smallest id you have as `before`."""
    page = await runtime.messages.history(principal, conversation_id, before=before, limit=limit)
    return {"items": [m.to_data() for m in page.items], "hasMore": page.has_more}


@router.post("/{conversation_id}/messages", status_code=201)
async def send_message(
    conversation_id: ConversationId,
    body: MessageCreate,
    principal: ActivePrincipalDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    sent = await runtime.messages.send(principal, conversation_id, body.content)
    return sent.message.to_data()


@router.patch("/{conversation_id}/messages/{message_id}")
async def edit_message(
    conversation_id: ConversationId,
    message_id: MessageId,
    body: MessageEdit,
    principal: ActivePrincipalDep,
    runtime: RuntimeDep,
) -> dict[str, Any]:
    """Your own message only (403 for another's); 409 once it is deleted."""
    edited = await runtime.messages.edit(principal, conversation_id, message_id, body.content)
    return edited.to_data()


@router.delete("/{conversation_id}/messages/{message_id}", status_code=204)
async def delete_message(
    conversation_id: ConversationId,
    message_id: MessageId,
    principal: ActivePrincipalDep,
    runtime: RuntimeDep,
) -> Response:
    """Your own message only (403 for another's); deleting it again changes nothing."""
    await runtime.messages.delete(principal, conversation_id, message_id)
    return Response(status_code=204)


@router.post("/{conversation_id}/typing", status_code=204)
async def set_typing(
    conversation_id: ConversationId,
    body: TypingUpdate,
    principal: ActivePrincipalDep,
    runtime: RuntimeDep,
) -> Response:
    await runtime.typing.set_typing(principal, conversation_id, body.is_typing)
    return Response(status_code=204)


@router.post("/{conversation_id}/read")
async def mark_read(
    conversation_id: ConversationId,
    principal: ActivePrincipalDep,
    runtime: RuntimeDep,
    body: Annotated[ReadUpdate | None, Body()] = None,
) -> dict[str, Any]:
    """Moves your read cursor to `messageId`, or to the newest message."""
    change = await runtime.messages.mark_read(
        principal, conversation_id, body.message_id if body else None
    )
    return {"conversationId": conversation_id, "count": change.count, "total": change.total}
