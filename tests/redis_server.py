"""A private redis-server (Debian's package) on a free loopback port, for one test run."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import pytest
import redis

from tests.backend import free_port

T = TypeVar("T")


def redis_server_path() -> str:
    """The redis-server binary; under CI a missing one fails the run instead of skipping."""
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not installed (scripts/test installs it as root)"
        _fail_under_ci_else_skip(message)
    return path


@dataclass
class RedisServer:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    extra_args: tuple[str, ...] = ()  # e.g. `--replicaof 127.0.0.1 <port>`

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                redis_server_path(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        try:
            while time.monotonic() < deadline:
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.05)
            raise RuntimeError("redis-server did not start")
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def kill(self) -> None:
        """SIGKILL: whatever it has not written to a socket yet is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def flush(self) -> None:
        client = redis.Redis(port=self.port)
        try:
            client.flushall()
        finally:
            client.close()


def start_redis(workdir: Path) -> RedisServer:
    server = RedisServer(port=free_port(), workdir=workdir)
    server.start()
    return server


def _fail_under_ci_else_skip(message: str) -> NoReturn:
    """Under CI=true a missing dependency fails the run; elsewhere the test is skipped."""
    (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(message)


# -- Sentinel: a primary, a replica, three sentinels ------------------------------------

SERVICE = "chat"


def wait_until(check: Callable[[], bool], what: str, timeout: float) -> None:
    """Poll `check` (a quick question to a server) until it holds; fail naming `what`."""
    deadline = time.monotonic() + timeout
    while not _holds(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _holds(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except redis.RedisError:
        return False


def start_replica(workdir: Path, primary_port: int) -> RedisServer:
    """A replica of the primary at `primary_port`, its first sync done."""
    replica = RedisServer(
        port=free_port(),
        workdir=workdir,
        extra_args=("--replicaof", "127.0.0.1", str(primary_port)),
    )
    replica.start()
    client = redis.Redis(port=replica.port, decode_responses=True)
    try:
        wait_until(lambda: _replication(client)["master_link_status"] == "up", "the replica", 10)
    finally:
        client.close()
    return replica


@dataclass
class Sentinels:
    """Sentinels watching one primary as SERVICE, quick to act (a failover within seconds)."""

    workdir: Path
    ports: list[int]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """REDIS_URL for the app: the sentinels, and the service they watch."""
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def start(self, primary_port: int, *, down_after_ms: int = 500) -> None:
        for port in self.ports:
            config = self.workdir / f"sentinel-{port}.conf"  # sentinels rewrite theirs
            config.write_text(
                f"port {port}\n"
                "bind 127.0.0.1\n"
                f"dir {self.workdir}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} 3000\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self.processes.append(
                subprocess.Popen(
                    [redis_server_path(), str(config), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        # Ready when each knows the others (their votes elect a leader) and the replica.
        for port in self.ports:
            client = redis.Redis(port=port, decode_responses=True)
            try:
                wait_until(
                    functools.partial(_knows_everyone, client, len(self.ports) - 1),
                    f"sentinel {port} to find its peers and the replica",
                    20,
                )
            finally:
                client.close()

    def primary_port(self) -> int | None:
        """The port of the primary the first sentinel that answers names."""
        for port in self.ports:
            client = redis.Redis(port=port, decode_responses=True, socket_timeout=1)
            try:
                address = client.sentinel_get_master_addr_by_name(SERVICE)
            except redis.RedisError:
                continue
            finally:
                client.close()
            if address:
                return int(address[1])
        return None

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            process.wait(timeout=10)


def _replication(client: redis.Redis) -> dict[str, Any]:
    return cast(dict[str, Any], client.info("replication"))


def _knows_everyone(client: redis.Redis, peers: int) -> bool:
    state = client.sentinel_master(SERVICE)
    return int(state["num-other-sentinels"]) >= peers and int(state["num-slaves"]) >= 1


def start_sentinels(workdir: Path, primary_port: int, count: int = 3) -> Sentinels:
    sentinels = Sentinels(workdir=workdir, ports=[free_port() for _ in range(count)])
    try:
        sentinels.start(primary_port)
    except BaseException:
        sentinels.stop()
        raise
    return sentinels


class ReplicationCut:
    """A loopback TCP forwarder in front of a primary, on a thread of its own, that can
    stop the primary's replication stream (and only it) without closing anything.

    Everyone (the app, the sentinels, the replica) reaches the primary through it, so the
    sentinels see one consistent address. After `cut()`, what the primary sends to its
    replica is thrown away: the events published from then on exist on the primary only,
    as the ones a real primary had not replicated yet when it died."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.cut_at: float | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        self._thread.start()
        self._server = self._run(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> None:
        self.cut_at = time.monotonic()

    def close(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        self._run(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        replica = asyncio.Event()  # this client asked for the replication stream (PSYNC)
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer, replica, upstream=True)),
            asyncio.create_task(self._pipe(up_reader, writer, replica, upstream=False)),
        ]
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for end in (writer, up_writer):
            end.transport.abort()
            self._writers.discard(end)
        await asyncio.gather(*pipes, return_exceptions=True)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        replica: asyncio.Event,
        *,
        upstream: bool,
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while chunk := await reader.read(65536):
                if upstream and b"PSYNC" in chunk.upper():
                    replica.set()
                if not upstream and replica.is_set() and self.cut_at is not None:
                    continue  # read and dropped: the replica never hears of it
                writer.write(chunk)
                await writer.drain()


@contextlib.contextmanager
def replication_cut(target_port: int) -> Iterator[ReplicationCut]:
    forwarder = ReplicationCut(target_port)
    forwarder.start()
    try:
        yield forwarder
    finally:
        forwarder.close()
