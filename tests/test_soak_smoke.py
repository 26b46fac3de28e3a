"""The soak command (bench/soak.py) cannot rot: a short real run, and its judging rules.

The real run starts its own production server (scripts/serve), so it needs no fixture; the
rule tests feed the accounting and the memory verdict made-up runs whose answer is known.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.soak_accounting import ConversationInfo, SentMessage, account
from bench.soak_memory import MB, MemoryRule, MemorySample, judge
from bench.soak_sse import SseParser
from tests.backend import ROOT


def test_a_short_soak_passes_with_no_loss_no_duplicate_and_writes_its_report(
    tmp_path: Path,
) -> None:
    out = tmp_path / "report"
    command = [
        sys.executable,
        "-m",
        "bench.soak",
        "--seconds",
        "20",
        "--streams",
        "40",
        "--out",
        str(out),
    ]
    soak = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output, _ = soak.communicate(timeout=105)
    except subprocess.TimeoutExpired:
        soak.terminate()  # the soak stops its server on SIGTERM
        output, _ = soak.communicate(timeout=15)
        raise AssertionError("the soak did not finish in time:\n" + output) from None
    assert soak.returncode == 0, output

    report = json.loads((out / "soak.json").read_text())
    summary = report["summary"]
    assert report["passed"] is True and report["failures"] == []
    # It really chatted, churned both ways and resumed: the zeros below mean something.
    assert summary["messages_sent"] == summary["messages_accepted"] > 0
    assert summary["chat_messages_expected"] > 0
    assert summary["clean_drops"] > 0 and summary["abrupt_drops"] > 0
    assert summary["resumes"] > 0
    assert summary["lost"] == 0
    assert summary["duplicates"] == 0
    assert summary["resyncs"] == 0 and summary["server_resyncs"] == 0
    assert summary["history_missing"] == 0
    assert report["memoryVerdict"]["ok"] is True
    assert len(report["samples"]) >= 20  # one RSS sample a second
    assert (out / "soak.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    markdown = (out / "soak.md").read_text()
    assert "Result: **PASS**" in markdown and "--streams 40" in markdown
    assert "(soak.png)" in markdown


# -- the accounting --------------------------------------------------------------------


@dataclass
class FakeConsumer:
    user_id: int
    tenant_id: int
    first_request_at: float | None
    started_at: float | None
    message_ids: Counter[int] = field(default_factory=Counter)


CONVERSATIONS = {
    10: ConversationInfo(10, tenant_id=1, participant_ids=frozenset({1, 2})),
    20: ConversationInfo(20, tenant_id=2, participant_ids=frozenset({1, 3})),
}


def _sent(message_id: int, conversation_id: int, started: float, ended: float) -> SentMessage:
    return SentMessage(conversation_id, "x", started, ended, status=201, message_id=message_id)


def test_the_accounting_counts_a_missing_message_as_lost_and_a_repeat_as_duplicate() -> None:
    consumer = FakeConsumer(user_id=2, tenant_id=1, first_request_at=1.0, started_at=1.1)
    consumer.message_ids.update([101, 102, 102])  # 103 never came, 102 came twice
    messages = [_sent(101, 10, 2, 2.1), _sent(102, 10, 3, 3.1), _sent(103, 10, 4, 4.1)]

    result = account([consumer], messages, CONVERSATIONS)

    assert (result.expected, result.lost, result.duplicates) == (3, 1, 1)
    assert result.consumers_with_loss == 1 and "103" in result.lost_examples[0]


def test_the_accounting_owes_nothing_from_before_the_first_connect_or_another_tenant() -> None:
    # User 1 streams in tenant 1: conversation 20 (tenant 2) is not on this stream.
    consumer = FakeConsumer(user_id=1, tenant_id=1, first_request_at=5.0, started_at=5.2)
    consumer.message_ids.update([201, 202, 205])
    messages = [
        _sent(201, 10, 1.0, 1.5),  # over before the consumer asked: a stray if delivered
        _sent(202, 10, 5.1, 5.3),  # raced the first connect: either way is fine
        _sent(203, 10, 4.9, 5.1),  # raced it too, and did not come: not a loss
        _sent(204, 20, 6.0, 6.1),  # another tenant's conversation: not owed...
        _sent(205, 20, 7.0, 7.1),  # ...and a stray if it leaks onto this stream
    ]
    result = account([consumer], messages, CONVERSATIONS)
    assert (result.expected, result.lost, result.strays, result.optional_received) == (0, 0, 2, 1)


def test_a_message_that_was_not_accepted_is_owed_to_nobody() -> None:
    consumer = FakeConsumer(user_id=2, tenant_id=1, first_request_at=0.0, started_at=0.1)
    refused = SentMessage(10, "x", 1.0, 1.1, status=503)
    assert account([consumer], [refused], CONVERSATIONS).expected == 0


# -- the memory verdict ----------------------------------------------------------------


def _samples(rss_at: Callable[[int], float], seconds: int = 180) -> list[MemorySample]:
    return [MemorySample(float(t), int(rss_at(t)), 300) for t in range(seconds + 1)]


def test_flat_memory_with_allocator_noise_passes() -> None:
    noisy = _samples(lambda t: 150 * MB + ((t * 7919) % 11) * 100_000)  # +-0.5 MB jitter
    verdict = judge(noisy, 180, MemoryRule())
    assert verdict.ok, verdict.reasons


def test_a_fast_climb_during_warm_up_then_a_plateau_passes() -> None:
    # Buffers and caches fill up to their bounds early; that is not a leak.
    plateau = _samples(lambda t: (100 + min(t, 50)) * MB)
    assert judge(plateau, 180, MemoryRule()).ok


def test_steady_growth_after_warm_up_fails() -> None:
    leaking = _samples(lambda t: 150 * MB + t * 60_000)  # 60 kB/s: about 206 MB an hour
    verdict = judge(leaking, 180, MemoryRule())
    assert not verdict.ok
    assert "MB/h" in verdict.reasons[0]
    assert verdict.growth_per_hour / MB > 200


def test_a_tiny_slope_in_a_short_run_is_noise_not_a_leak() -> None:
    # 0.3 MB over 13 s projects to ~80 MB/h, but stays under the noise floor.
    short = _samples(lambda t: 137 * MB + t * 23_000, seconds=20)
    assert judge(short, 20, MemoryRule()).ok


def test_a_run_too_short_to_judge_fails_rather_than_passes() -> None:
    assert not judge(_samples(lambda t: 100 * MB, seconds=5), 5, MemoryRule()).ok


# -- the wire --------------------------------------------------------------------------


def test_the_parser_keeps_a_split_event_until_it_is_complete() -> None:
    parser = SseParser()
    first = parser.feed(b': connected\nretry: 3000\n\nid: 17-1\nevent: chat:message\ndata: {"a"')
    second = parser.feed(b": 1}\n\nevent: ping\ndata: {}\n\n")
    assert first == []
    assert [(e.id, e.type, e.data) for e in second] == [
        ("17-1", "chat:message", '{"a": 1}'),
        (None, "ping", "{}"),
    ]
