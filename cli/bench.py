"""`onnxdigits bench`: the SDK, a bare onnxruntime session and Keras, timed side by side."""

from __future__ import annotations

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

from .main import artifacts_option, data_option, device_option

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
) -> dict[str, Any]:
    """Time every workload with each runner that can do it.

    Returns:
        {"machine": ..., "device": ..., "rows": [{"workload", "sdk", "bare", "keras", ...}]} with
        median seconds (None where a runner is absent).
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
    bare = {
        key: onnxruntime.InferenceSession(store.model_bytes(key), providers=classifier.providers)
        for key in ("classifier", "vae.encoder", "vae.generator", "cvae.generator")
        if key in store.keys
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
    ) -> None:
        progress(f"timing {workload}")
        timed = {
            name: median_seconds(fn, reps) if fn is not None else None
            for name, fn in (("sdk", sdk), ("bare", bare_fn), ("keras", keras_fn))
        }
        rows.append({"workload": workload, "count": count, **timed})

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
    )
    row(
        "classify 1 image",
        lambda: classifier.predict(images[:1]),
        lambda: bare["classifier"].run(["probs"], {"image": floats[:1]}),
        predict("classifier", floats[:1]),
        1,
        reps=max(repeats, 200),
    )
    if "vae.encoder" in bare:
        encoder = Encoder("vae", artifacts=store, device=device)
        row(
            "embed 10k (vae)",
            lambda: encoder.embed(images),
            lambda: bare["vae.encoder"].run(["z_mean"], {"image": floats}),
            predict("vae.encoder", floats, 1000),
            COUNT,
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
        )
        if model == "vae":
            row(
                "sample 10k (vae)",
                partial(generator.sample, COUNT, 0),
                partial(bare[key].run, ["image"], {"z": z10k}),
                predict(key, z10k, 1000),
                COUNT,
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


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{b / a:.2f}x"


def format_table(report: dict[str, Any]) -> str:
    """The report as a Markdown table: median milliseconds and SDK speed-ups."""
    m = report["machine"]
    lines = [
        f"{m['date']}, {m['cpu']} ({m['cores']} cores){', ' + m['gpu'] if m['gpu'] else ''}, "
        f"onnxruntime {m['onnxruntime']}, device {report['device']} -> {report['ran_on']}, "
        f"median of {report['repeats']}",
        "",
        "| workload | SDK ms | bare ORT ms | Keras ms | Keras / SDK | SDK / bare | SDK items/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        rate = "-" if r["sdk"] is None else f"{r['count'] / r['sdk']:,.0f}"
        lines.append(
            f"| {r['workload']} | {_ms(r['sdk'])} | {_ms(r['bare'])} | {_ms(r['keras'])} | "
            f"{_ratio(r['sdk'], r['keras'])} | {_ratio(r['bare'], r['sdk'])} | {rate} |"
        )
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
@data_option
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
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write every figure and the machine to this JSON file.",
)
def bench_command(
    artifacts: Path | None,
    device: str | None,
    keras_dir: Path | None,
    data: Path | None,
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
    )
    click.echo(format_table(report))
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2) + "\n")
