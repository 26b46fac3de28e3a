"""Where events travel between processes: `MemoryBroker` (one process, the default) and
`RedisBroker` (app/realtime/broker/redis.py, across processes, on a Redis client it is
given). app/runtime.py picks one, with the other Redis-or-memory choices, in one place."""

from __future__ import annotations

from app.realtime.broker.base import Broker, BrokerUnavailable, EventListener
from app.realtime.broker.memory import MemoryBroker

__all__ = ["Broker", "BrokerUnavailable", "EventListener", "MemoryBroker"]
