"""RealtimeClient: one `GET /api/sse` stream, kept open for as long as you need it.

Deliberate choices, so nobody "fixes" them:
- One HTTP stream per client, however many handlers: `types` goes to the server as
  `?events=`, handlers only pick from what arrives.
- A background task reads the stream into a small bounded queue that `events()` (and so
  `run()`) drains. A consumer that stops reading fills the queue, then the TCP window, and
  the server cuts it off as a slow consumer; the client reconnects with `Last-Event-ID` and
  loses nothing.
- Reconnects never come sooner than the server asked: its `retry:` after a dropped stream,
  `Retry-After` on 429/503. Failures in a row back off exponentially with jitter.
- A 401 asks `get_token` for a fresh token and retries at once (once); without `get_token`
  it ends the client with AuthenticationError, since retrying the same token cannot help.
- httpx-sse carries the last seen id over to events that have no `id:` line (the SSE
  "last event ID buffer"); ping and resync have none. The server never repeats an id within
  a stream, so an id equal to the previous event's means "no id" here.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Self

import httpx
from httpx_sse import EventSource, SSEError, aconnect_sse

from .auth import error_detail
from .backoff import Backoff
from .errors import AuthenticationError, RealtimeError, StreamRejected
from .events import (
    CONTROL_TYPES,
    ClientEvent,
    ClientStatus,
    EventType,
    SeenEvents,
)
from .handlers import ALL, Handler, HandlerRegistry, Unsubscribe
from .latency import LatencyStats

logger = logging.getLogger("app.client")

TokenSource = Callable[[], Awaitable[str] | str]

# Statuses worth retrying: the server is busy, overloaded or restarting.
_RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class _Outcome:
    """How one connection attempt ended, when it did not end the client."""

    reason: str
    was_connected: bool = False
    status_code: int | None = None
    retry_after: float | None = None
    token_refreshed: bool = False


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class _Closed:
    pass


_CLOSED = _Closed()
_QueueItem = ClientEvent | _Failure | _Closed


class RealtimeClient:
    """An async consumer of the chat's event stream for bots, dashboards and scripts.

        async with RealtimeClient(url, get_token=token_from_password(url, "bob", "bob-pass"),
                                  types=["chat:message"]) as client:
            async for event in client.events():
                print(event.type, event.data)

    or with handlers: `client.subscribe(...)`, then `await client.run()` (or `client.start()`
    for a background task)."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        get_token: TokenSource | None = None,
        types: Iterable[str] | None = None,
        tenant: int | None = None,
        backoff: Backoff | None = None,
        http: httpx.AsyncClient | None = None,
        last_event_id: str | None = None,
        pings: bool = False,
        read_timeout: float = 90.0,
        queue_size: int = 256,
    ) -> None:
        if token is None and get_token is None:
            raise ValueError("RealtimeClient needs a token or a get_token callable")
        self.base_url = base_url.rstrip("/")
        if isinstance(types, str):
            types = types.split(",")  # "chat:message,notification:new", as in `?events=`
        wanted = frozenset(name.strip() for name in types or ()) - CONTROL_TYPES - {""}
        self.types: frozenset[str] | None = wanted or None  # None: every type
        self.tenant = tenant
        self.backoff = backoff or Backoff()
        self.pings = pings
        self.last_event_id = last_event_id
        self.last_heartbeat: float | None = None
        # Receive latency of every event read, pings included (app/client/latency.py).
        self.latency = LatencyStats()
        self.duplicates_dropped = 0
        self.status = ClientStatus("disconnected")
        self._token = token
        self._get_token = get_token
        self._http = http or httpx.AsyncClient()
        self._owns_http = http is None
        self._timeout = httpx.Timeout(10.0, read=read_timeout)
        self._server_retry: float | None = None
        self._seen = SeenEvents()
        self._queue: asyncio.Queue[_QueueItem] = asyncio.Queue(maxsize=queue_size)
        self._handlers: HandlerRegistry[ClientEvent] = HandlerRegistry()
        self._status_handlers: HandlerRegistry[ClientStatus] = HandlerRegistry()
        self._connected = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._closer: asyncio.Task[None] | None = None
        self._consuming = False
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        """True while a stream is open (the server answered 200)."""
        return self._connected.is_set()

    def start(self) -> asyncio.Task[None]:
        """Dispatch events to the handlers in a background task (see `run`)."""
        if self._run_task is None:
            self._ensure_pump()  # now, so that wait_connected() works straight after
            self._run_task = asyncio.create_task(self.run(), name="realtime-client-run")
        return self._run_task

    async def run(self) -> None:
        """Dispatch every event to its handlers until `close()`. Raises what ends the client
        for good (AuthenticationError, StreamRejected)."""
        async for event in self.events():
            await self._handlers.dispatch(event.type, event)

    async def events(self) -> AsyncIterator[ClientEvent]:
        """Every event once, in order, across reconnects; pings only if `pings=True`."""
        if self._consuming:
            raise RuntimeError("a RealtimeClient has one consumer: events() or run(), not both")
        if self._closed:
            return
        if self._failure is not None and self._queue.empty():
            raise self._failure  # already ended for good; the earlier consumer saw it too
        self._consuming = True
        self._ensure_pump()
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, _Closed):
                    return
                if isinstance(item, _Failure):
                    raise item.error
                yield item
        finally:
            self._consuming = False

    async def wait_connected(self, timeout: float | None = None) -> None:
        """Until the stream is open: whatever is published from then on reaches this client.
        Raises the error that ended the client, or TimeoutError."""
        if self._closed:
            raise RealtimeError("the client is closed")
        if self._pump_task is None:
            raise RuntimeError("nothing is reading yet: call start(), run() or events() first")
        waiter = asyncio.ensure_future(self._connected.wait())
        try:
            await asyncio.wait(
                {waiter, self._pump_task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if self._connected.is_set():
            return
        if self._failure is not None:
            raise self._failure
        raise TimeoutError("the stream did not open in time")

    async def close(self) -> None:
        """Close the stream and stop reconnecting. Undelivered events are dropped."""
        if self._closed:
            return
        current = asyncio.current_task()
        pump = self._pump_task
        if pump is not None and pump is current:
            # Called from a status handler, which runs in the stream task: that task cannot
            # wait for its own end, so another one closes (and cancels it) right after.
            self._closer = asyncio.create_task(self.close(), name="realtime-client-close")
            return
        self._closed = True
        if pump is not None:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(_CLOSED)
        if self._run_task is not None and self._run_task is not current:
            await asyncio.gather(self._run_task, return_exceptions=True)
        self._connected.clear()
        if self.status.state != "closed":
            await self._set_status(ClientStatus("closed"))
        if self._owns_http:
            await self._http.aclose()

    # -- handlers ----------------------------------------------------------------------

    def subscribe(self, event_type: str, handler: Handler[ClientEvent]) -> Unsubscribe:
        """Call `handler(event)` (sync or async) for each event of `event_type` ("*" for
        all). Returns the function that unsubscribes it."""
        self._check_type_arrives(event_type)
        return self._handlers.add(event_type, handler)

    def on_resync(self, handler: Handler[ClientEvent]) -> Unsubscribe:
        """The server could not resume from our last id: refetch your state over REST."""
        return self._handlers.add(EventType.RESYNC, handler)

    def on_status(self, handler: Handler[ClientStatus]) -> Unsubscribe:
        """Every connection change: connecting, connected, disconnected (with the reason and
        the delay before the next attempt), closed."""
        return self._status_handlers.add(ALL, handler)

    def subscribe_to_conversation(
        self,
        conversation_id: int,
        *,
        on_message: Handler[ClientEvent] | None = None,
        on_typing: Handler[ClientEvent] | None = None,
        on_unread: Handler[ClientEvent] | None = None,
    ) -> Unsubscribe:
        """Chat events of one conversation only. Returns one function that unsubscribes all."""
        wanted = [
            (event_type, handler)
            for event_type, handler in (
                (EventType.CHAT_MESSAGE, on_message),
                (EventType.CHAT_TYPING, on_typing),
                (EventType.CHAT_UNREAD_COUNT, on_unread),
            )
            if handler is not None
        ]
        for event_type, _ in wanted:
            self._check_type_arrives(event_type)
        unsubscribes = [
            self._handlers.add(event_type, _only_conversation(conversation_id, handler))
            for event_type, handler in wanted
        ]

        def unsubscribe_all() -> None:
            for unsubscribe in unsubscribes:
                unsubscribe()

        return unsubscribe_all

    def _check_type_arrives(self, event_type: str) -> None:
        """A handler for a type the stream filter excludes would silently never fire."""
        if event_type == EventType.PING and not self.pings:
            raise ValueError("pings are not delivered: create the client with pings=True")
        if (
            self.types is not None
            and event_type not in self.types
            and event_type not in CONTROL_TYPES
            and event_type != ALL
        ):
            raise ValueError(
                f"{event_type!r} is not among this client's types {sorted(self.types)}"
            )

    # -- the stream --------------------------------------------------------------------

    def _ensure_pump(self) -> None:
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self._pump(), name="realtime-client-stream")

    async def _pump(self) -> None:
        """Connect, read, reconnect: until closed or a failure retrying cannot fix."""
        attempt = 0
        refreshed_last_time = False
        try:
            while True:
                outcome = await self._connect_once(attempt)
                if outcome.was_connected:
                    attempt = 0
                attempt += 1
                if outcome.token_refreshed and not refreshed_last_time:
                    delay = 0.0  # a fresh token deserves an immediate try (once)
                else:
                    floor = max(self._server_retry or 0.0, outcome.retry_after or 0.0)
                    delay = self.backoff.delay(attempt, floor=floor)
                refreshed_last_time = outcome.token_refreshed
                await self._set_status(
                    ClientStatus(
                        "disconnected",
                        attempt=attempt,
                        delay=delay,
                        reason=outcome.reason,
                        status_code=outcome.status_code,
                    )
                )
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, who raises it
            self._failure = exc
            await self._set_status(ClientStatus("closed", reason=str(exc)))
            await self._queue.put(_Failure(exc))

    async def _connect_once(self, attempt: int) -> _Outcome:
        await self._set_status(ClientStatus("connecting", attempt=attempt))
        was_connected = False
        try:
            token = await self._current_token()
            headers = {"Authorization": f"Bearer {token}"}
            if self.last_event_id:
                headers["Last-Event-ID"] = self.last_event_id
            async with aconnect_sse(
                self._http,
                "GET",
                f"{self.base_url}/api/sse",
                params=self._query(),
                headers=headers,
                timeout=self._timeout,
            ) as source:
                response = source.response
                if response.status_code != 200:
                    await response.aread()
                    return await self._refused(response, token)
                was_connected = True
                self._connected.set()
                await self._set_status(ClientStatus("connected"))
                await self._read(source)
            return _Outcome("the server ended the stream", was_connected=True)
        except (httpx.TransportError, SSEError) as exc:
            return _Outcome(f"{type(exc).__name__}: {exc}".rstrip(": "), was_connected)
        finally:
            self._connected.clear()

    def _query(self) -> dict[str, str]:
        query: dict[str, str] = {}
        if self.types:
            query["events"] = ",".join(sorted(self.types))
        if self.tenant is not None:
            query["tenant"] = str(self.tenant)
        return query

    async def _current_token(self) -> str:
        if self._token is None:
            self._token = await self._fresh_token()
        return self._token

    async def _fresh_token(self) -> str:
        if self._get_token is None:
            raise AuthenticationError("the token was refused and there is no get_token to renew it")
        result = self._get_token()
        token = await result if inspect.isawaitable(result) else result
        if not token:
            raise AuthenticationError("get_token returned no token")
        return token

    async def _refused(self, response: httpx.Response, token: str) -> _Outcome:
        status = response.status_code
        code, message = error_detail(response)
        if status == 401:
            fresh = await self._fresh_token()
            if fresh == token:
                raise AuthenticationError(
                    f"the server refused the token ({message}) and get_token returned the same one"
                )
            self._token = fresh
            return _Outcome(f"HTTP 401 {code}", status_code=401, token_refreshed=True)
        if status in _RETRYABLE_STATUS:
            return _Outcome(
                f"HTTP {status} {code}",
                status_code=status,
                retry_after=_retry_after_seconds(response),
            )
        raise StreamRejected(status, code, message)

    async def _read(self, source: EventSource) -> None:
        previous_id = ""
        async for sse in source.aiter_sse():
            if sse.retry is not None:
                self._server_retry = sse.retry / 1000
            event_id = sse.id if sse.id and sse.id != previous_id else None
            previous_id = sse.id
            if sse.event == "message" and not sse.data:
                continue  # the opening `retry:` block
            event = ClientEvent(
                type=sse.event, id=event_id, data=_payload(sse.data), received_at=time.time()
            )
            if not self._seen.first_time(event.id):
                self.duplicates_dropped += 1
                continue
            if event.latency is not None:
                self.latency.add(event.latency)
            if event.type == EventType.PING:
                self.last_heartbeat = event.received_at
                if not self.pings:
                    continue
            if event.id is not None:
                self.last_event_id = event.id
            await self._queue.put(event)

    async def _set_status(self, status: ClientStatus) -> None:
        self.status = status
        await self._status_handlers.dispatch(status.state, status)


def _only_conversation(conversation_id: int, handler: Handler[ClientEvent]) -> Handler[ClientEvent]:
    def filtered(event: ClientEvent) -> Awaitable[None] | None:
        if event.conversation_id != conversation_id:
            return None
        return handler(event)

    return filtered


def _payload(raw: str) -> dict[str, Any]:
    """The event's JSON object. Anything else is wrapped rather than fatal: one odd event
    must not end a bot's stream."""
    try:
        value = json.loads(raw)
    except ValueError:
        return {"raw": raw}
    return value if isinstance(value, dict) else {"value": value}


def _retry_after_seconds(response: httpx.Response) -> float | None:
    """`Retry-After: <seconds>`; the HTTP-date form is rare on APIs and ignored."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        return None
