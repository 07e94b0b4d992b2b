"""`onnxdigits bench`: the benchmarks behind docs/benchmarks.md's figures, one command per workload.

Each command parses its options, runs its workload in `onnxdigits.bench` and prints the table on
stdout (progress on stderr); `--json` also writes the figures and the machine.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from onnxdigits.files import write_beside

from .main import artifacts_option, device_option, missing_extra

# onnxdigits.bench.sdk.COUNT, for the help text: the CLI starts without importing the benchmarks.
COUNT = 10_000


# Every benchmark's figures and the machine, besides the table on stdout.
figures_option = click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write every figure and the machine to this JSON file. Defaults to none.",
)


def _progress(line: str) -> None:
    click.echo(line, err=True)


def _write_figures(path: Path | None, figures: dict[str, Any]) -> None:
    if path is not None:
        with write_beside(path) as staging:
            staging.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


@click.group("bench", short_help="Measure the SDK, the service, scoring and the normaliser.")
def bench_group() -> None:
    """The benchmarks behind the documentation's figures: each prints a Markdown table naming the
    machine. Speed is measured here, never asserted in the tests."""


@bench_group.command("sdk", short_help="Time the SDK against bare onnxruntime and Keras.")
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
    "sessions on its files are timed too, in a column of their own. Defaults to none.",
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
def sdk_command(
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
    from onnxdigits.bench import sdk

    report = sdk.run(
        artifacts, device, keras_dir, data, repeats, notes_loop, _progress, baseline=baseline
    )
    click.echo(sdk.table(report))
    _write_figures(json_path, report)


def _counts(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of positive integers")
    return counts


def _hosts(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    try:
        from onnxdigits.bench.serve import HOSTS
    except ModuleNotFoundError as exc:
        raise missing_extra("bench serve", "serve", exc) from None
    hosts = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [host for host in hosts if host not in HOSTS]
    if unknown or not hosts:
        raise click.BadParameter(f"unknown host(s) {unknown}; choose from {', '.join(HOSTS)}")
    return hosts


@bench_group.command("serve", short_help="Load-test the service on each host, beside the SDK.")
@click.option(
    "--hosts",
    default="uvicorn,ray-1,ray-2,ray-1-nobatch,ray-2-nobatch",
    show_default=True,
    callback=_hosts,
    help="The servers to measure, in turn: uvicorn, and Ray Serve with 1 or 2 replicas of each "
    "model, with @serve.batch or without (-nobatch).",
)
@click.option(
    "--images",
    default="1,256",
    show_default=True,
    callback=_counts,
    help="Images per classify request: one raw PNG, or that many multipart files.",
)
@click.option(
    "--clients",
    default="1,8,32",
    show_default=True,
    callback=_counts,
    help="Concurrent clients, each sending its next request when the last is answered.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0.5),
    default=5.0,
    show_default=True,
    help="How long each measurement lasts, after its warm-up.",
)
@click.option(
    "--warmup",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds of load before each measurement starts.",
)
@click.option(
    "--address",
    default=None,
    help="Deploy the Ray hosts on this Ray cluster (its head's host:port), where ray-1 and "
    "ray-2 put one or two replicas of each model over its nodes. Defaults to a local cluster "
    "for each.",
)
@figures_option
@artifacts_option
@device_option
def serve_command(
    hosts: list[str],
    images: list[int],
    clients: list[int],
    seconds: float,
    warmup: float,
    address: str | None,
    json_path: Path | None,
    artifacts: Path | None,
    device: str | None,
) -> None:
    """Measure requests/s and p50/p99 latency of classify on loopback, for one PNG and for 256
    per request, at each number of clients, on each host in turn; beside them the SDK's
    in-process rate on the same PNG bytes. Prints a Markdown table; progress goes to stderr."""
    try:
        from onnxdigits.bench import serve
    except ModuleNotFoundError as exc:
        raise missing_extra("bench serve", "serve", exc) from None
    command = " ".join(["onnxdigits bench serve", *sys.argv[3:]])
    report = serve.run(
        hosts, images, clients, seconds, warmup, device, artifacts, _progress, address, command
    )
    for line in serve.table(report):
        click.echo(line)
    _write_figures(json_path, serve.figures(report))


@bench_group.command("score", short_help="Time score in one process and on Ray beside the SDK.")
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An mnist.npz in Keras' layout: its every image is scored, and its test images are "
    "written as the PNG files.",
)
@click.option(
    "--pngs", type=click.IntRange(1), default=10_000, show_default=True, help="PNG files to score."
)
@click.option(
    "--repeats", type=click.IntRange(1), default=3, show_default=True, help="Runs of each; medians."
)
@click.option("--million", is_flag=True, help="Also a million images from one npz, once each.")
@click.option("--ray/--no-ray", default=True, show_default=True, help="Include the Ray runs.")
@click.option(
    "--address",
    default=None,
    help="Run the Ray runs on this Ray cluster (its head's host:port); the table says how many "
    "nodes each pool used. Defaults to a local cluster for each run.",
)
@figures_option
def score_command(
    data: Path,
    pngs: int,
    repeats: int,
    million: bool,
    ray: bool,
    address: str | None,
    json_path: Path | None,
) -> None:
    """Time `score` on the npz's images and on PNG files, in one process and on a local Ray
    cluster with 1 and 2 actors, beside the SDK's in-process rate, on the CPU.

    Each run is a child process, timed by itself after its imports and model loading, and
    watched for its peak RSS and the PSS of its whole process tree (Ray's workers included).
    Prints a markdown table of medians with the machine named.
    """
    try:
        import onnxdigits.score  # noqa: F401  (the score extra: the children score into Parquet)
        from onnxdigits.bench import score
    except ModuleNotFoundError as exc:
        raise missing_extra("bench score", "score", exc) from None
    report = score.run(data, _progress, pngs, repeats, million, ray, address)
    for line in score.table(report):
        click.echo(line)
    _write_figures(json_path, score.figures(report))


_normaliser_file = click.Path(exists=True, dir_okay=False, path_type=Path)


@bench_group.command("damage", short_help="Accuracy on realistic and on damaged digits.")
@click.option(
    "--per",
    type=click.IntRange(min=1),
    default=None,
    help="Images per category, and MNIST digits damaged. Defaults to each category's own count "
    "(120, or 400 for small images) and every digit.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="The seed the images are made with."
)
@click.option("--device", default="cpu", show_default=True, help="Where the classifier runs.")
@click.option(
    "--images",
    type=_normaliser_file,
    default=None,
    help="Read through the normaliser in this copy of sdk/images.py instead of the installed "
    "one (with --time: beside it). Defaults to the installed one alone.",
)
@click.option(
    "--time",
    "timed",
    is_flag=True,
    help="Print load_image's median milliseconds per image instead (100 MNIST digits, 40 of "
    "each category, or --per).",
)
@click.option(
    "--save",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write every generated file into this folder. Defaults to none.",
)
@click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Damage the test set of this mnist.npz. Defaults to the shipped sample's 1,000 digits.",
)
@click.option(
    "--part",
    type=click.Choice(("all", "inputs", "damage")),
    default="all",
    show_default=True,
    help="Which table: the generated inputs, the damaged MNIST digits, or both.",
)
def damage_command(
    per: int | None,
    seed: int,
    device: str,
    images: Path | None,
    timed: bool,
    save: Path | None,
    data: Path | None,
    part: str,
) -> None:
    """Print the shipped classifier's accuracy on digits such as users hand over (drawn pages,
    typefaces, markers, scans) and on MNIST's test digits damaged in 28 ways, read as arrays and
    as PNG files; or, with --time, the normaliser's time per image.

    The scanned digits come from scikit-learn (pip install 'onnxdigits[bench]'); without it
    their row says so."""
    from onnxdigits.bench import damage

    if timed:
        lines = damage.timing_lines(per, seed, images)
    else:
        lines = damage.accuracy_lines(per, seed, device, images, save, data, part)
    for line in lines:
        click.echo(line)


@bench_group.command("normaliser", short_help="The normaliser's CPU time per image.")
@click.option(
    "--images",
    type=_normaliser_file,
    default=None,
    help="Another copy of sdk/images.py to time beside the installed one. Defaults to none.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    default=7,
    show_default=True,
    help="Fresh processes per version; the median of theirs is shown.",
)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=40,
    show_default=True,
    help="28x28 and canvas files each (the photos fewer).",
)
@click.option(
    "--core",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="The core each process is pinned to.",
)
def normaliser_command(images: Path | None, rounds: int, count: int, core: int) -> None:
    """Time load_image (decode included) and its part from the decoded grey image onward, in
    CPU milliseconds per image, on 28x28 PNGs, web-page canvases and JPEG photos: each the
    median over fresh processes pinned to one core, taking turns with --images' when given."""
    from onnxdigits.bench import normaliser

    for line in normaliser.cost_lines(images, rounds, count, core):
        click.echo(line)
