"""app/realtime/stepping.py: an awaitable run up to its first wait, then finished or abandoned,
exactly as a task would have run it; and the import-time check, fed broken steppers, names
what broke and the Python version."""

from __future__ import annotations

import asyncio
import platform
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import pytest

from app.realtime import stepping

TIMEOUT = 2.0


def test_the_protocol_it_relies_on_holds_on_this_python() -> None:
    stepping.check_supported()  # raises RuntimeError naming the Python version otherwise


async def test_an_awaitable_that_does_not_wait_completes_in_start() -> None:
    done: list[int] = []

    async def quick() -> None:
        done.append(1)

    assert stepping.start(quick()) is None
    assert done == [1]


async def test_an_error_before_the_first_wait_is_raised_by_start() -> None:
    async def broken() -> None:
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError):
        stepping.start(broken())


async def test_a_waiting_awaitable_is_finished_with_its_futures_outcome() -> None:
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def waits() -> None:
        seen.append(await future)
        await asyncio.sleep(0)  # a bare yield too
        seen.append("after")

    suspended = stepping.start(waits())
    assert suspended is not None and suspended.waiting_for is future
    finishing = asyncio.create_task(stepping.finish(suspended))
    future.set_result("result")
    async with asyncio.timeout(TIMEOUT):
        await finishing
    assert seen == ["result", "after"]


async def test_an_error_after_the_wait_is_raised_by_finish() -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def fails_later() -> None:
        await future

    suspended = stepping.start(fails_later())
    assert suspended is not None
    future.set_exception(BrokenPipeError("gone"))
    with pytest.raises(BrokenPipeError):
        async with asyncio.timeout(TIMEOUT):
            await stepping.finish(suspended)


async def test_abandoning_cancels_what_it_waits_for_and_runs_its_finally() -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned: list[bool] = []

    async def waits() -> None:
        try:
            await future
        finally:
            cleaned.append(True)

    suspended = stepping.start(waits())
    assert suspended is not None
    stepping.abandon(suspended)
    assert future.cancelled()
    assert cleaned == [True]


async def test_a_bare_yield_gives_the_loop_one_turn() -> None:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    ticks = 0
    turns_seen: list[int] = []

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async def waits() -> None:
        await future
        before = ticks
        await asyncio.sleep(0)  # yields None to its driver
        turns_seen.append(ticks - before)

    suspended = stepping.start(waits())
    assert suspended is not None
    ticking = asyncio.create_task(ticker())
    try:
        future.set_result(None)
        async with asyncio.timeout(TIMEOUT):
            await stepping.finish(suspended)
    finally:
        ticking.cancel()
    assert turns_seen == [1]  # a turn, neither none nor a pause


async def test_an_awaitable_yielding_neither_a_future_nor_none_is_refused() -> None:
    @types.coroutine
    def odd() -> Generator[str, None, None]:
        yield "not a future"

    async def yields_odd() -> None:
        await odd()

    suspended = stepping.start(yields_odd())
    assert suspended is not None
    with pytest.raises(RuntimeError, match="an awaitable yielded 'not a future', not a future"):
        await stepping.finish(suspended)


def _stops_without_waiting(awaitable: Awaitable[None]) -> stepping.Suspended | None:
    stepping.start(awaitable)
    return None


def _yields_none_instead(awaitable: Awaitable[None]) -> stepping.Suspended | None:
    real = stepping.start(awaitable)
    assert real is not None
    return stepping.Suspended(real.steps, None)


def _keeps_yielding(awaitable: Awaitable[None]) -> stepping.Suspended | None:
    real = stepping.start(awaitable)
    assert real is not None

    def forever() -> Generator[Any, None, Any]:
        while True:
            yield None

    return stepping.Suspended(forever(), real.waiting_for)


def _skips_the_rest(awaitable: Awaitable[None]) -> stepping.Suspended | None:
    real = stepping.start(awaitable)
    assert real is not None

    def ends_at_once() -> Generator[Any, None, Any]:
        return
        yield

    return stepping.Suspended(ends_at_once(), real.waiting_for)


@pytest.mark.parametrize(
    ("stepper", "problem"),
    [
        (_stops_without_waiting, "did not yield that future to its driver"),
        (_yields_none_instead, "did not yield that future to its driver"),
        (_keeps_yielding, "resumed after its future was done did not finish"),
        (_skips_the_rest, "a resumed coroutine did not see its future's result"),
    ],
)
def test_the_check_names_what_broke_and_the_python_version(
    stepper: Callable[[Awaitable[None]], stepping.Suspended | None], problem: str
) -> None:
    with pytest.raises(RuntimeError) as raised:
        stepping.check_supported(stepper)
    message = str(raised.value)
    assert message.startswith(
        f"app/realtime/stepping.py does not work on Python {platform.python_version()}: "
    )
    assert problem in message
