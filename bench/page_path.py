"""The page path: N chat tabs (Reflex's websocket, as a page speaks it) and N SSE streams in
one backend process, messages posted over REST, latency per (tab, message).

    python -m bench.page_path                         # 1,000 tabs in one room, 1 msg/s
    python -m bench.page_path --rooms 100 --rate 20   # 1,000 tabs in 100 rooms of 10
    python -m bench.page_path --tabs 100 --messages 10 --streams 0   # a quick look
    python -m bench.page_path --presence 10           # also: 10 presence changes

Each tab is a user of its own (bench/page_seed.py) whose page is open on their room: the
socket connects with the page's hydrate event (so the chat page's on_load starts the live
listener), then opens the room as a click does. Alice posts `--messages` messages at `--rate`
a second, spread over the rooms; each carries a marker, and a tab's latency for a message is
the arrival of the first frame holding it, counted from the POST's return. The SSE streams
(of the same users, `events=chat:message`) are measured in the same run, from the send.
Server on CPU 0, this process on CPU 1 (as bench/run).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import re
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp
import httpx

from bench.delivery_latency import buckets, quantile
from bench.loadgen import Sink, close_all, open_many, open_stream
from bench.measure import percentile
from bench.page_seed import PageBenchPeople, seed_page_bench
from bench.servers import LOADGEN_CPU, Server, serve_ours, start_redis
from bench.tab_client import Frame, TabClient

MARKER = re.compile(r"bench-(\d+)-ts:")
ROOT_STATE = "reflex___state____state"
CHAT_STATE = f"{ROOT_STATE}.app___state___chat____chat_state"
# The listener's first frame: the tab's snapshot, in its live feed (app/state/tab_feed.py).
LIVE_CONNECTED = '"feed_rx_state_":[{"snapshot":'


@dataclass
class TabTimes:
    """When each message first reached each tab."""

    arrivals: dict[int, list[float]] = field(default_factory=dict)  # seq -> arrival times
    recording: bool = False

    def on_frame(self, tab: TabClient, frame: Frame) -> None:
        if not self.recording:
            return
        seen: set[int] = tab.__dict__.setdefault("_bench_seen", set())
        for match in MARKER.finditer(frame.text):
            seq = int(match.group(1))
            if seq not in seen:
                seen.add(seq)
                self.arrivals.setdefault(seq, []).append(frame.at)


@dataclass
class PageResult:
    tabs: int
    users: int
    rooms: int
    streams: int
    messages: int
    rate: float
    connect_seconds: float
    rss_mb_before_tabs: float
    kb_per_idle_tab: float
    tab_p50_ms: float
    tab_p99_ms: float
    tab_max_ms: float
    delivered_share: float
    post_p50_ms: float
    post_p99_ms: float
    post_max_ms: float
    sse_p50_ms: float
    sse_p99_ms: float
    sse_delivered_share: float
    # The server's publish-to-write latency of the same messages (GET /metrics).
    server_tab_p50_ms: float
    server_tab_p99_ms: float
    server_stream_p50_ms: float
    server_stream_p99_ms: float
    cpu_percent: float
    cpu_ms_per_tab_message: float
    bytes_per_tab_message: float
    presence_p50_ms: float = float("nan")
    presence_p99_ms: float = float("nan")


def start_server(workdir: Path, database_url: str, extra_env: dict[str, str]) -> Server:
    env = {
        "DATABASE_URL": database_url,
        "SEED_DEMO_DATA": "false",
        "MAX_TABS_PER_USER": "1000000",
        **extra_env,
    }
    port, process = serve_ours(workdir, "server.log", env)
    return Server(name="ours", port=port, process=process)


async def _settle(server: Server, idle_percent: float = 10.0, limit: float = 300.0) -> None:
    """Until the server's CPU stays under `idle_percent` for a second (at most `limit` s)."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        before = server.cpu_seconds()
        await asyncio.sleep(1.0)
        if (server.cpu_seconds() - before) * 100 < idle_percent:
            return


def tab_plan(people: PageBenchPeople, tabs: int) -> list[tuple[str, int]]:
    """(token, room) per tab: the users in turn, so with fewer users each has several tabs."""
    everyone = people.tab_tokens
    return [everyone[i % len(everyone)] for i in range(tabs)]


async def open_tabs(
    base: str, people: PageBenchPeople, times: TabTimes, tabs_wanted: int
) -> tuple[aiohttp.ClientSession, list[TabClient]]:
    connector = aiohttp.TCPConnector(limit=0)
    session = aiohttp.ClientSession(connector=connector)
    tabs: list[TabClient] = []
    pending = tab_plan(people, tabs_wanted)

    async def one(token: str, conversation_id: int) -> TabClient:
        tab = TabClient(base, token, on_frame=times.on_frame)
        await tab.connect(session, ROOT_STATE, timeout=120)
        await tab.wait_for_text(LIVE_CONNECTED, timeout=120)
        await tab.call(f"{CHAT_STATE}.open_conversation", {"conversation_id": conversation_id})
        await tab.wait_for_text('"active_id_rx_state_":' + str(conversation_id), timeout=120)
        return tab

    for start in range(0, len(pending), 50):
        batch = pending[start : start + 50]
        tabs.extend(await asyncio.gather(*(one(t, c) for t, c in batch)))
    return session, tabs


async def run(args: argparse.Namespace) -> PageResult:
    work = Path(tempfile.mkdtemp(prefix="page-bench-"))
    database_url = f"sqlite:///{work / 'bench.db'}"
    people = seed_page_bench(database_url, args.users or args.tabs, args.rooms)
    extra = dict(item.split("=", 1) for item in args.env)
    redis = None
    if args.workers > 1:
        # Several workers need Redis: events cross processes, page state lives there.
        redis = start_redis(work)
        if redis is None:
            raise SystemExit("--workers needs redis-server")
        url = redis[1]
        extra = {
            "REDIS_URL": url,
            "REFLEX_REDIS_URL": url.replace("/0", "/1"),
            "WORKERS": str(args.workers),
            **extra,
        }
    server = start_server(work, database_url, extra)
    base = f"http://127.0.0.1:{server.port}"
    try:
        return await _measure(args, server, base, people)
    finally:
        server.stop()
        if redis is not None:
            redis[0].terminate()
        if args.keep_log:
            print(f"server log: {work / 'server.log'}")


async def _measure(
    args: argparse.Namespace, server: Server, base: str, people: PageBenchPeople
) -> PageResult:
    times = TabTimes()
    # Alice, who posts, is online too (her presence changes are what --presence times).
    alice_sink = Sink()
    alice_stream = await open_stream(
        "127.0.0.1",
        server.port,
        "/api/sse?events=presence:update",
        {"Authorization": f"Bearer {people.alice_token}"},
        alice_sink,
    )
    rss_before = server.rss()
    started = time.perf_counter()
    session, tabs = await open_tabs(base, people, times, args.tabs)
    connect_seconds = time.perf_counter() - started
    # Tabs opening announce their users' presence to every open tab: let that work finish
    # before memory is read and messages are timed, or they measure the tail of the connect.
    await _settle(server)
    kb_per_tab = (server.rss() - rss_before) / len(tabs) / 1024

    sink = Sink()
    tokens = [t for t, _ in people.tab_tokens]
    opened = itertools.count()  # round-robin over the tokens, one per stream
    streams = await open_many(
        args.streams,
        lambda s: open_stream(
            "127.0.0.1",
            server.port,
            "/api/sse?events=chat:message",
            {"Authorization": f"Bearer {tokens[next(opened) % len(tokens)]}"},
            s,
        ),
        sink,
    )
    plan = tab_plan(people, len(tabs))
    room_tabs = {
        room.conversation_id: sum(1 for _, r in plan if r == room.conversation_id)
        for room in people.rooms
    }
    stream_rooms = [people.tab_tokens[i % len(tokens)][1] for i in range(args.streams)]
    post_return: dict[int, float] = {}
    post_ms: list[float] = []
    room_of: dict[int, int] = {}
    headers = {"Authorization": f"Bearer {people.alice_token}"}
    bytes_before = sum(t.bytes_received for t in tabs)
    profiler = _start_profiler(args, server)
    # The server's own publish-to-write figures (chat_event_delivery_seconds) for the phase.
    histograms_before = {t: buckets(server, (t, "chat:message")) for t in ("tab", "stream")}
    cpu_before = server.cpu_seconds()
    times.recording = sink.recording = True
    t0 = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as http:
        for seq in range(args.messages):
            delay = t0 + seq / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            room = people.rooms[seq % len(people.rooms)].conversation_id
            room_of[seq] = room
            asyncio.ensure_future(_post(http, room, seq, post_return, post_ms))
        expected = sum(room_tabs[room_of[s]] for s in range(args.messages))
        deadline = time.perf_counter() + args.drain_seconds
        while time.perf_counter() < deadline and (
            len(post_return) < args.messages
            or sum(len(v) for v in times.arrivals.values()) < expected
        ):
            await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t0
    cpu_seconds = server.cpu_seconds() - cpu_before
    histograms_after = {t: buckets(server, (t, "chat:message")) for t in ("tab", "stream")}

    def server_ms(transport: str, q: float) -> float:
        return quantile(q, histograms_before[transport], histograms_after[transport]) * 1000

    if profiler is not None:
        profiler.wait(60)
    times.recording = sink.recording = False
    received = sum(t.bytes_received for t in tabs) - bytes_before
    latencies = [
        (at - post_return[seq]) * 1000
        for seq, arrivals in times.arrivals.items()
        if seq in post_return
        for at in arrivals
    ]
    sse_latencies = [x * 1000 for x in sink.take()]
    expected_sse = sum(
        sum(1 for r in stream_rooms if r == room_of[s]) for s in range(args.messages)
    )
    delivered = sum(len(v) for v in times.arrivals.values())
    presence = await _presence(args, tabs, base, people) if args.presence else []
    for tab in tabs:
        await tab.close()
    await session.close()
    await close_all([*streams, alice_stream])
    return PageResult(
        tabs=len(tabs),
        users=len(people.tab_tokens),
        rooms=len(people.rooms),
        streams=args.streams,
        messages=args.messages,
        rate=args.rate,
        connect_seconds=connect_seconds,
        rss_mb_before_tabs=rss_before / 2**20,
        kb_per_idle_tab=kb_per_tab,
        tab_p50_ms=percentile(latencies, 0.5),
        tab_p99_ms=percentile(latencies, 0.99),
        tab_max_ms=max(latencies, default=float("nan")),
        delivered_share=delivered / max(1, expected),
        post_p50_ms=percentile(post_ms, 0.5),
        post_p99_ms=percentile(post_ms, 0.99),
        post_max_ms=max(post_ms, default=float("nan")),
        sse_p50_ms=percentile(sse_latencies, 0.5),
        sse_p99_ms=percentile(sse_latencies, 0.99),
        sse_delivered_share=len(sse_latencies) / max(1, expected_sse),
        server_tab_p50_ms=server_ms("tab", 0.5),
        server_tab_p99_ms=server_ms("tab", 0.99),
        server_stream_p50_ms=server_ms("stream", 0.5),
        server_stream_p99_ms=server_ms("stream", 0.99),
        cpu_percent=cpu_seconds / elapsed * 100,
        cpu_ms_per_tab_message=cpu_seconds * 1000 / max(1, expected),
        bytes_per_tab_message=received / max(1, expected),
        presence_p50_ms=percentile(presence, 0.5),
        presence_p99_ms=percentile(presence, 0.99),
    )


def _start_profiler(args: argparse.Namespace, server: Server) -> subprocess.Popen[bytes] | None:
    """py-spy on the server for the message phase (`--profile out.txt`: collapsed stacks)."""
    if args.profile is None:
        return None
    seconds = max(1, int(args.messages / args.rate))
    return subprocess.Popen(
        [
            "py-spy",
            "record",
            "--pid",
            str(server.process.pid),
            "--duration",
            str(seconds),
            "--format",
            "raw",
            "--output",
            str(args.profile),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _post(
    http: httpx.AsyncClient,
    room: int,
    seq: int,
    post_return: dict[int, float],
    post_ms: list[float],
) -> None:
    sent = time.monotonic()
    body = {"content": f"bench-{seq}-ts:{time.time()!r}"}
    response = await http.post(f"/api/conversations/{room}/messages", json=body)
    post_return[seq] = time.monotonic()
    post_ms.append((post_return[seq] - sent) * 1000)
    response.raise_for_status()


async def _presence(
    args: argparse.Namespace, tabs: list[TabClient], base: str, people: PageBenchPeople
) -> list[float]:
    """Alice switches between away and online; latency until each tab shows her new status."""
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {people.alice_token}"}
    async with httpx.AsyncClient(base_url=base, timeout=60, headers=headers) as http:
        for n in range(args.presence):
            status = "away" if n % 2 == 0 else "online"
            # The presence:update event in the tab's feed, as an /api/sse stream gets it.
            pattern = re.compile(r'"userName":"Alice","status":"' + status + '"')
            marks = [len(t.frames) for t in tabs]
            response = await http.put("/api/presence", json={"status": status})
            returned = time.monotonic()
            response.raise_for_status()
            deadline = returned + args.drain_seconds
            pending = set(range(len(tabs)))
            while pending and time.monotonic() < deadline:
                for i in list(pending):
                    for frame in tabs[i].frames[marks[i] :]:
                        if pattern.search(frame.text):
                            latencies.append((frame.at - returned) * 1000)
                            pending.discard(i)
                            break
                await asyncio.sleep(0.02)
            latencies.extend([float("inf")] * len(pending))
    return latencies


def render(result: PageResult) -> str:
    rows = [
        f"| {name} | {value:,.2f} |" if isinstance(value, float) else f"| {name} | {value} |"
        for name, value in asdict(result).items()
    ]
    return "| figure | value |\n|---|---|\n" + "\n".join(rows)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tabs", type=int, default=1000)
    parser.add_argument("--users", type=int, default=0, help="default: one per tab")
    parser.add_argument("--rooms", type=int, default=1)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1.0, help="messages a second, in all")
    parser.add_argument("--presence", type=int, default=0, help="presence changes to time")
    parser.add_argument("--drain-seconds", type=float, default=30.0)
    parser.add_argument("--env", action="append", default=[], help="NAME=value for the server")
    parser.add_argument("--json", type=Path, help="also write the result here")
    parser.add_argument("--workers", type=int, default=1, help="scripts/serve workers on Redis")
    parser.add_argument("--keep-log", action="store_true")
    parser.add_argument("--profile", type=Path, help="py-spy's collapsed stacks of the server")
    args = parser.parse_args()
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):  # None: unknown
        os.sched_setaffinity(0, {int(LOADGEN_CPU)})
    result = asyncio.run(run(args))
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))


if __name__ == "__main__":
    cli()
