"""The medians the benchmarks report: who runs when, and which runs count."""

from __future__ import annotations

from onnxdigits.bench.timing import interleaved_medians, median_seconds


def test_interleaved_runners_take_turns() -> None:
    calls: list[str] = []
    medians = interleaved_medians(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3
    )
    assert calls == ["a", "b"] * 5  # two untimed rounds, then three timed ones
    assert set(medians) == {"a", "b"} and all(m >= 0 for m in medians.values())


def test_the_median_leaves_the_warm_up_out() -> None:
    import time

    calls: list[int] = []

    def slow_first() -> None:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.2)  # the first call (the warm-up) only

    assert median_seconds(slow_first, repeats=3, warmup=1) < 0.1
    assert len(calls) == 4
