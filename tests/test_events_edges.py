"""Events as consumers see them: camelCase payloads, and the same id, type and data on
either transport."""

from __future__ import annotations

import json

from app.realtime.events import ChatUnreadCountPayload, Event, EventType
from app.realtime.ids import EventId


def test_payloads_are_camel_case_on_the_wire() -> None:
    payload = ChatUnreadCountPayload(conversation_id=5, count=1, total=2)
    assert payload.to_data() == {"conversationId": 5, "count": 1, "total": 2}


def test_as_dict_gives_the_id_as_text_and_none_for_control_events() -> None:
    data = {"conversationId": 5}
    event = Event(type=EventType.CHAT_TYPING, data=data, id=EventId(3, 4), published_at=7.0)
    assert event.as_dict() == {
        "id": "3-4",
        "type": "chat:typing",
        "data": {"conversationId": 5, "sentAt": 7000},
    }
    ping = Event(type=EventType.PING, data={"ts": "t"}, published_at=7.0015)
    assert ping.as_dict() == {"id": None, "type": "ping", "data": {"ts": "t", "sentAt": 7001}}


def test_both_transports_carry_the_same_payload_with_its_publish_moment() -> None:
    event = Event(type=EventType.CHAT_TYPING, data={"isTyping": True}, published_at=12.345)
    (line,) = [x for x in event.wire().decode().splitlines() if x.startswith("data: ")]
    assert json.loads(line[len("data: ") :]) == event.as_dict()["data"]
    assert event.as_dict()["data"] == {"isTyping": True, "sentAt": 12345}
    assert event.data == {"isTyping": True}  # what the server's own code reads is untouched
