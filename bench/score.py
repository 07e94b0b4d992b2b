"""The scoring benchmark: images/s and peak memory of `onnxdigits score`, in one process and on
Ray, beside the SDK's own rate, on MNIST from an npz and on PNG files.

    onnxdigits bench score --data mnist.npz [--pngs 10000] [--million] [--repeats 3] [--no-ray]

Every run is a child process, timed by itself (the figure leaves out imports and model loading,
as `onnxdigits bench sdk` does) and watched from here for its memory: the peak RSS of the process,
and the peak PSS summed over it and every process under it (a local Ray cluster's workers
included; PSS shares shared memory out among the processes that map it, so the sum counts it
once). Generated inputs live in a temporary directory, removed at the end.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import machine, tables
from .process import peak_rss, watch

MIB = 2**20
MILLION = 1_000_000
MILLION_NAME = f"npz ({MILLION:,})"  # run once, in one process and on Ray with 2 actors


@dataclass
class Run:
    """One child process: what it reported and what it used."""

    seconds: float  # the timed part, as the child measured it
    rows: int
    wall: float  # the child's whole life
    peak_rss: int  # bytes: the child itself
    peak_pss: int  # bytes: the child and its descendants, summed
    load: tuple[float, float, float]  # the load average as it ended
    nodes: int = 0  # the Ray nodes that the pool ran on (0: not on Ray)


@dataclass
class Row:
    """A workload's runs and their medians."""

    data: str
    how: str
    runs: list[Run] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def rate(self) -> float:
        return self.runs[0].rows / self.seconds

    @property
    def peak_rss(self) -> int:
        return max(run.peak_rss for run in self.runs)

    @property
    def peak_pss(self) -> int:
        return max(run.peak_pss for run in self.runs)


# --- what a child runs ------------------------------------------------------------------------


def _child(argv: list[str]) -> None:
    """Run one workload and print {"seconds", "rows"} as JSON on the last line of stdout."""
    kind, data, out = argv[0], argv[1], argv[2]
    actors = int(argv[3]) if len(argv) > 3 else None
    address = argv[4] if len(argv) > 4 else None
    if kind == "sdk":
        import onnxdigits

        classifier = onnxdigits.Classifier(device="cpu")
        if data.endswith(".npz"):
            with np.load(data, allow_pickle=False) as npz:
                images: Any = np.concatenate([npz[k] for k in sorted(npz.files) if k[:2] == "x_"])
        else:
            images = sorted(str(p) for p in Path(data).rglob("*.png"))
        classifier.predict_proba(images[:256])  # warm-up
        start = time.perf_counter()
        classifier.predict_proba(images)
        result = {"seconds": time.perf_counter() - start, "rows": len(images)}
    elif kind == "score":
        import onnxdigits
        from onnxdigits.score import score

        # A warm-up job, as the SDK gets a warm-up call: the shipped sample, into a file beside.
        sample = onnxdigits.Artifacts()
        warm = Path(f"{out}.warm.parquet")
        score([sample.root / sample.json["sample"]["file"]], warm, device="cpu", progress=False)
        warm.unlink()
        summary = score([data], out, device="cpu", progress=False)
        result = {"seconds": summary.seconds, "rows": summary.rows}
    else:
        import ray
        from onnxdigits.score.cluster import connect, score_on_ray

        connect(address)
        job = ray.get_runtime_context().get_job_id()
        summary = score_on_ray([data], out, device="cpu", actors=actors, progress=False)
        # The nodes this job's pool ran on, from the cluster's table of actors.
        nodes = {
            actor["Address"]["NodeID"]
            for actor in ray._private.state.actors(job_id=ray.JobID.from_hex(job)).values()
            if actor["ActorClassName"].startswith("MapWorker")
        }
        result = {"seconds": summary.seconds, "rows": summary.rows, "nodes": len(nodes)}
        ray.shutdown()
    result["peak_rss"] = peak_rss()
    print(json.dumps(result))


def _run(command: list[str], env: dict[str, str]) -> Run:
    """Run a child, watching its process tree's memory; its report and its peaks."""
    watched = watch(command, env)
    return Run(
        seconds=watched.report["seconds"],
        rows=watched.report["rows"],
        wall=watched.wall,
        peak_rss=watched.report["peak_rss"],
        peak_pss=watched.peak_pss,
        load=os.getloadavg(),
        nodes=watched.report.get("nodes", 0),
    )


# --- the inputs -------------------------------------------------------------------------------


def _pngs(images: np.ndarray, folder: Path) -> None:
    """Write images as PNG files, a thousand to a subfolder."""
    from PIL import Image

    for i, image in enumerate(images):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(sub / f"{i:06d}.png")


def _million(images: np.ndarray, labels: np.ndarray, path: Path) -> None:
    """An npz of a million images (MNIST repeated), stored uncompressed: 784 MB."""
    np.savez(
        path,
        x_train=np.resize(images, (MILLION, *images.shape[1:])),
        y_train=np.resize(labels, (MILLION,)),
    )


def main(argv: list[str] | None = None) -> None:
    """A child's entry point (`--child`); users run `onnxdigits bench score`."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] != "--child":
        sys.exit("run the benchmark as: onnxdigits bench score --data mnist.npz")
    _child(argv[1:])


def run(
    data: Path,
    progress: Callable[[str], None],
    pngs: int = 10_000,
    repeats: int = 3,
    million: bool = False,
    ray: bool = True,
    address: str | None = None,
) -> dict[str, Any]:
    """Run every workload `repeats` times, in turns; the Ray runs on the cluster at `address`,
    else on a local cluster each.

    Returns:
        {"machine": `machine.describe()` with "load" (at the end) and "platform", "load_start",
        "repeats", "rows": [Row, ...]}.
    """
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that the inputs are removed
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "ONNXDIGITS_DEVICE": "cpu"}
    work = Path(tempfile.mkdtemp(prefix="onnxdigits-bench-"))
    start_load = os.getloadavg()
    rows: list[Row] = []
    try:
        with np.load(data, allow_pickle=False) as npz:
            names = sorted(k for k in npz.files if k.startswith("x_"))
            images = np.concatenate([npz[k] for k in names])
            labels = np.concatenate([npz["y_" + k[2:]] for k in names])
            x_test = npz["x_test"] if "x_test" in npz.files else images
        png_folder = work / "pngs"
        progress(f"writing {pngs:,} PNG files into {png_folder}")
        _pngs(np.resize(x_test, (pngs, 28, 28)), png_folder)
        datasets: list[tuple[str, str]] = [
            # By absolute path, as every node of a cluster sees it.
            (f"MNIST npz ({len(images):,})", str(data.resolve())),
            (f"PNG files ({pngs:,})", str(png_folder)),
        ]
        if million:
            big = work / "million.npz"
            progress(f"writing {big}")
            _million(images, labels, big)
            datasets.append((MILLION_NAME, str(big)))
        del images, labels  # the children are watched, not this process
        kinds: list[tuple[str, list[str]]] = [("SDK in process", ["sdk"])]
        kinds.append(("score, one process", ["score"]))
        if ray:
            on = [address] if address else []
            kinds += [
                ("score --ray, 1 actor", ["ray", "1", *on]),
                ("score --ray, 2 actors", ["ray", "2", *on]),
            ]
        plan = [
            (Row(name, how), source, kind)
            for name, source in datasets
            for how, kind in kinds
            # A million images once each, and not by the SDK, which would hold them all (that
            # is what `score` avoids), nor by one Ray actor.
            if not (name == MILLION_NAME and (kind[0] == "sdk" or kind[1:2] == ["1"]))
        ]
        # The workloads take turns, repeat by repeat, so that a change in the machine's load
        # falls on all of them alike.
        for repeat in range(repeats):
            for row, source, kind in plan:
                if row.data == MILLION_NAME and repeat:
                    continue
                out = work / f"out-{kind[0]}.parquet"  # a file, or with Ray a directory
                command = [sys.executable, "-m", "onnxdigits.bench.score", "--child"]
                command += [kind[0], source, str(out), *kind[1:]]
                progress(f"{row.data} | {row.how} | run {repeat + 1}")
                row.runs.append(_run(command, env))
                _remove(out)
        rows = [row for row, _, _ in plan]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = {**machine.describe(), "load": os.getloadavg(), "platform": platform.platform()}
    return {"machine": info, "load_start": start_load, "repeats": repeats, "rows": rows}


def table(report: dict[str, Any]) -> list[str]:
    """The report of `run` as Markdown: the machine, then a row of medians per workload."""
    info, rows = report["machine"], report["rows"]
    baselines = {row.data: row.rate for row in rows if row.how == "SDK in process"}
    header = ["data", "run", "images", "median s", "images/s", "/ SDK", "peak RSS MiB"]
    cells = []
    for row in rows:
        nodes = max(r.nodes for r in row.runs)
        cells.append(
            [row.data, f"{row.how} on {nodes} node(s)" if nodes else row.how]
            + [f"{row.runs[0].rows:,}", f"{row.seconds:.2f}", f"{row.rate:,.0f}"]
            + [tables.ratio(row.rate, baselines.get(row.data))]
            + [f"{row.peak_rss / MIB:,.0f}", f"{row.peak_pss / MIB:,.0f}"]
        )
    start, end = machine.load_average(report["load_start"]), machine.load_average(info["load"])
    return [
        f"{machine.headline(info)}, onnxruntime {info['onnxruntime']}, load average {start} at "
        f"the start and {end} at the end, median of {report['repeats']}",
        "",
        *tables.markdown([*header, "peak PSS MiB, tree"], cells, left=2),
    ]


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """The report of `run` as JSON: the machine, and every row's runs and medians."""
    rows = [{**asdict(row), "seconds": row.seconds, "rate": row.rate} for row in report["rows"]]
    return {"machine": report["machine"], "rows": rows}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


if __name__ == "__main__":
    main()
