"""Event ids: `<epoch>-<sequence>`, comparable, and unique across restarts.

The epoch names the history an id belongs to (the in-memory broker uses its start time in
milliseconds, so a restarted server never mistakes an old id for a new one); the sequence
orders events within it. The shape matches Redis Stream ids on purpose.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# [0-9], not \d: \d also matches other scripts' digits, which int() would accept.
_ID_PATTERN = re.compile(r"([0-9]{1,19})-([0-9]{1,19})")


@dataclass(frozen=True, order=True, slots=True)
class EventId:
    epoch: int
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}-{self.seq}"

    @classmethod
    def parse(cls, raw: str | None) -> EventId | None:
        """The id in `raw`, or None when it is absent or not an event id of ours."""
        if raw is None:
            return None
        match = _ID_PATTERN.fullmatch(raw.strip())
        if match is None:
            return None
        return cls(int(match.group(1)), int(match.group(2)))
