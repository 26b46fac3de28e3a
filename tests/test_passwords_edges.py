"""Password hashing and its bounded pool: verification answers, rehash decisions, the
pool's capacity, its Retry-After and the priority of its threads."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest
from passlib.context import CryptContext

from app.security import passwords
from app.security.passwords import (
    HASH_THREAD_NICE,
    HashPoolFull,
    PasswordHashPool,
    hash_password,
    needs_rehash,
    verify_password,
)

# Cheap parameters for hashes made by the test itself (today's are 64 MiB, t=3).
OLD_STYLE = CryptContext(schemes=["argon2"], argon2__parallelism=4, argon2__memory_cost=8192)


@pytest.fixture(scope="module")
def current_hash() -> str:
    return hash_password("right")


@pytest.fixture(scope="module")
def cheap_hash() -> str:
    """Verifies in some milliseconds (long enough to hold a thread while the test looks): the pool's tests are about the pool, not the hash."""
    return OLD_STYLE.hash("right")


def test_verify_answers_for_the_right_and_wrong_password_and_no_user(current_hash: str) -> None:
    assert verify_password("right", current_hash) is True
    assert verify_password("wrong", current_hash) is False
    assert verify_password("right", None) is False


@pytest.mark.parametrize("broken", ["", "not a hash", "$argon2id$v=19$m=1,t=1,p=1$$"])
def test_a_malformed_hash_verifies_nothing_and_needs_no_rehash(broken: str) -> None:
    assert verify_password("right", broken) is False
    assert needs_rehash(broken) is False


def test_only_hashes_with_other_parameters_need_a_rehash(current_hash: str) -> None:
    assert needs_rehash(current_hash) is False
    old = OLD_STYLE.hash("right")
    assert needs_rehash(old) is True
    assert verify_password("right", old) is True
    assert "$argon2id$" in current_hash and ",p=1$" in current_hash


async def test_the_pool_hashes_and_verifies_off_the_loop_and_counts_nothing_after(
    cheap_hash: str,
) -> None:
    pool = PasswordHashPool(workers=1, queue=0)
    try:
        assert await pool.verify("right", cheap_hash) is True
        assert await pool.verify("wrong", cheap_hash) is False
        made = await pool.hash("new")
        assert verify_password("new", made)
        assert pool.admitted == 0
    finally:
        pool.close()


async def test_hashing_threads_run_at_the_hash_nice_value(
    cheap_hash: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Above the nice the tests may already run at (scripts/mutate runs them at 10).
    nice = max(HASH_THREAD_NICE, os.getpriority(os.PRIO_PROCESS, 0)) + 2
    monkeypatch.setattr(passwords, "HASH_THREAD_NICE", nice)
    pool = PasswordHashPool(workers=2, queue=0)
    try:
        await asyncio.gather(pool.verify("right", cheap_hash), pool.verify("right", cheap_hash))
        threads = [t for t in threading.enumerate() if t.name.startswith("password-hash")]
        assert threads
        for thread in threads:
            assert thread.native_id is not None
            assert os.getpriority(os.PRIO_PROCESS, thread.native_id) == nice
    finally:
        pool.close()


def test_an_unknown_user_costs_a_full_hash(current_hash: str) -> None:
    started = time.thread_time()
    verify_password("wrong", current_hash)
    real = time.thread_time() - started
    started = time.thread_time()
    assert verify_password("wrong", None) is False
    dummy = time.thread_time() - started
    assert dummy > real / 4  # CPU time of this thread: the machine's load does not count


async def test_a_full_pool_refuses_at_once_with_a_retry_after(
    cheap_hash: str, current_hash: str
) -> None:
    pool = PasswordHashPool(workers=1, queue=1)
    try:
        # A full hash holds the one thread for as long as the test looks.
        running = [
            asyncio.create_task(pool.verify("right", current_hash)),
            asyncio.create_task(pool.verify("right", cheap_hash)),
        ]
        await asyncio.sleep(0)
        assert pool.admitted == 2
        with pytest.raises(HashPoolFull) as refused:
            await pool.verify("right", cheap_hash)
        # Two checks ahead, a quarter second each at first guess, on one thread: 1 s.
        assert refused.value.retry_after == 1
        assert "retry in 1 s" in str(refused.value)
        assert await asyncio.gather(*running) == [True, True]
        assert pool.admitted == 0
    finally:
        pool.close()


async def test_the_retry_after_grows_with_the_line_ahead(
    cheap_hash: str, current_hash: str
) -> None:
    pool = PasswordHashPool(workers=1, queue=7)
    try:
        running = [asyncio.create_task(pool.verify("right", current_hash))]
        running += [asyncio.create_task(pool.verify("right", cheap_hash)) for _ in range(7)]
        await asyncio.sleep(0)
        with pytest.raises(HashPoolFull) as refused:
            await pool.verify("right", cheap_hash)
        # Eight ahead at about 0.25 s (or what the first checks measured) each: at least 2 s.
        assert refused.value.retry_after >= 2
        await asyncio.gather(*running)
    finally:
        pool.close()


async def test_a_pool_of_no_workers_and_a_negative_queue_still_takes_one_check(
    cheap_hash: str, current_hash: str
) -> None:
    pool = PasswordHashPool(workers=0, queue=-5)
    try:
        first = asyncio.create_task(pool.verify("right", current_hash))
        await asyncio.sleep(0)
        with pytest.raises(HashPoolFull):
            await pool.verify("right", cheap_hash)
        assert await first is True
    finally:
        pool.close()


async def test_work_refused_by_a_closed_pool_gives_its_place_back(cheap_hash: str) -> None:
    pool = PasswordHashPool(workers=1, queue=0)
    pool.close()
    with pytest.raises(RuntimeError):
        await pool.verify("right", cheap_hash)
    assert pool.admitted == 0


TINY = CryptContext(schemes=["argon2"], argon2__memory_cost=256, argon2__rounds=1)


async def test_the_retry_after_follows_the_measured_time_of_the_checks(current_hash: str) -> None:
    tiny_hash = TINY.hash("right")  # about a millisecond per check
    pool = PasswordHashPool(workers=1, queue=7)
    try:
        # Before any measure: a quarter second per check, eight ahead: 2 s. A full hash
        # first holds the thread while the test looks.
        line = [asyncio.create_task(pool.verify("right", current_hash))]
        line += [asyncio.create_task(pool.verify("right", tiny_hash)) for _ in range(7)]
        await asyncio.sleep(0)
        with pytest.raises(HashPoolFull) as first:
            await pool.verify("right", tiny_hash)
        assert first.value.retry_after == 2
        await asyncio.gather(*line)
        for _ in range(30):
            await pool.verify("right", tiny_hash)
        line = [asyncio.create_task(pool.verify("right", current_hash))]
        line += [asyncio.create_task(pool.verify("right", tiny_hash)) for _ in range(7)]
        await asyncio.sleep(0)
        with pytest.raises(HashPoolFull) as measured:
            await pool.verify("right", tiny_hash)
        assert measured.value.retry_after == 1  # eight quick checks drain within a second
        await asyncio.gather(*line)
    finally:
        pool.close()


async def test_closing_the_pool_drops_waiting_checks_and_does_not_wait_for_the_running_one(
    current_hash: str,
) -> None:
    pool = PasswordHashPool(workers=1, queue=1)
    running = asyncio.create_task(pool.verify("right", current_hash))  # a full hash
    waiting = asyncio.create_task(pool.verify("right", current_hash))
    await asyncio.sleep(0)
    started = time.perf_counter()
    pool.close()
    closing = time.perf_counter() - started
    assert await running is True
    hashing = time.perf_counter() - started
    assert closing < hashing / 2
    with pytest.raises(asyncio.CancelledError):
        await waiting


class ScriptedTimer:
    """The pool's timer, read on the hashing thread at the start and end of each check: it
    answers from a script (then 0.0), and while `hold` is clear the reading waits, so the
    check holds its thread for as long as the test looks."""

    def __init__(self, *readings: float) -> None:
        self._readings = list(readings)
        self.hold = threading.Event()
        self.hold.set()

    def __call__(self) -> float:
        assert self.hold.wait(timeout=30), "the test never let the hashing thread go"
        return self._readings.pop(0) if self._readings else 0.0


async def test_the_retry_after_is_the_moving_average_of_verify_and_hash_times(
    cheap_hash: str,
) -> None:
    # A verify measured at 5 s, then a hash at 0.1 s: the mean moves by a fifth of the way
    # each time, from its first guess of 0.25 s: 0.8 * 0.25 + 0.2 * 5 = 1.2, then
    # 0.8 * 1.2 + 0.2 * 0.1 = 0.98. Three checks ahead on one thread: ceil(2.94) = 3 s.
    # (Without the hash's measure it would be ceil(3.6) = 4 s.)
    timer = ScriptedTimer(10.0, 15.0, 20.0, 20.1)
    pool = PasswordHashPool(workers=1, queue=2, timer=timer)
    try:
        assert await pool.verify("right", cheap_hash) is True
        assert verify_password("new", await pool.hash("new"))
        timer.hold.clear()
        line = [asyncio.create_task(pool.verify("right", cheap_hash)) for _ in range(3)]
        await asyncio.sleep(0)
        assert pool.admitted == 3
        with pytest.raises(HashPoolFull) as refused:
            await pool.verify("right", cheap_hash)
        assert refused.value.retry_after == 3
        timer.hold.set()
        assert await asyncio.gather(*line) == [True, True, True]
    finally:
        timer.hold.set()
        pool.close()


async def test_the_retry_after_shares_the_line_among_the_workers(cheap_hash: str) -> None:
    # Measured at 2 s: 0.8 * 0.25 + 0.2 * 2 = 0.6 s per check. Five ahead on two threads:
    # ceil(5 * 0.6 / 2) = ceil(1.5) = 2 s.
    timer = ScriptedTimer(0.0, 2.0)
    pool = PasswordHashPool(workers=2, queue=3, timer=timer)
    try:
        await pool.verify("right", cheap_hash)
        timer.hold.clear()
        line = [asyncio.create_task(pool.verify("right", cheap_hash)) for _ in range(5)]
        await asyncio.sleep(0)
        with pytest.raises(HashPoolFull) as refused:
            await pool.verify("right", cheap_hash)
        assert refused.value.retry_after == 2
        timer.hold.set()
        await asyncio.gather(*line)
    finally:
        timer.hold.set()
        pool.close()
