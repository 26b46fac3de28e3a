"""Rate limiter edges, through `take(key)` alone: the burst, the steady rate, the exact
Retry-After, per-key buckets and their memory bound; the Redis buckets on a real
redis-server, and what happens when Redis is down."""

from __future__ import annotations

import logging
import time

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.security.rate_limit import RedisTokenBucketLimiter, TokenBucketLimiter
from tests.backend import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def takes(limiter: TokenBucketLimiter | RedisTokenBucketLimiter, key: str, n: int) -> list:
    return [await limiter.take(key) for _ in range(n)]


# -- in memory --------------------------------------------------------------------------


async def test_the_burst_is_allowed_and_the_next_take_is_refused(clock: Clock) -> None:
    limiter = TokenBucketLimiter(per_minute=60, burst=3, clock=clock)
    assert await takes(limiter, "k", 3) == [None, None, None]
    assert await limiter.take("k") == 1


async def test_retry_after_is_the_whole_seconds_until_one_token_is_back(clock: Clock) -> None:
    limiter = TokenBucketLimiter(per_minute=6, burst=1, clock=clock)  # one token per 10 s
    assert await limiter.take("k") is None
    assert await limiter.take("k") == 10
    clock.now += 4
    assert await limiter.take("k") == 6  # a refused take costs nothing
    clock.now += 5.5
    assert await limiter.take("k") == 1
    clock.now += 0.5
    assert await limiter.take("k") is None
    assert await limiter.take("k") == 10


async def test_a_token_comes_back_exactly_after_one_interval(clock: Clock) -> None:
    limiter = TokenBucketLimiter(per_minute=60, burst=1, clock=clock)
    assert await limiter.take("k") is None
    clock.now += 1.0
    assert await limiter.take("k") is None


async def test_tokens_refill_at_the_rate_but_never_beyond_the_burst(clock: Clock) -> None:
    limiter = TokenBucketLimiter(per_minute=120, burst=2, clock=clock)  # two per second
    assert await takes(limiter, "k", 3) == [None, None, 1]
    clock.now += 3600
    assert await takes(limiter, "k", 3) == [None, None, 1]
    clock.now += 1.0
    assert await takes(limiter, "k", 3) == [None, None, 1]


async def test_keys_have_their_own_buckets(clock: Clock) -> None:
    limiter = TokenBucketLimiter(per_minute=60, burst=1, clock=clock)
    assert await limiter.take("alice") is None
    assert await limiter.take("bob") is None
    assert await limiter.take("alice") == 1


async def test_a_disabled_limiter_allows_everything(clock: Clock) -> None:
    limiter = TokenBucketLimiter(per_minute=1, burst=1, enabled=False, clock=clock)
    assert await takes(limiter, "k", 50) == [None] * 50


@pytest.mark.parametrize(("per_minute", "burst"), [(0, 1), (1, 0), (-1, 5), (0, 5), (5, 0)])
def test_a_limit_needs_a_positive_rate_and_burst(per_minute: int, burst: int) -> None:
    with pytest.raises(ValueError, match="positive rate and burst"):
        TokenBucketLimiter(per_minute=per_minute, burst=burst)


def test_the_smallest_limit_is_accepted() -> None:
    TokenBucketLimiter(per_minute=1, burst=1)


async def test_the_least_recently_used_bucket_is_forgotten_past_max_keys(clock: Clock) -> None:
    limiter = TokenBucketLimiter(per_minute=1, burst=1, clock=clock, max_keys=2)
    assert await limiter.take("a") is None
    assert await limiter.take("b") is None
    # Both fit: each is still empty.
    assert await limiter.take("a") is not None
    assert await limiter.take("b") is not None
    assert await limiter.take("a") is not None  # a refusal counts as a use: b is oldest
    assert await limiter.take("c") is None  # a third bucket: b is forgotten
    assert await limiter.take("a") is not None
    assert await limiter.take("b") is None  # forgotten, so full again; c was the oldest
    assert await limiter.take("a") is not None  # a, used last but one, is still counted
    assert await limiter.take("c") is None


# -- in Redis ---------------------------------------------------------------------------


async def test_redis_buckets_allow_the_burst_then_say_how_long_to_wait(
    redis_db: aioredis.Redis,
) -> None:
    limiter = RedisTokenBucketLimiter(redis_db, per_minute=6, burst=2)
    assert await takes(limiter, "k", 3) == [None, None, 10]
    assert await limiter.take("other") is None


async def test_redis_buckets_are_kept_under_the_keys_name_with_the_time_in_ms(
    redis_db: aioredis.Redis,
) -> None:
    limiter = RedisTokenBucketLimiter(redis_db, per_minute=60, burst=5)
    before = time.time() * 1000
    await limiter.take("ip:10.0.0.1")
    after = time.time() * 1000
    bucket = await redis_db.hgetall("chat:rate:{ip:10.0.0.1}")  # type: ignore[misc]  # redis-py types replies Awaitable | value
    assert float(bucket["t"]) == pytest.approx(4.0, abs=0.01)
    assert before - 1 <= float(bucket["ts"]) <= after + 1


async def test_a_disabled_redis_limiter_allows_everything_and_touches_nothing(
    redis_db: aioredis.Redis,
) -> None:
    limiter = RedisTokenBucketLimiter(redis_db, per_minute=1, burst=1, enabled=False)
    assert await takes(limiter, "k", 5) == [None] * 5
    assert await redis_db.keys("*") == []


@pytest.mark.parametrize(("per_minute", "burst"), [(0, 1), (1, 0), (0, 5)])
async def test_a_redis_limit_needs_a_positive_rate_and_burst(
    redis_db: aioredis.Redis, per_minute: int, burst: int
) -> None:
    with pytest.raises(ValueError, match="positive rate and burst"):
        RedisTokenBucketLimiter(redis_db, per_minute=per_minute, burst=burst)


async def test_when_redis_is_down_the_limit_is_not_checked_and_that_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    down = aioredis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    try:
        limiter = RedisTokenBucketLimiter(down, per_minute=1, burst=1)
        with caplog.at_level(logging.WARNING, logger="app.security.rate_limit"):
            assert await takes(limiter, "k", 3) == [None, None, None]
        assert "rate limit not checked, Redis unreachable" in caplog.text
    finally:
        await down.aclose()


async def test_an_allowed_take_counts_as_a_use_for_the_memory_bound(clock: Clock) -> None:
    limiter = TokenBucketLimiter(per_minute=1, burst=2, clock=clock, max_keys=2)
    assert await limiter.take("a") is None
    assert await limiter.take("b") is None
    assert await limiter.take("a") is None  # a is now the most recently used
    assert await limiter.take("c") is None  # b, the oldest, is forgotten
    assert await limiter.take("a") is not None  # a's two tokens are spent: still counted


async def test_one_a_minute_means_a_minute_to_wait(clock: Clock) -> None:
    limiter = TokenBucketLimiter(per_minute=1, burst=1, clock=clock)
    assert await limiter.take("k") is None
    assert await limiter.take("k") == 60
    clock.now += 59.5
    assert await limiter.take("k") == 1


async def test_a_redis_bucket_is_kept_until_it_would_be_full_again_plus_a_second(
    redis_db: aioredis.Redis,
) -> None:
    limiter = RedisTokenBucketLimiter(redis_db, per_minute=1, burst=1000)  # 1000 minutes to refill
    await limiter.take("k")
    assert 60_000_500 < await redis_db.pttl("chat:rate:{k}") <= 60_001_000
