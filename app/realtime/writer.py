"""One writer task per process that pushes queued events into every stream.

The obvious design (a task per stream waiting on its queue) pays a future, a wake-up and a
task step per stream per event: at thousands of streams that is most of the CPU. Here an
event marks its clients ready, and one task drains every ready client in one pass, calling
each stream's write. Server sends normally complete without suspending (the bytes are
handed to the server's buffer), so the writer steps each write by hand and moves on
(app/realtime/stepping.py, the one place that does); only a write that really has to wait
(a peer that does not read) is finished in a task of its own, with a deadline, while the
others go on. A stream whose write misses the deadline is
cut off like any slow consumer: its consumer resumes with Last-Event-ID.

Each event's publish-to-write latency is counted when its bytes are handed over: at once
for the usual write, when the wait ends for one that had to wait (app/realtime/latency.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable

from app.realtime import stepping
from app.realtime.client import Client, ClientKind, CloseReason
from app.realtime.events import Event
from app.realtime.latency import DeliveryLatency, Placement
from app.realtime.tasks import cancel_and_wait

logger = logging.getLogger(__name__)

# Returns None when the bytes are already handed over, else an awaitable to finish the write.
Write = Callable[[bytes], Awaitable[None] | None]

# Flushes between two turns of the event loop: a pass over thousands of streams must not
# keep sign-ins and publishes waiting for all of it.
_FLUSHES_PER_TURN = 256

# Coalescing pays only when events come in a stream. A writer that has been idle for this
# many flush delays is serving a trickle (one event now and then, as a big notification to
# thousands of streams usually is): it writes at once, since waiting would gather nothing
# and only add the delay to every delivery.
_IDLE_FLUSH_DELAYS = 5

_STREAM = ClientKind.STREAM.value


class StreamWriter:
    def __init__(
        self,
        *,
        write_timeout: float | None,
        flush_delay: float = 0.0,
        latency: DeliveryLatency | None = None,
    ) -> None:
        """`write_timeout`: seconds a write may wait for its peer (None: forever).
        `flush_delay`: seconds to gather more events after a wake-up that follows recent
        writes (0: always flush at once). `latency`: where hand-overs are counted."""
        self.latency = latency or DeliveryLatency()
        self._write_timeout = write_timeout or None
        self._flush_delay = flush_delay
        self._writes: dict[Client, Write] = {}
        self._ready: list[Client] = []
        self._pending_writes: dict[Client, asyncio.Task[None]] = {}
        self._wakeup: asyncio.Future[None] | None = None
        self._last_pass_end = float("-inf")
        self._task: asyncio.Task[None] | None = None

    @property
    def streams(self) -> int:
        return len(self._writes)

    def stalled_writes(self, tenant_id: int | None = None) -> int:
        """Streams whose last write is waiting for its peer (of one tenant, or all)."""
        return sum(1 for c in self._pending_writes if tenant_id is None or c.tenant_id == tenant_id)

    def attach(self, client: Client, write: Write) -> None:
        """From now on `client`'s events go out through `write`, from the writer's task."""
        self._writes[client] = write
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="sse-stream-writer"
            )
        client.push_to(self._mark_ready)

    def detach(self, client: Client) -> None:
        self._writes.pop(client, None)
        pending = self._pending_writes.pop(client, None)
        if pending is not None:
            pending.cancel()

    async def close(self) -> None:
        await cancel_and_wait([self._task, *self._pending_writes.values()])
        self._task = None
        self._writes.clear()

    def _mark_ready(self, client: Client) -> None:
        self._ready.append(client)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._ready:
                self._wakeup = loop.create_future()
                try:
                    await self._wakeup
                finally:
                    self._wakeup = None
                if self._flush_delay > 0 and not self._idle_long(loop.time()):
                    await asyncio.sleep(self._flush_delay)
            ready, self._ready = self._ready, []
            for start in range(0, len(ready), _FLUSHES_PER_TURN):
                if start:
                    await asyncio.sleep(0)
                self._flush(ready[start : start + _FLUSHES_PER_TURN])
            self._last_pass_end = loop.time()
            await asyncio.sleep(0)  # publishers and readers get a turn between passes

    def _idle_long(self, now: float) -> bool:
        return now - self._last_pass_end >= self._flush_delay * _IDLE_FLUSH_DELAYS

    def _flush(self, clients: list[Client]) -> None:
        """Write each client's queued events. The hot loop of the fan-out: one pass of it
        per event over every stream that receives it, so it keeps to local names."""
        pending_writes, writes = self._pending_writes, self._writes
        # One clock read per pass, and one placement per event per pass: an event goes to
        # many streams in a row, so the streams that took it alone are only counted here,
        # and added to its bucket once the run of them ends.
        now, latency = time.time(), self.latency
        placed: Event | None = None
        placement: Placement | None = None
        times = 0
        for client in clients:
            write = writes.get(client)
            if write is None or client in pending_writes:
                continue  # detached meanwhile, or its write under way re-marks it when done
            batch = client.take_batch()
            if not batch:
                continue
            single = batch[0] if len(batch) == 1 else None
            body = single.wire() if single is not None else b"".join(e.wire() for e in batch)
            try:
                outcome = write(body)
            except OSError:
                client.close(CloseReason.DISCONNECTED)  # the peer went away
                continue
            except Exception:  # one broken stream must not stop the others
                logger.exception("stream write failed")
                client.close(CloseReason.DISCONNECTED)
                continue
            if outcome is not None:  # None: handed to the server's buffer, the usual case
                self._drive(client, outcome, batch)
            elif single is None:
                latency.observe(_STREAM, batch, now)
            elif single is placed:
                times += 1
            else:
                if placement is not None:
                    placement.count(times)
                placed, placement, times = single, latency.place(_STREAM, single, now), 1
        if placement is not None:
            placement.count(times)

    def _drive(self, client: Client, outcome: Awaitable[None], batch: list[Event]) -> None:
        """Run a write's awaitable until it first waits; finish it in a task of its own."""
        try:
            suspended = stepping.start(outcome)
        except OSError:
            client.close(CloseReason.DISCONNECTED)
            return
        except Exception:
            logger.exception("stream write failed")
            client.close(CloseReason.DISCONNECTED)
            return
        if suspended is None:  # an ASGI send that completed without waiting
            self.latency.observe(_STREAM, batch, time.time())
            return
        task = asyncio.get_running_loop().create_task(
            self._finish_write(client, suspended, batch), name="sse-stalled-write"
        )
        task.add_done_callback(functools.partial(self._write_ended, client, suspended))
        self._pending_writes[client] = task

    async def _finish_write(
        self, client: Client, suspended: stepping.Suspended, batch: list[Event]
    ) -> None:
        """Drive a write that had to wait, as its own task, within the write timeout. A
        cancellation (detach, close) ends it at once: _write_ended cleans up after it."""
        try:
            async with asyncio.timeout(self._write_timeout):
                await stepping.finish(suspended)
            self.latency.observe(_STREAM, batch, time.time())
        except TimeoutError:
            client.close(CloseReason.SLOW_CONSUMER)
        except OSError:
            client.close(CloseReason.DISCONNECTED)
        except Exception:  # one broken stream must not stop the others
            logger.exception("stream write failed")
            client.close(CloseReason.DISCONNECTED)
        self._forget_write(client, asyncio.current_task())  # before re-marking: see _flush
        if client.queued and client in self._writes:
            self._mark_ready(client)

    def _write_ended(
        self, client: Client, suspended: stepping.Suspended, task: asyncio.Task[None]
    ) -> None:
        """Clean up after a stalled write's task, whatever ended it. Done here rather than in
        the task: a task cancelled before its first step never runs its coroutine at all."""
        stepping.abandon(suspended)  # a no-op for a write that ran to its end
        self._forget_write(client, task)

    def _forget_write(self, client: Client, task: asyncio.Task[None] | None) -> None:
        if self._pending_writes.get(client) is task:
            del self._pending_writes[client]
