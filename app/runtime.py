"""The composition root: it builds this process's collaborators, wires them together, starts
and stops them, and does nothing else. Rules live in app/domain (the session sweep is
app/domain/sessions.py; the runtime only schedules it).

How code reaches the runtime, pages and API alike: `get_runtime()`, the one accessor. Reflex
states (app/state/*.py) call it; the API's `RuntimeDep` (app/api/deps.py) is
`Depends(current_runtime)`, which returns `get_runtime()`. That makes them clients of ONE
connection manager in each process. (A test gives an API app a runtime of its own with
FastAPI's `dependency_overrides[current_runtime]`.)

Where the state shared between processes lives is chosen once, by `_flavour(settings)`:
`InMemory` (the default: one process, nothing to install) or `InRedis` (REDIS_URL set: every
process sees the same events, presence and limits). The flavour builds the broker, the
presence tracker, the rate limiters and the sign-in throttle. With Redis they all share ONE
client, so ONE connection pool per process, which the runtime closes after all of them have
stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from app import logs
from app.db import Database, create_schema, make_engine
from app.domain.accounts import Accounts
from app.domain.conversations import Conversations
from app.domain.members import Members
from app.domain.message_notifications import MessageNotifications
from app.domain.messages import Messages
from app.domain.notifications import Notifications
from app.domain.presence import Presence, PresenceTracker
from app.domain.presence_redis import RedisPresenceTracker
from app.domain.read_receipts import ReadReceipts
from app.domain.search import Search
from app.domain.seed import seed_demo_data
from app.domain.sessions import SessionSweep
from app.domain.typing import TypingTracker
from app.gc_pauses import freeze_startup_heap
from app.metrics import Metrics
from app.migrations import SchemaNotCurrent
from app.realtime.broker import Broker, MemoryBroker
from app.realtime.broker.redis import RedisBroker
from app.realtime.latency import DeliveryLatency
from app.realtime.manager import ConnectionManager
from app.realtime.service import RealtimeService
from app.realtime.tasks import cancel_and_wait
from app.realtime.writer import StreamWriter
from app.security.login_throttle import LoginThrottle, RedisLoginThrottle, SignInThrottle
from app.security.rate_limit import RateLimiter, RedisTokenBucketLimiter, TokenBucketLimiter
from app.settings import STARTUP_FAILURE, Settings, get_settings, sentinel_target

logger = logging.getLogger(__name__)


class Flavour(Protocol):
    """Builds the collaborators whose state is either this process's or every process's."""

    @property
    def redis(self) -> aioredis.Redis | None:
        """The process's one Redis client, shared by all it builds; None in memory."""
        ...

    def broker(self) -> Broker: ...

    def presence(
        self, manager: ConnectionManager, service: RealtimeService, db: Database
    ) -> Presence: ...

    def limiter(self, per_minute: int, burst: int) -> RateLimiter: ...

    def throttle(self) -> SignInThrottle: ...


class InMemory:
    """One process: events, presence and limits in this process's memory."""

    redis: aioredis.Redis | None = None

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def broker(self) -> Broker:
        return MemoryBroker(
            replay_buffer_size=self._settings.sse_replay_buffer_size,
            replay_max_age_seconds=self._settings.sse_replay_max_age_seconds,
        )

    def presence(
        self, manager: ConnectionManager, service: RealtimeService, db: Database
    ) -> Presence:
        return PresenceTracker(manager, service, db, self._settings)

    def limiter(self, per_minute: int, burst: int) -> RateLimiter:
        return TokenBucketLimiter(
            per_minute=per_minute, burst=burst, enabled=self._settings.rate_limit_enabled
        )

    def throttle(self) -> SignInThrottle:
        s = self._settings
        return LoginThrottle(
            max_failures=s.login_max_failures,
            max_failures_per_address=s.login_max_failures_per_address,
            window_seconds=s.login_failure_window_seconds,
            enabled=s.rate_limit_enabled,
        )


class InRedis:
    """Every process: the same events, presence and limits through Redis, over one client."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        # Connections open lazily, on first use: building the runtime needs no Redis yet.
        self.redis: aioredis.Redis = redis_client(settings.redis_url)

    def broker(self) -> Broker:
        s = self._settings
        return RedisBroker(
            self.redis,
            log_max_events=s.redis_log_max_events,
            replay_max_age_seconds=s.sse_replay_max_age_seconds,
            # Renewed every heartbeat: three missed renewals free the slot of a dead process.
            slot_lease_seconds=max(3 * s.sse_heartbeat_seconds, 1.0),
        )

    def presence(
        self, manager: ConnectionManager, service: RealtimeService, db: Database
    ) -> Presence:
        return RedisPresenceTracker(manager, service, db, self._settings, self.redis)

    def limiter(self, per_minute: int, burst: int) -> RateLimiter:
        return RedisTokenBucketLimiter(
            self.redis,
            per_minute=per_minute,
            burst=burst,
            enabled=self._settings.rate_limit_enabled,
        )

    def throttle(self) -> SignInThrottle:
        s = self._settings
        return RedisLoginThrottle(
            self.redis,
            max_failures=s.login_max_failures,
            max_failures_per_address=s.login_max_failures_per_address,
            window_seconds=s.login_failure_window_seconds,
            enabled=s.rate_limit_enabled,
        )


class _SentinelPool(SentinelConnectionPool):
    """The primary's connections; closing them closes the connections to the sentinels too
    (redis-py's pool leaves those open)."""

    async def disconnect(self, inuse_connections: bool = True) -> None:
        await super().disconnect(inuse_connections)
        for sentinel in self.sentinel_manager.sentinels:
            await sentinel.connection_pool.disconnect(inuse_connections)


def redis_client(url: str) -> aioredis.Redis:
    """The process's one Redis client. With `redis+sentinel://` every connection it opens
    asks the sentinels for the current primary, so the broker, presence, the limits and the
    live feed's subscription all follow a failover (app/realtime/broker/redis.py starts a new
    epoch on the promoted replica)."""
    target = sentinel_target(url)
    if target is None:
        return aioredis.from_url(url, decode_responses=True)
    # A sentinel that is down must not hold up the question to the next one.
    sentinels = Sentinel(
        target.sentinels,
        sentinel_kwargs={"socket_timeout": 1.0, "socket_connect_timeout": 1.0},
    )
    return sentinels.master_for(
        target.service,
        connection_pool_class=_SentinelPool,
        db=target.db,
        username=target.username,
        password=target.password,
        decode_responses=True,
    )


def _flavour(settings: Settings) -> Flavour:
    """The one place that decides between this process's memory and Redis."""
    return InRedis(settings) if settings.redis_url else InMemory(settings)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        flavour = _flavour(settings)
        self.redis = flavour.redis  # None without Redis; else shared by everyone below
        self.db = Database(make_engine(settings.database_url))
        self.broker = flavour.broker()
        self.manager = ConnectionManager(
            self.broker,
            queue_size=settings.sse_client_queue_size,
            max_streams_per_user=settings.sse_max_streams_per_user,
            heartbeat_seconds=settings.sse_heartbeat_seconds,
            max_tabs_per_user=settings.max_tabs_per_user,
        )
        self.service = RealtimeService(self.manager)
        # Publish-to-write latency, counted by both transports: the stream writer and each
        # tab's forwarder (app/state/live.py).
        self.latency = DeliveryLatency()
        self.writer = StreamWriter(
            write_timeout=settings.sse_write_timeout_seconds,
            flush_delay=settings.sse_flush_delay_ms / 1000,
            latency=self.latency,
        )
        self.metrics = Metrics(self.manager, self.broker, self.writer)
        self.throttle = flavour.throttle()
        self.accounts = Accounts(self.db, settings, self.throttle, self.manager)
        self.sessions = SessionSweep(self.accounts, self.manager)
        self.members = Members(self.db, self.accounts)
        self.notifications = Notifications(self.db, self.service, settings)
        self.conversations = Conversations(self.db, self.service, settings)
        self.typing = TypingTracker(
            self.service,
            settings,
            flavour.limiter(
                settings.rate_limit_typing_per_minute, settings.rate_limit_typing_burst
            ),
            recipients_of=self.conversations.recipients,
        )
        # Each needs the other: typing asks who takes part, and whoever leaves stops typing.
        self.conversations.typing = self.typing
        self.message_notifications = MessageNotifications(self.db, self.notifications, settings)
        self.messages = Messages(
            self.db,
            self.service,
            settings,
            flavour.limiter(
                settings.rate_limit_messages_per_minute, settings.rate_limit_messages_burst
            ),
            self.typing,
            notifier=self.message_notifications,
        )
        # Processes sharing Redis keep a conversation's order with what only the database knows.
        self.broker.fill_gaps_with(self.messages.missed_events)
        self.read_receipts = ReadReceipts(self.messages)
        self.search = Search(
            self.db,
            limiter=flavour.limiter(
                settings.rate_limit_searches_per_minute, settings.rate_limit_searches_burst
            ),
        )
        self.presence: Presence = flavour.presence(self.manager, self.service, self.db)
        self.presence.attach()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        auto_migrate = self.settings.database_auto_migrate
        await self.db.run(lambda _session: create_schema(self.db.engine, auto_migrate))
        if self.settings.seed_demo_data and await self.db.run(seed_demo_data):
            logger.info("seeded demo data (alice, bob, carol, dave, erin)")
        await self.manager.start()
        await self.presence.start()
        self.message_notifications.start()
        if self.settings.sse_heartbeat_seconds > 0:
            # Sign-outs and removed members of other processes reach this one's streams here.
            sweep = _every(
                self.settings.sse_heartbeat_seconds, self.sessions.end_stale, "session sweep"
            )
            self._tasks.append(asyncio.create_task(sweep, name="session-sweep"))

    async def stop(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        if self._started:
            await self.message_notifications.stop()
            await self.typing.close()
            await self.read_receipts.close()
            await self.manager.stop()
            await self.writer.close()
            await self.presence.stop()
            self.accounts.password_hashes.close()
            self._started = False
        if self.redis is not None:
            await self.redis.aclose()  # last: presence gives its leases back on stop
        self.metrics.close()
        self.db.close()


async def _every(seconds: float, job: Callable[[], Awaitable[object]], name: str) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            await job()
        except Exception:  # the next round must still run after a database hiccup
            logger.exception("%s failed", name)


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """This process's runtime, built from the settings on first use: the one accessor."""
    global _runtime
    if _runtime is None:
        _runtime = Runtime(get_settings())
    return _runtime


def configure_logging() -> None:
    """Our log lines (the vocabulary of app/logs.py, warnings such as Redis lost) reach the
    server's log, as LOG_FORMAT and LOG_LEVEL say: the same under every start, since both
    run this lifespan."""
    settings = get_settings()
    logs.configure(settings.log_format, settings.log_level)


@contextlib.asynccontextmanager
async def lifespan() -> AsyncIterator[None]:
    """Registered as a Reflex lifespan task: start and stop the process's runtime."""
    configure_logging()
    # Everything this backend process writes from here on (Reflex's saved page states,
    # SQLite's files) is for its own user only. Not at import: the `reflex` command imports
    # the app too, and its frontend build may be served by someone else.
    os.umask(0o077)
    from app.state.state_store import keep_state_store_private  # Reflex's; app.state imports us

    keep_state_store_private()
    runtime = get_runtime()
    try:
        await runtime.start()
    except SchemaNotCurrent as exc:
        # One line that names the command, not a traceback from inside the server's start.
        print(exc, file=sys.stderr, flush=True)
        os._exit(STARTUP_FAILURE)
    freeze_startup_heap()  # see app/gc_pauses.py: shorter full collections with many streams
    try:
        yield
    finally:
        await runtime.stop()
