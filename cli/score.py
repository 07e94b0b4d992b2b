"""The commands for data sets and other servers: `score` (batch inference into Parquet, in one
process or on Ray) and `export-triton` (a Triton Inference Server model repository)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from onnxdigits.errors import unknown_model
from onnxdigits.models import CHUNK
from onnxdigits.specs import MODELS, SUBMODELS

from .main import (
    RAY_EXTRA,
    artifacts_option,
    device_option,
    figures_option,
    install_command,
    missing_extra,
)

SCORE_EXTRA = install_command("score")
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:<yy.mm>-py3"  # any release since 22.12 (opset 17)


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


def _model_names(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str]:
    """--models, repeated or comma-separated: each a model or a submodel."""
    names = [name.strip() for item in value for name in item.split(",") if name.strip()]
    known = set(MODELS) | set(SUBMODELS)
    for name in names:
        if name not in known:
            raise click.BadParameter(unknown_model(name, [*MODELS, *SUBMODELS]))
    return names


@click.command("export-triton", short_help="Write a Triton Inference Server model repository.")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The repository's directory. Created if absent; in one that exists, only the models "
    "written are replaced.",
)
@click.option(
    "--models",
    multiple=True,
    callback=_model_names,
    help="Models (classifier, ae, vae, cvae) or submodels (vae.encoder, ...) to write, "
    "repeated or comma-separated. Defaults to every submodel of the set.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1, CHUNK["cuda"]),
    default=CHUNK["cuda"],
    show_default=True,
    help="The largest batch Triton forms or accepts: at most the SDK's CUDA chunk.",
)
@click.option(
    "--gpu",
    is_flag=True,
    help="GPU instance groups, exact float32 (TF32 off). By default CPU instance groups.",
)
@artifacts_option
def export_triton_command(
    out: Path, models: list[str], max_batch: int, gpu: bool, artifacts: Path | None
) -> None:
    """Write a Triton model repository: for each submodel, NAME/config.pbtxt and
    NAME/1/model.onnx (the set's file, checked against its sha256), the name without dots.

    The configuration gives platform onnxruntime_onnx, the manifest's inputs and outputs,
    dynamic batching up to --max-batch and one instance on the CPU (or on each GPU with --gpu).
    Prints each model's directory; stderr shows how to serve the repository with Triton's
    container.
    """
    from onnxdigits.serve.triton import write_repository

    written = write_repository(
        out, artifacts=artifacts, models=models or None, max_batch_size=max_batch, gpu=gpu
    )
    for path in written:
        click.echo(str(path))
    gpus = "--gpus all " if gpu else ""
    click.echo(
        f"serve it with: docker run --rm {gpus}-p 8000:8000 -p 8001:8001 -p 8002:8002 "
        f'-v "{out.resolve()}:/models:ro" {TRITON_IMAGE} tritonserver --model-repository=/models',
        err=True,
    )


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
