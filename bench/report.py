"""The benchmark's results and how they are shown: medians over the repeats, the terminal
tables, docs/benchmark.md and its plot."""

from __future__ import annotations

import shutil
import statistics
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.measure import Held, Step

console = Console()


@dataclass
class Report:
    command: str
    steps: list[Step] = field(default_factory=list)
    held: list[Held] = field(default_factory=list)
    publish_cost: dict[str, list[float]] = field(default_factory=dict)  # one per repeat
    notes: list[str] = field(default_factory=list)


def _node_version() -> str:
    node = shutil.which("node")
    if node is None:
        return "not installed"
    done = subprocess.run([node, "--version"], check=False, capture_output=True, text=True)
    return done.stdout.strip()


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
