"""The soak: a few hundred streams connect, drop, resume and chat for a while.

    ./bench/soak                                  # 180 s, 300 streams
    ./bench/soak --seconds 600 --streams 500 --churn 0.1 --rate 12
    ./bench/soak --workers 2 --redis-url local    # two workers on a private redis-server

Starts the production server (scripts/serve) on a free loopback port with a fresh SQLite
database, signs in the demo users (both tenants; carol in each), creates four group
conversations, then for `--seconds`:
- `--streams` consumers (bench/soak_consumer.py) hold /api/sse streams; every second
  `--churn` of them is dropped, half cleanly (FIN), half abruptly (RST), and each comes back
  after up to `--max-gap` seconds with Last-Event-ID (header or ?lastEventId=);
- `--rate` messages a second go into the conversations, from random participants;
- the server's RSS (whole process tree) is sampled every second.
Then every consumer reconnects and catches up (the drain), and the run checks that each got
every message it was owed exactly once (bench/soak_accounting.py), that no resync happened,
that every accepted message is in the history, and that memory stayed bounded
(bench/soak_memory.py). Exit code 1 on any failure. Writes soak.md, soak.json, soak.png.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console

from bench.loadgen import publish_at
from bench.run import ROOT
from bench.soak_accounting import Accounting, ConversationInfo, SentMessage, account
from bench.soak_api import create_conversations, history_ids, server_counters, sign_in
from bench.soak_consumer import Consumer, DropMode, Identity
from bench.soak_memory import MB, MemoryRule, MemorySample, judge
from bench.soak_report import SoakResult, Summary, print_summary, write_all
from bench.soak_server import HOST, Started, log_errors, server_rss, start_server

DOCS = ROOT / "docs"
DRAIN_TIMEOUT_SECONDS = 30.0
# A wider table when stdout is not a terminal (CI logs, the smoke test): no cropped labels.
console = Console(width=None if sys.stdout.isatty() else 120)


# -- the run ------------------------------------------------------------------------------


class Soak:
    def __init__(self, args: argparse.Namespace, started: Started) -> None:
        self.args = args
        self.started = started
        self.server = started.server
        self.rng = random.Random(args.seed)
        self.consumers: list[Consumer] = []
        self.sent: list[SentMessage] = []
        self.samples: list[MemorySample] = []
        self.t0 = 0.0
        self.rss_start = 0
        self.chatting = True
        self.problems: list[str] = []  # what went wrong outside the accounting

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    async def run(self) -> SoakResult:
        args = self.args
        base = f"http://{HOST}:{self.server.port}"
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as http:
            identities = await sign_in(http)
            conversations = await create_conversations(http, identities)
            self.rss_start = server_rss(self.server)
            ordered = list(identities.values())
            self.consumers = [
                Consumer(
                    i,
                    ordered[i % len(ordered)],
                    HOST,
                    self.server.port,
                    max_gap=args.max_gap,
                    seed=self.rng.randrange(2**32),
                )
                for i in range(args.streams)
            ]
            self.t0 = time.monotonic()
            sampler = asyncio.create_task(self._sample())
            tasks = [asyncio.create_task(self._start_later(c)) for c in self.consumers]
            churn = asyncio.create_task(self._churn())
            sent_count = await publish_at(
                args.rate, args.seconds, lambda: self._send(http, identities, conversations)
            )
            self.chatting = False
            churn.cancel()
            drain_started = time.monotonic()
            await self._drain(conversations)
            drain_seconds = time.monotonic() - drain_started
            counters: dict[str, int] = {}
            missing = extra = 0
            try:
                counters = await server_counters(http, identities)
                missing, extra = await self._check_history(http, identities, conversations)
            except httpx.HTTPError as exc:
                self.problems.append(f"the server did not answer the final checks: {exc!r}")
            if self.server.process.poll() is not None:
                self.problems.append(f"the server exited (code {self.server.process.returncode})")
            for consumer in self.consumers:
                consumer.stop()
            await asyncio.gather(*tasks, churn, return_exceptions=True)
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        accounting = account(self.consumers, self.sent, conversations)
        return self._result(sent_count, drain_seconds, counters, accounting, missing, extra)

    async def _start_later(self, consumer: Consumer) -> None:
        # Spread the first connects over the start of the run: they race the first messages.
        ramp = min(5.0, self.args.seconds / 10)
        await asyncio.sleep(ramp * consumer.index / max(1, len(self.consumers)))
        await consumer.run()

    async def _send(
        self,
        http: httpx.AsyncClient,
        identities: dict[tuple[str, int], Identity],
        conversations: dict[int, ConversationInfo],
    ) -> None:
        conversation = self.rng.choice(list(conversations.values()))
        sender = self.rng.choice(
            [
                i
                for i in identities.values()
                if i.tenant_id == conversation.tenant_id
                and i.user_id in conversation.participant_ids
            ]
        )
        record = SentMessage(conversation.id, sender.label, time.monotonic(), 0.0)
        self.sent.append(record)
        try:
            response = await http.post(
                f"/api/conversations/{conversation.id}/messages",
                json={"content": f"soak message {len(self.sent)} from {sender.label}"},
                headers={"Authorization": f"Bearer {sender.token}"},
            )
            record.status = response.status_code
            if response.status_code == 201:
                record.message_id = response.json()["id"]
        except httpx.HTTPError:
            pass  # no answer: status stays 0, counted as not accepted
        finally:
            record.ended_at = time.monotonic()

    async def _churn(self) -> None:
        """Every tenth of a second, drop the share of streams `--churn` asks for."""
        owed = 0.0
        while True:
            await asyncio.sleep(0.1)
            owed += len(self.consumers) * self.args.churn * 0.1
            candidates = [c for c in self.consumers if c.can_drop]
            while owed >= 1 and candidates:
                owed -= 1
                victim = candidates.pop(self.rng.randrange(len(candidates)))
                victim.drop(DropMode.CLEAN if self.rng.random() < 0.5 else DropMode.ABRUPT)

    async def _drain(self, conversations: dict[int, ConversationInfo]) -> None:
        """Everyone back online at once, then wait until every owed message arrived."""
        for consumer in self.consumers:
            consumer.draining = True
        deadline = time.monotonic() + DRAIN_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            all_connected = all(c.connected for c in self.consumers)
            if all_connected and account(self.consumers, self.sent, conversations).lost == 0:
                return
            await asyncio.sleep(0.5)

    async def _check_history(
        self,
        http: httpx.AsyncClient,
        identities: dict[tuple[str, int], Identity],
        conversations: dict[int, ConversationInfo],
    ) -> tuple[int, int]:
        accepted = {m.message_id for m in self.sent if m.accepted}
        stored: set[int] = set()
        for conversation in conversations.values():
            reader = next(
                i
                for i in identities.values()
                if i.tenant_id == conversation.tenant_id
                and i.user_id in conversation.participant_ids
            )
            stored |= await history_ids(http, conversation.id, reader.token)
        return len(accepted - stored), len(stored - accepted)

    async def _sample(self) -> None:
        interactive = sys.stdout.isatty()
        last_print = 0.0
        while True:
            t = self.elapsed()
            connected = sum(c.connected for c in self.consumers)
            rss = server_rss(self.server)
            self.samples.append(MemorySample(round(t, 2), rss, connected))
            if interactive or t - last_print >= 10:
                last_print = t
                self._progress(t, connected, rss, interactive)
            await asyncio.sleep(max(0.0, 1.0 - (self.elapsed() - t)))

    def _progress(self, t: float, connected: int, rss: int, interactive: bool) -> None:
        phase = (
            f"{min(t, self.args.seconds):5.0f}/{self.args.seconds:.0f} s"
            if self.chatting
            else "drain"
        )
        accepted = sum(m.accepted for m in self.sent)
        line = (
            f"[{phase}] streams {connected}/{len(self.consumers)}  "
            f"connects {sum(c.connects for c in self.consumers):,}  "
            f"messages {accepted:,}/{len(self.sent):,}  "
            f"events {sum(c.events_with_id for c in self.consumers):,}  RSS {rss / MB:.0f} MB"
        )
        if interactive:
            sys.stdout.write("\r" + line.ljust(110))
            sys.stdout.flush()
        else:
            print(line, flush=True)

    def _result(
        self,
        sent_count: int,
        drain_seconds: float,
        counters: dict[str, int],
        accounting: Accounting,
        missing: int,
        extra: int,
    ) -> SoakResult:
        if sys.stdout.isatty():
            print()
        args, consumers = self.args, self.consumers
        rule = MemoryRule()
        verdict = judge(self.samples, args.seconds, rule)
        errors = log_errors(self.started.log)
        judged = [s for s in self.samples if s.t <= args.seconds]
        summary = Summary(
            seconds=args.seconds,
            drain_seconds=drain_seconds,
            streams=len(consumers),
            identities=", ".join(i.label for i in {c.identity: None for c in consumers}),
            connects=sum(c.connects for c in consumers),
            resumes=sum(c.resumes for c in consumers),
            resumes_by_query=sum(c.resumes_by_query for c in consumers),
            clean_drops=sum(c.drops["clean"] for c in consumers),
            abrupt_drops=sum(c.drops["abrupt"] for c in consumers),
            server_ends=sum(c.server_ends for c in consumers),
            refused=sum(sum(c.refused.values()) for c in consumers),
            connect_errors=sum(c.connect_errors for c in consumers),
            messages_sent=sent_count,
            messages_accepted=sum(m.accepted for m in self.sent),
            events_delivered=sum(c.events_with_id for c in consumers),
            pings=sum(c.types["ping"] for c in consumers),
            chat_messages_received=accounting.received,
            chat_messages_expected=accounting.expected,
            lost=accounting.lost,
            duplicates=sum(c.duplicates for c in consumers),
            strays=accounting.strays,
            out_of_order=sum(c.out_of_order for c in consumers),
            resyncs=sum(c.resyncs for c in consumers),
            server_resyncs=counters.get("resyncs", 0),
            server_slow_consumers_cut=counters.get("slowConsumersCut", 0),
            server_events_dropped=counters.get("eventsDropped", 0),
            history_missing=missing,
            history_extra=extra,
            server_log_errors=len(errors),
            rss_start_mb=self.rss_start / MB,
            rss_baseline_mb=verdict.baseline_rss / MB,
            rss_peak_mb=max((s.rss for s in judged), default=0) / MB,
            rss_end_mb=verdict.end_rss / MB,
            slope_mb_per_hour=verdict.growth_per_hour / MB,
        )
        failures = [
            *self.problems,
            *(
                f"{n} {what}"
                for n, what in (
                    (summary.lost, "chat messages lost"),
                    (summary.duplicates, "event ids received more than once by one consumer"),
                    (
                        accounting.duplicates,
                        "chat messages received more than once by one consumer",
                    ),
                    (
                        summary.strays,
                        "stray messages (delivered to a consumer that was not owed them)",
                    ),
                    (summary.out_of_order, "events out of order"),
                    (summary.resyncs + summary.server_resyncs, "resyncs (consumers + server)"),
                    (summary.messages_sent - summary.messages_accepted, "messages not accepted"),
                    (missing, "accepted messages missing from the history"),
                    (len(errors), "ERROR/Traceback lines in the server log"),
                )
                if n
            ),
            *(f"memory: {reason}" for reason in verdict.reasons),
        ]
        failures += [f"loss detail: {example}" for example in accounting.lost_examples]
        failures += [f"server log: {line}" for line in errors[:5]]
        settings = self.started.env
        notes = [
            (
                f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs shared with other work, "
                f"Python {sys.version.split()[0]}"
            ),
            f"server: scripts/serve (uvicorn, {args.workers} worker(s), "
            f"{'Redis broker' if settings['REDIS_URL'] else 'in-memory broker'}), fresh SQLite db; "
            + ", ".join(
                f"{k}={v}" for k, v in settings.items() if k not in {"DATABASE_URL", "REDIS_URL"}
            ),
            (
                f"{len(consumers)} consumers round-robin over {summary.identities}; four group "
                "conversations (two per tenant, carol in one of each tenant)"
            ),
            (
                f"churn {args.churn:g} of the streams per second (half FIN, half RST), each back after "
                f"0-{args.max_gap:g} s with Last-Event-ID (half as header, half as ?lastEventId=); "
                f"{args.rate:g} messages/s from random participants"
            ),
            (
                f"server counters (diagnostics, both tenants): published {counters.get('eventsPublished', 0):,}, "
                f"delivered {counters.get('eventsDelivered', 0):,}, replays {counters.get('replays', 0):,} "
                f"({counters.get('replayedEvents', 0):,} events), reconnects {counters.get('reconnects', 0):,}"
            ),
        ]
        if args.workers > 1:
            notes.append(
                "several workers: the server counters are those of the worker that "
                "answered each diagnostics request, not the sum over workers"
            )
        return SoakResult(
            command=" ".join(["./bench/soak", *sys.argv[1:]]),
            config={k: v for k, v in vars(args).items() if k != "out"} | {"out": str(args.out)},
            summary=summary,
            verdict=verdict,
            rule=rule,
            samples=self.samples,
            failures=failures,
            notes=notes,
        )


# -- entry point --------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=180, help="how long streams churn and chat"
    )
    parser.add_argument("--streams", type=int, default=300, help="SSE consumers")
    parser.add_argument(
        "--churn",
        type=float,
        default=0.05,
        help="share of the streams dropped (and resumed) per second",
    )
    parser.add_argument("--rate", type=float, default=8, help="chat messages per second")
    parser.add_argument(
        "--max-gap", type=float, default=2.0, help="longest pause before a consumer reconnects (s)"
    )
    parser.add_argument(
        "--replay-buffer", type=int, default=1000, help="SSE_REPLAY_BUFFER_SIZE for the server"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="server worker processes (more than one needs --redis-url)",
    )
    parser.add_argument(
        "--redis-url",
        default="",
        help="Redis for the server; 'local' starts a private redis-server",
    )
    parser.add_argument(
        "--seed", type=int, default=7, help="random seed (who drops, who sends where)"
    )
    parser.add_argument(
        "--out", type=Path, default=DOCS, help="folder for soak.md, soak.json, soak.png"
    )
    args = parser.parse_args(argv)
    if args.seconds < 10:
        parser.error("--seconds must be at least 10 (memory is judged after a third of the run)")
    if args.streams < 1 or args.rate <= 0 or not 0 <= args.churn <= 1:
        parser.error("need --streams >= 1, --rate > 0 and 0 <= --churn <= 1")
    return args


def _interrupt_on_sigterm() -> None:
    """A SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the server is stopped too."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _interrupt_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    began = time.monotonic()
    started = start_server(args, workdir)
    console.print(f"server up on port {started.server.port} in {time.monotonic() - began:.1f} s")
    try:
        result = asyncio.run(Soak(args, started).run())
    finally:
        started.server.stop()
        if started.redis is not None:
            started.redis.terminate()
            started.redis.wait(10)
    print_summary(result, console)
    paths = write_all(result, args.out)
    console.print("wrote " + ", ".join(str(p) for p in paths))
    shutil.rmtree(workdir, ignore_errors=True)
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
