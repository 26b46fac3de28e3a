"""Presence per user and tenant, driven by the connection manager's clients.

A user is online while any client of theirs (a stream or a tab) is connected in that tenant
and active; away after `presence_idle_seconds` without activity, or by choice; offline only
after `presence_grace_seconds` with no client at all, so a reload does not flap. Exactly one
`presence:update` goes to the tenant per real change, in the order the changes happened.

`Presence` is what the rest of the app asks of presence. Two trackers keep it: this module's
`PresenceTracker` (one process, in memory) and app/domain/presence_redis.py's
`RedisPresenceTracker` (every process, in Redis). Both follow the manager's clients, run
background tasks and grace timers, and announce through one `PresenceAnnouncer`: that shared
part is `ClientDrivenPresence`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import update
from sqlmodel import Session, col, select

from app.db import Database, DatabaseUnavailable
from app.domain.principal import Principal
from app.models import Membership, User
from app.realtime.client import Client
from app.realtime.events import PresenceUpdatePayload
from app.realtime.manager import ConnectionManager
from app.realtime.service import RealtimeService
from app.realtime.tasks import cancel_and_wait
from app.settings import Settings
from app.timeutil import iso, utcnow

logger = logging.getLogger(__name__)

PresenceKey = tuple[int, int]  # tenant, user


class Status(StrEnum):
    ONLINE = "online"
    AWAY = "away"
    OFFLINE = "offline"


@dataclass(slots=True)
class _Presence:
    clients: int = 0
    status: Status = Status.OFFLINE
    chose_away: bool = False
    last_active: float = 0.0
    last_seen: datetime | None = None
    going_offline: asyncio.TimerHandle | None = field(default=None)


class Presence(Protocol):
    """Who is online, away or offline in a tenant, kept up to date from the manager's clients."""

    def attach(self) -> None:
        """Follow the manager's clients; before the first client connects."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def touch(self, principal: Principal) -> None:
        """The user did something (sent, read, typed, moved the mouse): not idle."""
        ...

    def choose(self, principal: Principal, status: Status) -> Status:
        """The user sets themselves away, or back online; returns the status as now known."""
        ...

    async def snapshot(self, tenant_id: int) -> list[PresenceUpdatePayload]:
        """Every member of the tenant with their status and when they were last seen."""
        ...


Background = dict[str, Callable[[], Coroutine[Any, Any, None]]]


class ClientDrivenPresence(ABC):
    """The lifecycle both trackers share: the manager's connect and disconnect callbacks,
    background tasks started and stopped together, and grace timers that stop cancels."""

    def __init__(self, manager: ConnectionManager, service: RealtimeService, db: Database) -> None:
        self._manager = manager
        self._db = db
        self._announcer = PresenceAnnouncer(service, db)
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()

    def attach(self) -> None:
        self._manager.on_connect(self._client_connected)
        self._manager.on_disconnect(self._client_disconnected)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(work(), name=name) for name, work in self._background().items()
        ]

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        await cancel_and_wait(self._tasks)
        self._tasks = []
        await self._stopped()

    def _later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        """Call `callback` after `delay` seconds, unless cancelled or stopped first.

        Raises RuntimeError without a running loop (at interpreter exit)."""
        timer: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(timer)
            callback()

        timer = asyncio.get_running_loop().call_later(delay, fire)
        self._timers.add(timer)
        return timer

    def _cancel(self, timer: asyncio.TimerHandle) -> None:
        timer.cancel()
        self._timers.discard(timer)  # or the set keeps every reload's timer

    @abstractmethod
    def _background(self) -> Background:
        """The tasks `start` runs until `stop`, by name."""

    async def _stopped(self) -> None:
        """After the tasks have ended: give back what this process held."""

    @abstractmethod
    def _client_connected(self, client: Client) -> None: ...

    @abstractmethod
    def _client_disconnected(self, client: Client) -> None: ...


class PresenceTracker(ClientDrivenPresence):
    """Presence of this process's clients, in memory: the single-process default."""

    def __init__(
        self,
        manager: ConnectionManager,
        service: RealtimeService,
        db: Database,
        settings: Settings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(manager, service, db)
        self._grace = settings.presence_grace_seconds
        self._idle = settings.presence_idle_seconds
        self._clock = clock
        self._presence: dict[PresenceKey, _Presence] = {}
        self._changes: asyncio.Queue[tuple[PresenceKey, Status, datetime | None]] = asyncio.Queue()

    def _background(self) -> Background:
        return {"presence-announcer": self._announce_changes, "presence-idle": self._watch_idle}

    # -- what changes presence -------------------------------------------------------

    def _client_connected(self, client: Client) -> None:
        entry = self._presence.setdefault((client.tenant_id, client.user_id), _Presence())
        entry.clients += 1
        entry.last_active = self._clock()
        if entry.going_offline is not None:
            self._cancel(entry.going_offline)  # back within the grace period: no flap
            entry.going_offline = None
        self._settle((client.tenant_id, client.user_id), entry)

    def _client_disconnected(self, client: Client) -> None:
        key = (client.tenant_id, client.user_id)
        entry = self._presence.get(key)
        if entry is None:
            return
        entry.clients = max(0, entry.clients - 1)
        if entry.clients == 0 and entry.going_offline is None:
            with contextlib.suppress(RuntimeError):  # no running loop at interpreter exit
                entry.going_offline = self._later(self._grace, lambda: self._grace_over(key))

    def _grace_over(self, key: PresenceKey) -> None:
        entry = self._presence.get(key)
        if entry is None:
            return
        entry.going_offline = None
        if entry.clients == 0:
            self._settle(key, entry)

    def touch(self, principal: Principal) -> None:
        key = (principal.tenant_id, principal.user_id)
        entry = self._presence.get(key)
        if entry is None:
            return
        entry.last_active = self._clock()
        self._settle(key, entry)

    def choose(self, principal: Principal, status: Status) -> Status:
        key = (principal.tenant_id, principal.user_id)
        entry = self._presence.setdefault(key, _Presence())
        entry.chose_away = status is Status.AWAY
        entry.last_active = self._clock()
        self._settle(key, entry)
        return entry.status

    def _settle(self, key: PresenceKey, entry: _Presence) -> None:
        """Recompute the status from the facts; announce it if it changed."""
        if entry.clients == 0:
            # Offline only once the grace timer has run out.
            status = entry.status if entry.going_offline is not None else Status.OFFLINE
        elif entry.chose_away or self._clock() - entry.last_active >= self._idle:
            status = Status.AWAY
        else:
            status = Status.ONLINE
        if status is entry.status:
            return
        entry.status = status
        entry.last_seen = utcnow()
        self._changes.put_nowait((key, status, entry.last_seen))

    async def _watch_idle(self) -> None:
        interval = max(0.05, min(self._idle / 4, 15.0))
        while True:
            await asyncio.sleep(interval)
            for key, entry in list(self._presence.items()):
                if entry.status is Status.ONLINE:
                    self._settle(key, entry)

    async def _announce_changes(self) -> None:
        while True:
            key, status, last_seen = await self._changes.get()
            try:
                await self._announcer.announce(key, status, last_seen)
            except Exception:  # one failed announcement must not stop presence
                logger.exception("presence announcement failed")

    # -- reading ---------------------------------------------------------------------

    async def snapshot(self, tenant_id: int) -> list[PresenceUpdatePayload]:
        result = []
        for user_id, name, stored_last_seen in await tenant_members(self._db, tenant_id):
            entry = self._presence.get((tenant_id, user_id))
            status = entry.status if entry is not None else Status.OFFLINE
            last_seen = (
                entry.last_seen if entry is not None and entry.last_seen else stored_last_seen
            )
            if status is not Status.OFFLINE:
                last_seen = utcnow()
            result.append(
                PresenceUpdatePayload(
                    user_id=user_id, user_name=name, status=status.value, last_seen=iso(last_seen)
                )
            )
        return result

    def status_of(self, tenant_id: int, user_id: int) -> Status:
        entry = self._presence.get((tenant_id, user_id))
        return entry.status if entry is not None else Status.OFFLINE


async def tenant_members(db: Database, tenant_id: int) -> list[tuple[int, str, datetime | None]]:
    """(user id, display name, last seen as stored) of every member of the tenant."""

    def load(session: Session) -> list[tuple[int, str, datetime | None]]:
        return list(
            session.exec(  # type: ignore[arg-type]  # SQLModel types ids int | None; stored rows have one
                select(User.id, User.display_name, Membership.last_seen_at)
                .join(Membership, col(Membership.user_id) == col(User.id))
                .where(Membership.tenant_id == tenant_id)
                .order_by(col(User.display_name))
            ).all()
        )

    return await db.run(load)


class PresenceAnnouncer:
    """Sends one presence:update, and records "last seen" when someone goes offline."""

    def __init__(self, service: RealtimeService, db: Database) -> None:
        self._service = service
        self._db = db
        self._names: dict[int, str] = {}

    async def announce(self, key: PresenceKey, status: Status, last_seen: datetime | None) -> None:
        tenant_id, user_id = key
        if status is Status.OFFLINE:
            await self._record_last_seen(tenant_id, user_id, last_seen)
        name = self._names.get(user_id)
        if name is None:

            def load_name(session: Session) -> str:
                user = session.get(User, user_id)
                return user.display_name if user is not None else f"user {user_id}"

            name = self._names[user_id] = await self._db.run(load_name)
        await self._service.emit_presence(
            tenant_id=tenant_id,
            payload=PresenceUpdatePayload(
                user_id=user_id, user_name=name, status=status.value, last_seen=iso(last_seen)
            ),
        )

    async def _record_last_seen(
        self, tenant_id: int, user_id: int, last_seen: datetime | None
    ) -> None:
        """Best effort: with the database locked, the tenant still learns that someone left."""

        def record(session: Session) -> None:
            session.exec(
                update(Membership)
                .where(col(Membership.tenant_id) == tenant_id)
                .where(col(Membership.user_id) == user_id)
                .values(last_seen_at=last_seen)
            )
            session.commit()

        try:
            await self._db.run(record)
        except DatabaseUnavailable as exc:
            logger.warning("last seen of user %s not recorded: %s", user_id, exc)
