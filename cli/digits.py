"""The digit commands: grids, samples, labels, embeddings, the latent scatter, info and verify."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from onnxdigits import __version__

from .main import artifacts_option, device_option, invert_option, json_option, model_option


def _write_png(array: Any, out: str, invert: bool) -> None:
    from onnxdigits import to_image

    image = to_image(array, invert=invert)
    if out == "-":
        image.save(sys.stdout.buffer, format="PNG")
        sys.stdout.buffer.flush()
    else:
        image.save(out, format="PNG")
        click.echo(out)


@click.command("grid", short_help="Write the latent manifold of a model as a PNG grid.")
@model_option()
@click.option(
    "--n",
    type=click.IntRange(min=1),
    default=15,
    show_default=True,
    help="Cells per side of the grid.",
)
@click.option(
    "--lo",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Lowest normal quantile of the grid.",
)
@click.option(
    "--hi",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Highest normal quantile of the grid.",
)
@click.option(
    "--out",
    default="grid.png",
    show_default=True,
    help="PNG file to write, or - for stdout.",
)
@invert_option
@artifacts_option
@device_option
def grid_command(
    model: str,
    n: int,
    lo: float,
    hi: float,
    out: str,
    invert: bool,
    artifacts: Path | None,
    device: str | None,
) -> None:
    """Write a PNG of the latent manifold: an n x n grid of decoded normal quantiles."""
    from onnxdigits import Generator

    if lo >= hi:
        raise click.BadParameter(f"--lo {lo} must be below --hi {hi}", param_hint="--lo")
    _write_png(Generator(model, artifacts=artifacts, device=device).grid(n, lo, hi), out, invert)


@click.command("sample", short_help="Write digits drawn from a model's prior as a PNG.")
@model_option()
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="How many digits to draw.",
)
@click.option("--seed", type=int, default=None, help="Random seed. Defaults to a fresh draw.")
@click.option(
    "--columns",
    type=click.IntRange(min=1),
    default=None,
    help="Digits per row. Defaults to a square-ish grid.",
)
@click.option(
    "--out",
    default="samples.png",
    show_default=True,
    help="PNG file to write, or - for stdout.",
)
@invert_option
@artifacts_option
@device_option
def sample_command(
    model: str,
    count: int,
    seed: int | None,
    columns: int | None,
    out: str,
    invert: bool,
    artifacts: Path | None,
    device: str | None,
) -> None:
    """Write a PNG of digits decoded from points drawn from the prior N(0, I)."""
    from onnxdigits import Generator, tile

    _write_png(
        tile(Generator(model, artifacts=artifacts, device=device).sample(count, seed), columns),
        out,
        invert,
    )


def _sources(paths: tuple[str, ...]) -> list[str | bytes]:
    """The image files to read, with - standing for a PNG on stdin."""
    return [sys.stdin.buffer.read() if path == "-" else path for path in paths]


@click.command("classify", short_help="Print the label of each image file.")
@click.argument("images", nargs=-1, required=True)
@json_option
@artifacts_option
@device_option
def classify_command(
    images: tuple[str, ...], as_json: bool, artifacts: Path | None, device: str | None
) -> None:
    """Print the label of each image file and its probability, one line each (- reads stdin)."""
    from onnxdigits import Classifier

    probs = Classifier(artifacts=artifacts, device=device).predict_proba(_sources(images))
    for path, row in zip(images, probs):
        label = int(row.argmax())
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "file": path,
                        "label": label,
                        "probability": float(row[label]),
                        "probabilities": [round(float(p), 6) for p in row],
                    }
                )
            )
        else:
            click.echo(f"{path}\t{label}\t{row[label]:.4f}")


@click.command("embed", short_help="Print the 2-D embedding of each image file.")
@click.argument("images", nargs=-1, required=True)
@model_option()
@json_option
@artifacts_option
@device_option
def embed_command(
    images: tuple[str, ...], model: str, as_json: bool, artifacts: Path | None, device: str | None
) -> None:
    """Print the 2-D embedding of each image file (z, or z_mean for the VAEs), one line each."""
    from onnxdigits import Encoder

    points = Encoder(model, artifacts=artifacts, device=device).embed(_sources(images))
    for path, z in zip(images, points):
        if as_json:
            click.echo(json.dumps({"file": path, "model": model, "z": [float(v) for v in z]}))
        else:
            click.echo(f"{path}\t" + "\t".join(f"{v:.6f}" for v in z))


@click.command("scatter", short_help="Plot the sample's latent space by label (matplotlib).")
@model_option()
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="latent.png",
    show_default=True,
    help="PNG file to write.",
)
@artifacts_option
@device_option
def scatter_command(model: str, out: str, artifacts: Path | None, device: str | None) -> None:
    """Plot the latent space of the shipped test sample, coloured by label (needs matplotlib)."""
    from onnxdigits import Artifacts, Encoder

    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ModuleNotFoundError:
        raise click.ClickException(
            "scatter needs matplotlib: pip install 'onnxdigits[plot]'"
        ) from None
    store = Artifacts(artifacts)
    images, labels = store.sample()
    z = Encoder(model, artifacts=store, device=device).embed(images)
    figure, axes = plt.subplots(figsize=(7, 6), dpi=100)
    points = axes.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
    axes.legend(
        *points.legend_elements(),
        title="digit",
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
    )
    axes.set(
        title=f"{model}: latent space of {len(images)} test digits", xlabel="z[0]", ylabel="z[1]"
    )
    figure.tight_layout()
    figure.savefig(out)
    plt.close(figure)
    click.echo(out)


@click.command("info", short_help="Show the set in use, versions and devices.")
@artifacts_option
@device_option
def info_command(artifacts: Path | None, device: str | None) -> None:
    """Show the artifacts in use, their checksums, versions and the providers a session gets."""
    import numpy
    import onnxruntime
    import PIL
    from onnxdigits import Artifacts, Classifier

    store = Artifacts(artifacts)
    problems = {path: problem for path, problem in store.verify().items() if problem}
    click.echo(f"artifacts   {store.root}")
    click.echo(f"models      {', '.join(store.keys)}")
    click.echo(f"checksums   {'ok' if not problems else f'{len(problems)} FAILED'}")
    for path, problem in problems.items():
        click.echo(f"  {path}: {problem}")
    click.echo(f"onnxdigits  {__version__}")
    click.echo(f"onnxruntime {onnxruntime.__version__} ({onnxruntime.get_device()})")
    click.echo(f"numpy       {numpy.__version__}")
    click.echo(f"pillow      {PIL.__version__}")
    click.echo(f"available   {', '.join(onnxruntime.get_available_providers())}")
    if not problems:
        classifier = Classifier(artifacts=store, device=device)
        providers = ", ".join(classifier.providers)
        click.echo(f"session     device={device} -> {classifier.device} ({providers})")


@click.command("verify", short_help="Check a set's checksums and parity with Keras.")
@artifacts_option
@device_option
def verify_command(artifacts: Path | None, device: str | None) -> None:
    """Check every file's checksum, then parity with the stored Keras outputs; exit 1 on failure."""
    from onnxdigits import Artifacts
    from onnxdigits.verify import check_parity

    store = Artifacts(artifacts)
    checksums = store.verify()
    problems = {path: problem for path, problem in checksums.items() if problem}
    for path, problem in problems.items():
        click.echo(f"FAIL {path}: {problem}")
    if problems:
        raise click.ClickException(
            f"{len(problems)} file(s) of {store.root} fail their checksum; "
            "export the set again or restore it"
        )
    results = check_parity(store, device)
    for result in results:
        click.echo(str(result))
    failed = [r for r in results if not r.ok]
    if failed:
        raise click.ClickException(f"{len(failed)} output(s) differ from Keras beyond tolerance")
    click.echo(
        f"ok: {len(checksums)} checksums and {len(results)} outputs of {store.root}", err=True
    )
