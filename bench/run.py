"""The benchmark: our backend against the reference peers, same load generator, same payload.

    ./bench/run                      # every scenario, once
    ./bench/run --quick              # a short smoke run
    ./bench/run --repeat 3           # medians of three runs
    ./bench/run --only N=5000        # one scenario (N=1000, N=5000, idle, redis)

Peers: sse-starlette + broadcaster on uvicorn (the Python reference), and better-sse on
Node (bench/node, when `node` is installed).

The server runs pinned to CPU 0, this process (load generator and publisher) to CPU 1.
Writes docs/benchmark.md (tables, command, ratios) and docs/benchmark.png.

This module is the plan (which scenarios, on which servers, how often) and the command line;
bench/servers.py starts what is measured, bench/measure.py measures it, bench/report.py
shows the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench.measure import publish_cost, run_rates
from bench.report import Report, console, plot, print_table, render
from bench.servers import (
    LOADGEN_CPU,
    ROOT,
    SERVER_CPU,
    start_node_peer,
    start_ours,
    start_redis,
    start_reference,
)

DOCS = ROOT / "docs"


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


def _fresh(work: Path, name: str, repeat: int) -> Path:
    path = work / f"{name}-{repeat}"
    path.mkdir(parents=True, exist_ok=True)
    return path


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
