"""The one Server-Sent Events encoder (WHATWG HTML, "Server-sent events", section 9.2).

Deliberate choices, so nobody "fixes" them:
- Data is split on every line break the SSE parser recognises (CRLF, CR, LF) into several
  `data:` lines; the parser joins them back with LF. A lone CR or a CRLF in data therefore
  comes back as LF: that is the protocol, not a bug. Our JSON payloads never contain a raw
  line break, so they round-trip exactly.
- `id:` and `event:` values that contain CR, LF or NUL are refused with ValueError instead of
  being cleaned: a field injection must be impossible, not repaired.
- A space always follows the colon, so values starting with a space survive (the parser
  strips exactly one).
"""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FORBIDDEN_IN_FIELD = re.compile(r"[\r\n\x00]")


def _checked_field(name: str, value: str) -> str:
    if _FORBIDDEN_IN_FIELD.search(value):
        raise ValueError(f"SSE {name} must not contain CR, LF or NUL: {value!r}")
    return value


def encode_sse(
    *,
    data: str | None = None,
    event: str | None = None,
    id: str | None = None,
    retry_ms: int | None = None,
    comment: str | None = None,
) -> bytes:
    """Encode one SSE message (terminated by a blank line) as UTF-8 bytes."""
    lines: list[str] = []
    if comment is not None:
        lines.extend(f": {line}" for line in _LINE_BREAK.split(comment))
    if retry_ms is not None:
        if retry_ms < 0:
            raise ValueError("SSE retry must not be negative")
        lines.append(f"retry: {int(retry_ms)}")
    if id is not None:
        lines.append(f"id: {_checked_field('id', id)}")
    if event is not None:
        lines.append(f"event: {_checked_field('event', event)}")
    if data is not None:
        lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    if not lines:
        raise ValueError("an SSE message needs at least one field")
    return ("\n".join(lines) + "\n\n").encode("utf-8")
