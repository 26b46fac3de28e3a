"""The memory verdict: does the server's RSS keep growing once it is warm?

A finite run cannot prove memory is bounded; it can show growth that keeps going at a rate
that matters. The rule (printed in the report's header):

- Warm-up: the first third of the run is ignored (streams connect, replay buffers and
  caches fill up to their bounds: SSE_REPLAY_MAX_AGE_SECONDS is set below the warm-up).
- Trend: a least-squares line through the RSS samples of the rest. The run FAILS when the
  line projects more than `max_growth_share_per_hour` of the baseline per hour AND it rose
  by more than the noise floor over the window (max(`noise_floor_mb`, `noise_floor_share`
  of the baseline)): allocator noise of a megabyte in a short run projects to a huge
  hourly figure, so a trend must also be visible in absolute terms.
- Cap: the run also FAILS when the end RSS (median of the last tenth of the window) exceeds
  the baseline (median of its first tenth) by more than `max_end_growth_share`.

A short run therefore catches fast leaks only (a 180 s run: about 35 kB/s or more); run it
longer to catch slower ones, the hourly threshold then decides.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MemorySample:
    t: float  # seconds since the run started
    rss: int  # bytes, the server's whole process tree
    streams: int  # consumers connected at that moment


@dataclass(frozen=True)
class MemoryRule:
    warmup_share: float = 1 / 3
    max_growth_share_per_hour: float = 0.5
    noise_floor_mb: float = 4.0
    noise_floor_share: float = 0.02
    max_end_growth_share: float = 0.25

    def describe(self) -> str:
        return (
            f"after a warm-up (first {self.warmup_share:.0%} of the run), FAIL if the least-squares "
            f"slope projects more than {self.max_growth_share_per_hour:.0%} of the baseline RSS per "
            f"hour AND the fitted rise over the window exceeds max({self.noise_floor_mb:g} MB, "
            f"{self.noise_floor_share:.0%} of the baseline); or if the end RSS exceeds the baseline "
            f"by more than {self.max_end_growth_share:.0%} (baseline/end: medians of the first/last "
            "tenth of the window)"
        )


@dataclass
class MemoryVerdict:
    ok: bool
    window: tuple[float, float]
    samples: int
    baseline_rss: float
    end_rss: float
    slope_bytes_per_s: float
    growth_per_hour: float
    fitted_rise: float
    reasons: list[str] = field(default_factory=list)


def least_squares_slope(xs: list[float], ys: list[float]) -> float:
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def judge(samples: list[MemorySample], run_seconds: float, rule: MemoryRule) -> MemoryVerdict:
    start = run_seconds * rule.warmup_share
    window = [s for s in samples if start <= s.t <= run_seconds]
    if len(window) < 5:
        return MemoryVerdict(
            ok=False,
            window=(start, run_seconds),
            samples=len(window),
            baseline_rss=0,
            end_rss=0,
            slope_bytes_per_s=0,
            growth_per_hour=0,
            fitted_rise=0,
            reasons=[f"only {len(window)} memory samples after the warm-up: run longer"],
        )
    tenth = max(3, len(window) // 10)
    baseline = statistics.median(s.rss for s in window[:tenth])
    end = statistics.median(s.rss for s in window[-tenth:])
    slope = least_squares_slope([s.t for s in window], [float(s.rss) for s in window])
    span = window[-1].t - window[0].t
    growth_per_hour = slope * 3600
    fitted_rise = slope * span
    floor = max(rule.noise_floor_mb * MB, rule.noise_floor_share * baseline)
    reasons: list[str] = []
    if growth_per_hour > rule.max_growth_share_per_hour * baseline and fitted_rise > floor:
        reasons.append(
            f"RSS grows {growth_per_hour / MB:.1f} MB/h (> {rule.max_growth_share_per_hour:.0%} of "
            f"{baseline / MB:.1f} MB) and rose {fitted_rise / MB:.1f} MB over the window "
            f"(> noise floor {floor / MB:.1f} MB)"
        )
    if end > baseline * (1 + rule.max_end_growth_share):
        reasons.append(
            f"end RSS {end / MB:.1f} MB is more than {rule.max_end_growth_share:.0%} above the "
            f"baseline {baseline / MB:.1f} MB"
        )
    return MemoryVerdict(
        ok=not reasons,
        window=(start, run_seconds),
        samples=len(window),
        baseline_rss=baseline,
        end_rss=end,
        slope_bytes_per_s=slope,
        growth_per_hour=growth_per_hour,
        fitted_rise=fitted_rise,
        reasons=reasons,
    )
