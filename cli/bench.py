"""`onnxdigits bench`: the SDK, a bare onnxruntime session and Keras, timed side by side."""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import click
import numpy as np
from onnxdigits import (
    Artifacts,
    Classifier,
    Encoder,
    Generator,
    __version__,
    grid_points,
    to_batch,
)

from .main import artifacts_option, device_option, figures_option

COUNT = 10_000


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


def vector_width() -> str:
    """The widest x86 vector extension this CPU and its operating system support ("AVX-512",
    "AVX2", "AVX"), or the machine's own ("NEON" on ARM64): onnxruntime's CPU kernels, its
    blocked convolutions' channel block (16 with AVX-512, 8 with AVX2) among them, are chosen so.

    The answer is numpy's run-time CPU detection, which checks what onnxruntime checks: the
    CPUID bits and that the operating system saves the registers (XCR0).
    """
    features: dict[str, bool] = {}
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # 2.x, 1.x
        try:
            features = dict(importlib.import_module(module).__cpu_features__)
            break
        except (ImportError, AttributeError):
            continue
    for flag, name in (("AVX512F", "AVX-512"), ("AVX2", "AVX2"), ("AVX", "AVX"), ("ASIMD", "NEON")):
        if features.get(flag):
            return name
    return platform.machine() or "unknown"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = None
    try:
        gpu = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "vector": vector_width(),
        "gpu": gpu,
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "onnxdigits": __version__,
        "date": datetime.now(UTC).date().isoformat(),
    }


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
        "machine": machine(),
        "device": device,
        "ran_on": classifier.device,
        "repeats": repeats,
        "baseline": str(plain_store.root) if plain_store is not None else None,
        "rows": rows,
    }


def interleaved_medians(runners: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each runner over `repeats` rounds in which each runs once in turn,
    after two untimed rounds."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    for round_ in range(repeats + 2):
        for name, fn in runners.items():
            start = time.perf_counter()
            fn()
            if round_ >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _ms(seconds: float | None) -> str:
    return (
        "-"
        if seconds is None
        else f"{seconds * 1e3:.3f}"
        if seconds < 1e-2
        else f"{seconds * 1e3:.1f}"
    )


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{b / a:.2f}x"


def format_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table: median milliseconds and SDK speed-ups."""
    m = report["machine"]
    vector = f", {m['vector']}" if m.get("vector") else ""
    lines = [
        f"{m['date']}, {m['cpu']} ({m['cores']} cores{vector}){', ' + m['gpu'] if m['gpu'] else ''}"
        f", onnxruntime {m['onnxruntime']}, device {report['device']} -> {report['ran_on']}, "
        f"median of {report['repeats']}",
    ]
    baseline = report.get("baseline")
    if baseline:
        lines.append(f"baseline: bare sessions on the files of {baseline}")
    plain = ("", "") if not baseline else (" baseline ms |", " baseline / SDK |")
    lines += [
        "",
        f"| workload | SDK ms | bare ORT ms |{plain[0]} Keras ms | Keras / SDK | SDK / bare |"
        f"{plain[1]} SDK items/s |",
        "|---|" + "---:|" * (8 if baseline else 6),
    ]
    for r in report["rows"]:
        rate = "-" if r["sdk"] is None else f"{r['count'] / r['sdk']:,.0f}"
        cells = [r["workload"], _ms(r["sdk"]), _ms(r["bare"])]
        cells += [_ms(r.get("baseline"))] if baseline else []
        cells += [_ms(r["keras"]), _ratio(r["sdk"], r["keras"]), _ratio(r["bare"], r["sdk"])]
        cells += [_ratio(r["sdk"], r.get("baseline"))] if baseline else []
        lines.append("| " + " | ".join([*cells, rate]) + " |")
    return "\n".join(lines)


@click.command("bench", short_help="Time the SDK against bare onnxruntime and Keras.")
@artifacts_option
@device_option
@click.option(
    "--keras",
    "keras_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Trained .keras files to compare with (training extra). Defaults to "
    "ARTIFACTS/keras when it exists; without them the Keras column is empty.",
)
@click.option(
    "--data",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"An mnist.npz in Keras' layout: its first {COUNT:,} test images are timed. "
    f"Defaults to the set's sample digits (1,000 in the shipped set), repeated to {COUNT:,}.",
)
@click.option(
    "--baseline",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Another set, such as the plain tf2onnx conversions the set was rewritten from: bare "
    "sessions on its files are timed too, in a column of their own.",
)
@click.option(
    "--repeats",
    type=click.IntRange(min=3),
    default=7,
    show_default=True,
    help="Timed runs per workload after the warm-up; the median is reported.",
)
@click.option(
    "--notes-loop",
    is_flag=True,
    help="Also time a grid made as the Keras teaching notes made it: 225 predict calls (slow).",
)
@figures_option
def bench_command(
    artifacts: Path | None,
    device: str | None,
    keras_dir: Path | None,
    data: Path | None,
    baseline: Path | None,
    repeats: int,
    notes_loop: bool,
    json_path: Path | None,
) -> None:
    """Time the SDK, a bare onnxruntime session and Keras side by side; print a table."""
    report = run(
        artifacts,
        device,
        keras_dir,
        data,
        repeats,
        notes_loop,
        progress=lambda line: click.echo(line, err=True),
        baseline=baseline,
    )
    click.echo(format_table(report))
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
