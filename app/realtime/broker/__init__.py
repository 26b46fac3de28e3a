"""Where events travel between processes. Pick one with `create_broker(redis_url)`."""

from __future__ import annotations

from app.realtime.broker.base import Broker, BrokerUnavailable, EventListener
from app.realtime.broker.memory import MemoryBroker


def create_broker(
    redis_url: str,
    *,
    replay_buffer_size: int,
    replay_max_age_seconds: float,
    redis_log_max_events: int = 100_000,
    heartbeat_seconds: float = 30.0,
) -> Broker:
    """The in-memory broker by default; Redis when `redis_url` is set (imported lazily)."""
    if not redis_url:
        return MemoryBroker(
            replay_buffer_size=replay_buffer_size, replay_max_age_seconds=replay_max_age_seconds
        )
    from app.realtime.broker.redis import RedisBroker

    return RedisBroker(
        redis_url,
        log_max_events=redis_log_max_events,
        replay_max_age_seconds=replay_max_age_seconds,
        # Renewed every heartbeat: three missed renewals free the slot of a dead process.
        slot_lease_seconds=max(3 * heartbeat_seconds, 1.0),
    )


__all__ = ["Broker", "BrokerUnavailable", "EventListener", "MemoryBroker", "create_broker"]
