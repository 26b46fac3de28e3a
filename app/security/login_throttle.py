"""Refuses sign-in for a while after repeated failures for one username or one address.

Two rules make it hold:

- A slot is reserved BEFORE the password is hashed: each attempt counts as a failure up
  front and is refunded only once it proves right. Checking the budget first and recording
  the failure after the (slow) hash let 40 parallel guesses all reach the hash.
- The per-username budget is for addresses the user has never signed in from. An address
  from which the right password was given before ("known") gets a budget of its own for
  that user. Failures from elsewhere then cannot lock the user out of his usual places,
  and a guesser gains nothing: making an address known takes the password.

Budgets, each a sliding window of `window_seconds`:

- per address: `max_failures_per_address` (shared by offices and NAT, so larger);
- per username: `max_failures`, for attempts from addresses not known for that user;
- per username and known address: `max_failures`, for attempts from that address.

Hand-written on purpose, not the `limits` package (checked against limits 5.8.0). Its moving
window is this sliding window, with the same Retry-After (until the oldest entry leaves), but:

- a slot cannot be given back. limits can add an entry or clear a whole budget, never remove
  one entry, and the first rule needs exactly that: a right password, or an attempt the
  busy hash pool turned away, refunds its own slot and leaves the others' failures counted.
  Clearing the budget instead would let the user's next success wipe a guesser's failures;
  not refunding would count every right password too, and twenty people signing in from
  one office within the window would lock that address out.
- an attempt takes a slot in two budgets or in neither: limits checks and takes one budget
  at a time, and a slot taken in the first before the second refuses could not be undone.
- its other strategies have the same gaps and are looser: a fixed window lets twice the
  budget through around its edge, a sliding-window counter only estimates the window.

tests/test_limits_edges.py pins these edges for both classes.
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol

# How long an address stays known after a successful sign-in from it, and how many
# addresses one user keeps known at most (the most recent ones).
KNOWN_ADDRESS_SECONDS = 30 * 24 * 3600.0
KNOWN_ADDRESSES_PER_USER = 20
# An address that cannot be told apart from others is never "known": every client
# without an address would share bob's known-address budget.
_UNTRUSTED_ADDRESSES = frozenset({"", "unknown"})


# A budget's name. Tuples, not joined strings: a username is whatever the caller typed, and
# "bob|ip:10.0.0.1" must not name bob's budget for 10.0.0.1.
BudgetKey = tuple[str, ...]


def user_key(username: str) -> BudgetKey:
    return ("user", username)


def address_key(address: str) -> BudgetKey:
    return ("ip", address)


def pair_key(username: str, address: str) -> BudgetKey:
    return ("pair", username, address)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A sign-in attempt's slot in each budget it counts against (names are the
    throttle's own: opaque to callers)."""

    username: str
    address: str
    keys: tuple[Hashable, ...]
    slot: str
    known_address: bool


@dataclass(frozen=True, slots=True)
class Refused:
    retry_after: int


class SignInThrottle(Protocol):
    async def reserve(self, username: str, address: str) -> Reservation | Refused:
        """Take a slot in every budget of this attempt, or say when to try again. Until it
        is refunded, the slot counts as a failure."""
        ...

    async def succeeded(self, reservation: Reservation) -> None:
        """The password was right: refund the slot and remember the address."""
        ...

    async def failed(self, reservation: Reservation) -> None:
        """The password was wrong: the slot stays, as the failure."""
        ...

    async def release(self, reservation: Reservation) -> None:
        """No verdict (the hash pool was full, the database was down): refund the slot."""
        ...


def _can_be_known(address: str) -> bool:
    return address not in _UNTRUSTED_ADDRESSES


def _limit(key: BudgetKey, per_user: int, per_address: int) -> int:
    # An address is shared by many people (offices, NAT): it gets its own, larger limit.
    return per_address if key[0] == "ip" else per_user


class LoginThrottle:
    """In memory, per process: a sliding window of (time, slot) per budget."""

    def __init__(
        self,
        *,
        max_failures: int,
        max_failures_per_address: int,
        window_seconds: float,
        enabled: bool = True,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
        known_address_seconds: float = KNOWN_ADDRESS_SECONDS,
    ) -> None:
        self._max_failures = max_failures
        self._max_failures_per_address = max_failures_per_address
        self._window = window_seconds
        self._enabled = enabled
        self._clock = clock
        self._max_keys = max_keys
        self._known_seconds = known_address_seconds
        self._failures: OrderedDict[Hashable, deque[tuple[float, str]]] = OrderedDict()
        # (username, address) -> when the right password last came from there.
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._slots = itertools.count()

    def is_known(self, username: str, address: str) -> bool:
        seen = self._known.get((username, address))
        return seen is not None and self._clock() - seen < self._known_seconds

    async def reserve(self, username: str, address: str) -> Reservation | Refused:
        # No await in here: on one event loop the check and the take are one atomic step.
        known = _can_be_known(address) and self.is_known(username, address)
        keys = (
            pair_key(username, address) if known else user_key(username),
            address_key(address),
        )
        slot = str(next(self._slots))
        if not self._enabled:
            return Reservation(username, address, (), slot, known)
        now = self._clock()
        waits = []
        for key in keys:
            times = self._recent(key, now)
            limit = _limit(key, self._max_failures, self._max_failures_per_address)
            if times is not None and len(times) >= limit:
                waits.append(times[0][0] + self._window - now)
        if waits:
            return Refused(max(1, math.ceil(max(waits))))
        for key in keys:
            self._take(key, now, slot)
        return Reservation(username, address, keys, slot, known)

    async def succeeded(self, reservation: Reservation) -> None:
        self._refund(reservation)
        if reservation.known_address and reservation.keys:
            # Typos from the user's own place are forgiven once he gets it right. The shared
            # username budget is not: other addresses' failures stay counted.
            self._failures.pop(reservation.keys[0], None)
        if _can_be_known(reservation.address):
            pair = (reservation.username, reservation.address)
            self._known[pair] = self._clock()
            self._known.move_to_end(pair)
            if len(self._known) > self._max_keys:
                self._known.popitem(last=False)

    async def failed(self, reservation: Reservation) -> None:
        return None

    async def release(self, reservation: Reservation) -> None:
        self._refund(reservation)

    def _take(self, key: Hashable, now: float, slot: str) -> None:
        times = self._failures.get(key)
        if times is None:
            if len(self._failures) >= self._max_keys:
                # Bounded memory under a spray of usernames: drop the budget that failed
                # longest ago.
                self._failures.popitem(last=False)
            times = self._failures[key] = deque()
        times.append((now, slot))
        self._failures.move_to_end(key)

    def _refund(self, reservation: Reservation) -> None:
        for key in reservation.keys:
            times = self._failures.get(key)
            if times is None:
                continue
            for entry in times:
                if entry[1] == reservation.slot:
                    times.remove(entry)
                    break
            if not times:
                del self._failures[key]

    def _recent(self, key: Hashable, now: float) -> deque[tuple[float, str]] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0][0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times


# One budget: drop what left the window, refuse when full (answering the milliseconds until
# the oldest entry leaves), else take the slot. One script per key, so the check and the
# take are atomic across every process.
_RESERVE = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(0, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""


def _tag(value: str) -> str:
    # A brace in a username would move the hash tag (and the key's cluster slot).
    return value.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


class RedisLoginThrottle:
    """The same budgets in Redis (a sorted set of failure times per key), so a guesser
    cannot spread attempts over several processes.

    Keys: `chat:login:{user:bob}`, `chat:login:{user:bob}:ip:<address>` (a known address's
    budget), `chat:login:{user:bob}:known` (known addresses, scored by last success), and
    `chat:login:{ip:<address>}`. A user's keys share one hash tag (one cluster slot).
    """

    def __init__(
        self,
        redis: Any,
        *,
        max_failures: int,
        max_failures_per_address: int,
        window_seconds: float,
        enabled: bool = True,
        known_address_seconds: float = KNOWN_ADDRESS_SECONDS,
    ) -> None:
        self._redis = redis
        self._max_failures = max_failures
        self._max_failures_per_address = max_failures_per_address
        self._window_ms = int(window_seconds * 1000)
        self._enabled = enabled
        self._known_ms = int(known_address_seconds * 1000)
        self._reserve_script = redis.register_script(_RESERVE)

    @staticmethod
    def redis_key(key: BudgetKey) -> str:
        kind = key[0]
        if kind == "pair":
            return f"chat:login:{{user:{_tag(key[1])}}}:ip:{_tag(key[2])}"
        return f"chat:login:{{{kind}:{_tag(key[1])}}}"

    @staticmethod
    def known_key(username: str) -> str:
        return f"chat:login:{{user:{_tag(username)}}}:known"

    async def is_known(self, username: str, address: str) -> bool:
        seen = await self._redis.zscore(self.known_key(username), address)
        return seen is not None and time.time() * 1000 - float(seen) < self._known_ms

    async def reserve(self, username: str, address: str) -> Reservation | Refused:
        # Known-ness only changes on a success, so reading it outside the scripts is safe.
        known = _can_be_known(address) and await self.is_known(username, address)
        budgets = (
            pair_key(username, address) if known else user_key(username),
            address_key(address),
        )
        slot = uuid.uuid4().hex
        if not self._enabled:
            return Reservation(username, address, (), slot, known)
        taken: list[str] = []
        for budget in budgets:
            name = self.redis_key(budget)
            limit = _limit(budget, self._max_failures, self._max_failures_per_address)
            now = int(time.time() * 1000)
            wait_ms = int(
                await self._reserve_script(keys=[name], args=[now, self._window_ms, limit, slot])
            )
            if wait_ms >= 0:
                for earlier in taken:
                    await self._redis.zrem(earlier, slot)
                return Refused(max(1, math.ceil(wait_ms / 1000)))
            taken.append(name)
        return Reservation(username, address, tuple(taken), slot, known)

    async def succeeded(self, reservation: Reservation) -> None:
        now = int(time.time() * 1000)
        known_key = self.known_key(reservation.username)
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in reservation.keys:
                pipe.zrem(name, reservation.slot)
            if reservation.known_address and reservation.keys:
                # Forgive the typos from the user's own place; not the username's budget.
                pipe.delete(reservation.keys[0])
            if _can_be_known(reservation.address):
                pipe.zadd(known_key, {reservation.address: now})
                pipe.zremrangebyscore(known_key, "-inf", now - self._known_ms)
                pipe.zremrangebyrank(known_key, 0, -(KNOWN_ADDRESSES_PER_USER + 1))
                pipe.pexpire(known_key, self._known_ms)
            await pipe.execute()

    async def failed(self, reservation: Reservation) -> None:
        return None

    async def release(self, reservation: Reservation) -> None:
        if not reservation.keys:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in reservation.keys:
                pipe.zrem(name, reservation.slot)
            await pipe.execute()
