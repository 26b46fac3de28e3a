"""Events across processes and machines through Redis.

Key layout (ready for Redis Cluster: every key of one tenant shares the hash tag `{tN}`,
so a tenant's log, sequence and epoch live in one slot and the publish script may touch
them together; tenants spread across slots):

    chat:{t42}:seq     INCR counter: the tenant's event sequence (dense: 1, 2, 3, ...)
    chat:{t42}:epoch   when this log began (ms); a new epoch means old ids are unknown
    chat:{t42}:log     Stream, entry id `<seq>-1`, capped by MAXLEN: the replay history
    chat:{t42}:primary the replication id of the primary that issues this epoch's ids
    chat:{t42}:ended   the epoch a promoted replica ended, if this one began at a failover
    chat:{t42}:order   Hash: conversation id -> the newest message id published of it
    chat:{t42}:filled  Set of `<conversation>:<message>` published early to fill a gap (1 day)
    chat:events        Pub/sub channel every process subscribes to: live delivery

Publishing is one Lua script: INCR the sequence, XADD to the log, PUBLISH. So the log order,
the live order and the ids agree in every process. A process remembers the last sequence
it delivered per tenant; a gap (a pub/sub message lost while reconnecting) is filled from
the log before anything newer is delivered, and repeats are dropped: every process hands
each event to its manager exactly once, in order.

Deliberate divergences from the in-memory broker, so nobody "fixes" them:
- Ids are `<epoch>-<seq>` per tenant, not per process: a consumer resumes on any process.
- Events of no tenant (the `global` channel) are delivered live but not replayed.
- While Redis is unreachable, publishes wait in a bounded outbox and go out, in order, when
  it is back; `accepting` turns False when the outbox is full, and use cases refuse new
  work (503) before storing anything.
- A promoted replica (a Sentinel failover) starts a new epoch at its first publish:
  replication is asynchronous, so the old primary's last events may never have reached it,
  and issuing their sequence numbers again would give two events one id. Every process then
  tells its clients of that tenant to `resync`, since it cannot know whether it missed any of
  them. A Redis restarted empty starts a new epoch too, without the resync (as before).
- A conversation's messages go out in the order they were stored (message id order), across
  processes and outages: each process has its own outbox, and two processes flushing theirs
  after an outage would interleave one sender's messages. A chat:message carries its
  predecessor's id; when its predecessor has not been published yet (it waits in another
  process's outbox, or that process is slow), the publish script refuses it as a gap, this
  process reads the missing messages from the database (the filler, app/domain/messages.py)
  and publishes them first, and the other process's copy is skipped when it comes. Where
  Redis lost the order hash (restarted empty), the last position this process saw is the
  starting point; a process that has seen nothing of that conversation cannot tell a gap.
- The broker is handed the process's one Redis client (shared with presence and the limits,
  app/runtime.py) and never closes it: its owner does, after everyone has stopped. The live
  feed's subscription holds one connection of that client's pool for as long as it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.realtime.broker.base import Broker, BrokerUnavailable, EventListener, GapFiller
from app.realtime.channels import tenant_channel
from app.realtime.events import Event, EventType, MessageOrder, ResyncPayload
from app.realtime.ids import EventId
from app.realtime.publish_log import log_duplicate, log_published, log_queued
from app.realtime.stream_slots import RedisStreamSlots
from app.realtime.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

PREFIX = "chat"
LIVE_CHANNEL = f"{PREFIX}:events"
GLOBAL_LOG = "global"

# KEYS: seq, log, epoch. ARGV: maxlen, payload, live channel, now in ms, log name.
# Returns {epoch, seq}; or, from _IN_CONVERSATION_ORDER, {'dup', mark} or {'gap', mark}.
_PUBLISH = """
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = ARGV[4]
  redis.call('SET', KEYS[3], epoch)
end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], seq .. '-1', 'e', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[5] .. ' ' .. epoch .. ' ' .. seq .. ' ' .. ARGV[2])
return {epoch, seq}
"""

# Run before _PUBLISH, in the same script. KEYS[4], KEYS[5]: primary, ended. A primary whose
# replication id is not the one that issued the epoch's ids was promoted since: it ends that
# epoch and starts one later than it (an epoch begun before the primary key existed is kept).
# Its conversations' positions (KEYS[6], KEYS[7]) may lag behind what went out, and would
# refill messages already delivered: they go too, and each process's own take their place.
_NEW_PRIMARY_NEW_EPOCH = """
local primary = string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')
local issuer = redis.call('GET', KEYS[4])
if issuer ~= primary then
  local ended = redis.call('GET', KEYS[3])
  if issuer and ended then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[6], KEYS[7])
    if tonumber(ARGV[4]) > tonumber(ended) then
      redis.call('SET', KEYS[3], ARGV[4])
    else
      redis.call('INCR', KEYS[3])
    end
    redis.call('SET', KEYS[5], ended)
  end
  redis.call('SET', KEYS[4], primary)
end
"""


# Run between the two scripts above, so a refused event takes no sequence number.
# KEYS[6], KEYS[7]: order, filled. ARGV[6..11]: conversation ('' for an event of no
# conversation), message id, previous message id (''), '1' for a gap's refill, this
# process's last known position of the conversation (''), '1' to check for a gap.
# mark: the newest message of the conversation published; a refill is skipped when its
# message is no newer, and the original of a refilled message is skipped when it comes.
_IN_CONVERSATION_ORDER = """
if ARGV[6] ~= '' then
  local pos = tonumber(ARGV[7])
  local mark = tonumber(redis.call('HGET', KEYS[6], ARGV[6]) or ARGV[10])
  local member = ARGV[6] .. ':' .. ARGV[7]
  if ARGV[9] == '1' then
    if mark and pos <= mark then return {'dup', mark} end
    redis.call('SADD', KEYS[7], member)
    redis.call('EXPIRE', KEYS[7], 86400)
  else
    if redis.call('SREM', KEYS[7], member) == 1 or pos == mark then
      return {'dup', mark or pos}
    end
    if ARGV[11] == '1' and mark and ARGV[8] ~= '' and tonumber(ARGV[8]) > mark then
      return {'gap', mark}
    end
  end
  if not mark or pos > mark then redis.call('HSET', KEYS[6], ARGV[6], ARGV[7]) end
end
"""

# Positions remembered per (tenant, conversation): a seed for a Redis that lost its order.
_KNOWN_POSITIONS = 10_000


def _log_name(tenant_id: int | None) -> str:
    return GLOBAL_LOG if tenant_id is None else f"t{tenant_id}"


def _keys(log: str) -> tuple[str, str, str]:
    tag = "{" + log + "}"
    return f"{PREFIX}:{tag}:seq", f"{PREFIX}:{tag}:log", f"{PREFIX}:{tag}:epoch"


def _failover_keys(log: str) -> tuple[str, str]:
    tag = "{" + log + "}"
    return f"{PREFIX}:{tag}:primary", f"{PREFIX}:{tag}:ended"


def _order_keys(log: str) -> tuple[str, str]:
    tag = "{" + log + "}"
    return f"{PREFIX}:{tag}:order", f"{PREFIX}:{tag}:filled"


def _encode(event: Event) -> str:
    body: dict[str, Any] = {
        "type": event.type,
        "data": event.data,
        "channels": list(event.channels),
        "tenant": event.tenant_id,
        "ts": event.published_at,
    }
    if event.order is not None:  # every process learns the conversation's position
        body["o"] = [event.order.conversation_id, event.order.message_id]
    return json.dumps(
        body,
        separators=(",", ":"),
        ensure_ascii=True,  # the payload travels inside a space-separated frame
    )


def _decode(raw: str, epoch: int, seq: int) -> Event:
    body = json.loads(raw)
    position = body.get("o")
    return Event(
        type=body["type"],
        data=body["data"],
        channels=tuple(body["channels"]),
        tenant_id=body["tenant"],
        id=EventId(epoch, seq),
        published_at=body["ts"],
        order=None if position is None else MessageOrder(position[0], position[1]),
    )


def _position(event: Event) -> tuple[tuple[int, int], int] | None:
    """((tenant, conversation), message id) of a chat:message; None for any other event."""
    if event.order is None or event.tenant_id is None:
        return None
    return (event.tenant_id, event.order.conversation_id), event.order.message_id


async def _no_filler(_tenant: int, _conversation: int, _after: int, _before: int) -> list[Event]:
    return []


class RedisBroker(Broker):
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        log_max_events: int,
        replay_max_age_seconds: float,
        outbox_size: int = 10_000,
        reconnect_seconds: float = 0.5,
        slot_lease_seconds: float = 90.0,
        subscribe_timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis  # with decode_responses=True: frames and fields are str
        self._clock = clock  # wall-clock seconds: new epochs (ms) and the replay window
        self._subscribe_timeout = subscribe_timeout_seconds
        self._log_max_events = log_max_events
        self._max_age = replay_max_age_seconds
        self._listeners: list[EventListener] = []
        # Per log this process follows: (epoch, last sequence handed to the listeners).
        # An epoch of None means "no event yet": the first epoch seen is read from seq 1.
        self._delivered: dict[str, tuple[int | None, int]] = {}
        self._outbox: deque[Event] = deque()
        self._outbox_size = outbox_size
        self._reconnect_seconds = reconnect_seconds
        self._wake_outbox = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._subscribed = asyncio.Event()
        self._resubscribed = False  # set by redis-py's reconnection of the live feed
        self.reconnects = 0
        self.gaps_filled = 0
        self._filler: GapFiller = _no_filler
        # (tenant, conversation) -> newest message id seen published, least recent first.
        self._positions: OrderedDict[tuple[int, int], int] = OrderedDict()
        self.order_gaps = 0  # publishes that found their predecessor unpublished
        self.order_filled = 0  # messages published early to fill such a gap
        self.order_duplicates = 0  # publishes skipped: their message had gone out already
        self.order_fill_failures = 0  # gaps the filler could not fill (published anyway)
        self._slots: RedisStreamSlots | None = None
        self._slot_lease_seconds = slot_lease_seconds

    # -- lifecycle -------------------------------------------------------------------

    async def connect(self) -> None:
        self._publish_script = self._redis.register_script(
            _NEW_PRIMARY_NEW_EPOCH + _IN_CONVERSATION_ORDER + _PUBLISH
        )
        self._tasks = [
            asyncio.create_task(self._read_live(), name="redis-broker-live"),
            asyncio.create_task(self._drain_outbox(), name="redis-broker-outbox"),
        ]
        # Subscribed before the first client can register: nothing published after start
        # is missed by this process.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), self._subscribe_timeout)

    async def disconnect(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks = []

    def attach(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def detach(self, listener: EventListener) -> None:
        self._listeners.remove(listener)

    def fill_gaps_with(self, filler: GapFiller) -> None:
        self._filler = filler

    def stream_slots(self) -> RedisStreamSlots:
        if self._slots is None:
            self._slots = RedisStreamSlots(
                self._redis, process=uuid.uuid4().hex, lease_seconds=self._slot_lease_seconds
            )
        return self._slots

    @property
    def accepting(self) -> bool:
        return len(self._outbox) < self._outbox_size

    # -- publishing ------------------------------------------------------------------

    async def publish(self, event: Event) -> Event:
        if event.id is not None:
            raise ValueError("event was already published")
        if self._outbox:
            return self._queue(event)  # keep the order: behind what is already waiting
        try:
            await self._send(event)
        except (RedisError, OSError):
            logger.warning("Redis unreachable: event queued in the outbox")
            return self._queue(event)
        return event

    def _queue(self, event: Event) -> Event:
        if not self.accepting:
            raise BrokerUnavailable("the event outbox is full while Redis is unreachable")
        self._outbox.append(event)
        self._wake_outbox.set()
        log_queued(event)  # its event.publish follows when Redis takes it
        return event

    async def _send(self, event: Event) -> None:
        """Publish `event`; a chat:message whose predecessor has not gone out yet goes out
        after it (read from the database), and one that went out already is skipped (its
        id stays None). A RedisError leaves the rest to the caller's retry: what did go out
        is marked, so the retry neither repeats it nor leaves a gap."""
        answer = await self._run_script(event, fill=False, check_gap=True)
        if answer[0] == "gap":
            self.order_gaps += 1
            await self._fill_gap(event, int(answer[1]))
            answer = await self._run_script(event, fill=False, check_gap=False)
        self._settle(event, answer)

    async def _fill_gap(self, event: Event, mark: int) -> None:
        order, tenant_id = event.order, event.tenant_id
        assert order is not None and tenant_id is not None  # only such events have gaps
        try:
            missing = await self._filler(tenant_id, order.conversation_id, mark, order.message_id)
        except Exception:
            # Late beats lost: the message goes out now, its predecessors when they come.
            self.order_fill_failures += 1
            logger.exception("could not read the messages before %s", order)
            return
        for filled in missing:
            self._settle(filled, await self._run_script(filled, fill=True, check_gap=False))
            if filled.id is not None:
                self.order_filled += 1
                log_published(filled)

    def _settle(self, event: Event, answer: list[Any]) -> None:
        if answer[0] == "dup":
            self.order_duplicates += 1
            log_duplicate(event)
            return
        event.id = EventId(int(answer[0]), int(answer[1]))  # _deliver remembers its position

    async def _run_script(self, event: Event, *, fill: bool, check_gap: bool) -> list[Any]:
        log = _log_name(event.tenant_id)
        order = event.order
        position = _position(event)
        seed = None if position is None else self._positions.get(position[0])
        result: list[Any] = await self._publish_script(
            keys=[*_keys(log), *_failover_keys(log), *_order_keys(log)],
            args=[
                self._log_max_events,
                _encode(event),
                LIVE_CHANNEL,
                int(self._clock() * 1000),
                log,
                "" if order is None else order.conversation_id,
                "" if order is None else order.message_id,
                "" if order is None or order.previous_id is None else order.previous_id,
                "1" if fill else "",
                "" if seed is None else seed,
                "1" if check_gap else "",
            ],
        )
        return result

    def _remember(self, event: Event) -> None:
        """The conversation's newest published position, should Redis lose its own."""
        position = _position(event)
        if position is None:
            return
        key, message_id = position
        if self._positions.get(key, 0) < message_id:
            self._positions[key] = message_id
        self._positions.move_to_end(key)
        if len(self._positions) > _KNOWN_POSITIONS:
            self._positions.popitem(last=False)

    async def _drain_outbox(self) -> None:
        while True:
            await self._wake_outbox.wait()
            while self._outbox:
                try:
                    await self._send(self._outbox[0])
                except (RedisError, OSError):
                    await asyncio.sleep(self._reconnect_seconds)
                    continue
                sent = self._outbox.popleft()
                if sent.id is not None:  # else a duplicate, logged as one
                    log_published(sent)
            self._wake_outbox.clear()

    # -- live delivery ---------------------------------------------------------------

    async def _read_live(self) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(LIVE_CHANNEL)
                # redis-py's retries may reconnect and resubscribe this connection by
                # themselves, without an error reaching us: its connect callback tells us.
                connection: Any = pubsub.connection  # set by subscribe(); typed None in redis-py
                connection.register_connect_callback(self._live_reconnected)
                # Anything published while we were away is in the logs: fill the gaps.
                await self._catch_up_all()
                self._subscribed.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if self._resubscribed:
                        self._resubscribed = False
                        self.reconnects += 1
                        logger.warning("Redis live feed lost; redis-py reconnected it")
                        await self._catch_up_all()
                    if message is not None and message["type"] == "message":
                        await self._receive(message["data"])
            except (RedisError, OSError) as exc:
                # redis-py may have reconnected before giving up (it does with no retries
                # left): one loss, and the next subscription catches up anyway.
                self._resubscribed = False
                self._subscribed.clear()
                self.reconnects += 1
                logger.warning("Redis live feed lost (%s); reconnecting", exc)
                await asyncio.sleep(self._reconnect_seconds)
            finally:
                used: Any = pubsub.connection  # None when subscribing found no connection
                if used is not None:  # the pool hands it out again: without our callback
                    used.deregister_connect_callback(self._live_reconnected)
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it unannotated

    def _live_reconnected(self, _connection: object) -> None:
        """redis-py reconnected the live feed and subscribed again on its own: what was
        published meanwhile is only in the logs, read at the next turn of the loop."""
        self._resubscribed = True

    async def _catch_up_all(self) -> None:
        for log in list(self._delivered):
            await self._catch_up(log, None)

    async def follow(self, tenant_id: int) -> None:
        """Called before a client of this tenant registers: from now on this process
        notices any gap in that tenant's feed and fills it from the log."""
        log = _log_name(tenant_id)
        if log in self._delivered:
            return
        seq_key, _, epoch_key = _keys(log)
        epoch, seq = await self._redis.mget(epoch_key, seq_key)
        if log not in self._delivered:  # another coroutine may have been quicker
            self._delivered[log] = (None, 0) if epoch is None else (int(epoch), int(seq or 0))

    async def _receive(self, frame: str) -> None:
        log, epoch_text, seq_text, payload = frame.split(" ", 3)
        epoch, seq = int(epoch_text), int(seq_text)
        known = self._delivered.get(log)
        if known is not None:
            if known[0] != epoch:
                await self._enter_epoch(log, epoch)  # a new epoch is unseen from seq 1
            last = self._delivered[log][1]
            if seq <= last:
                return  # already delivered (after a catch-up)
            if seq > last + 1:
                await self._catch_up(log, seq - 1)
        self._deliver(log, _decode(payload, epoch, seq))

    async def _catch_up(self, log: str, upto: int | None) -> None:
        """Deliver what this process missed of `log`, from the Redis log, in order."""
        known = self._delivered.get(log)
        if known is None:
            return
        _, log_key, epoch_key = _keys(log)
        current = await self._redis.get(epoch_key)
        if current is None:
            self._delivered[log] = (None, 0)
            return
        if known[0] != int(current):
            await self._enter_epoch(log, int(current))
        epoch, last = int(current), self._delivered[log][1]
        end = "+" if upto is None else f"{upto}-1"
        entries = await self._redis.xrange(log_key, f"{last + 1}-0", end)
        for entry_id, fields in entries:
            self.gaps_filled += 1
            self._deliver(log, _decode(fields["e"], epoch, int(entry_id.split("-")[0])))

    async def _enter_epoch(self, log: str, epoch: int) -> None:
        """`log` has a new history (Redis restarted empty, or a promoted replica): all of it
        is unseen. After a failover, what the old one had last may be lost unseen: resync."""
        self._delivered[log] = (epoch, 0)
        if await self._redis.get(_failover_keys(log)[1]) is None:
            return
        tenant_id = int(log.removeprefix("t"))
        resync = Event(
            type=EventType.RESYNC,
            data=ResyncPayload(reason="failover").to_data(),
            channels=(tenant_channel(tenant_id),),
            tenant_id=tenant_id,
        )
        for listener in self._listeners:
            listener(resync)

    def _deliver(self, log: str, event: Event) -> None:
        self._delivered[log] = (event.id.epoch, event.id.seq)  # type: ignore[union-attr]  # logged events have ids
        self._remember(event)
        for listener in self._listeners:
            listener(event)

    # -- replay ----------------------------------------------------------------------

    async def history(
        self, channels: Iterable[str], after: EventId, tenant_id: int | None = None
    ) -> list[Event] | None:
        if tenant_id is None:
            return None
        wanted = set(channels)
        seq_key, log_key, epoch_key = _keys(_log_name(tenant_id))
        epoch, newest = await self._redis.mget(epoch_key, seq_key)
        if epoch is None or int(epoch) != after.epoch:
            return None
        newest_seq = int(newest or 0)
        if after.seq > newest_seq:
            return None
        if after.seq == newest_seq:
            return []
        entries = await self._redis.xrange(log_key, f"{after.seq + 1}-0", "+")
        if not entries or int(entries[0][0].split("-")[0]) != after.seq + 1:
            return None  # trimmed away: a gap
        events = [
            _decode(fields["e"], after.epoch, int(entry_id.split("-")[0]))
            for entry_id, fields in entries
        ]
        if events[0].published_at < self._clock() - self._max_age:
            return None  # older than the replay window promises
        return [e for e in events if wanted.intersection(e.channels)]

    # -- diagnostics -----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return {
            "broker": "redis",
            "outbox": len(self._outbox),
            "liveReconnects": self.reconnects,
            "gapsFilled": self.gaps_filled,
            "orderGaps": self.order_gaps,
            "orderFilled": self.order_filled,
            "orderDuplicates": self.order_duplicates,
            "orderFillFailures": self.order_fill_failures,
        }
