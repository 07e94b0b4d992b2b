"""The training commands: train, export and evaluate. They need the training extra."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from onnxdigits.specs import MODELS

from .main import artifacts_option, data_option, device_option, install_command, missing_extra

TRAIN_EXTRA = install_command("train")
_TRAINING_STACK = ("tensorflow", "keras", "tf2onnx", "onnx", "scipy")


@contextlib.contextmanager
def training_extra() -> Iterator[None]:
    """Say how to install the training extra when TensorFlow or tf2onnx is missing."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in _TRAINING_STACK:
            context = click.get_current_context(silent=True)
            command = context.info_name if context and context.info_name else "this command"
            raise missing_extra(command, "train", exc) from None
        raise


def augmentation_option(name: str, what: str, default: float) -> Any:
    return click.option(
        f"--{name}",
        type=click.FloatRange(0, 0.5),
        default=None,
        help=f"Classifier augmentation while training: random {what}; 0 for none. Defaults to "
        f"the recipe's: {default} for the shipped one, none for the notes'.",
    )


@click.command("train", short_help="Train the models on MNIST (training extra).")
@click.option(
    "--recipe",
    type=click.Choice(["shipped", "notes", "world"]),
    default="shipped",
    show_default=True,
    help="The shipped set's models and training, the notes' models as they were written, or "
    "the shipped models with the classifier also trained on damaged digits (world).",
)
@click.option(
    "--models",
    default=",".join(MODELS),
    show_default=True,
    help="Comma-separated models to train.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=None,
    help="Passes over the training images. Defaults to each model's own in the recipe: shipped "
    "classifier 40, ae 30, vae 30, cvae 30; notes classifier 1, ae 10, vae 50, cvae 5; world "
    "classifier 50, ae 30, vae 30, cvae 30.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Images per step. Defaults to the recipe's: 128; the notes' VAEs 100.",
)
@click.option(
    "--learning-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="The optimizer's initial rate. Defaults to the recipe's: Adam 1e-3, cosine-decayed, "
    "for the shipped one; the notes' Adadelta 1.0, SGD 0.01 (ae) and RMSprop 1e-3 (cvae).",
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
    help="Hold out the last N training images for validation.",
)
@augmentation_option("shift", "shifts up to this fraction of the side", 0.1)
@augmentation_option("rotation", "rotations up to this fraction of a turn", 0.03)
@augmentation_option("zoom", "zooms in or out by up to this fraction", 0.1)
@click.option(
    "--damage",
    type=click.FloatRange(0, 1),
    default=None,
    help="The fraction of each batch of the classifier's training digits that gets damage "
    "(onnxdigits.export.augment); 0 for none. Defaults to the recipe's: 0.5 for world, none for "
    "the others.",
)
@click.option(
    "--kl-weight",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="The VAEs' weight of the KL term in the loss (beta; 1 is the plain negative ELBO). "
    "Defaults to the recipe's: 1 for each.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@data_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Directory to write OUT/keras/<key>.keras into. Required.",
)
def train_command(
    recipe: str,
    models: str,
    epochs: int | None,
    batch_size: int | None,
    learning_rate: float | None,
    limit: int | None,
    validation: int,
    shift: float | None,
    rotation: float | None,
    zoom: float | None,
    damage: float | None,
    kl_weight: float | None,
    seed: int,
    data: Path | None,
    out: Path,
) -> None:
    """Train models on MNIST and save their submodels as Keras files (training extra)."""
    with training_extra():
        from onnxdigits.export.data import load_mnist
        from onnxdigits.export.train import TrainConfig, train

        (x_train, y_train), test = load_mnist(data)
        config = TrainConfig(
            recipe=recipe,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            seed=seed,
            limit=limit,
            validation=validation,
            shift=shift,
            rotation=rotation,
            zoom=zoom,
            damage=damage,
            kl_weight=kl_weight,
        )
        with contextlib.redirect_stdout(sys.stderr):  # Keras' progress is not data
            submodels = train(
                [m.strip() for m in models.split(",") if m.strip()],
                x_train,
                y_train,
                config,
                out,
                test=test,
            )
    for key in submodels:
        click.echo(out / "keras" / f"{key}.keras")


@click.command("export", short_help="Export trained models to ONNX with parity (training extra).")
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
    help="Measure the test figures into the manifest.",
)
@click.option(
    "--sign-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Sign the set with this elliptic-curve private key, a PEM file (sign extra), into "
    "OUT/model.sig. By default the set is not signed.",
)
def export_command(
    out: Path, keras_dir: Path | None, data: Path | None, metrics: bool, sign_key: Path | None
) -> None:
    """Export trained models to ONNX, validated against Keras, with manifest (training extra)."""
    if sign_key is not None:
        from onnxdigits.signing import check_private_key

        check_private_key(sign_key)  # before the export's minutes, not after
    with training_extra():
        import logging

        from onnxdigits.export.artifacts import export_dir
        from onnxdigits.export.data import load_mnist
        from onnxdigits.export.evaluate import evaluate

        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
        logging.getLogger("onnxdigits").setLevel(logging.INFO)
        (x_train, y_train), (x_test, y_test) = load_mnist(data)
        manifest = export_dir(
            out,
            x_test,
            y_test,
            keras_dir,
            metrics=(lambda root: evaluate(root, x_train, y_train, x_test, y_test))
            if metrics
            else None,
            train_digits=(x_train, y_train),
        )
    for entry in manifest.models.values():
        parity = entry.parity.max_abs_diff if entry.parity else {}
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in parity.items())
        click.echo(f"{out / entry.file}\tmax abs diff: {diffs}")
    if sign_key is not None:
        from onnxdigits.signing import sign_set

        click.echo(f"{sign_set(out, sign_key)}\tsigned with {sign_key}")


@click.command("evaluate", short_help="Measure a set's quality figures.")
@artifacts_option
@data_option
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Draws of z per image for the VAEs' ELBO.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Use the first N train and test images only. Defaults to all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@device_option
def evaluate_command(
    artifacts: Path | None,
    data: Path | None,
    samples: int,
    limit: int | None,
    as_json: bool,
    device: str | None,
) -> None:
    """Compute the quality figures of a set from its ONNX files alone, with numpy. Without
    --data it reads Keras' cache of MNIST, which needs the training extra."""
    with training_extra():
        from onnxdigits.export.data import load_mnist
        from onnxdigits.export.evaluate import evaluate

        (x_train, y_train), (x_test, y_test) = load_mnist(data)
    figures = evaluate(
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
    for model, values in figures.items():
        for name, value in values.items():
            if isinstance(value, list):
                shown = " ".join(f"{v:.3f}" if isinstance(v, float) else f"{v}" for v in value)
            else:
                shown = f"{value:.4f}" if isinstance(value, float) else f"{value}"
            click.echo(f"{model:<11} {name:<15} {shown}")


@click.command("rewrite", short_help="Rewrite a set's graphs for speed, exactly (training extra).")
@artifacts_option
@click.option(
    "--data",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="An mnist.npz in Keras' layout: the rewritten classifier must give each of its 10,000 "
    "test digits the unrewritten one's label. Defaults to the set's own sample.",
)
@click.option(
    "--models",
    default=None,
    help="Comma-separated submodels to rewrite, such as classifier,cvae.generator. Defaults to "
    "every one in the set.",
)
def rewrite_command(artifacts: Path | None, data: Path | None, models: str | None) -> None:
    """Rewrite a set's ONNX graphs for speed, exactly, checked against its stored Keras outputs.

    The set is replaced whole once every rewritten file passes, or left as it was (training
    extra).
    """
    with training_extra():
        import logging

        from onnxdigits import Artifacts
        from onnxdigits.export.artifacts import rewrite_set
        from onnxdigits.export.data import load_mnist

        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
        logging.getLogger("onnxdigits").setLevel(logging.INFO)
        store = Artifacts(artifacts)
        if data is not None:
            _, (images, _) = load_mnist(data)
        else:
            images, _ = store.sample()
        keys = [key.strip() for key in models.split(",") if key.strip()] if models else None
        entries = rewrite_set(store.root, images, keys)
    if not entries:
        click.echo(f"nothing to rewrite in {store.root}", err=True)
    for entry in entries.values():
        parity = entry.parity.max_abs_diff if entry.parity else {}
        diffs = ", ".join(f"{k} {v:.1e}" for k, v in parity.items())
        click.echo(f"{store.root / entry.file}\t{', '.join(entry.rewrites)}\tmax abs diff: {diffs}")


def _set_editing_log() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("onnxdigits").setLevel(logging.INFO)


@click.command(
    "fit-classes", short_help="Add each digit's latent region to a set (training extra)."
)
@artifacts_option
@data_option
@device_option
def fit_classes_command(artifacts: Path | None, data: Path | None, device: str | None) -> None:
    """Fit each digit's region of every latent model's space into a set's manifest.

    The MNIST training digits are embedded by the set's own encoders; each digit's region is a
    Gaussian mixture (1 to 3 components, by BIC) fitted to the embeddings that the model's
    generator decodes into an image the set's classifier reads as that digit. Only the manifest
    changes (and a generator file already carrying its metadata); the set is replaced whole, or
    left as it was. `sample --digit D` then draws that digit (training extra).
    """
    with training_extra():
        from onnxdigits import Artifacts
        from onnxdigits.export.artifacts import add_class_regions
        from onnxdigits.export.data import load_mnist

        _set_editing_log()
        store = Artifacts(artifacts)
        (images, labels), _ = load_mnist(data)
        entries = add_class_regions(store.root, images, labels, device)
    for entry in entries.values():
        regions = entry.latent_classes
        sizes = ",".join(str(len(c)) for c in regions.digits) if regions else "none"
        click.echo(f"{store.root / entry.file}\tcomponents per digit: {sizes}")


@click.command(
    "write-metadata", short_help="Write each ONNX file's metadata into a set (training extra)."
)
@artifacts_option
def write_metadata_command(artifacts: Path | None) -> None:
    """Write into each ONNX file of a set what it is: producer, role, labels, input scale and
    polarity, latent prior, figures, class regions, licenses and model card.

    Each file must keep its graph and still match the set's stored Keras outputs; then the
    files and their new digests are written, the set replaced whole, or left as it was
    (training extra). `onnxdigits info` shows the metadata.
    """
    with training_extra():
        from onnxdigits import Artifacts
        from onnxdigits.export.artifacts import describe_set

        _set_editing_log()
        store = Artifacts(artifacts)
        entries = describe_set(store.root)
    if not entries:
        click.echo(f"every file of {store.root} already has its metadata", err=True)
    for entry in entries.values():
        click.echo(f"{store.root / entry.file}\tsha256 {entry.sha256}")
