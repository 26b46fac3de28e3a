"""app/realtime/stepping.py: an awaitable run up to its first wait, then finished or abandoned,
exactly as a task would have run it."""

from __future__ import annotations

import asyncio

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
