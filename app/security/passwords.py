"""Password hashing through passlib's API (the maintained `libpass` distribution), and the
bounded pool that runs it.

Argon2id: no 72-byte truncation as with bcrypt, and memory-hard. A length cap in the
request models keeps hashing cost bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Protocol, TypeVar

from passlib.context import CryptContext

T = TypeVar("T")


# Argon2id with passlib's memory and passes (64 MiB, t=3: above RFC 9106's second
# recommendation and OWASP's minimum) but one lane instead of four. With four lanes each
# check ran four threads, so PASSWORD_HASH_WORKERS=1 still took every core of a small
# machine from the event loop; one lane is one core per worker. A guess costs an attacker
# the same memory and passes either way. Older hashes (p=4) still verify, and are rehashed
# with these parameters at the next successful sign-in (`needs_update`).
ARGON2_PARALLELISM = 1


class _PasswordContext(Protocol):
    """What this module calls of passlib's CryptContext (passlib has no type information)."""

    def hash(self, secret: str) -> str: ...
    def verify(self, secret: str, hash: str) -> bool: ...
    def needs_update(self, hash: str) -> bool: ...
    def dummy_verify(self) -> bool: ...


@lru_cache(maxsize=1)
def _context() -> _PasswordContext:
    context: _PasswordContext = CryptContext(
        schemes=["argon2"], deprecated="auto", argon2__parallelism=ARGON2_PARALLELISM
    )
    return context


def hash_password(password: str) -> str:
    return _context().hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    """Constant work whether or not the user exists (`password_hash` None)."""
    if password_hash is None:
        # A full hash with the current parameters: an unknown username costs what a known
        # one does, so the answer's timing does not tell which usernames exist.
        _context().dummy_verify()
        return False
    try:
        return _context().verify(password, password_hash)
    except (ValueError, TypeError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with other parameters than today's."""
    try:
        return _context().needs_update(password_hash)
    except (ValueError, TypeError):
        return False


# Nice value of the hashing threads (Linux schedules threads, so it applies to them alone).
# At 10 the scheduler gives the event loop's thread about nine times their share of a busy
# core: a request arriving during a flood of sign-ins waits for the CPU far less, while an
# idle machine hashes at full speed all the same.
HASH_THREAD_NICE = 10


def _lower_thread_priority() -> None:
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or not permitted
        current = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), max(current, HASH_THREAD_NICE))


class HashPoolFull(Exception):
    """Every hashing thread is busy and the waiting line is full: try again later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"password hashing is saturated; retry in {retry_after} s")
        self.retry_after = retry_after


class PasswordHashPool:
    """Runs password checks on `workers` threads with at most `queue` more waiting.

    Argon2 takes a fifth of a second of CPU per check. In the default thread pool (dozens of
    threads) a flood of sign-ins ran many at once and took every core from the event loop, so
    every other request slowed down. Here the hashing uses at most `workers` threads, and a
    check that would have to wait behind `queue` others is refused at once instead of
    piling up.
    """

    def __init__(
        self, *, workers: int, queue: int, timer: Callable[[], float] = time.perf_counter
    ) -> None:
        self._workers = max(1, workers)
        self._timer = timer  # seconds, read on the hashing thread before and after each check
        self._capacity = self._workers + max(0, queue)
        self._executor = ThreadPoolExecutor(
            max_workers=self._workers,
            thread_name_prefix="password-hash",
            initializer=_lower_thread_priority,
        )
        # Admitted checks, running or waiting. Decremented when the thread finishes the work,
        # not when the caller stops waiting: a cancelled sign-in's hash still occupies a thread.
        self._admitted = 0
        self._lock = threading.Lock()
        self._mean_seconds = 0.25  # a first guess for Retry-After; measured from then on

    @property
    def admitted(self) -> int:
        return self._admitted

    async def verify(self, password: str, password_hash: str | None) -> bool:
        """`verify_password` on the pool; raises HashPoolFull when it is saturated."""
        return await self._submit(self._timed_verify, password, password_hash)

    async def hash(self, password: str) -> str:
        """`hash_password` on the pool (a rehash with today's parameters)."""
        return await self._submit(self._timed_hash, password)

    async def _submit(self, work: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._admitted >= self._capacity:
                raise HashPoolFull(self._retry_after())
            self._admitted += 1
        try:
            future = self._executor.submit(work, *args)
        except BaseException:
            self._done(None)
            raise
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def _timed_verify(self, password: str, password_hash: str | None) -> bool:
        started = self._timer()
        try:
            return verify_password(password, password_hash)
        finally:
            self._measured(self._timer() - started)

    def _timed_hash(self, password: str) -> str:
        started = self._timer()
        try:
            return hash_password(password)
        finally:
            self._measured(self._timer() - started)

    def _measured(self, seconds: float) -> None:
        with self._lock:
            self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * seconds

    def _done(self, _: Future[Any] | None) -> None:
        with self._lock:
            self._admitted -= 1

    def _retry_after(self) -> int:
        # Roughly when the line ahead will have drained (called under the lock).
        return max(1, math.ceil(self._admitted * self._mean_seconds / self._workers))

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
