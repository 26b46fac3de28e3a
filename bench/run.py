"""The benchmark: our backend against the reference peers, same load generator, same payload.

    ./bench/run                      # every scenario, once
    ./bench/run --quick              # a short smoke run
    ./bench/run --repeat 3           # medians of three runs
    ./bench/run --only N=5000        # one scenario (N=1000, N=5000, idle, redis)

Peers: sse-starlette + broadcaster on uvicorn (the Python reference), and better-sse on
Node (bench/node, when `node` is installed).

The server runs pinned to CPU 0, this process (load generator and publisher) to CPU 1.
Writes docs/benchmark.md (tables, command, ratios) and docs/benchmark.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import psutil
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench.loadgen import Sink, Stream, close_all, open_many, open_stream, publish_at

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
NODE_PEER = ROOT / "bench" / "node"
SERVER_CPU, LOADGEN_CPU = "0", "1"
console = Console()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- servers under test --------------------------------------------------------------


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    stream_path: str = "/api/sse"
    stream_headers: dict[str, str] = field(default_factory=dict)
    publish: Callable[[httpx.AsyncClient, int], Awaitable[None]] | None = None
    # A publish that none of the benchmark's streams subscribes to (None: there is none).
    publish_elsewhere: Callable[[httpx.AsyncClient, int], Awaitable[None]] | None = None

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


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
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
    _wait_ready(f"http://127.0.0.1:{port}/ping", process, log)
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
    _wait_ready(f"http://127.0.0.1:{port}/publish", process, log)
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


# -- measurements ----------------------------------------------------------------------


@dataclass
class Step:
    server: str
    scenario: str
    streams: int
    rate: float
    target_deliveries: float
    deliveries_per_s: float
    delivered_share: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_percent: float
    rss_mb: float
    publish_errors: int = 0


@dataclass
class Held:
    server: str
    scenario: str
    streams: int
    connect_seconds: float
    bytes_per_stream: float
    rss_mb: float


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run_rates(
    server: Server,
    scenario: str,
    streams_count: int,
    rates: list[float],
    seconds: float,
    progress: Progress,
) -> tuple[list[Step], Held]:
    sink = Sink()
    task = progress.add_task(f"{server.name}: {scenario} connect", total=streams_count)
    before = server.rss()
    started = time.perf_counter()
    streams = await open_many(
        streams_count,
        lambda sink: open_stream(
            "127.0.0.1", server.port, server.stream_path, server.stream_headers, sink
        ),
        sink,
        progress=lambda n: progress.advance(task, n),
    )
    connect_seconds = time.perf_counter() - started
    await asyncio.sleep(2)  # let the server settle before measuring memory
    held = Held(
        server.name,
        scenario,
        streams_count,
        connect_seconds,
        (server.rss() - before) / streams_count,
        server.rss() / 2**20,
    )
    progress.remove_task(task)
    steps: list[Step] = []
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for rate in rates:
            task = progress.add_task(f"{server.name}: {scenario} {rate:g} ev/s", total=None)
            sink.take()
            sink.recording = True
            errors = 0
            seq = 0

            async def publish() -> None:
                nonlocal errors, seq
                seq += 1
                try:
                    await server.publish(client, seq)  # type: ignore[misc]
                except httpx.HTTPError:
                    errors += 1

            cpu_before, t0 = server.cpu_seconds(), time.perf_counter()
            published = await publish_at(rate, seconds, publish)
            elapsed = time.perf_counter() - t0
            cpu = (server.cpu_seconds() - cpu_before) / elapsed * 100
            expected = (published - errors) * streams_count
            deadline = time.perf_counter() + 5
            while len(sink.latencies) < expected and time.perf_counter() < deadline:
                await asyncio.sleep(0.05)
            sink.recording = False
            latencies = sink.take()
            steps.append(
                Step(
                    server=server.name,
                    scenario=scenario,
                    streams=streams_count,
                    rate=rate,
                    target_deliveries=rate * streams_count,
                    deliveries_per_s=len(latencies) / elapsed,
                    delivered_share=len(latencies) / max(1, published * streams_count),
                    p50_ms=percentile(latencies, 0.5) * 1000,
                    p99_ms=percentile(latencies, 0.99) * 1000,
                    max_ms=max(latencies, default=float("nan")) * 1000,
                    cpu_percent=cpu,
                    rss_mb=server.rss() / 2**20,
                    publish_errors=errors,
                )
            )
            progress.remove_task(task)
    await close_all(streams)
    return steps, held


async def publish_cost(server: Server, unrelated: int, samples: int, progress: Progress) -> float:
    """Median time of one publish (HTTP round trip) with `unrelated` other streams open."""
    sink = Sink()
    streams: list[Stream] = []
    if unrelated:
        task = progress.add_task(f"{server.name}: {unrelated} unrelated streams", total=unrelated)
        streams = await open_many(
            unrelated,
            lambda sink: open_stream(
                "127.0.0.1", server.port, server.stream_path, server.stream_headers, sink
            ),
            sink,
            progress=lambda n: progress.advance(task, n),
        )
        progress.remove_task(task)
    times = []
    publish = server.publish_elsewhere or server.publish
    async with httpx.AsyncClient(timeout=30) as client:
        for seq in range(samples):
            t0 = time.perf_counter()
            await publish(client, seq)  # type: ignore[misc]
            times.append(time.perf_counter() - t0)
    await close_all(streams)
    return statistics.median(times) * 1000


# -- the run -----------------------------------------------------------------------------


@dataclass
class Report:
    command: str
    steps: list[Step] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    publish_cost: dict[str, list[float]] = field(default_factory=dict)  # one per repeat
    notes: list[str] = field(default_factory=list)


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


async def main(args: argparse.Namespace) -> Report:
    report = Report(command="./bench/run " + " ".join(sys.argv[1:]))
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(LOADGEN_CPU)})
        report.notes.append(
            f"server pinned to CPU {SERVER_CPU}; load generator and publisher to CPU {LOADGEN_CPU}"
        )
    seconds = 2.0 if args.quick else args.seconds
    plan = [
        ("N=1000", 1000, [10, 20, 40, 60]),
        ("N=5000", 5000, [2, 4, 8]),
    ]
    if args.quick:
        plan = [("N=1000", 1000, [10, 40])]
    wanted = set(args.only or ["N=1000", "N=5000", "idle", "redis"])
    plan = [entry for entry in plan if entry[0] in wanted]
    if shutil.which("node") is None:
        report.notes.append("node not installed: the better-sse peer was skipped")
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        for repeat in range(args.repeat):
            for starter in (start_ours, start_reference, start_node_peer):
                server = starter(_fresh(work, starter.__name__, repeat))
                if server is None:
                    continue
                try:
                    for scenario, count, rates in plan:
                        steps, held = await run_rates(
                            server, scenario, count, rates, seconds, progress
                        )
                        report.steps.extend(steps)
                        report.held.append(held)
                finally:
                    server.stop()
                if not args.quick and "idle" in wanted:
                    # A fresh process: memory freed by the scenarios above would otherwise be
                    # reused by these streams and flatter the figure per stream.
                    server = starter(_fresh(work, starter.__name__ + "-idle", repeat))
                    assert server is not None
                    try:
                        _, held = await run_rates(server, "idle", args.idle, [], seconds, progress)
                        report.held.append(held)
                        for unrelated in (0, 5000):
                            cost = await publish_cost(server, unrelated, 50, progress)
                            report.publish_cost.setdefault(f"{server.name} {unrelated}", []).append(
                                cost
                            )
                    finally:
                        server.stop()
            if not args.quick and args.redis and "redis" in wanted:
                redis = start_redis(work)
                if redis is None:
                    report.notes.append("redis-server not installed: Redis scenario skipped")
                else:
                    process, url = redis
                    server = start_ours(_fresh(work, "redis", repeat), redis_url=url)
                    server.name = "ours+redis"
                    try:
                        steps, held = await run_rates(
                            server, "N=1000", 1000, [10, 20, 40], seconds, progress
                        )
                        report.steps.extend(steps)
                        report.held.append(held)
                    finally:
                        server.stop()
                        process.terminate()
    return report


def _node_version() -> str:
    node = shutil.which("node")
    if node is None:
        return "not installed"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    return version.stdout.strip()


def _fresh(work: Path, name: str, repeat: int) -> Path:
    path = work / f"{name}-{repeat}"
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- reporting ---------------------------------------------------------------------------


def _median_steps(steps: list[Step]) -> list[Step]:
    grouped: dict[tuple[str, str, float], list[Step]] = {}
    for step in steps:
        grouped.setdefault((step.server, step.scenario, step.rate), []).append(step)
    merged = []
    for group in grouped.values():
        base = group[0]
        values = {
            name: statistics.median(getattr(s, name) for s in group)
            for name in (
                "deliveries_per_s",
                "delivered_share",
                "p50_ms",
                "p99_ms",
                "max_ms",
                "cpu_percent",
                "rss_mb",
            )
        }
        merged.append(Step(**{**asdict(base), **values}))
    return merged


def _median_held(held: list[Held]) -> list[Held]:
    grouped: dict[tuple[str, str, int], list[Held]] = {}
    for h in held:
        grouped.setdefault((h.server, h.scenario, h.streams), []).append(h)
    return [
        Held(
            server,
            scenario,
            streams,
            *(
                statistics.median(getattr(h, name) for h in group)
                for name in ("connect_seconds", "bytes_per_stream", "rss_mb")
            ),
        )
        for (server, scenario, streams), group in grouped.items()
    ]


def render(report: Report) -> str:
    steps = _median_steps(report.steps)
    lines = [
        "# Benchmark: our fan-out against the reference peers",
        "",
        f"Command: `{report.command}` (medians over the repeats of that run).",
        "Reference: sse-starlette + encode/broadcaster (memory) on uvicorn, `bench/reference_server.py`.",
        "better-sse: better-sse 0.16.1 channel on node:http (Node "
        + _node_version()
        + "), `bench/node/server.mjs`.",
        "Ours: `scripts/serve` (uvicorn + uvloop + httptools, one worker, `SSE_FLUSH_DELAY_MS` 10);",
        "each event is an admin notification through",
        "`POST /api/notifications` (authenticated, stored in SQLite, then published).",
        *[f"- {note}" for note in report.notes],
        "",
        "## Fan-out at rising rates",
        "",
        "| server | streams | events/s | target deliveries/s | deliveries/s | delivered | p50 ms | p99 ms | max ms | server CPU % | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in steps:
        lines.append(
            f"| {s.server} | {s.streams} | {s.rate:g} | {s.target_deliveries:,.0f} | {s.deliveries_per_s:,.0f} "
            f"| {s.delivered_share:.1%} | {s.p50_ms:.1f} | {s.p99_ms:.1f} | {s.max_ms:.1f} | {s.cpu_percent:.0f} | {s.rss_mb:.0f} |"
        )
    lines += [
        "",
        "## Ratios (ours / peer, same scenario and rate)",
        "",
        "Deliveries/s: higher is better; p99: lower is better.",
        "",
        "| streams | events/s | deliveries/s vs reference | p99 vs reference | deliveries/s vs better-sse | p99 vs better-sse |",
        "|---|---|---|---|---|---|",
    ]
    by_key = {(s.server, s.scenario, s.rate): s for s in steps}
    for (server, scenario, rate), s in by_key.items():
        if server != "ours":
            continue
        cells = []
        for peer in ("reference", "better-sse"):
            other = by_key.get((peer, scenario, rate))
            if other is None:
                cells += ["-", "-"]
                continue
            cells.append(
                f"{s.deliveries_per_s / other.deliveries_per_s:.2f}"
                if other.deliveries_per_s
                else "-"
            )
            cells.append(f"{s.p99_ms / other.p99_ms:.2f}" if other.p99_ms else "-")
        lines.append(f"| {s.streams} | {rate:g} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Streams held",
        "",
        "Memory per stream: the server's RSS growth while connecting them, divided by their number;",
        "`idle` runs on a fresh process (no memory left over from earlier scenarios to reuse).",
        "",
        "| server | scenario | streams | time to connect all (s) | server memory per stream (kB) | RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for h in _median_held(report.held):
        lines.append(
            f"| {h.server} | {h.scenario} | {h.streams} | {h.connect_seconds:.1f} | {h.bytes_per_stream / 1024:.1f} | {h.rss_mb:.0f} |"
        )
    if report.publish_cost:
        lines += [
            "",
            "## Publishing cost and unrelated subscribers",
            "",
            "Median time of one publish while 0 or 5,000 streams of *other* consumers are open",
            "(ours: a notification to a user who has no stream; the peers have only one channel,",
            "so their 5,000 streams are all subscribers).",
            "",
            "| server | unrelated streams | median publish ms |",
            "|---|---|---|",
        ]
        for key, values in report.publish_cost.items():
            name, count = key.rsplit(" ", 1)
            lines.append(f"| {name} | {count} | {statistics.median(values):.2f} |")
    lines += ["", "![deliveries and p99 latency](benchmark.png)", ""]
    return "\n".join(lines)


def plot(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = _median_steps(report.steps)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key in sorted({(s.server, s.scenario) for s in steps}):
        series = sorted(
            (s for s in steps if (s.server, s.scenario) == key), key=lambda s: s.target_deliveries
        )
        label = f"{key[0]} {key[1]}"
        left.plot(
            [s.target_deliveries for s in series],
            [s.deliveries_per_s for s in series],
            marker="o",
            label=label,
        )
        right.plot(
            [s.target_deliveries for s in series],
            [s.p99_ms for s in series],
            marker="o",
            label=label,
        )
    left.set(xlabel="offered deliveries/s", ylabel="achieved deliveries/s", title="Throughput")
    right.set(
        xlabel="offered deliveries/s",
        ylabel="p99 latency (ms)",
        title="p99 publish-to-receive",
        yscale="log",
    )
    right.axhline(100, color="gray", linestyle="--", linewidth=1)
    for axis in (left, right):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def print_table(report: Report) -> None:
    table = Table(title="fan-out")
    for column in (
        "server",
        "streams",
        "ev/s",
        "deliveries/s",
        "delivered",
        "p50 ms",
        "p99 ms",
        "max ms",
        "CPU %",
        "RSS MB",
    ):
        table.add_column(column)
    for s in _median_steps(report.steps):
        table.add_row(
            s.server,
            str(s.streams),
            f"{s.rate:g}",
            f"{s.deliveries_per_s:,.0f}",
            f"{s.delivered_share:.1%}",
            f"{s.p50_ms:.1f}",
            f"{s.p99_ms:.1f}",
            f"{s.max_ms:.1f}",
            f"{s.cpu_percent:.0f}",
            f"{s.rss_mb:.0f}",
        )
    console.print(table)
    held = Table(title="held streams")
    for column in ("server", "scenario", "streams", "connect s", "kB/stream", "RSS MB"):
        held.add_column(column)
    for h in _median_held(report.held):
        held.add_row(
            h.server,
            h.scenario,
            str(h.streams),
            f"{h.connect_seconds:.1f}",
            f"{h.bytes_per_stream / 1024:.1f}",
            f"{h.rss_mb:.0f}",
        )
    console.print(held)
    for key, values in report.publish_cost.items():
        console.print(f"publish cost {key}: {statistics.median(values):.2f} ms")


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--repeat", type=int, default=1, help="runs to take medians over")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each rate step")
    parser.add_argument("--idle", type=int, default=10_000, help="idle streams to hold")
    parser.add_argument(
        "--no-redis", dest="redis", action="store_false", help="skip the Redis scenario"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=["N=1000", "N=5000", "idle", "redis"],
        help="run only this scenario (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=DOCS, help="where the report and plot go")
    args = parser.parse_args()
    try:  # the load generator must outrun the server it measures
        import uvloop

        report = uvloop.run(main(args))
    except ImportError:
        report = asyncio.run(main(args))
    print_table(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.md").write_text(render(report))
    (args.out / "benchmark.json").write_text(json.dumps(asdict(report), indent=1))
    plot(report, args.out / "benchmark.png")
    console.print(f"wrote {args.out / 'benchmark.md'} and {args.out / 'benchmark.png'}")


if __name__ == "__main__":
    cli()
