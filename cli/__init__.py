"""The `onnxdigits` command: digit grids, samples, labels and embeddings from the shipped models.

Data goes to stdout; progress and warnings go to stderr. Expected failures print one line that
says what to do and exit 1; usage errors exit 2.
"""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from onnxdigits import __version__
from onnxdigits.errors import DeviceError, OnnxDigitsError
from onnxdigits.specs import FAMILIES, LATENT_MODELS

TRAIN_EXTRA = "pip install 'onnxdigits[train]'"


class _Group(click.Group):
    """Turns the package's own errors into one-line click errors at the boundary."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OnnxDigitsError as exc:
            raise click.ClickException(" ".join(str(exc).split())) from None
        except OSError as exc:
            raise click.ClickException(
                f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
            ) from None


def _device(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from onnxdigits.session import Device

    try:
        Device.parse(value)
    except DeviceError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _models_option(default: str = "vae") -> Any:
    return click.option(
        "--model",
        type=click.Choice(LATENT_MODELS),
        default=default,
        show_default=True,
        help=f"Which latent model to use. Defaults to {default}.",
    )


artifacts_option = click.option(
    "--artifacts",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of an exported set. Defaults to $ONNXDIGITS_ARTIFACTS, else the shipped set.",
)
device_option = click.option(
    "--device",
    default="auto",
    callback=_device,
    help='Where to run: "auto" (CUDA if it comes up, else the CPU), "cpu", "cuda" or "cuda:N". '
    "Defaults to auto.",
)
invert_option = click.option(
    "--invert", is_flag=True, help="Dark digits on white. By default white on black, as in MNIST."
)


@contextlib.contextmanager
def _training_extra() -> Iterator[None]:
    """Say how to install the training extra when TensorFlow or tf2onnx is missing."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in (
            "tensorflow",
            "keras",
            "tf2onnx",
            "onnx",
            "scipy",
        ):
            raise click.ClickException(
                f"this command needs the training extra ({exc.name} is not installed): "
                + TRAIN_EXTRA
            ) from None
        raise


def _write_png(array: Any, out: str, invert: bool) -> None:
    from onnxdigits import to_image

    image = to_image(array, invert=invert)
    if out == "-":
        image.save(sys.stdout.buffer, format="PNG")
        sys.stdout.buffer.flush()
    else:
        image.save(out, format="PNG")
        click.echo(out)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onnxdigits")
def main() -> None:
    """Digits from Keras MNIST models exported to ONNX: grids, samples, labels, embeddings."""
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"


@main.command()
@_models_option()
@click.option(
    "--n",
    type=click.IntRange(min=1),
    default=15,
    show_default=True,
    help="Cells per side of the grid. Defaults to 15.",
)
@click.option(
    "--lo",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Lowest normal quantile of the grid. Defaults to 0.05.",
)
@click.option(
    "--hi",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Highest normal quantile of the grid. Defaults to 0.95.",
)
@click.option(
    "--out",
    default="grid.png",
    show_default=True,
    help="PNG file to write, or - for stdout. Defaults to grid.png.",
)
@invert_option
@artifacts_option
@device_option
def grid(
    model: str,
    n: int,
    lo: float,
    hi: float,
    out: str,
    invert: bool,
    artifacts: Path | None,
    device: str,
) -> None:
    """Write a PNG of the latent manifold: an n x n grid of decoded normal quantiles."""
    from onnxdigits import Generator

    if lo >= hi:
        raise click.BadParameter(f"--lo {lo} must be below --hi {hi}", param_hint="--lo")
    _write_png(Generator(model, artifacts, device).grid(n, lo, hi), out, invert)


@main.command()
@_models_option()
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="How many digits to draw. Defaults to 64.",
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
    help="PNG file to write, or - for stdout. Defaults to samples.png.",
)
@invert_option
@artifacts_option
@device_option
def sample(
    model: str,
    count: int,
    seed: int | None,
    columns: int | None,
    out: str,
    invert: bool,
    artifacts: Path | None,
    device: str,
) -> None:
    """Write a PNG of digits decoded from points drawn from the prior N(0, I)."""
    from onnxdigits import Generator, tile

    _write_png(tile(Generator(model, artifacts, device).sample(count, seed), columns), out, invert)


def _sources(paths: tuple[str, ...]) -> list[str | bytes]:
    """The image files to read, with - standing for a PNG on stdin."""
    return [sys.stdin.buffer.read() if path == "-" else path for path in paths]


@main.command()
@click.argument("images", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@artifacts_option
@device_option
def classify(images: tuple[str, ...], as_json: bool, artifacts: Path | None, device: str) -> None:
    """Print the label of each image file and its probability, one line each (- reads stdin)."""
    from onnxdigits import Classifier

    probs = Classifier(artifacts, device).predict_proba(_sources(images))
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


@main.command()
@click.argument("images", nargs=-1, required=True)
@_models_option()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per line.")
@artifacts_option
@device_option
def embed(
    images: tuple[str, ...], model: str, as_json: bool, artifacts: Path | None, device: str
) -> None:
    """Print the 2-D embedding of each image file (z, or z_mean for the VAEs), one line each."""
    from onnxdigits import Encoder

    points = Encoder(model, artifacts, device).embed(_sources(images))
    for path, z in zip(images, points):
        if as_json:
            click.echo(json.dumps({"file": path, "model": model, "z": [float(v) for v in z]}))
        else:
            click.echo(f"{path}\t" + "\t".join(f"{v:.6f}" for v in z))


@main.command()
@_models_option()
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default="latent.png",
    show_default=True,
    help="PNG file to write. Defaults to latent.png.",
)
@artifacts_option
@device_option
def scatter(model: str, out: str, artifacts: Path | None, device: str) -> None:
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
    z = Encoder(model, store, device).embed(images)
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


@main.command()
@artifacts_option
@device_option
def info(artifacts: Path | None, device: str) -> None:
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
        classifier = Classifier(store, device)
        providers = ", ".join(classifier.providers)
        click.echo(f"session     device={device} -> {classifier.device} ({providers})")


@main.command()
@artifacts_option
@device_option
def verify(artifacts: Path | None, device: str) -> None:
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


def augmentation_option(name: str, what: str, default: float) -> Any:
    return click.option(
        f"--{name}",
        type=click.FloatRange(0, 0.5),
        default=default,
        show_default=True,
        help=f"Classifier augmentation while training: random {what}; 0 for none. "
        f"Defaults to {default}.",
    )


data_option = click.option(
    "--data",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="An mnist.npz in Keras' layout. Defaults to $ONNXDIGITS_MNIST, else Keras' cache.",
)


@main.command()
@click.option(
    "--models",
    default=",".join(FAMILIES),
    show_default=True,
    help="Comma-separated models to train. Defaults to all four.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Passes over the training images. Defaults to each model's own, those of the shipped "
    "set: classifier 40, ae 30, vae 30, cvae 30.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Images per step. Defaults to 128.",
)
@click.option(
    "--learning-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=1e-3,
    show_default=True,
    help="Adam's initial rate, cosine-decayed. Defaults to 1e-3.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Train on the first N training images only. Defaults to all.",
)
@click.option(
    "--validation",
    type=click.IntRange(min=0),
    default=5000,
    show_default=True,
    help="Hold out the last N training images for validation. Defaults to 5000.",
)
@augmentation_option("shift", "shifts up to this fraction of the side", 0.1)
@augmentation_option("rotation", "rotations up to this fraction of a turn", 0.03)
@augmentation_option("zoom", "zooms in or out by up to this fraction", 0.1)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed. Defaults to 0.")
@data_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write OUT/keras/<key>.keras into. Required.",
)
def train(
    models: str,
    epochs: int | None,
    batch_size: int,
    learning_rate: float,
    limit: int | None,
    validation: int,
    shift: float,
    rotation: float,
    zoom: float,
    seed: int,
    data: Path | None,
    out: Path,
) -> None:
    """Train models on MNIST and save their submodels as Keras files (training extra)."""
    with _training_extra():
        from onnxdigits.export.data import load_mnist
        from onnxdigits.export.train import TrainConfig
        from onnxdigits.export.train import train as fit

        (x_train, y_train), _ = load_mnist(data)
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            limit=limit,
            validation=validation,
            shift=shift,
            rotation=rotation,
            zoom=zoom,
        )
        with contextlib.redirect_stdout(sys.stderr):  # Keras' progress is not data
            submodels = fit(
                [m.strip() for m in models.split(",") if m.strip()], x_train, y_train, config, out
            )
    for key in submodels:
        click.echo(out / "keras" / f"{key}.keras")


@main.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory of the set to write; its keras/ holds the trained models. Required.",
)
@click.option(
    "--keras",
    "keras_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Read the .keras files from here instead. Defaults to OUT/keras.",
)
@data_option
@click.option(
    "--metrics/--no-metrics",
    default=True,
    show_default=True,
    help="Measure the test figures into the manifest. Defaults to on.",
)
def export(out: Path, keras_dir: Path | None, data: Path | None, metrics: bool) -> None:
    """Export trained models to ONNX, validated against Keras, with manifest (training extra)."""
    with _training_extra():
        import logging

        from onnxdigits.export.artifacts import export_dir
        from onnxdigits.export.data import load_mnist
        from onnxdigits.export.evaluate import evaluate as measure

        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
        logging.getLogger("onnxdigits").setLevel(logging.INFO)
        (x_train, y_train), (x_test, y_test) = load_mnist(data)
        manifest = export_dir(
            out,
            x_test,
            y_test,
            keras_dir,
            metrics=(lambda root: measure(root, x_train, y_train, x_test, y_test))
            if metrics
            else None,
        )
    for entry in manifest["models"].values():
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in entry["parity"]["max_abs_diff"].items())
        click.echo(f"{out / entry['file']}\tmax abs diff: {diffs}")


@main.command()
@artifacts_option
@data_option
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Draws of z per image for the VAEs' ELBO. Defaults to 10.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Use the first N train and test images only. Defaults to all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@device_option
def evaluate(
    artifacts: Path | None,
    data: Path | None,
    samples: int,
    limit: int | None,
    as_json: bool,
    device: str,
) -> None:
    """Compute the quality figures of a set from its ONNX files alone (training extra)."""
    with _training_extra():
        import scipy  # noqa: F401  the 5-NN vote needs it
        from onnxdigits.export.data import load_mnist
        from onnxdigits.export.evaluate import evaluate as measure

        (x_train, y_train), (x_test, y_test) = load_mnist(data)
    figures = measure(
        artifacts,
        x_train[:limit],
        y_train[:limit],
        x_test[:limit],
        y_test[:limit],
        samples=samples,
        device=device,
    )
    if as_json:
        click.echo(json.dumps(figures, indent=2))
        return
    for family, values in figures.items():
        for name, value in values.items():
            click.echo(
                f"{family:<11} {name:<15} {value:.4f}"
                if isinstance(value, float)
                else f"{family:<11} {name:<15} {value}"
            )


@main.command()
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
    help="Timed runs per workload after the warm-up; the median is reported. Defaults to 7.",
)
@click.option(
    "--notes-loop",
    is_flag=True,
    help="Also time the notes' loop of 225 Keras predict calls for a grid (slow).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write every figure and the machine to this JSON file.",
)
def bench(
    artifacts: Path | None,
    device: str,
    keras_dir: Path | None,
    data: Path | None,
    repeats: int,
    notes_loop: bool,
    json_path: Path | None,
) -> None:
    """Time the SDK, a bare onnxruntime session and Keras side by side; print a table."""
    from .bench import format_table, run

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
