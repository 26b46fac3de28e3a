"""Sign-in throttle edges, through reserve / succeeded / failed / release alone: the window,
each budget's limit, the per-address budget, known addresses and the exact Retry-After.
The in-memory throttle is driven by a clock; the Redis one runs on a real redis-server
with the behaviour that needs no clock."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from app.security.login_throttle import LoginThrottle, RedisLoginThrottle, Refused, Reservation

Throttle = LoginThrottle | RedisLoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def memory(clock: Clock, **kwargs: object) -> LoginThrottle:
    settings: dict[str, object] = {
        "max_failures": 3,
        "max_failures_per_address": 5,
        "window_seconds": 60.0,
    }
    settings.update(kwargs)
    return LoginThrottle(clock=clock, **settings)  # type: ignore[arg-type]


async def fail(throttle: Throttle, username: str, address: str) -> Reservation:
    reservation = await throttle.reserve(username, address)
    assert isinstance(reservation, Reservation), f"{username}@{address} was refused"
    await throttle.failed(reservation)
    return reservation


async def succeed(throttle: Throttle, username: str, address: str) -> None:
    reservation = await throttle.reserve(username, address)
    assert isinstance(reservation, Reservation)
    await throttle.succeeded(reservation)


async def refused(throttle: Throttle, username: str, address: str) -> int:
    verdict = await throttle.reserve(username, address)
    assert isinstance(verdict, Refused), f"{username}@{address} was let through"
    return verdict.retry_after


# -- in memory, with a clock ------------------------------------------------------------


async def test_a_username_gets_max_failures_then_waits_for_the_oldest_to_leave(
    clock: Clock,
) -> None:
    throttle = memory(clock)
    for address in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        await fail(throttle, "bob", address)
        clock.now += 10
    # Failures at 10000, 10010, 10020; now 10030: the first leaves at 10060.
    assert await refused(throttle, "bob", "4.4.4.4") == 30
    clock.now = 10_059.5
    assert await refused(throttle, "bob", "4.4.4.4") == 1
    clock.now = 10_060.0  # exactly one window after the oldest: it has left
    await fail(throttle, "bob", "4.4.4.4")
    assert await refused(throttle, "bob", "4.4.4.4") == 10
    assert isinstance(await throttle.reserve("alice", "4.4.4.4"), Reservation)


async def test_retry_after_rounds_up_to_whole_seconds(clock: Clock) -> None:
    throttle = memory(clock, max_failures=1)
    await fail(throttle, "bob", "1.1.1.1")
    clock.now += 0.25
    assert await refused(throttle, "bob", "1.1.1.1") == 60


async def test_an_address_gets_its_own_larger_budget_across_usernames(clock: Clock) -> None:
    throttle = memory(clock)
    for n in range(5):
        await fail(throttle, f"user{n}", "9.9.9.9")
        clock.now += 1
    assert await refused(throttle, "someone-else", "9.9.9.9") == 55
    assert isinstance(await throttle.reserve("someone-else", "8.8.8.8"), Reservation)


async def test_when_both_budgets_are_full_retry_after_is_the_longer_wait(clock: Clock) -> None:
    throttle = memory(clock, max_failures=2, max_failures_per_address=2)
    await fail(throttle, "bob", "9.9.9.9")  # t=10000: bob and the address
    clock.now += 20
    await fail(throttle, "carol", "9.9.9.9")  # address full (oldest 10000)
    await fail(throttle, "bob", "1.1.1.1")  # bob full (oldest 10000)
    clock.now += 20
    # bob's budget frees at 10060, the address's at 10060: both 20 s away.
    assert await refused(throttle, "bob", "9.9.9.9") == 20


async def test_the_longest_of_two_different_waits_is_given(clock: Clock) -> None:
    throttle = memory(clock, max_failures=1, max_failures_per_address=1)
    await fail(throttle, "bob", "1.1.1.1")  # bob's budget until 10060
    clock.now += 30
    await fail(throttle, "carol", "2.2.2.2")  # 2.2.2.2's budget until 10090
    assert await refused(throttle, "bob", "2.2.2.2") == 60
    assert await refused(throttle, "bob", "3.3.3.3") == 30


async def test_a_refused_attempt_takes_no_slot(clock: Clock) -> None:
    throttle = memory(clock, max_failures=1)
    await fail(throttle, "bob", "1.1.1.1")
    for _ in range(10):
        await refused(throttle, "bob", "2.2.2.2")
    # The ten refusals from 2.2.2.2 did not count against that address.
    for n in range(5):
        await fail(throttle, f"user{n}", "2.2.2.2")


async def test_a_success_or_a_release_refunds_its_slot_and_a_failure_keeps_it(
    clock: Clock,
) -> None:
    throttle = memory(clock)
    for _ in range(10):
        reservation = await throttle.reserve("bob", "1.1.1.1")
        assert isinstance(reservation, Reservation)
        await throttle.release(reservation)
    await fail(throttle, "bob", "1.1.1.1")
    await fail(throttle, "bob", "1.1.1.1")
    third = await throttle.reserve("bob", "1.1.1.1")
    assert isinstance(third, Reservation)
    await refused(throttle, "bob", "1.1.1.1")  # the held slot counts as a failure
    await throttle.release(third)
    await fail(throttle, "bob", "1.1.1.1")
    await refused(throttle, "bob", "1.1.1.1")


async def test_refunding_one_slot_leaves_the_others(clock: Clock) -> None:
    throttle = memory(clock, max_failures=3)
    first = await throttle.reserve("bob", "1.1.1.1")
    second = await throttle.reserve("bob", "1.1.1.1")
    third = await throttle.reserve("bob", "1.1.1.1")
    assert all(isinstance(r, Reservation) for r in (first, second, third))
    await throttle.release(second)  # type: ignore[arg-type]
    await throttle.release(second)  # type: ignore[arg-type] # twice: refunds nothing more
    await fail(throttle, "bob", "1.1.1.1")
    await refused(throttle, "bob", "1.1.1.1")


async def test_a_known_address_has_its_own_budget_untouched_by_failures_elsewhere(
    clock: Clock,
) -> None:
    throttle = memory(clock)
    await succeed(throttle, "bob", "1.1.1.1")
    for address in ("6.6.6.6", "7.7.7.7", "8.8.8.8"):
        await fail(throttle, "bob", address)
    await refused(throttle, "bob", "5.5.5.5")
    reservation = await throttle.reserve("bob", "1.1.1.1")
    assert isinstance(reservation, Reservation) and reservation.known_address
    await throttle.failed(reservation)
    # ... and it is limited too.
    await fail(throttle, "bob", "1.1.1.1")
    await fail(throttle, "bob", "1.1.1.1")
    assert await refused(throttle, "bob", "1.1.1.1") == 60


async def test_a_success_forgives_its_known_address_typos_but_not_the_usernames_budget(
    clock: Clock,
) -> None:
    throttle = memory(clock)
    await succeed(throttle, "bob", "1.1.1.1")
    await fail(throttle, "bob", "1.1.1.1")
    await fail(throttle, "bob", "1.1.1.1")
    await fail(throttle, "bob", "6.6.6.6")
    await fail(throttle, "bob", "7.7.7.7")
    await succeed(throttle, "bob", "1.1.1.1")
    for _ in range(3):
        await fail(throttle, "bob", "1.1.1.1")
    await refused(throttle, "bob", "1.1.1.1")
    await fail(throttle, "bob", "8.8.8.8")
    await refused(throttle, "bob", "9.9.9.9")


async def test_a_success_from_an_unknown_address_forgives_nothing(clock: Clock) -> None:
    throttle = memory(clock)
    await fail(throttle, "bob", "6.6.6.6")
    await fail(throttle, "bob", "7.7.7.7")
    await succeed(throttle, "bob", "1.1.1.1")  # now known, but this attempt was not
    await fail(throttle, "bob", "8.8.8.8")
    await refused(throttle, "bob", "9.9.9.9")


async def test_an_address_stays_known_for_a_limited_time(clock: Clock) -> None:
    throttle = memory(clock, known_address_seconds=100.0)
    await succeed(throttle, "bob", "1.1.1.1")
    assert throttle.is_known("bob", "1.1.1.1")
    assert not throttle.is_known("alice", "1.1.1.1")
    clock.now += 99.5
    assert throttle.is_known("bob", "1.1.1.1")
    clock.now += 0.5  # exactly 100 s: no longer
    assert not throttle.is_known("bob", "1.1.1.1")
    reservation = await throttle.reserve("bob", "1.1.1.1")
    assert isinstance(reservation, Reservation) and not reservation.known_address


@pytest.mark.parametrize("address", ["", "unknown"])
async def test_an_address_that_names_nobody_is_never_known(clock: Clock, address: str) -> None:
    throttle = memory(clock)
    await succeed(throttle, "bob", address)
    assert not throttle.is_known("bob", address)
    reservation = await throttle.reserve("bob", address)
    assert isinstance(reservation, Reservation) and not reservation.known_address


async def test_a_disabled_throttle_refuses_nothing(clock: Clock) -> None:
    throttle = memory(clock, enabled=False)
    for _ in range(20):
        reservation = await fail(throttle, "bob", "1.1.1.1")
        assert reservation.keys == ()
    await succeed(throttle, "bob", "1.1.1.1")


async def test_a_reservation_names_its_attempt(clock: Clock) -> None:
    throttle = memory(clock)
    first = await throttle.reserve("bob", "1.1.1.1")
    second = await throttle.reserve("bob", "1.1.1.1")
    assert isinstance(first, Reservation) and isinstance(second, Reservation)
    assert (first.username, first.address, first.known_address) == ("bob", "1.1.1.1", False)
    assert first.slot != second.slot
    assert len(first.keys) == 2


async def test_under_a_spray_of_usernames_the_oldest_budget_is_dropped(clock: Clock) -> None:
    throttle = memory(clock, max_failures=1, max_failures_per_address=100, max_keys=3)
    await fail(throttle, "bob", "1.1.1.1")  # bob, 1.1.1.1
    await refused(throttle, "bob", "2.2.2.2")
    clock.now += 1
    await fail(throttle, "alice", "1.1.1.1")  # alice: three budgets, none dropped yet
    await refused(throttle, "bob", "2.2.2.2")
    clock.now += 1
    await fail(throttle, "carol", "1.1.1.1")  # a fourth budget: bob's, the oldest, goes
    await fail(throttle, "bob", "2.2.2.2")


async def test_known_addresses_are_bounded_too(clock: Clock) -> None:
    throttle = memory(clock, max_keys=2)
    await succeed(throttle, "bob", "1.1.1.1")
    await succeed(throttle, "bob", "2.2.2.2")
    assert throttle.is_known("bob", "1.1.1.1")
    await succeed(throttle, "bob", "1.1.1.1")  # used again: 2.2.2.2 is now the oldest
    await succeed(throttle, "bob", "3.3.3.3")
    assert throttle.is_known("bob", "1.1.1.1")
    assert not throttle.is_known("bob", "2.2.2.2")
    assert throttle.is_known("bob", "3.3.3.3")


async def test_a_budget_emptied_by_the_window_starts_afresh(clock: Clock) -> None:
    throttle = memory(clock, max_failures=2)
    await fail(throttle, "bob", "1.1.1.1")
    await fail(throttle, "bob", "1.1.1.1")
    clock.now += 61
    await fail(throttle, "bob", "1.1.1.1")
    await fail(throttle, "bob", "1.1.1.1")
    assert await refused(throttle, "bob", "1.1.1.1") == 60


# -- in Redis ---------------------------------------------------------------------------


def in_redis(redis_db: aioredis.Redis, **kwargs: object) -> RedisLoginThrottle:
    settings: dict[str, object] = {
        "max_failures": 3,
        "max_failures_per_address": 5,
        "window_seconds": 60.0,
    }
    settings.update(kwargs)
    return RedisLoginThrottle(redis_db, **settings)  # type: ignore[arg-type]


async def test_redis_a_username_gets_max_failures_then_waits_about_a_window(
    redis_db: aioredis.Redis,
) -> None:
    throttle = in_redis(redis_db)
    for address in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        await fail(throttle, "bob", address)
    assert 59 <= await refused(throttle, "bob", "4.4.4.4") <= 60
    assert isinstance(await throttle.reserve("alice", "4.4.4.4"), Reservation)


async def test_redis_an_address_gets_its_own_larger_budget(redis_db: aioredis.Redis) -> None:
    throttle = in_redis(redis_db)
    for n in range(5):
        await fail(throttle, f"user{n}", "9.9.9.9")
    await refused(throttle, "someone", "9.9.9.9")
    await fail(throttle, "someone", "8.8.8.8")


async def test_redis_a_refusal_by_the_address_gives_back_the_username_slot(
    redis_db: aioredis.Redis,
) -> None:
    throttle = in_redis(redis_db, max_failures_per_address=1)
    await fail(throttle, "carol", "9.9.9.9")
    for _ in range(5):
        await refused(throttle, "bob", "9.9.9.9")
    for address in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        await fail(throttle, "bob", address)
    await refused(throttle, "bob", "4.4.4.4")


async def test_redis_success_and_release_refund_and_failure_keeps(redis_db: aioredis.Redis) -> None:
    throttle = in_redis(redis_db)
    for _ in range(5):
        reservation = await throttle.reserve("bob", "1.1.1.1")
        assert isinstance(reservation, Reservation)
        await throttle.release(reservation)
    await succeed(throttle, "bob", "6.6.6.6")
    for _ in range(3):
        await fail(throttle, "bob", "1.1.1.1")
    await refused(throttle, "bob", "2.2.2.2")


async def test_redis_a_known_address_has_its_own_budget_and_a_success_forgives_it(
    redis_db: aioredis.Redis,
) -> None:
    throttle = in_redis(redis_db)
    await succeed(throttle, "bob", "1.1.1.1")
    assert await throttle.is_known("bob", "1.1.1.1")
    assert not await throttle.is_known("bob", "2.2.2.2")
    for address in ("6.6.6.6", "7.7.7.7", "8.8.8.8"):
        await fail(throttle, "bob", address)
    await refused(throttle, "bob", "5.5.5.5")
    await fail(throttle, "bob", "1.1.1.1")
    await fail(throttle, "bob", "1.1.1.1")
    await succeed(throttle, "bob", "1.1.1.1")
    for _ in range(3):
        await fail(throttle, "bob", "1.1.1.1")
    await refused(throttle, "bob", "1.1.1.1")
    await refused(throttle, "bob", "5.5.5.5")  # the username's budget was not forgiven


async def test_redis_known_addresses_expire_and_keep_the_newest_twenty(
    redis_db: aioredis.Redis,
) -> None:
    throttle = in_redis(redis_db, known_address_seconds=0.05)
    await succeed(throttle, "bob", "1.1.1.1")
    assert 0 < await redis_db.pttl(RedisLoginThrottle.known_key("bob")) <= 50
    lasting = in_redis(redis_db)
    for n in range(22):
        await succeed(lasting, "erin", f"10.0.0.{n}")
    assert await redis_db.zcard(RedisLoginThrottle.known_key("erin")) == 20
    assert not await lasting.is_known("erin", "10.0.0.1")
    assert await lasting.is_known("erin", "10.0.0.2")
    assert await lasting.is_known("erin", "10.0.0.21")


async def test_redis_a_known_address_is_forgotten_after_its_time(redis_db: aioredis.Redis) -> None:
    throttle = in_redis(redis_db, known_address_seconds=3600)
    await succeed(throttle, "bob", "1.1.1.1")
    # Seen just over an hour ago.
    seen = float(await redis_db.zscore(RedisLoginThrottle.known_key("bob"), "1.1.1.1"))
    await redis_db.zadd(RedisLoginThrottle.known_key("bob"), {"1.1.1.1": seen - 3_600_001})
    assert not await throttle.is_known("bob", "1.1.1.1")
    await redis_db.zadd(RedisLoginThrottle.known_key("bob"), {"1.1.1.1": seen - 3_590_000})
    assert await throttle.is_known("bob", "1.1.1.1")


@pytest.mark.parametrize("address", ["", "unknown"])
async def test_redis_an_address_that_names_nobody_is_never_known(
    redis_db: aioredis.Redis, address: str
) -> None:
    throttle = in_redis(redis_db)
    await succeed(throttle, "bob", address)
    assert await redis_db.exists(RedisLoginThrottle.known_key("bob")) == 0
    reservation = await throttle.reserve("bob", address)
    assert isinstance(reservation, Reservation) and not reservation.known_address


async def test_redis_a_disabled_throttle_refuses_nothing_and_stores_nothing(
    redis_db: aioredis.Redis,
) -> None:
    throttle = in_redis(redis_db, enabled=False)
    for _ in range(10):
        reservation = await fail(throttle, "bob", "1.1.1.1")
        assert reservation.keys == ()
        await throttle.release(reservation)
    assert await redis_db.keys("chat:login:{user:bob}") == []


async def test_redis_budgets_are_named_per_user_and_address_with_braces_escaped() -> None:
    assert RedisLoginThrottle.redis_key(("user", "bob")) == "chat:login:{user:bob}"
    assert RedisLoginThrottle.redis_key(("ip", "1.2.3.4")) == "chat:login:{ip:1.2.3.4}"
    assert (
        RedisLoginThrottle.redis_key(("pair", "b{o}b%", "1.2.3.4"))
        == "chat:login:{user:b%7Bo%7Db%25}:ip:1.2.3.4"
    )
    assert RedisLoginThrottle.known_key("bob") == "chat:login:{user:bob}:known"


async def test_redis_a_failure_is_kept_for_one_window(redis_db: aioredis.Redis) -> None:
    throttle = in_redis(redis_db, window_seconds=60.0)
    reservation = await fail(throttle, "bob", "1.1.1.1")
    [name, _] = reservation.keys
    assert 59_000 < await redis_db.pttl(str(name)) <= 60_000


async def test_a_budget_used_again_is_kept_longer_under_the_memory_bound(clock: Clock) -> None:
    throttle = memory(clock, max_failures=1, max_failures_per_address=100, max_keys=3)
    await fail(throttle, "alice", "1.1.1.1")
    await fail(throttle, "bob", "1.1.1.1")  # 1.1.1.1's budget is used again: newest now
    await fail(throttle, "carol", "2.2.2.2")  # two new budgets: alice's, then bob's, go
    assert isinstance(await throttle.reserve("bob", "3.3.3.3"), Reservation)


async def test_a_verdict_after_its_budgets_were_dropped_refunds_nothing_and_raises_nothing(
    clock: Clock,
) -> None:
    throttle = memory(clock, max_failures=1, max_keys=2)
    slow = await throttle.reserve("bob", "1.1.1.1")  # the hash is slow to answer...
    assert isinstance(slow, Reservation)
    await fail(throttle, "alice", "2.2.2.2")  # ... meanwhile two new budgets push bob's out
    await throttle.release(slow)
    await throttle.succeeded(slow)
    await refused(throttle, "alice", "3.3.3.3")  # alice's failure still counts


async def test_redis_a_success_from_an_unknown_address_forgives_nothing(
    redis_db: aioredis.Redis,
) -> None:
    throttle = in_redis(redis_db)
    await fail(throttle, "bob", "6.6.6.6")
    await fail(throttle, "bob", "7.7.7.7")
    await succeed(throttle, "bob", "1.1.1.1")
    await fail(throttle, "bob", "8.8.8.8")
    await refused(throttle, "bob", "9.9.9.9")


async def test_redis_expired_known_addresses_are_dropped_at_the_next_success(
    redis_db: aioredis.Redis,
) -> None:
    throttle = in_redis(redis_db, known_address_seconds=3600)
    key = RedisLoginThrottle.known_key("bob")
    await succeed(throttle, "bob", "1.1.1.1")
    seen = float(await redis_db.zscore(key, "1.1.1.1"))
    await redis_db.zadd(key, {"1.1.1.1": seen - 3_600_001})  # last seen over an hour ago
    await succeed(throttle, "bob", "2.2.2.2")
    assert await redis_db.zrange(key, 0, -1) == ["2.2.2.2"]


async def test_redis_windows_and_known_times_are_kept_to_the_millisecond(
    redis_db: aioredis.Redis,
) -> None:
    throttle = in_redis(redis_db, window_seconds=3600.0, known_address_seconds=3600.0)
    before = time.time() * 1000
    reservation = await fail(throttle, "bob", "1.1.1.1")
    after = time.time() * 1000
    [name, _] = reservation.keys
    assert 3_599_000 < await redis_db.pttl(str(name)) <= 3_600_000
    [(_, score)] = await redis_db.zrange(str(name), 0, -1, withscores=True)
    assert before - 1 <= score <= after + 1  # failures are scored by the wall clock, in ms
    await succeed(throttle, "bob", "1.1.1.1")
    assert 3_599_000 < await redis_db.pttl(RedisLoginThrottle.known_key("bob")) <= 3_600_000


async def test_redis_retry_after_rounds_the_milliseconds_up_to_whole_seconds(
    redis_db: aioredis.Redis,
) -> None:
    throttle = in_redis(redis_db, max_failures=1, window_seconds=1000.5)
    await fail(throttle, "bob", "1.1.1.1")
    assert await refused(throttle, "bob", "2.2.2.2") == 1001
    short = in_redis(redis_db, max_failures=1, window_seconds=1.0)
    await fail(short, "carol", "1.1.1.1")
    assert await refused(short, "carol", "2.2.2.2") == 1
