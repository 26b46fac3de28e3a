"""Sign-in hardening (issue 13, items 2, 6, 7): the throttle holds under concurrency, a
guesser cannot lock a user out of the places he signs in from, password hashing runs in a
bounded pool, and tokens per user are capped.

In-process tests drive `Accounts.sign_in` (the one path of the API and the sign-in page)
with the real argon2 hasher, over both throttles (in memory, and Redis on a real
redis-server); real-backend tests show the same over HTTP on a private `reflex run --env
prod --backend-only` each, so the budgets they burn touch no other test.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from passlib.context import CryptContext
from sqlmodel import Session, col, select

from app.domain.accounts import Accounts
from app.domain.errors import NotAuthenticated, RateLimited, SignInBusy
from app.models import AuthToken, User
from app.realtime.client import ClientKind, CloseReason
from app.runtime import Runtime
from app.security import passwords
from app.security.login_throttle import LoginThrottle, RedisLoginThrottle, SignInThrottle
from app.security.passwords import HashPoolFull, PasswordHashPool, hash_password
from tests.backend import Backend, running_backend
from tests.redis_server import RedisServer

WRONG = "not-the-password"


# ---------------------------------------------------------------------------------------
# In-process: Accounts with either throttle, and a spy on the real hasher


class HashSpy:
    """Wraps the real `verify_password` (it still runs argon2) and records each call's
    start and end, so a test can count hashes and see whether they overlapped."""

    def __init__(self, real: Callable[[str, str | None], bool]) -> None:
        self._real = real
        self._lock = threading.Lock()
        self.intervals: list[tuple[float, float]] = []

    def __call__(self, password: str, password_hash: str | None) -> bool:
        started = time.perf_counter()
        try:
            return self._real(password, password_hash)
        finally:
            with self._lock:
                self.intervals.append((started, time.perf_counter()))

    @property
    def calls(self) -> int:
        return len(self.intervals)


@pytest.fixture
def hash_spy(monkeypatch: pytest.MonkeyPatch) -> HashSpy:
    spy = HashSpy(passwords.verify_password)
    monkeypatch.setattr(passwords, "verify_password", spy)
    return spy


@pytest.fixture(params=["memory", "redis"])
def throttle_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@asynccontextmanager
async def _accounts_with(
    runtime: Runtime, kind: str, request: pytest.FixtureRequest, **changes: Any
) -> AsyncIterator[Accounts]:
    """Accounts over the runtime's database with the given throttle and settings changes."""
    settings = replace(runtime.settings, **changes)
    throttle: SignInThrottle
    client = None
    if kind == "memory":
        throttle = LoginThrottle(
            max_failures=settings.login_max_failures,
            max_failures_per_address=settings.login_max_failures_per_address,
            window_seconds=settings.login_failure_window_seconds,
        )
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        server.flush()
        client = aioredis.from_url(server.url, decode_responses=True)
        throttle = RedisLoginThrottle(
            client,
            max_failures=settings.login_max_failures,
            max_failures_per_address=settings.login_max_failures_per_address,
            window_seconds=settings.login_failure_window_seconds,
        )
    accounts = Accounts(runtime.db, settings, throttle, runtime.manager)
    try:
        yield accounts
    finally:
        accounts.password_hashes.close()
        if client is not None:
            await client.aclose()


@pytest.fixture
async def accounts(
    runtime: Runtime, throttle_kind: str, request: pytest.FixtureRequest
) -> AsyncIterator[Accounts]:
    """Default budgets (5 per username, 20 per address), hash pool 1 + 16."""
    async with _accounts_with(runtime, throttle_kind, request) as accounts:
        yield accounts


async def _outcome(accounts: Accounts, username: str, password: str, address: str) -> str:
    try:
        await accounts.sign_in(username, password, address)
    except NotAuthenticated:
        return "401"
    except RateLimited as exc:
        assert exc.retry_after >= 1
        return "429"
    except SignInBusy:
        return "503"
    return "200"


async def test_parallel_wrong_passwords_reach_the_hash_at_most_the_budget(
    accounts: Accounts, runtime: Runtime, hash_spy: HashSpy
) -> None:
    budget = runtime.settings.login_max_failures
    outcomes = await asyncio.gather(
        *(_outcome(accounts, "bob", f"{WRONG}{i}", "10.0.0.1") for i in range(40))
    )
    assert outcomes.count("401") == budget
    assert outcomes.count("429") == 40 - budget
    assert hash_spy.calls == budget  # before the fix: 40
    # The budget is spent: bob's own password from this (never successful) address waits too.
    assert await _outcome(accounts, "bob", "bob-pass", "10.0.0.1") == "429"
    assert hash_spy.calls == budget


async def test_a_right_password_refunds_its_slot(accounts: Accounts, runtime: Runtime) -> None:
    """Counting the attempt up front must not cost the honest: many sign-ins in a row (each
    a slot while it hashes) never run into the budget. From an address that can never become
    known ("unknown": no address), so only the refund keeps the username budget free."""
    budget = runtime.settings.login_max_failures
    outcomes = [
        await _outcome(accounts, "carol", "carol-pass", "unknown") for _ in range(budget + 3)
    ]
    assert outcomes == ["200"] * (budget + 3)


async def test_a_known_address_signs_in_while_another_hammers_the_name(
    accounts: Accounts, runtime: Runtime
) -> None:
    budget = runtime.settings.login_max_failures
    home, attacker, elsewhere = "10.1.0.1", "10.2.0.2", "10.3.0.3"
    assert await _outcome(accounts, "bob", "bob-pass", home) == "200"  # home becomes known
    guesses = [await _outcome(accounts, "bob", f"{WRONG}{i}", attacker) for i in range(budget + 3)]
    assert guesses == ["401"] * budget + ["429"] * 3
    # Before the fix, 429 for the whole window.
    assert await _outcome(accounts, "bob", "bob-pass", home) == "200"
    # The username budget still guards every address bob never signed in from, and his
    # success at home did not wipe the guesser's failures.
    assert await _outcome(accounts, "bob", "bob-pass", elsewhere) == "429"
    assert await _outcome(accounts, "bob", f"{WRONG}x", attacker) == "429"
    # Home has a budget of its own for bob, as large: typos there are limited too, and a
    # right password forgives them.
    typos = [await _outcome(accounts, "bob", f"typo{i}", home) for i in range(budget - 1)]
    assert typos == ["401"] * (budget - 1)
    assert await _outcome(accounts, "bob", "bob-pass", home) == "200"
    typos = [await _outcome(accounts, "bob", f"typo{i}", home) for i in range(budget + 1)]
    assert typos == ["401"] * budget + ["429"]


async def test_an_address_is_known_only_for_the_user_who_signed_in_from_it(
    accounts: Accounts, runtime: Runtime
) -> None:
    budget = runtime.settings.login_max_failures
    shared = "10.4.0.4"
    assert await _outcome(accounts, "alice", "alice-pass", shared) == "200"
    guesses = [await _outcome(accounts, "erin", f"{WRONG}{i}", "10.5.0.5") for i in range(budget)]
    assert guesses == ["401"] * budget
    # alice's success there does not make the address known for erin.
    assert await _outcome(accounts, "erin", "erin-pass", shared) == "429"


async def test_the_address_budget_still_holds_across_usernames(
    runtime: Runtime, throttle_kind: str, request: pytest.FixtureRequest, hash_spy: HashSpy
) -> None:
    async with _accounts_with(
        runtime, throttle_kind, request, login_max_failures_per_address=6
    ) as accounts:
        spray = await asyncio.gather(
            *(_outcome(accounts, f"user{i}", WRONG, "10.6.0.6") for i in range(20))
        )
        assert spray.count("401") == 6 and spray.count("429") == 14
        assert hash_spy.calls == 6
        # Even a right password waits: the address is out of attempts.
        assert await _outcome(accounts, "dave", "dave-pass", "10.6.0.6") == "429"


async def test_busy_or_failing_checks_are_not_counted_as_failures(
    runtime: Runtime, throttle_kind: str, request: pytest.FixtureRequest
) -> None:
    """A sign-in refused for lack of hashing capacity gave no verdict: it must not eat the
    user's budget (else a flood of others' sign-ins would lock people out)."""
    # A hash about seven times as costly as a password's: it holds the one thread a while.
    slow_hash = CryptContext(schemes=["argon2"], argon2__rounds=20).hash("x")
    async with _accounts_with(
        runtime, throttle_kind, request, password_hash_workers=1, password_hash_queue=0
    ) as accounts:
        budget = runtime.settings.login_max_failures
        blocker = asyncio.create_task(accounts.password_hashes.verify("x", slow_hash))
        await asyncio.sleep(0)
        assert accounts.password_hashes.admitted == 1
        outcomes = await asyncio.gather(
            *(_outcome(accounts, "bob", f"{WRONG}{i}", "10.7.0.8") for i in range(budget))
        )
        assert outcomes == ["503"] * budget  # one hash at a time, nobody may wait
        assert await blocker is True
        after = [await _outcome(accounts, "bob", f"{WRONG}{i}", "10.7.0.8") for i in range(budget)]
        assert after == ["401"] * budget  # the whole budget was still there


def test_a_users_redis_keys_share_one_cluster_slot_whatever_the_username() -> None:
    """The username budget, a known address's budget and the known addresses of one user
    carry one hash tag (one slot under Redis Cluster); a brace typed into the username
    field can neither move it nor name another user's keys."""
    from app.security.login_throttle import pair_key, user_key

    def tag(key: str) -> str:
        return key[key.index("{") + 1 : key.index("}")]

    for name in ("bob", "b}o{b", "bob}:ip:10.0.0.1"):
        keys = [
            RedisLoginThrottle.redis_key(user_key(name)),
            RedisLoginThrottle.redis_key(pair_key(name, "10.0.0.1")),
            RedisLoginThrottle.known_key(name),
        ]
        assert len({tag(k) for k in keys}) == 1, keys
    assert RedisLoginThrottle.redis_key(user_key("bob}:ip:10.0.0.1")) != (
        RedisLoginThrottle.redis_key(pair_key("bob", "10.0.0.1"))
    )


async def test_unknown_and_known_usernames_cost_one_full_hash_each(
    runtime: Runtime, hash_spy: HashSpy
) -> None:
    """A wrong password answers in comparable time whether or not the user exists: both run
    one argon2 check of the same parameters (`dummy_verify` for a missing user)."""
    accounts = runtime.accounts
    durations: dict[str, list[float]] = {"bob": [], "no-such-user": []}
    for round_ in range(4):
        for name, spent in durations.items():  # interleaved: load on the machine hits both
            started = time.perf_counter()
            assert await _outcome(accounts, name, WRONG, f"10.8.{round_}.1") == "401"
            spent.append(time.perf_counter() - started)
    assert hash_spy.calls == 8
    known, unknown = (statistics.median(d) for d in durations.values())
    assert 0.5 < unknown / known < 2.0, durations


async def test_a_hash_with_old_parameters_is_replaced_at_the_next_sign_in(
    runtime: Runtime,
) -> None:
    """Hashes made with four argon2 lanes (before the pool: four threads per check) still
    verify, and are rehashed with one lane once the right password comes."""
    old = CryptContext(schemes=["argon2"], argon2__parallelism=4).hash("carol-pass")
    _set_password_hash(runtime, "carol", old)
    await runtime.accounts.sign_in("carol", "carol-pass", "127.0.0.1")
    new = _password_hash(runtime, "carol")
    assert new != old and ",p=1$" in new, new
    await runtime.accounts.sign_in("carol", "carol-pass", "127.0.0.1")
    assert _password_hash(runtime, "carol") == new  # not rehashed again


def _password_hash(runtime: Runtime, username: str) -> str:
    with Session(runtime.db.engine) as session:
        return session.exec(select(User).where(User.username == username)).one().password_hash


def _set_password_hash(runtime: Runtime, username: str, password_hash: str) -> None:
    with Session(runtime.db.engine) as session:
        user = session.exec(select(User).where(User.username == username)).one()
        user.password_hash = password_hash
        session.add(user)
        session.commit()


# ---------------------------------------------------------------------------------------
# The bounded hash pool


async def test_the_hash_pool_admits_workers_plus_queue_and_refuses_the_rest(
    hash_spy: HashSpy,
) -> None:
    pool = PasswordHashPool(workers=1, queue=2)
    stored = hash_password("right")
    try:
        # Admission is decided when verify() is called; argon2 takes over 50 ms, so the
        # first three are all still admitted when the fourth and fifth arrive.
        tasks = [asyncio.create_task(pool.verify("right", stored)) for _ in range(3)]
        await asyncio.sleep(0)
        assert pool.admitted == 3
        for _ in range(2):
            with pytest.raises(HashPoolFull) as refused:
                await pool.verify("right", stored)
            assert refused.value.retry_after >= 1
        assert await asyncio.gather(*tasks) == [True, True, True]
        assert pool.admitted == 0
        assert await pool.verify("wrong", stored) is False  # admitted again once drained
    finally:
        pool.close()
    assert hash_spy.calls == 4  # the refused ones never hashed
    # One worker: no two hashes ever ran at the same time.
    spans = sorted(hash_spy.intervals)
    assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))


async def test_a_full_pool_is_a_503_sign_in_busy_with_retry_after_over_http(
    tmp_path: Path,
) -> None:
    env = {"PASSWORD_HASH_WORKERS": "1", "PASSWORD_HASH_QUEUE": "2"}
    with private_backend(tmp_path, env) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            answers = await asyncio.gather(
                *(
                    http.post("/api/auth/token", json={"username": f"ghost{i}", "password": WRONG})
                    for i in range(20)
                )
            )
    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {401, 503}, statuses
    busy = [a for a in answers if a.status_code == 503]
    assert busy, statuses  # 20 at once, 3 admitted at a time, each hash >= 50 ms
    for answer in busy:
        assert answer.json()["error"]["code"] == "sign_in_busy"
        assert int(answer.headers["retry-after"]) >= 1
    assert not _errors_in(server)


# ---------------------------------------------------------------------------------------
# Tokens per user


async def test_a_sign_in_past_the_cap_revokes_the_oldest_token_and_its_stream(
    runtime: Runtime, request: pytest.FixtureRequest
) -> None:
    async with _accounts_with(runtime, "memory", request, max_tokens_per_user=3) as accounts:
        grants = [await accounts.sign_in("erin", "erin-pass", "127.0.0.1") for _ in range(3)]
        oldest = grants[0]
        # Cached as valid (auth_cache_seconds), and a stream open with it.
        assert await accounts.principal_for_token(oldest.access_token) is not None
        connection = await runtime.manager.connect(
            user_id=oldest.principal.user_id,
            tenant_id=oldest.principal.tenant_id,
            kind=ClientKind.STREAM,
            types=frozenset({"notification:new"}),
            session_ref=oldest.principal.token_id,
        )
        newest = await accounts.sign_in("erin", "erin-pass", "127.0.0.1")
        assert await accounts.principal_for_token(oldest.access_token) is None
        assert connection.client.close_reason is CloseReason.SESSION_ENDED
        for grant in [*grants[1:], newest]:
            assert await accounts.principal_for_token(grant.access_token) is not None
        # More sign-ins keep the rows bounded: revoked and surplus tokens are deleted.
        for _ in range(5):
            await accounts.sign_in("erin", "erin-pass", "127.0.0.1")
        assert _token_rows(runtime, "erin") == 3


def _token_rows(runtime: Runtime, username: str) -> int:
    with Session(runtime.db.engine) as session:
        user = session.exec(select(User).where(User.username == username)).one()
        return len(
            session.exec(select(AuthToken.id).where(col(AuthToken.user_id) == user.id)).all()
        )


async def test_a_token_past_the_cap_gets_401_at_once_over_http(tmp_path: Path) -> None:
    with private_backend(tmp_path, {"MAX_TOKENS_PER_USER": "2"}) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            first, second = [await _sign_in(http, "erin") for _ in range(2)]
            # /api/me caches the check (AUTH_CACHE_SECONDS, 2 s): the cap must evict it.
            assert (await _me(http, first)).status_code == 200
            third = await _sign_in(http, "erin")
            refused = await _me(http, first)
            assert refused.status_code == 401
            assert refused.json()["error"]["code"] == "not_authenticated"
            assert (await _me(http, second)).status_code == 200
            assert (await _me(http, third)).status_code == 200
    assert not _errors_in(server)


# ---------------------------------------------------------------------------------------
# Real backend: the same over HTTP


@contextmanager
def private_backend(tmp_path: Path, env: dict[str, str] | None = None) -> Iterator[Backend]:
    with running_backend(tmp_path, env, backend_only=True) as server:
        server.mark_log()
        yield server


def _errors_in(server: Backend) -> list[str]:
    from tests.backend import error_lines

    return error_lines(server.log_since_mark())


def _from(address: str, server: Backend) -> httpx.AsyncClient:
    """A client whose connections come from `address` (any 127.x.y.z is loopback on Linux),
    so one machine can be several sign-in addresses."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=server.url, transport=transport, timeout=30)


async def _sign_in(http: httpx.AsyncClient, username: str, password: str | None = None) -> str:
    response = await http.post(
        "/api/auth/token",
        json={"username": username, "password": password or f"{username}-pass"},
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


async def _me(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})


async def test_40_parallel_wrong_passwords_over_http_get_the_budget_of_401s(
    tmp_path: Path,
) -> None:
    budget = 3  # LOGIN_MAX_FAILURES in tests/backend.py TEST_ENV
    with private_backend(tmp_path) as server:
        async with _from("127.0.0.2", server) as attacker:
            answers = await asyncio.gather(
                *(
                    attacker.post("/api/auth/token", json={"username": "bob", "password": f"g{i}"})
                    for i in range(40)
                )
            )
            last = await attacker.post(
                "/api/auth/token", json={"username": "bob", "password": "bob-pass"}
            )
    statuses = [a.status_code for a in answers]
    assert statuses.count(401) == budget, statuses
    assert statuses.count(429) == 40 - budget, statuses
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 429)
    assert last.status_code == 429  # before the fix: 200
    assert not _errors_in(server)


async def test_bob_signs_in_from_home_while_another_address_hammers_his_name(
    tmp_path: Path,
) -> None:
    with private_backend(tmp_path) as server:
        async with _from("127.0.0.1", server) as home, _from("127.0.0.2", server) as attacker:
            await _sign_in(home, "bob")  # bob has signed in from home before
            guesses = [
                (
                    await attacker.post(
                        "/api/auth/token", json={"username": "bob", "password": f"g{i}"}
                    )
                ).status_code
                for i in range(6)
            ]
            assert guesses == [401, 401, 401, 429, 429, 429]
            token = await _sign_in(home, "bob")  # before the fix: 429 for 300 s
            assert (await _me(home, token)).status_code == 200
            async with _from("127.0.0.3", server) as elsewhere:
                unknown = await elsewhere.post(
                    "/api/auth/token", json={"username": "bob", "password": "bob-pass"}
                )
            assert unknown.status_code == 429  # the username budget holds for new addresses
    assert not _errors_in(server)


async def _control_latencies(
    http: httpx.AsyncClient, token: str, seconds: float, max_samples: int
) -> list[float]:
    """GET /api/me every 10 ms for a bounded time and count: each answer's seconds, sorted."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and len(latencies) < max_samples:
        started = time.perf_counter()
        response = await _me(http, token)
        latencies.append(time.perf_counter() - started)
        assert response.status_code == 200
        await asyncio.sleep(0.01)
    return sorted(latencies)


def _summary(latencies: list[float]) -> str:
    p99 = latencies[math.ceil(len(latencies) * 0.99) - 1]  # nearest rank
    return (
        f"{len(latencies)} samples, median {statistics.median(latencies) * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms"
    )


async def test_a_flood_of_valid_sign_ins_leaves_other_requests_fast(tmp_path: Path) -> None:
    """8 clients sign in in a loop (valid passwords: every attempt runs argon2) while one
    control client calls GET /api/me: its p99 stays under 100 ms and its median under 20 ms
    (or 1.5x and 2x the same control's without the flood, on a machine slowed by other work).
    Before the fix: median 112 ms, max 518 ms in the finding; median 24-30 ms, p99 85-105 ms
    with this test on a quiet machine. The same control without the flood is measured
    first: it is printed, and named in a failure, to tell a slow server from a machine busy
    with other work."""
    flood_users = ("alice", "bob", "carol", "erin")  # two clients each; dave is the control
    with private_backend(tmp_path, {"LOGIN_MAX_FAILURES": "5"}) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            control = await _sign_in(http, "dave")
            for name in flood_users:  # known from here, so the loop below is all 200s
                await _sign_in(http, name)
            quiet = await _control_latencies(http, control, seconds=3, max_samples=150)
            stop = asyncio.Event()
            signed_in: list[int] = []

            async def flood(username: str) -> None:
                async with httpx.AsyncClient(base_url=server.url, timeout=30) as own:
                    while not stop.is_set() and len(signed_in) < 400:
                        response = await own.post(
                            "/api/auth/token",
                            json={"username": username, "password": f"{username}-pass"},
                        )
                        signed_in.append(response.status_code)

            flooders = [asyncio.create_task(flood(name)) for name in flood_users * 2]
            try:
                # Sample once the flood is under way (its first answers are in).
                async with asyncio.timeout(10):
                    while len(signed_in) < 8:
                        await asyncio.sleep(0.01)
                flooded = await _control_latencies(http, control, seconds=8, max_samples=400)
            finally:
                stop.set()
                await asyncio.gather(*flooders)
    p99 = flooded[math.ceil(len(flooded) * 0.99) - 1]
    report = (
        f"control GET /api/me without the flood: {_summary(quiet)}; during the flood "
        f"({len(signed_in)} sign-ins: {signed_in.count(200)} x 200, {signed_in.count(503)} x "
        f"503): {_summary(flooded)}"
    )
    print("\n" + report)
    assert set(signed_in) <= {200, 503}
    assert signed_in.count(200) >= 20  # the flood did hash passwords throughout
    assert len(flooded) >= 100
    # The bounds scale with the same control measured without the flood: on a machine busy
    # with other work every request is slower, and that is not the flood's doing. Before the
    # fix the flood multiplied the median by 5 to 20; 2x (and 1.5x the p99) still catches it.
    quiet_p99 = quiet[math.ceil(len(quiet) * 0.99) - 1]
    assert p99 <= max(0.100, 1.5 * quiet_p99), report
    assert statistics.median(flooded) <= max(0.020, 2 * statistics.median(quiet)), report
    assert not _errors_in(server)
