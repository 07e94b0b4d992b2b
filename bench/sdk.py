"""The SDK, a bare onnxruntime session and Keras, timed side by side on the same workloads."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from onnxdigits import Artifacts, Classifier, Encoder, Generator, grid_points, to_batch

from . import machine, tables
from .timing import interleaved_medians, median_seconds

COUNT = 10_000


def _keras_models(keras_dir: Path | None) -> dict[str, Any] | None:
    if keras_dir is None or not keras_dir.is_dir():
        return None
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from onnxdigits.export.artifacts import load_submodels
    except ModuleNotFoundError:
        return None
    return load_submodels(keras_dir)


def _cold(command: list[str], repeats: int) -> float:
    return median_seconds(
        lambda: subprocess.run(command, check=True, capture_output=True), repeats, warmup=1
    )


Runner = Callable[[], object]
TIMED_KEYS = ("classifier", "vae.encoder", "vae.generator", "cvae.generator")


@dataclass
class _Runners:
    """The runners besides the SDK, by submodel key: bare onnxruntime sessions on the set's
    files and on the baseline's, and Keras models; and the rows timed so far."""

    bare: dict[str, Any]
    plain: dict[str, Any]
    keras: dict[str, Any] | None
    repeats: int
    progress: Callable[[str], None]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def measure(
        self,
        workload: str,
        count: int,
        sdk: Runner,
        key: str,
        feed: tuple[str, str, np.ndarray],
        keras_batch: int | None = None,
        repeats: int | None = None,
    ) -> None:
        """Time `sdk` beside the bare and baseline sessions of `key` and its Keras model, on
        the same input: `feed` is (output name, input name, input)."""
        self.progress(f"timing {workload}")
        output, name, x = feed
        reps = repeats or self.repeats
        runners: dict[str, Runner | None] = {
            "sdk": sdk,
            "bare": partial(self.bare[key].run, [output], {name: x}),
            "baseline": partial(self.plain[key].run, [output], {name: x})
            if key in self.plain
            else None,
        }
        # The ONNX runners take turns, one run each per round, so that a change in the
        # machine's load falls on all of them alike; Keras is timed after.
        medians = interleaved_medians({k: fn for k, fn in runners.items() if fn}, reps)
        timed: dict[str, float | None] = {k: medians.get(k) for k in runners}
        timed["keras"] = None
        if self.keras is not None and key in self.keras:
            model, batch = self.keras[key], keras_batch or len(x)
            timed["keras"] = median_seconds(
                lambda: model.predict(x, batch_size=batch, verbose=0), reps
            )
        self.rows.append({"workload": workload, "count": count, **timed})


def _only(workload: str, count: int, **seconds: float) -> dict[str, Any]:
    """A row that only some runners have (the others None)."""
    return {"workload": workload, "count": count, "sdk": None, "bare": None, "keras": None} | (
        seconds
    )


def run(
    artifacts: Path | None,
    device: str | None,
    keras_dir: Path | None,
    data: Path | None,
    repeats: int,
    notes_loop: bool,
    progress: Callable[[str], None],
    baseline: Path | None = None,
) -> dict[str, Any]:
    """Time every workload with each runner that can do it.

    Args:
        baseline: another set (such as the plain tf2onnx conversions a set was rewritten from)
            whose files a second bare session runs, timed in the same rounds.

    Returns:
        {"machine": ..., "device": ..., "rows": [{"workload", "sdk", "bare", "baseline",
        "keras", ...}]} with median seconds (None where a runner is absent).
    """
    import onnxruntime
    from onnxdigits.session import Device

    device = str(Device.parse(device))
    store = Artifacts(artifacts)
    if keras_dir is None and (store.root / "keras").is_dir():
        keras_dir = store.root / "keras"
    images = _images(store, data)
    floats = to_batch(images)
    classifier = Classifier(artifacts=store, device=device)
    progress(f"device {device}: sessions run on {classifier.device} ({classifier.providers[0]})")

    def sessions(of: Artifacts | None) -> dict[str, Any]:
        # A bare session: onnxruntime's defaults on the providers the SDK got.
        return {
            key: onnxruntime.InferenceSession(of.model_bytes(key), providers=classifier.providers)
            for key in TIMED_KEYS
            if of is not None and key in of.keys
        }

    plain_store = Artifacts(baseline) if baseline is not None else None
    keras_models = _keras_models(keras_dir)
    runners = _Runners(sessions(store), sessions(plain_store), keras_models, repeats, progress)
    feed = ("probs", "image", floats)
    runners.measure(
        "classify 10k", COUNT, lambda: classifier.predict(images), "classifier", feed, 1000
    )
    one = ("probs", "image", floats[:1])
    runners.measure(
        "classify 1 image",
        1,
        lambda: classifier.predict(images[:1]),
        "classifier",
        one,
        repeats=max(repeats, 200),
    )
    if "vae.encoder" in runners.bare:
        encoder = Encoder("vae", artifacts=store, device=device)
        feed = ("z_mean", "image", floats)
        runners.measure(
            "embed 10k (vae)", COUNT, lambda: encoder.embed(images), "vae.encoder", feed, 1000
        )
    z10k = np.random.default_rng(0).standard_normal((COUNT, 2), dtype=np.float32)
    for model in ("vae", "cvae"):
        key = f"{model}.generator"
        if key not in runners.bare:
            continue
        generator = Generator(model, artifacts=store, device=device)
        reps = max(repeats, 101) if model == "vae" else repeats  # a millisecond: noisy
        grid = ("image", "z", grid_points(15))
        runners.measure(
            f"grid 15x15 ({model})", 225, partial(generator.grid, 15), key, grid, repeats=reps
        )
        if model == "vae":
            feed = ("image", "z", z10k)
            runners.measure(
                "sample 10k (vae)", COUNT, partial(generator.sample, COUNT, 0), key, feed, 1000
            )
    rows = runners.rows
    if notes_loop and keras_models is not None and "vae.generator" in keras_models:
        progress("timing the notes' loop of 225 predict calls, once")
        rows.append(_notes_loop(keras_models["vae.generator"]))
    progress("timing cold starts")
    rows += _cold_starts(
        ["--device", device] + (["--artifacts", str(store.root)] if artifacts else []), repeats
    )
    return {
        "machine": machine.describe(),
        "device": device,
        "ran_on": classifier.device,
        "repeats": repeats,
        "baseline": str(plain_store.root) if plain_store is not None else None,
        "rows": rows,
    }


def _images(store: Artifacts, data: Path | None) -> np.ndarray:
    """COUNT test digits: an mnist.npz's, else the set's sample repeated."""
    if data is not None:
        from onnxdigits.export.data import load_mnist

        _, (images, _) = load_mnist(data)
        return images[:COUNT]
    return np.resize(store.sample()[0], (COUNT, 28, 28))


def _notes_loop(model: Any) -> dict[str, Any]:
    """A grid as the Keras teaching notes made it: 225 predict calls, timed once."""
    start = time.perf_counter()
    for point in grid_points(15):
        model.predict(point[None], verbose=0)
    return _only("grid 15x15 (vae), notes' loop", 225, keras=time.perf_counter() - start)


def _cold_starts(options: list[str], repeats: int) -> list[dict[str, Any]]:
    """`import onnxdigits` and `onnxdigits grid OPTIONS` in fresh processes."""
    with tempfile.TemporaryDirectory() as tmp:
        grid = [sys.executable, "-m", "onnxdigits.cli", "grid", "--out", f"{tmp}/g.png", *options]
        return [
            _only(
                "cold: import onnxdigits",
                1,
                sdk=_cold([sys.executable, "-c", "import onnxdigits"], repeats),
            ),
            _only("cold: onnxdigits grid", 225, sdk=_cold(grid, repeats)),
        ]


def _ms(seconds: float | None) -> str:
    return (
        "-"
        if seconds is None
        else f"{seconds * 1e3:.3f}"
        if seconds < 1e-2
        else f"{seconds * 1e3:.1f}"
    )


def table(report: dict[str, Any]) -> str:
    """The report of `run` as a Markdown table: median milliseconds and SDK speed-ups."""
    m = report["machine"]
    lines = [
        f"{machine.headline(m)}, onnxruntime {m['onnxruntime']}, "
        f"device {report['device']} -> {report['ran_on']}, median of {report['repeats']}",
    ]
    baseline = report.get("baseline")
    if baseline:
        lines.append(f"baseline: bare sessions on the files of {baseline}")
    header = ["workload", "SDK ms", "bare ORT ms", *(["baseline ms"] if baseline else [])]
    header += ["Keras ms", "Keras / SDK", "SDK / bare"]
    header += [*(["baseline / SDK"] if baseline else []), "SDK items/s"]
    rows = []
    for r in report["rows"]:
        cells = [r["workload"], _ms(r["sdk"]), _ms(r["bare"])]
        cells += [_ms(r.get("baseline"))] if baseline else []
        cells += [_ms(r["keras"]), tables.ratio(r["keras"], r["sdk"])]
        cells += [tables.ratio(r["sdk"], r["bare"])]
        cells += [tables.ratio(r.get("baseline"), r["sdk"])] if baseline else []
        rows.append([*cells, "-" if r["sdk"] is None else f"{r['count'] / r['sdk']:,.0f}"])
    return "\n".join([*lines, "", *tables.markdown(header, rows)])
