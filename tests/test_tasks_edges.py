"""cancel_and_wait: every task is cancelled and really finished before it returns."""

from __future__ import annotations

import asyncio

from app.realtime.tasks import cancel_and_wait


async def test_every_task_is_cancelled_and_finished_and_none_is_skipped() -> None:
    cleaned: list[str] = []

    async def worker(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # cleanup that itself awaits
            cleaned.append(name)

    first = asyncio.create_task(worker("first"))
    second = asyncio.create_task(worker("second"))
    await asyncio.sleep(0)
    await cancel_and_wait([first, None, second])
    assert first.cancelled() and second.cancelled()
    assert cleaned == ["first", "second"]


async def test_a_finished_task_is_waited_for_without_error() -> None:
    async def done() -> int:
        return 1

    task = asyncio.create_task(done())
    await task
    await cancel_and_wait([task])
    assert task.result() == 1
