"""The SDK, a bare onnxruntime session and Keras, timed side by side on the same workloads."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
    keras_models = _keras_models(keras_dir)
    if data is not None:
        from onnxdigits.export.data import load_mnist

        _, (images, _) = load_mnist(data)
        images = images[:COUNT]
    else:
        images, _ = store.sample()
        images = np.resize(images, (COUNT, 28, 28))  # the shipped sample, repeated to 10,000
    floats = to_batch(images)
    classifier = Classifier(artifacts=store, device=device)
    progress(f"device {device}: sessions run on {classifier.device} ({classifier.providers[0]})")
    # A bare session: onnxruntime's defaults on the providers the SDK got.
    timed_keys = ("classifier", "vae.encoder", "vae.generator", "cvae.generator")
    bare = {
        key: onnxruntime.InferenceSession(store.model_bytes(key), providers=classifier.providers)
        for key in timed_keys
        if key in store.keys
    }
    plain_store = Artifacts(baseline) if baseline is not None else None
    plain = {
        key: onnxruntime.InferenceSession(
            plain_store.model_bytes(key), providers=classifier.providers
        )
        for key in timed_keys
        if plain_store is not None and key in plain_store.keys
    }
    rng = np.random.default_rng(0)
    z10k = rng.standard_normal((COUNT, 2), dtype=np.float32)
    rows: list[dict[str, Any]] = []

    def row(
        workload: str,
        sdk: Callable[[], object],
        bare_fn: Callable[[], object] | None,
        keras_fn: Callable[[], object] | None,
        count: int,
        reps: int = repeats,
        plain_fn: Callable[[], object] | None = None,
    ) -> None:
        progress(f"timing {workload}")
        runners = {"sdk": sdk, "bare": bare_fn, "baseline": plain_fn}
        # The ONNX runners take turns, one run each per round, so that a change in the
        # machine's load falls on all of them alike; Keras is timed after.
        medians = interleaved_medians({k: fn for k, fn in runners.items() if fn}, reps)
        timed: dict[str, float | None] = {name: medians.get(name) for name in runners}
        timed["keras"] = median_seconds(keras_fn, reps) if keras_fn is not None else None
        rows.append({"workload": workload, "count": count, **timed})

    def plain_run(key: str, output: str, name: str, x: np.ndarray) -> Callable[[], object] | None:
        return partial(plain[key].run, [output], {name: x}) if key in plain else None

    def predict(
        key: str, x: np.ndarray, batch_size: int | None = None
    ) -> Callable[[], object] | None:
        if keras_models is None or key not in keras_models:
            return None
        return lambda: keras_models[key].predict(x, batch_size=batch_size or len(x), verbose=0)

    row(
        "classify 10k",
        lambda: classifier.predict(images),
        lambda: bare["classifier"].run(["probs"], {"image": floats}),
        predict("classifier", floats, 1000),
        COUNT,
        plain_fn=plain_run("classifier", "probs", "image", floats),
    )
    row(
        "classify 1 image",
        lambda: classifier.predict(images[:1]),
        lambda: bare["classifier"].run(["probs"], {"image": floats[:1]}),
        predict("classifier", floats[:1]),
        1,
        reps=max(repeats, 200),
        plain_fn=plain_run("classifier", "probs", "image", floats[:1]),
    )
    if "vae.encoder" in bare:
        encoder = Encoder("vae", artifacts=store, device=device)
        row(
            "embed 10k (vae)",
            lambda: encoder.embed(images),
            lambda: bare["vae.encoder"].run(["z_mean"], {"image": floats}),
            predict("vae.encoder", floats, 1000),
            COUNT,
            plain_fn=plain_run("vae.encoder", "z_mean", "image", floats),
        )
    for model in ("vae", "cvae"):
        key = f"{model}.generator"
        if key not in bare:
            continue
        generator = Generator(model, artifacts=store, device=device)
        z_grid = grid_points(15)
        row(
            f"grid 15x15 ({model})",
            partial(generator.grid, 15),
            partial(bare[key].run, ["image"], {"z": z_grid}),
            predict(key, z_grid),
            225,
            reps=max(repeats, 101) if model == "vae" else repeats,  # a millisecond: noisy
            plain_fn=plain_run(key, "image", "z", z_grid),
        )
        if model == "vae":
            row(
                "sample 10k (vae)",
                partial(generator.sample, COUNT, 0),
                partial(bare[key].run, ["image"], {"z": z10k}),
                predict(key, z10k, 1000),
                COUNT,
                plain_fn=plain_run(key, "image", "z", z10k),
            )
    if notes_loop and keras_models is not None and "vae.generator" in keras_models:
        progress("timing the notes' loop of 225 predict calls, once")
        model = keras_models["vae.generator"]
        start = time.perf_counter()
        for point in grid_points(15):
            model.predict(point[None], verbose=0)
        rows.append(
            {
                "workload": "grid 15x15 (vae), notes' loop",
                "count": 225,
                "sdk": None,
                "bare": None,
                "keras": time.perf_counter() - start,
            }
        )
    progress("timing cold starts")
    with tempfile.TemporaryDirectory() as tmp:
        env_args = ["--device", device] + (["--artifacts", str(store.root)] if artifacts else [])
        cli = [
            sys.executable,
            "-m",
            "onnxdigits.cli",
            "grid",
            "--out",
            str(Path(tmp) / "g.png"),
            *env_args,
        ]
        rows.append(
            {
                "workload": "cold: import onnxdigits",
                "count": 1,
                "keras": None,
                "bare": None,
                "sdk": _cold([sys.executable, "-c", "import onnxdigits"], repeats),
            }
        )
        rows.append(
            {
                "workload": "cold: onnxdigits grid",
                "count": 225,
                "keras": None,
                "bare": None,
                "sdk": _cold(cli, repeats),
            }
        )
    return {
        "machine": machine.describe(),
        "device": device,
        "ran_on": classifier.device,
        "repeats": repeats,
        "baseline": str(plain_store.root) if plain_store is not None else None,
        "rows": rows,
    }


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
