"""What a test reads from an event's wire payload: the type's fields, with the `sentAt`
every event carries (app/realtime/events.py, Event.wire_data) checked and set apart."""

from __future__ import annotations

import json
import time
from typing import Any

# An event read back in a test was published within this many seconds before.
_RECENT_SECONDS = 600


def payload(data: str | dict[str, Any]) -> dict[str, Any]:
    """The payload without `sentAt`, which must be a recent moment in milliseconds."""
    fields = dict(json.loads(data) if isinstance(data, str) else data)
    sent_at = fields.pop("sentAt")
    assert isinstance(sent_at, int), f"sentAt is {sent_at!r}"
    now_ms = time.time() * 1000
    assert now_ms - _RECENT_SECONDS * 1000 <= sent_at <= now_ms + 1000, f"sentAt {sent_at}"
    return fields


def payload_text(data: str) -> str:
    """`payload(data)` as the compact JSON the server writes."""
    return json.dumps(payload(data), separators=(",", ":"), ensure_ascii=False)
