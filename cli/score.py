"""The command for data sets: `score`, batch inference into Parquet, in one process or on Ray."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from onnxdigits.specs import MODELS

from .main import RAY_EXTRA, artifacts_option, device_option, missing_extra


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
        raise missing_extra("score", "ray" if exc.name == "ray" else "score", exc) from None
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
