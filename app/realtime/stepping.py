"""Running an awaitable up to its first wait without a task of its own, and finishing it later.

The stream writer calls thousands of writes per pass, and nearly every one completes without
waiting (the bytes go to the server's buffer). A task per write costs about 5 us against
0.4 us for stepping the awaitable by hand (measured with uvloop, December 2026); Python 3.12's
eager tasks (`asyncio.Task(..., eager_start=True)`) would be the public way, but this project
runs on 3.11.

Only the awaitable protocol is used here: `__await__()` gives an iterator, and an asyncio
coroutine yields to its driver either None (give the loop one turn) or the future it waits
for, then expects to be resumed once that future is done. No private attribute is touched:
the future is waited for with `asyncio.wait`, which only adds a done-callback, instead of
being awaited a second time (that would need its `_asyncio_future_blocking` flag reset).
`check_supported()` runs at import and stops the process with a RuntimeError naming the
Python version if that protocol ever changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable, Generator
from typing import Any


class Suspended:
    """An awaitable stopped at its first wait: what it waits for, and the rest of it."""

    __slots__ = ("steps", "waiting_for")

    def __init__(self, steps: Generator[Any, None, Any], waiting_for: Any) -> None:
        self.steps = steps
        self.waiting_for = waiting_for


def start(awaitable: Awaitable[None]) -> Suspended | None:
    """Run `awaitable` until it first waits: None if it completed meanwhile. Raises what it
    raises before that."""
    steps = awaitable.__await__()
    try:
        waiting_for = next(steps)
    except StopIteration:
        return None
    return Suspended(steps, waiting_for)


async def finish(suspended: Suspended) -> None:
    """Drive the rest of `suspended` in the calling task. Raises what the awaitable raises;
    a cancellation of the caller leaves it to `abandon`."""
    while True:
        waiting_for = suspended.waiting_for
        if waiting_for is None:
            await asyncio.sleep(0)
        elif asyncio.isfuture(waiting_for):
            # The awaitable reads the future's outcome itself once resumed.
            await asyncio.wait((waiting_for,))
        else:
            raise RuntimeError(f"an awaitable yielded {waiting_for!r}, not a future or None")
        try:
            suspended.waiting_for = next(suspended.steps)
        except StopIteration:
            return


def abandon(suspended: Suspended) -> None:
    """Give up on `suspended`: cancel what it waits for and close it (its `finally` runs)."""
    if asyncio.isfuture(suspended.waiting_for):
        suspended.waiting_for.cancel()
    with contextlib.suppress(Exception):
        suspended.steps.close()


def check_supported(stepper: Callable[[Awaitable[None]], Suspended | None] = start) -> None:
    """Step a coroutine that waits for a future, as the writer does, on a loop that never
    runs: it must stop at the future, and finish once the future is done. (`stepper`: the
    `start` under check; tests pass broken ones.)"""
    loop = asyncio.new_event_loop()
    try:
        future: asyncio.Future[str] = loop.create_future()
        outcome: list[str] = []

        async def waits() -> None:
            outcome.append(await future)

        suspended = stepper(waits())
        problem = None
        if suspended is None or suspended.waiting_for is not future:
            problem = "a coroutine awaiting a future did not yield that future to its driver"
        else:
            future.set_result("done")
            try:
                next(suspended.steps)
                problem = "a coroutine resumed after its future was done did not finish"
            except StopIteration:
                if outcome != ["done"]:
                    problem = "a resumed coroutine did not see its future's result"
    finally:
        loop.close()
    if problem is not None:
        raise RuntimeError(
            f"app/realtime/stepping.py does not work on Python {sys.version.split()[0]}: "
            f"{problem}. The stream writer relies on it (app/realtime/writer.py); use eager "
            "tasks (Python 3.12+) or a task per write instead."
        )


check_supported()
