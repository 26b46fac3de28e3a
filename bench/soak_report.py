"""What a soak run leaves behind: the table on stdout, soak.md, soak.json and soak.png."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.soak_memory import MB, MemoryRule, MemorySample, MemoryVerdict


@dataclass
class Summary:
    seconds: float
    drain_seconds: float
    streams: int
    identities: str
    connects: int
    resumes: int
    resumes_by_query: int
    clean_drops: int
    abrupt_drops: int
    server_ends: int
    refused: int
    connect_errors: int
    messages_sent: int
    messages_accepted: int
    events_delivered: int  # id-bearing events received by all consumers
    pings: int
    chat_messages_received: int
    chat_messages_expected: int
    lost: int
    duplicates: int  # event ids received more than once by one consumer
    strays: int
    out_of_order: int
    resyncs: int  # seen by consumers
    server_resyncs: int  # counted by the server (diagnostics)
    server_slow_consumers_cut: int
    server_events_dropped: int
    history_missing: int
    history_extra: int
    server_log_errors: int
    rss_start_mb: float
    rss_baseline_mb: float
    rss_peak_mb: float
    rss_end_mb: float
    slope_mb_per_hour: float


def summary_rows(s: Summary) -> list[tuple[str, str]]:
    return [
        ("duration", f"{s.seconds:.0f} s (+ {s.drain_seconds:.1f} s drain)"),
        ("streams (consumers)", f"{s.streams} over {s.identities}"),
        ("connects", f"{s.connects:,}"),
        (
            "reconnects with Last-Event-ID",
            f"{s.resumes:,} ({s.resumes_by_query:,} by ?lastEventId=)",
        ),
        (
            "dropped by the soak: clean (FIN) / abrupt (RST)",
            f"{s.clean_drops:,} / {s.abrupt_drops:,}",
        ),
        ("streams ended by the server", f"{s.server_ends:,}"),
        ("connects refused / failed", f"{s.refused:,} / {s.connect_errors:,}"),
        ("messages sent / accepted (2xx)", f"{s.messages_sent:,} / {s.messages_accepted:,}"),
        ("events delivered (with id) / pings", f"{s.events_delivered:,} / {s.pings:,}"),
        (
            "chat:message expected / received",
            f"{s.chat_messages_expected:,} / {s.chat_messages_received:,}",
        ),
        ("lost", f"{s.lost:,}"),
        ("duplicates", f"{s.duplicates:,}"),
        ("strays (not owed) / out of order", f"{s.strays:,} / {s.out_of_order:,}"),
        ("resyncs (consumers / server)", f"{s.resyncs:,} / {s.server_resyncs:,}"),
        (
            "server: slow consumers cut / events dropped",
            f"{s.server_slow_consumers_cut:,} / {s.server_events_dropped:,}",
        ),
        (
            "accepted messages missing from history / extra",
            f"{s.history_missing:,} / {s.history_extra:,}",
        ),
        ("server log errors", f"{s.server_log_errors:,}"),
        (
            "RSS start / baseline / peak / end",
            f"{s.rss_start_mb:.1f} / {s.rss_baseline_mb:.1f} / {s.rss_peak_mb:.1f} / {s.rss_end_mb:.1f} MB",
        ),
        ("RSS slope after warm-up", f"{s.slope_mb_per_hour:+.1f} MB/h"),
    ]


@dataclass
class SoakResult:
    command: str
    config: dict[str, object]
    summary: Summary
    verdict: MemoryVerdict
    rule: MemoryRule
    samples: list[MemorySample]
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def print_summary(result: SoakResult, console: Console) -> None:
    table = Table(title="soak")
    table.add_column("measure", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    for label, value in summary_rows(result.summary):
        table.add_row(label, value)
    console.print(table)
    if result.passed:
        console.print("[bold green]PASS[/]: no loss, no duplicate, no resync, memory bounded")
    else:
        console.print("[bold red]FAIL[/]:")
        for failure in result.failures:
            console.print(f"  - {failure}")


def render_markdown(result: SoakResult) -> str:
    verdict = "PASS" if result.passed else "FAIL"
    lines = [
        "# Soak: streams connecting, dropping and chatting for a while",
        "",
        f"Result: **{verdict}**. Command: `{result.command}`.",
        "",
        f"Memory rule: {result.rule.describe()}.",
        "Loss rule: every consumer gets, exactly once over all its reconnects, every accepted",
        "message of its conversations whose POST started after its first stream answered",
        "(bench/soak_accounting.py); any loss, duplicate, stray, out-of-order event, resync,",
        "refused message or message missing from the history fails the run.",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {label} | {value} |" for label, value in summary_rows(result.summary)],
        "",
    ]
    if result.failures:
        lines += ["## Failures", "", *[f"- {failure}" for failure in result.failures], ""]
    lines += ["## Setup", "", *[f"- {note}" for note in result.notes], ""]
    lines += ["![server RSS and connected streams over time](soak.png)", ""]
    return "\n".join(lines)


def write_json(result: SoakResult, path: Path) -> None:
    document = {
        "command": result.command,
        "passed": result.passed,
        "failures": result.failures,
        "config": result.config,
        "summary": asdict(result.summary),
        "memoryRule": asdict(result.rule),
        "memoryVerdict": asdict(result.verdict),
        "notes": result.notes,
        "samples": [asdict(sample) for sample in result.samples],
    }
    path.write_text(json.dumps(document, indent=1))


def plot(result: SoakResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = result.samples
    times = [s.t for s in samples]
    figure, (memory, streams) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    memory.plot(
        times, [s.rss / MB for s in samples], color="tab:blue", label="server RSS (process tree)"
    )
    start, end = result.verdict.window
    memory.axvspan(0, start, color="gray", alpha=0.12, label="warm-up (not judged)")
    if times and times[-1] > end:
        memory.axvspan(end, times[-1], color="tab:green", alpha=0.08, label="drain (not judged)")
    verdict = result.verdict
    if verdict.samples >= 5:
        window = [s for s in samples if start <= s.t <= end]
        middle_t = (window[0].t + window[-1].t) / 2
        middle_rss = sum(s.rss for s in window) / len(window)
        xs = [window[0].t, window[-1].t]
        ys = [(middle_rss + verdict.slope_bytes_per_s * (x - middle_t)) / MB for x in xs]
        memory.plot(
            xs,
            ys,
            color="tab:red",
            linestyle="--",
            label=f"trend {verdict.growth_per_hour / MB:+.1f} MB/h",
        )
    memory.set(
        ylabel="RSS (MB)",
        title=f"Soak: {result.summary.streams} streams, {'PASS' if result.passed else 'FAIL'}",
    )
    memory.set_ylim(bottom=0)
    memory.grid(alpha=0.3)
    memory.legend(fontsize=8, loc="lower right")
    streams.plot(times, [s.streams for s in samples], color="tab:orange")
    streams.set(xlabel="seconds", ylabel="connected streams")
    streams.set_ylim(bottom=0)
    streams.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def write_all(result: SoakResult, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "soak.md", out / "soak.json", out / "soak.png"]
    paths[0].write_text(render_markdown(result))
    write_json(result, paths[1])
    plot(result, paths[2])
    return paths
