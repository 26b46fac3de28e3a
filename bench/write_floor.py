"""The floor under any Python fan-out on this machine: N bare socket writes in a row.

One uvloop process, pinned to the server's CPU, accepts N loopback connections from a reader
process pinned to the load generator's CPU, then writes one SSE-sized chunk to each of
them in a tight loop (no framework, no queue, no per-client state), a pass every 250 ms,
and prints how long each pass took. What a pass of our stream writer costs above this is
ours; the rest is the kernel's TCP path, which on loopback includes the receiving
socket's work too (see docs/performance.md).

    .venv/bin/python -m bench.write_floor [N] [passes]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from typing import cast

SERVER_CPU, READER_CPU = 0, 1
CHUNK = b"1c0\r\n" + b"x" * 448 + b"\r\n"  # about one notification event, chunk-framed


class _Accepted(asyncio.Protocol):
    def __init__(self, transports: list[asyncio.Transport]) -> None:
        self._transports = transports

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A TCP server's connections come on socket transports, which read and write.
        self._transports.append(cast(asyncio.Transport, transport))


class _Reader(asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        pass


async def _read(port: int, count: int) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(count):
        await loop.create_connection(_Reader, "127.0.0.1", port)
    await asyncio.Event().wait()


async def _write(count: int, passes: int) -> list[float]:
    loop = asyncio.get_running_loop()
    transports: list[asyncio.Transport] = []
    server = await loop.create_server(lambda: _Accepted(transports), "127.0.0.1", 0, backlog=16384)
    port = server.sockets[0].getsockname()[1]
    reader = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.write_floor", "--read", str(port), str(count)
    )
    # Pinned before it connects anything worth measuring: no preexec_fn in a threaded parent.
    _pin(reader.pid, READER_CPU)
    try:
        async with asyncio.timeout(120):
            while len(transports) < count:
                await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        durations = []
        for _ in range(passes):
            started = time.perf_counter()
            for transport in transports:
                transport.write(CHUNK)
            durations.append(time.perf_counter() - started)
            await asyncio.sleep(0.25)
        return durations
    finally:
        reader.kill()
        await reader.wait()
        server.close()


def _pin(pid: int, cpu: int) -> None:
    """Pins process `pid` (0: this one) to `cpu` when the machine has two CPUs or more."""
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(pid, {cpu})


def main() -> None:
    import uvloop

    if sys.argv[1:2] == ["--read"]:
        uvloop.run(_read(int(sys.argv[2]), int(sys.argv[3])))
        return
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    passes = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    _pin(0, SERVER_CPU)
    durations = uvloop.run(_write(count, passes))
    per_write = [d / count * 1e6 for d in durations]
    print(
        f"{count} writes per pass, {passes} passes: pass median {statistics.median(durations) * 1e3:.1f} ms "
        f"(min {min(durations) * 1e3:.1f}, max {max(durations) * 1e3:.1f}); "
        f"{statistics.median(per_write):.1f} us per write"
    )


if __name__ == "__main__":
    main()
