"""The edges of the rate limits and the sign-in throttle that a windowed limiter (the
`limits` package) would change, which is why both stay hand-written (see the docstrings of
app/security/rate_limit.py and app/security/login_throttle.py).

Each behaviour is checked on the in-memory class and on its Redis twin against a real
redis-server. The in-memory ones take a clock, so time moves exactly; the Redis ones read
the wall clock, so their checks hold for any run shorter than a second (a Retry-After is
whole seconds rounded up).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from app.security.login_throttle import (
    LoginThrottle,
    RedisLoginThrottle,
    Refused,
    Reservation,
    SignInThrottle,
)
from app.security.rate_limit import RateLimiter, RedisTokenBucketLimiter, TokenBucketLimiter
from tests.redis_server import RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def redis_client(request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis | None]:
    """None for the in-memory classes, else a client of a freshly flushed redis-server."""
    if request.param == "memory":
        yield None
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    server.flush()
    client = aioredis.from_url(server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


def make_limiter(
    client: aioredis.Redis | None, *, per_minute: int, burst: int, enabled: bool = True
) -> RateLimiter:
    if client is None:
        return TokenBucketLimiter(per_minute=per_minute, burst=burst, enabled=enabled)
    return RedisTokenBucketLimiter(client, per_minute=per_minute, burst=burst, enabled=enabled)


def make_throttle(
    client: aioredis.Redis | None,
    *,
    max_failures: int = 5,
    max_failures_per_address: int = 20,
    window_seconds: float = 300,
) -> SignInThrottle:
    if client is None:
        return LoginThrottle(
            max_failures=max_failures,
            max_failures_per_address=max_failures_per_address,
            window_seconds=window_seconds,
        )
    return RedisLoginThrottle(
        client,
        max_failures=max_failures,
        max_failures_per_address=max_failures_per_address,
        window_seconds=window_seconds,
    )


async def takes(limiter: RateLimiter, key: str, count: int) -> list[int | None]:
    return [await limiter.take(key) for _ in range(count)]


async def reserve(throttle: SignInThrottle, username: str, address: str) -> Reservation:
    reservation = await throttle.reserve(username, address)
    assert isinstance(reservation, Reservation), reservation
    return reservation


# -- token buckets -------------------------------------------------------------------------


@pytest.mark.parametrize(("per_minute", "wait"), [(60, 1), (6, 10), (1, 60)])
async def test_after_the_burst_the_wait_is_one_token_not_a_window(
    redis_client: aioredis.Redis | None, per_minute: int, wait: int
) -> None:
    """20 at once, then Retry-After is the time to the next token (60 / per_minute s). A
    window of 20 per 20 s (limits' nearest) would answer 20 at 60 per minute."""
    limiter = make_limiter(redis_client, per_minute=per_minute, burst=20)
    assert await takes(limiter, "alice", 20) == [None] * 20
    assert await takes(limiter, "alice", 3) == [wait] * 3  # refusals cost no token


async def test_each_key_has_its_own_bucket(redis_client: aioredis.Redis | None) -> None:
    limiter = make_limiter(redis_client, per_minute=60, burst=2)
    assert await takes(limiter, "alice", 3) == [None, None, 1]
    assert await takes(limiter, "bob", 3) == [None, None, 1]


async def test_disabled_never_refuses(redis_client: aioredis.Redis | None) -> None:
    """RATE_LIMIT_ENABLED=false (the benchmark's setting)."""
    limiter = make_limiter(redis_client, per_minute=1, burst=1, enabled=False)
    assert await takes(limiter, "alice", 50) == [None] * 50


async def test_after_the_burst_tokens_come_back_at_the_steady_rate() -> None:
    """One message a second at 60 per minute, whenever it is asked for; a full bucket again
    only after burst / rate, and never more than the burst."""
    clock = Clock()
    limiter = TokenBucketLimiter(per_minute=60, burst=20, clock=clock)
    assert await takes(limiter, "alice", 20) == [None] * 20
    for _ in range(5):
        clock.now += 1.0
        assert await takes(limiter, "alice", 2) == [None, 1]
    clock.now += 0.5
    assert await limiter.take("alice") == 1  # half a token is not one
    clock.now += 3600
    assert await takes(limiter, "alice", 21) == [None] * 20 + [1]


async def test_the_wait_counts_the_part_of_a_token_already_refilled() -> None:
    clock = Clock()
    limiter = TokenBucketLimiter(per_minute=6, burst=1, clock=clock)  # a token per 10 s
    assert await limiter.take("alice") is None
    clock.now += 4.5
    assert await limiter.take("alice") == 6  # 5.5 s to go, rounded up
    clock.now += 5.5
    assert await limiter.take("alice") is None


# -- the sign-in throttle --------------------------------------------------------------------


async def test_a_full_budget_waits_until_its_oldest_failure_leaves_the_window(
    redis_client: aioredis.Redis | None,
) -> None:
    throttle = make_throttle(redis_client, max_failures=3, window_seconds=300)
    for _ in range(3):
        await throttle.failed(await reserve(throttle, "bob", "10.0.0.1"))
    assert await throttle.reserve("bob", "10.0.0.1") == Refused(300)
    assert await throttle.reserve("bob", "10.0.0.2") == Refused(300)  # a username budget


async def test_the_window_slides_one_failure_at_a_time() -> None:
    clock = Clock()
    throttle = LoginThrottle(
        max_failures=3, max_failures_per_address=20, window_seconds=300, clock=clock
    )
    for _ in range(2):
        await throttle.failed(await reserve(throttle, "bob", "10.0.0.1"))
    clock.now += 100
    await throttle.failed(await reserve(throttle, "bob", "10.0.0.1"))
    clock.now += 50.5
    assert await throttle.reserve("bob", "10.0.0.1") == Refused(150)  # 149.5 s, rounded up
    clock.now += 149.5  # the first two leave the window; the third stays
    await throttle.failed(await reserve(throttle, "bob", "10.0.0.1"))
    await throttle.failed(await reserve(throttle, "bob", "10.0.0.1"))
    assert await throttle.reserve("bob", "10.0.0.1") == Refused(100)


async def test_the_address_budget_is_shared_by_every_username(
    redis_client: aioredis.Redis | None,
) -> None:
    throttle = make_throttle(redis_client, max_failures=5, max_failures_per_address=4)
    for name in ("u1", "u2", "u3", "u4"):
        await throttle.failed(await reserve(throttle, name, "10.0.0.9"))
    assert isinstance(await throttle.reserve("u5", "10.0.0.9"), Refused)
    # Another address, and those usernames' own budgets, are untouched.
    for name in ("u1", "u5"):
        await throttle.failed(await reserve(throttle, name, "10.0.0.10"))


async def test_a_refund_gives_back_only_its_own_slot(redis_client: aioredis.Redis | None) -> None:
    """What limits cannot do: remove one entry from a window."""
    throttle = make_throttle(redis_client, max_failures=2)
    first = await reserve(throttle, "bob", "unknown")
    await throttle.failed(await reserve(throttle, "bob", "unknown"))
    assert isinstance(await throttle.reserve("bob", "unknown"), Refused)
    await throttle.release(first)  # e.g. the hash pool was full: no verdict
    await throttle.failed(await reserve(throttle, "bob", "unknown"))
    assert isinstance(await throttle.reserve("bob", "unknown"), Refused)  # the failure stays


async def test_an_attempt_refused_by_one_budget_keeps_no_slot_in_the_other(
    redis_client: aioredis.Redis | None,
) -> None:
    """The username budget is checked first, the address second: when the address refuses,
    carol's username budget must not keep the slot taken for the refused attempt."""
    throttle = make_throttle(redis_client, max_failures=2, max_failures_per_address=3)
    for name in ("alice", "bob", "dave"):
        await throttle.failed(await reserve(throttle, name, "10.0.0.1"))
    for _ in range(4):
        assert isinstance(await throttle.reserve("carol", "10.0.0.1"), Refused)
    for _ in range(2):
        await throttle.failed(await reserve(throttle, "carol", "10.0.0.2"))
    assert isinstance(await throttle.reserve("carol", "10.0.0.3"), Refused)
