"""Fitting the models of a recipe and saving their exportable submodels as `.keras` files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import keras
import numpy as np
from onnxdigits import to_batch
from onnxdigits.errors import unknown_model
from onnxdigits.files import write_beside
from onnxdigits.specs import IMAGE_SHAPE, MODELS, SUBMODELS

from .augment import KINDS, Augmented, Mix
from .errors import ExportError
from .models import RECIPES

KERAS_DIR = "keras"
TRAINING_LOG = "training.json"
OPTIMIZERS = {
    "adam": keras.optimizers.Adam,
    "adadelta": keras.optimizers.Adadelta,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}


@dataclass(frozen=True)
class Fitting:
    """How a recipe fits one model."""

    epochs: int
    batch_size: int
    optimizer: str  # a key of OPTIMIZERS
    learning_rate: float
    cosine: bool  # decay the rate to zero along a cosine over every step
    loss: str | None  # a Keras loss; None for the VAEs, which compute their own
    # Classifier augmentation, in a training wrapper that is not exported: random shifts of up
    # to this fraction of the side, rotations of up to this fraction of a turn, zooms in or out
    # of up to this fraction.
    shift: float = 0.0
    rotation: float = 0.0
    zoom: float = 0.0
    # The VAEs: the weight of the KL term in the loss (beta; 1 for the plain negative ELBO).
    kl_weight: float = 1.0
    # The classifier's damage (`export.augment`): above 0, the fraction of each batch that gets
    # one kind of damage, and `second` the fraction of those that get a second. The shifts,
    # rotations and zooms above are then drawn in numpy too, in the same batch generator.
    damage: float = 0.0
    second: float = 0.0


FITTINGS: dict[str, dict[str, Fitting]] = {
    # The shipped set's: Adam, cosine-decayed, each model's own epochs, augmented digits.
    "shipped": {
        "classifier": Fitting(
            40, 128, "adam", 1e-3, True, "sparse_categorical_crossentropy", 0.1, 0.03, 0.1
        ),
        "ae": Fitting(30, 128, "adam", 1e-3, True, "mse"),
        "vae": Fitting(30, 128, "adam", 1e-3, True, None),
        "cvae": Fitting(30, 128, "adam", 1e-3, True, None),
    },
    # The notes' own epochs where they give them (1 for the CNN, 10 for the AE), else the Keras
    # examples': 50 from variational_autoencoder.py, 5 from variational_autoencoder_deconv.py,
    # both at batch 100, and the deconv example's RMSprop. The notes named their optimizers, so
    # they ran at Keras 2's defaults: Adadelta 1.0 (Keras 3's Adadelta starts at 1e-3 and
    # barely moves in an epoch), SGD 0.01, RMSprop 1e-3.
    "notes": {
        "classifier": Fitting(1, 128, "adadelta", 1.0, False, "categorical_crossentropy"),
        "ae": Fitting(10, 128, "sgd", 0.01, False, "binary_crossentropy"),
        "vae": Fitting(50, 100, "adadelta", 1.0, False, None),
        "cvae": Fitting(5, 100, "rmsprop", 1e-3, False, None),
    },
}
# The world's: the shipped set's, with the classifier also trained on damaged digits, half of
# each batch, as they come from pens, scanners, cameras and pages (`export.augment`).
FITTINGS["world"] = {
    **FITTINGS["shipped"],
    "classifier": replace(FITTINGS["shipped"]["classifier"], epochs=50, damage=0.5, second=0.3),
}
# Epochs of each model in the default recipe, the shipped set's.
EPOCHS = {model: fitting.epochs for model, fitting in FITTINGS["shipped"].items()}


@dataclass(frozen=True)
class TrainConfig:
    """Which recipe fits the models, and what to change in it. None takes the recipe's value."""

    recipe: str = "shipped"  # a key of FITTINGS
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    seed: int = 0
    limit: int | None = None  # train on the first N training images
    validation: int = 5000  # hold out the last N (of those) to choose hyper-parameters on
    shift: float | None = None  # the classifier's augmentation (see Fitting)
    rotation: float | None = None
    zoom: float | None = None
    damage: float | None = None
    kl_weight: float | None = None  # the VAEs' (see Fitting)
    verbose: int = 2

    def fitting(self, model: str) -> Fitting:
        """The recipe's fitting of `model`, with this config's values where they are not None.

        Raises:
            ExportError: an unknown recipe.
        """
        if self.recipe not in FITTINGS:
            raise ExportError(f"unknown recipe {self.recipe!r}; choose from {', '.join(FITTINGS)}")
        names = ["epochs", "batch_size", "learning_rate"]
        if model == "classifier":  # the only model that is augmented
            names += ["shift", "rotation", "zoom", "damage"]
        if model in ("vae", "cvae"):
            names.append("kl_weight")
        changes = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
        return replace(FITTINGS[self.recipe][model], **changes)


def augmentation(fitting: Fitting, seed: int) -> list[keras.layers.Layer]:
    """The classifier's random augmentation layers; active in training only."""
    fill = "constant"  # each layer its own seed: independent draws
    layers: list[keras.layers.Layer] = []
    if fitting.rotation > 0:
        layers.append(keras.layers.RandomRotation(fitting.rotation, fill_mode=fill, seed=seed))
    if fitting.zoom > 0:
        layers.append(keras.layers.RandomZoom(fitting.zoom, fill_mode=fill, seed=seed + 1))
    if fitting.shift > 0:
        shift = fitting.shift
        layers.append(keras.layers.RandomTranslation(shift, shift, fill_mode=fill, seed=seed + 2))
    return layers


def _fit(
    model: keras.Model,
    name: str,
    fitting: Fitting,
    x: np.ndarray,
    y: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    seed: int,
    verbose: int,
) -> keras.callbacks.History:
    """Fit one model as `fitting` says: `name` is the model it is ("classifier", "ae", ...)."""
    steps = fitting.epochs * int(np.ceil(len(x) / fitting.batch_size))
    rate = fitting.learning_rate
    optimizer = OPTIMIZERS[fitting.optimizer](
        keras.optimizers.schedules.CosineDecay(rate, steps) if fitting.cosine else rate
    )
    x_val, y_val = validation
    if name == "classifier" and fitting.damage > 0:
        if fitting.loss == "categorical_crossentropy":
            raise ExportError("damage needs integer labels: a sparse loss")
        model.compile(optimizer, loss=fitting.loss, metrics=["accuracy"])
        mix = Mix(fitting.damage, fitting.second, fitting.shift, fitting.rotation, fitting.zoom)
        return model.fit(
            Augmented(x, y, fitting.batch_size, mix, seed),
            epochs=fitting.epochs,
            verbose=verbose,
            validation_data=(x_val, y_val) if len(x_val) else None,
        )
    if name == "classifier":
        augment = augmentation(fitting, seed)
        if augment:
            model = keras.Sequential(
                [keras.Input(IMAGE_SHAPE, name="image"), *augment, model],
                name="classifier_training",
            )
        if fitting.loss == "categorical_crossentropy":  # one-hot targets, as in the notes
            y, y_val = (keras.utils.to_categorical(labels, 10) for labels in (y, y_val))
        model.compile(optimizer, loss=fitting.loss, metrics=["accuracy"])
        target, val_target = y, y_val
    elif name == "ae":
        model.compile(optimizer, loss=fitting.loss)
        target, val_target = x, x_val
    else:  # the VAEs compute their own loss
        model.kl_weight = fitting.kl_weight
        model.compile(optimizer)
        target, val_target = None, None
    return model.fit(
        x,
        target,
        batch_size=fitting.batch_size,
        epochs=fitting.epochs,
        verbose=verbose,
        validation_data=(x_val, val_target) if len(x_val) else None,
    )


def _accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray) -> float:
    probs = model.predict(images, batch_size=1024, verbose=0)
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def _fit_variant(
    built: dict[str, keras.Model],
    fitting: Fitting,
    x: np.ndarray,
    y: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray],
    measure: tuple[str, np.ndarray, np.ndarray],
    seed: int,
    verbose: int,
) -> dict[str, Any]:
    """Fit the notes' 1080 -> 10 variant after the classifier, its shared layers frozen.

    The variant is built from the classifier's own convolution layers, so fitting it as the
    notes did would change the classifier too; frozen, only its head learns. Both models'
    accuracies before and after show it.
    """
    original, variant = built["classifier"], built["classifier.single"]
    shared = [layer for layer in variant.layers if any(layer is own for own in original.layers)]
    split, images, labels = measure

    def accuracies() -> dict[str, float]:
        return {
            "classifier": _accuracy(original, images, labels),
            "classifier.single": _accuracy(variant, images, labels),
        }

    before = accuracies()
    for layer in shared:
        layer.trainable = False
    try:
        history = _fit(variant, "classifier", fitting, x, y, validation, seed, verbose)
    finally:
        for layer in shared:  # the classifier is saved as it was trained
            layer.trainable = True
    return {
        "model": variant.name,
        "parameters": int(variant.count_params()),
        "frozen": [layer.name for layer in shared],
        "accuracy_on": split,
        "images": int(len(images)),
        "accuracy_before": before,
        "accuracy_after": accuracies(),
        "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
    }


def train(
    models: Iterable[str],
    x_train: np.ndarray,
    y_train: np.ndarray,
    config: TrainConfig = TrainConfig(),
    out: str | os.PathLike[str] | None = None,
    build_options: dict[str, dict[str, object]] | None = None,
    test: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, keras.Model]:
    """Build and fit models as a recipe says, and save their exportable submodels.

    Args:
        models: any of "classifier", "ae", "vae", "cvae".
        x_train: uint8 images (N, 28, 28); y_train: labels (N,).
        config: the recipe ("shipped" or "notes") and what to change in it: epochs, batch size,
            learning rate, augmentation; the seed, limit and validation hold-out.
        out: if given, each submodel is saved as `out/keras/<key>.keras` and the histories in
            `out/keras/training.json`.
        build_options: keyword arguments for each model's builder, e.g. {"vae": {"hidden": [512]}}.
        test: uint8 test images and labels, for the notes recipe's log of its classifiers'
            accuracies (the validation images stand in when None).

    Returns:
        The fitted submodels by manifest key ("classifier", "vae.encoder", ...).

    Raises:
        ExportError: an unknown model or recipe, or too few images.
    """
    models = list(models)
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise ExportError(unknown_model(unknown, MODELS))
    fittings = {name: config.fitting(name) for name in models}
    if config.limit is not None:
        x_train, y_train = x_train[: config.limit], y_train[: config.limit]
    held = min(config.validation, len(x_train) // 10)
    x = to_batch(x_train)
    x_fit, y_fit = x[: len(x) - held], y_train[: len(x) - held]
    validation = (x[len(x) - held :], y_train[len(x) - held :])
    measure = (
        ("test", to_batch(test[0]), test[1]) if test is not None else ("validation", *validation)
    )
    submodels: dict[str, keras.Model] = {}
    log: dict[str, object] = {}
    for name in models:
        fitting = fittings[name]
        if len(x_fit) == 0 or len(x_fit) < fitting.batch_size // 4:
            raise ExportError(
                f"{len(x_fit)} training images are too few for batch size {fitting.batch_size}"
            )
        keras.utils.set_random_seed(config.seed)
        options = dict((build_options or {}).get(name, {}))
        if name in ("vae", "cvae"):
            options.setdefault("seed", config.seed)
        built = RECIPES[config.recipe][name](**options)
        history = _fit(
            built[name], name, fitting, x_fit, y_fit, validation, config.seed, config.verbose
        )
        entry: dict[str, Any] = {
            "recipe": config.recipe,
            "keras_backend": keras.backend.backend(),
            "config": {**asdict(config), **asdict(fitting)},
            "parameters": int(built[name].count_params()),
            "images": len(x_fit),
            "validation": held,
            "build": options,
            **({"damage_kinds": list(KINDS)} if fitting.damage > 0 else {}),
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        }
        if "classifier.single" in built:
            entry["variant"] = _fit_variant(
                built, fitting, x_fit, y_fit, validation, measure, config.seed, config.verbose
            )
        log[name] = entry
        submodels.update({key: model for key, model in built.items() if key in SUBMODELS})
    if out is not None:
        save(submodels, Path(out) / KERAS_DIR, log)
    return submodels


def save(submodels: dict[str, keras.Model], directory: Path, log: dict[str, object]) -> None:
    """Save each submodel as `<key>.keras`, each file replaced whole, and the training log."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, model in submodels.items():
        with write_beside(directory / f"{key}.keras") as staging:
            model.save(staging)
    previous = directory / TRAINING_LOG
    merged = json.loads(previous.read_text()) if previous.exists() else {}
    merged.update(log)
    with write_beside(previous) as staging:
        staging.write_text(json.dumps(merged, indent=2) + "\n")
