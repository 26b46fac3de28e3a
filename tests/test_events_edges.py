"""Events as consumers see them: camelCase payloads, and the same id, type and data on
either transport."""

from __future__ import annotations

from app.realtime.events import ChatUnreadCountPayload, Event, EventType
from app.realtime.ids import EventId


def test_payloads_are_camel_case_on_the_wire() -> None:
    payload = ChatUnreadCountPayload(conversation_id=5, count=1, total=2)
    assert payload.to_data() == {"conversationId": 5, "count": 1, "total": 2}


def test_as_dict_gives_the_id_as_text_and_none_for_control_events() -> None:
    data = {"conversationId": 5}
    event = Event(type=EventType.CHAT_TYPING, data=data, id=EventId(3, 4))
    assert event.as_dict() == {"id": "3-4", "type": "chat:typing", "data": data}
    ping = Event(type=EventType.PING, data={"ts": "t"})
    assert ping.as_dict() == {"id": None, "type": "ping", "data": {"ts": "t"}}
