"""The servers the benchmarks measure, each started pinned to its own CPU in its own process
group: ours (`scripts/serve`, or BENCH_SERVE_COMMAND), the Python reference peer
(`bench/reference_server.py`), better-sse on Node (`bench/node`), and a throwaway
redis-server. A `Server` knows how to publish one event to its streams and reports its
process tree's memory and CPU time.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
NODE_PEER = ROOT / "bench" / "node"
SERVER_CPU, LOADGEN_CPU = "0", "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Publishes event number `seq` through the server's own publish endpoint.
Publish = Callable[[httpx.AsyncClient, int], Awaitable[None]]


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    stream_path: str = "/api/sse"
    stream_headers: dict[str, str] = field(default_factory=dict)
    publish: Publish | None = None
    # A publish that none of the benchmark's streams subscribes to (None: there is none).
    publish_elsewhere: Publish | None = None

    def publisher(self) -> Publish:
        """`publish`, which every server that bench/measure.py measures has."""
        assert self.publish is not None, f"{self.name} has no publish endpoint"
        return self.publish

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def rss(self) -> int:
        return sum(p.memory_info().rss for p in self.tree())

    def cpu_seconds(self) -> float:
        total = 0.0
        for p in self.tree():
            times = p.cpu_times()
            total += times.user + times.system
        return total

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)


def _pinned(command: list[str]) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", SERVER_CPU, *command]
    return command


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def serve_ours(
    workdir: Path, log_name: str, env: dict[str, str]
) -> tuple[int, subprocess.Popen[bytes]]:
    """Start the documented production start (scripts/serve), or BENCH_SERVE_COMMAND to
    compare another start of the same app, pinned, without limits in the way; wait until it
    answers. `env` adds to or overrides the benchmark's settings."""
    port = free_port()
    full_env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
        "SSE_MAX_STREAMS_PER_USER": "1000000",
        "RATE_LIMIT_ENABLED": "false",
        "PORT": str(port),
        "HOST": "127.0.0.1",
        # Compile into the run's folder, not the project's .web (a dev server may use it).
        "REFLEX_WEB_WORKDIR": str(workdir / ".web"),
        "REFLEX_STATES_WORKDIR": str(workdir / ".states"),
        **env,
    }
    log = workdir / log_name
    process = subprocess.Popen(
        _pinned([os.environ.get("BENCH_SERVE_COMMAND", str(ROOT / "scripts" / "serve"))]),
        cwd=ROOT,
        env=full_env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_ready(f"http://127.0.0.1:{port}/ping", process, log)
    return port, process


def start_ours(workdir: Path, redis_url: str = "") -> Server:
    port, process = serve_ours(
        workdir, "ours.log", {"REDIS_URL": redis_url, "SSE_CLIENT_QUEUE_SIZE": "1000"}
    )
    base = f"http://127.0.0.1:{port}"
    bob = httpx.post(
        f"{base}/api/auth/token", json={"username": "bob", "password": "bob-pass"}
    ).json()
    alice = httpx.post(
        f"{base}/api/auth/token", json={"username": "alice", "password": "alice-pass"}
    ).json()
    bob_id = bob["user"]["id"]
    headers = {"Authorization": f"Bearer {alice['access_token']}"}
    me = httpx.get(f"{base}/api/presence", headers=headers).json()["items"]
    carol_id = next(p["userId"] for p in me if p["userName"] == "Carol")

    async def notify(client: httpx.AsyncClient, seq: int, user_id: int) -> None:
        # The path a user triggers: an admin notification, stored, then announced.
        body = {
            "userId": user_id,
            "type": "bench",
            "title": f"bench {seq}",
            "body": f"ts:{time.time()!r}",
        }
        response = await client.post(f"{base}/api/notifications", json=body, headers=headers)
        response.raise_for_status()

    async def publish(client: httpx.AsyncClient, seq: int) -> None:
        await notify(client, seq, bob_id)  # every benchmark stream is bob's

    async def publish_elsewhere(client: httpx.AsyncClient, seq: int) -> None:
        await notify(client, seq, carol_id)  # carol has no stream open

    return Server(
        name="ours",
        port=port,
        process=process,
        stream_headers={"Authorization": f"Bearer {bob['access_token']}"},
        publish=publish,
        publish_elsewhere=publish_elsewhere,
    )


def start_reference(workdir: Path) -> Server:
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.reference_server:app",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
        "--backlog",
        "16384",
        "--log-level",
        "warning",
    ]
    return _start_peer("reference", command, workdir)


def start_node_peer(workdir: Path) -> Server | None:
    """better-sse on node:http (bench/node/server.mjs), or None without node or its package."""
    node = shutil.which("node")
    if node is None or not (NODE_PEER / "node_modules" / "better-sse").is_dir():
        return None
    return _start_peer("better-sse", [node, str(NODE_PEER / "server.mjs"), "{port}"], workdir)


def _start_peer(name: str, command: list[str], workdir: Path) -> Server:
    """A peer serving GET /sse and POST /publish (which broadcasts the body as it is);
    `{port}` in `command` becomes its port."""
    port = free_port()
    log = workdir / f"{name}.log"
    process = subprocess.Popen(
        _pinned([part.replace("{port}", str(port)) for part in command]),
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_ready(f"http://127.0.0.1:{port}/publish", process, log)
    base = f"http://127.0.0.1:{port}"

    async def publish(client: httpx.AsyncClient, seq: int) -> None:
        response = await client.post(f"{base}/publish", content=_peer_payload(seq))
        response.raise_for_status()

    return Server(name=name, port=port, process=process, stream_path="/sse", publish=publish)


def _peer_payload(seq: int) -> str:
    """The same payload our server sends for a notification, for the peers to broadcast."""
    payload = {
        "id": seq,
        "type": "bench",
        "title": f"bench {seq}",
        "body": f"ts:{time.time()!r}",
        "link": None,
        "createdAt": "2026-01-01T00:00:00.000Z",
        "unreadCount": seq,
    }
    return json.dumps(payload, separators=(",", ":"))


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
    return process, f"redis://127.0.0.1:{port}/0"
