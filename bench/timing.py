"""Wall-time medians: one callable after a warm-up, or several taking turns round by round."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of `fn` over `repeats` runs after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(
    runners: dict[str, Callable[[], object]], repeats: int, warmup: int = 2
) -> dict[str, float]:
    """Median wall time of each runner over `repeats` rounds in which each runs once in turn,
    after `warmup` untimed rounds, so that a change in the machine's load falls on all alike."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(repeats + warmup):
        for name, fn in runners.items():
            start = time.perf_counter()
            fn()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
