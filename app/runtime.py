"""The composition root: one settings object, one database, one manager, one service.

The HTTP API and the Reflex states both take their collaborators from here, which is what
makes them clients of ONE connection manager in each process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from app.db import Database, create_schema, make_engine
from app.domain.accounts import Accounts
from app.domain.conversations import Conversations
from app.domain.members import Members
from app.domain.message_notifications import MessageNotifications
from app.domain.messages import Messages
from app.domain.notifications import Notifications
from app.domain.presence import PresenceTracker
from app.domain.presence_redis import RedisPresenceTracker
from app.domain.read_receipts import ReadReceipts
from app.domain.search import Search
from app.domain.seed import seed_demo_data
from app.domain.typing import TypingTracker
from app.gc_pauses import freeze_startup_heap
from app.metrics import Metrics
from app.realtime.broker import create_broker
from app.realtime.client import CloseReason
from app.realtime.manager import ConnectionManager
from app.realtime.service import RealtimeService
from app.realtime.tasks import cancel_and_wait
from app.realtime.writer import StreamWriter
from app.security.login_throttle import LoginThrottle, RedisLoginThrottle, SignInThrottle
from app.security.rate_limit import RateLimiter, RedisTokenBucketLimiter, TokenBucketLimiter
from app.settings import Settings, get_settings

logger = logging.getLogger(__name__)


class Runtime:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(make_engine(settings.database_url))
        self.broker = create_broker(
            settings.redis_url,
            replay_buffer_size=settings.sse_replay_buffer_size,
            replay_max_age_seconds=settings.sse_replay_max_age_seconds,
            redis_log_max_events=settings.redis_log_max_events,
            heartbeat_seconds=settings.sse_heartbeat_seconds,
        )
        self.manager = ConnectionManager(
            self.broker,
            queue_size=settings.sse_client_queue_size,
            max_streams_per_user=settings.sse_max_streams_per_user,
            heartbeat_seconds=settings.sse_heartbeat_seconds,
            max_tabs_per_user=settings.max_tabs_per_user,
        )
        self.service = RealtimeService(self.manager)
        self.writer = StreamWriter(
            write_timeout=settings.sse_write_timeout_seconds,
            flush_delay=settings.sse_flush_delay_ms / 1000,
        )
        self.metrics = Metrics(self.manager, self.broker, self.writer)
        # With Redis, limits hold across every process; without, per process.
        self._redis = (
            aioredis.from_url(settings.redis_url, decode_responses=True)
            if settings.redis_url
            else None
        )
        self.throttle: SignInThrottle = (
            RedisLoginThrottle(
                self._redis,
                max_failures=settings.login_max_failures,
                max_failures_per_address=settings.login_max_failures_per_address,
                window_seconds=settings.login_failure_window_seconds,
                enabled=settings.rate_limit_enabled,
            )
            if self._redis is not None
            else LoginThrottle(
                max_failures=settings.login_max_failures,
                max_failures_per_address=settings.login_max_failures_per_address,
                window_seconds=settings.login_failure_window_seconds,
                enabled=settings.rate_limit_enabled,
            )
        )
        self.accounts = Accounts(self.db, settings, self.throttle, self.manager)
        self.members = Members(self.db, self.accounts)
        self.notifications = Notifications(self.db, self.service, settings)
        self.conversations = Conversations(self.db, self.service, settings)
        self.typing = TypingTracker(
            self.service,
            settings,
            self._limiter(settings.rate_limit_typing_per_minute, settings.rate_limit_typing_burst),
            recipients_of=self.conversations.recipients,
        )
        # Each needs the other: typing asks who takes part, and whoever leaves stops typing.
        self.conversations.typing = self.typing
        self.message_notifications = MessageNotifications(self.db, self.notifications, settings)
        self.messages = Messages(
            self.db,
            self.service,
            settings,
            self._limiter(
                settings.rate_limit_messages_per_minute, settings.rate_limit_messages_burst
            ),
            self.typing,
            notifier=self.message_notifications,
        )
        self.read_receipts = ReadReceipts(self.messages)
        self.search = Search(
            self.db,
            limiter=self._limiter(
                settings.rate_limit_searches_per_minute, settings.rate_limit_searches_burst
            ),
        )
        self.presence: PresenceTracker | RedisPresenceTracker
        if settings.redis_url:
            self.presence = RedisPresenceTracker(
                self.manager, self.service, self.db, settings, settings.redis_url
            )
        else:
            self.presence = PresenceTracker(self.manager, self.service, self.db, settings)
        self.presence.attach()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    def _limiter(self, per_minute: int, burst: int) -> RateLimiter:
        enabled = self.settings.rate_limit_enabled
        if self._redis is not None:
            return RedisTokenBucketLimiter(
                self._redis, per_minute=per_minute, burst=burst, enabled=enabled
            )
        return TokenBucketLimiter(per_minute=per_minute, burst=burst, enabled=enabled)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await self.db.run(lambda s: create_schema(s.get_bind()))  # type: ignore[arg-type]
        if self.settings.seed_demo_data and await self.db.run(seed_demo_data):
            logger.info("seeded demo data (alice, bob, carol, dave, erin)")
        await self.manager.start()
        await self.presence.start()
        self.message_notifications.start()
        if self.settings.sse_heartbeat_seconds > 0:
            self._tasks.append(
                asyncio.create_task(self._end_stale_sessions(), name="session-sweep")
            )

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
        if self._redis is not None:
            await self._redis.aclose()
        self.metrics.close()
        self.db.engine.dispose()

    async def _end_stale_sessions(self) -> None:
        """Once a heartbeat, close streams whose token was revoked elsewhere or expired, or
        whose user was removed from the stream's tenant (by any process)."""
        while True:
            await asyncio.sleep(self.settings.sse_heartbeat_seconds)
            try:
                await self.end_stale_sessions()
            except Exception:  # the sweep must survive a database hiccup
                logger.exception("session sweep failed")

    async def end_stale_sessions(self) -> int:
        clients = self.manager.clients()
        token_ids = {c.session_ref for c in clients if c.session_ref is not None}
        ended = await self.accounts.ended_sessions(token_ids)
        # Checked per client too: a stream opened with `?tenant=` is in another tenant than
        # its token, and that membership can go while the token stays valid.
        lost = await self.accounts.lost_memberships(
            {(c.user_id, c.tenant_id) for c in clients if c.session_ref is not None}
        )
        if not ended and not lost:
            return 0
        for token_id in ended:
            self.accounts.forget_token(token_id)
        for user_id, _ in lost:
            self.accounts.forget_user(user_id)
        return self.manager.close_where(
            lambda c: (
                c.session_ref is not None
                and (c.session_ref in ended or (c.user_id, c.tenant_id) in lost)
            ),
            CloseReason.SESSION_ENDED,
        )


_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(get_settings())
    return _runtime


def configure_logging() -> None:
    """Our warnings (Redis lost, database busy, ...) reach the server's log."""
    app_logger = logging.getLogger("app")
    if not app_logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        app_logger.addHandler(handler)
        app_logger.setLevel(logging.INFO)
        app_logger.propagate = False


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
    await runtime.start()
    freeze_startup_heap()  # see app/gc_pauses.py: shorter full collections with many streams
    try:
        yield
    finally:
        await runtime.stop()
