"""The command for data sets: `score`, batch inference into Parquet."""

from __future__ import annotations

from pathlib import Path

import click
from onnxdigits.specs import MODELS

from .main import artifacts_option, device_option

SCORE_EXTRA = "pip install 'onnxdigits[score]'"


def _missing(exc: ModuleNotFoundError, extra: str) -> click.ClickException:
    return click.ClickException(f"this needs {exc.name}: {extra}")


@click.command("score", short_help="Score image files, folders, npz or Parquet files into Parquet.")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The Parquet file to write; it replaces what was there only once complete.",
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
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@artifacts_option
@device_option
def score_command(
    inputs: tuple[str, ...],
    out: Path,
    model: str,
    column: str | None,
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
    try:
        from onnxdigits.score import score
    except ModuleNotFoundError as exc:
        if exc.name not in ("pyarrow", "tqdm"):
            raise
        raise _missing(exc, SCORE_EXTRA) from None
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
