"""Where events travel between processes. Pick one with `create_broker(redis_url)`."""

from __future__ import annotations

from app.realtime.broker.base import Broker, EventListener
from app.realtime.broker.memory import MemoryBroker


def create_broker(redis_url: str, *, replay_buffer_size: int, replay_max_age_seconds: float) -> Broker:
    if not redis_url:
        return MemoryBroker(
            replay_buffer_size=replay_buffer_size, replay_max_age_seconds=replay_max_age_seconds
        )
    raise RuntimeError(
        "REDIS_URL is set but this build has no Redis broker yet; unset REDIS_URL to use the "
        "in-memory broker"
    )


__all__ = ["Broker", "EventListener", "MemoryBroker", "create_broker"]
