"""The commands for data sets: `score` (batch inference into Parquet, in one process or on Ray)
and its benchmark."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from onnxdigits.specs import MODELS

from .main import artifacts_option, device_option, figures_option

SCORE_EXTRA = "pip install 'onnxdigits[score]'"
RAY_EXTRA = "pip install 'onnxdigits[ray]'"


def _missing(exc: ModuleNotFoundError, extra: str) -> click.ClickException:
    return click.ClickException(f"this needs {exc.name}: {extra}")


@click.command("score", short_help="Score images, folders, npz or Parquet files into Parquet.")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The Parquet file to write (with --ray, a directory of Parquet files); it replaces "
    "what was there only once complete.",
)
@click.option(
    "--model",
    type=click.Choice(MODELS),
    default="classifier",
    show_default=True,
    help="classifier: the label and the ten probabilities; ae, vae, cvae: the embedding z.",
)
@click.option(
    "--column",
    default=None,
    help='The column of image bytes in Parquet inputs. Defaults to "image", else the only '
    "column of bytes.",
)
@click.option(
    "--ray",
    "use_ray",
    is_flag=True,
    help=f"Run as a Ray Data pipeline, one model per actor ({RAY_EXTRA}).",
)
@click.option(
    "--address",
    default=None,
    help="The Ray cluster to run on, with --ray. Defaults to $RAY_ADDRESS, else a local "
    "cluster started for the job.",
)
@click.option(
    "--actors",
    type=click.IntRange(min=1),
    default=None,
    help="Model actors in the pool, with --ray. Defaults to one per free CPU, or per free GPU "
    "on CUDA.",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@artifacts_option
@device_option
def score_command(
    inputs: tuple[str, ...],
    out: Path,
    model: str,
    column: str | None,
    use_ray: bool,
    address: str | None,
    actors: int | None,
    quiet: bool,
    artifacts: Path | None,
    device: str | None,
) -> None:
    """Score images into Parquet: a row per image with its source, then the label and the ten
    probabilities (classifier) or the embedding z (encoders), and the true label where the input
    has one.

    INPUTS are image files, folders of them (searched recursively), npz files in Keras' MNIST
    layout (every x_* array, labelled by its y_* array when present) and Parquet files with a
    column of image bytes. A row that cannot be read carries its error and the job goes on; it
    fails only when the output cannot be written or every input fails. Progress and a summary go
    to stderr, the output's path to stdout.
    """
    if not use_ray and (address is not None or actors is not None):
        flag = "--address" if address is not None else "--actors"
        raise click.UsageError(f"{flag} needs --ray")
    try:
        if use_ray:
            from onnxdigits.score.cluster import score_on_ray
        else:
            from onnxdigits.score import score
    except ModuleNotFoundError as exc:
        if exc.name not in ("pyarrow", "tqdm", "ray"):
            raise
        raise _missing(exc, RAY_EXTRA if exc.name == "ray" else SCORE_EXTRA) from None
    # SIGTERM ends the job as Ctrl-C does: by an exception, so that the output's staging file
    # is removed on the way out instead of left beside it.
    with _terminate_on_sigterm():
        if use_ray:
            summary = score_on_ray(
                inputs,
                out,
                model=model,
                artifacts=artifacts,
                device=device,
                column=column,
                address=address,
                actors=actors,
                progress=not quiet,
            )
        else:
            summary = score(
                inputs,
                out,
                model=model,
                artifacts=artifacts,
                device=device,
                column=column,
                progress=not quiet,
            )
    click.echo(str(summary), err=True)
    click.echo(str(summary.out))


@contextmanager
def _terminate_on_sigterm() -> Iterator[None]:
    """Within the block, SIGTERM raises SystemExit(143) in the main thread."""

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command("bench-score", short_help="Time score in one process and on Ray beside the SDK.")
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
def bench_score_command(
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
        from onnxdigits.score.bench import benchmark
    except ModuleNotFoundError as exc:
        raise _missing(exc, SCORE_EXTRA) from None
    benchmark(
        data,
        pngs=pngs,
        repeats=repeats,
        million=million,
        ray=ray,
        json_path=json_path,
        address=address,
    )
