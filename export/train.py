"""Fitting the four models and saving their exportable submodels as `.keras` files."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
from onnxdigits import to_batch
from onnxdigits.specs import IMAGE_SHAPE, MODELS, SUBMODELS

from .errors import ExportError
from .models import BUILDERS

KERAS_DIR = "keras"
TRAINING_LOG = "training.json"
# Epochs of each model when TrainConfig.epochs is None: those of the shipped set.
EPOCHS = {"classifier": 40, "ae": 30, "vae": 30, "cvae": 30}


@dataclass(frozen=True)
class TrainConfig:
    """How to fit a model. The defaults are those of the shipped artifacts."""

    epochs: int | None = None  # None: each model's own, from EPOCHS
    batch_size: int = 128
    learning_rate: float = 1e-3
    seed: int = 0
    limit: int | None = None  # train on the first N training images
    validation: int = 5000  # hold out the last N (of those) to choose hyper-parameters on
    # Classifier augmentation, in a training wrapper that is not exported: random shifts of up
    # to this fraction of the side, rotations of up to this fraction of a turn, zooms in or out
    # of up to this fraction.
    shift: float = 0.1
    rotation: float = 0.03
    zoom: float = 0.1
    verbose: int = 2


def _augmentation(config: TrainConfig) -> list[keras.layers.Layer]:
    """The classifier's random augmentation layers; active in training only."""
    seed, fill = config.seed, "constant"  # each layer its own seed: independent draws
    layers: list[keras.layers.Layer] = []
    if config.rotation > 0:
        layers.append(keras.layers.RandomRotation(config.rotation, fill_mode=fill, seed=seed))
    if config.zoom > 0:
        layers.append(keras.layers.RandomZoom(config.zoom, fill_mode=fill, seed=seed + 1))
    if config.shift > 0:
        shift = config.shift
        layers.append(keras.layers.RandomTranslation(shift, shift, fill_mode=fill, seed=seed + 2))
    return layers


def _fit(
    models: dict[str, keras.Model],
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    config: TrainConfig,
    epochs: int,
) -> keras.callbacks.History:
    """Fit one model with Adam, its rate decayed to zero along a cosine over every step."""
    model = models[name]
    steps = epochs * int(np.ceil(len(x) / config.batch_size))
    optimizer = keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(config.learning_rate, steps)
    )
    if name == "classifier":
        augment = _augmentation(config)
        if augment:
            model = keras.Sequential(
                [keras.Input(IMAGE_SHAPE, name="image"), *augment, model],
                name="classifier_training",
            )
        model.compile(optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        target, val_target = y, y_val
    elif name == "ae":
        model.compile(optimizer, loss="mse")
        target, val_target = x, x_val
    else:  # the VAEs compute their own loss
        model.compile(optimizer)
        target, val_target = None, None
    return model.fit(
        x,
        target,
        batch_size=config.batch_size,
        epochs=epochs,
        verbose=config.verbose,
        validation_data=(x_val, val_target) if len(x_val) else None,
    )


def train(
    models: Iterable[str],
    x_train: np.ndarray,
    y_train: np.ndarray,
    config: TrainConfig = TrainConfig(),
    out: str | os.PathLike[str] | None = None,
    build_options: dict[str, dict[str, object]] | None = None,
) -> dict[str, keras.Model]:
    """Build and fit models, and save their exportable submodels.

    Args:
        models: any of "classifier", "ae", "vae", "cvae".
        x_train: uint8 images (N, 28, 28); y_train: labels (N,).
        config: epochs, batch size, learning rate, seed, limit and validation hold-out.
        out: if given, each submodel is saved as `out/keras/<key>.keras` and the histories in
            `out/keras/training.json`.
        build_options: keyword arguments for each model's builder, e.g. {"vae": {"hidden": [512]}}.

    Returns:
        The fitted submodels by manifest key ("classifier", "vae.encoder", ...).

    Raises:
        ExportError: an unknown model, or too few images.
    """
    models = list(models)
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise ExportError(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    if config.limit is not None:
        x_train, y_train = x_train[: config.limit], y_train[: config.limit]
    held = min(config.validation, len(x_train) // 10)
    x = to_batch(x_train)
    x_fit, y_fit, x_val, y_val = (
        x[: len(x) - held],
        y_train[: len(x) - held],
        x[len(x) - held :],
        y_train[len(x) - held :],
    )
    if len(x_fit) < config.batch_size // 4 or len(x_fit) == 0:
        raise ExportError(
            f"{len(x_fit)} training images are too few for batch size {config.batch_size}"
        )
    submodels: dict[str, keras.Model] = {}
    log: dict[str, object] = {}
    for name in models:
        keras.utils.set_random_seed(config.seed)
        options = dict((build_options or {}).get(name, {}))
        if name in ("vae", "cvae"):
            options.setdefault("seed", config.seed)
        built = BUILDERS[name](**options)
        epochs = config.epochs or EPOCHS[name]
        history = _fit(built, name, x_fit, y_fit, x_val, y_val, config, epochs)
        log[name] = {
            "config": {**asdict(config), "epochs": epochs},
            "images": len(x_fit),
            "validation": held,
            "build": options,
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        }
        submodels.update({key: model for key, model in built.items() if key in SUBMODELS})
    if out is not None:
        save(submodels, Path(out) / KERAS_DIR, log)
    return submodels


def save(submodels: dict[str, keras.Model], directory: Path, log: dict[str, object]) -> None:
    """Save each submodel as `<key>.keras`, each file replaced whole, and the training log."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, model in submodels.items():
        partial = directory / f".{key}.partial.keras"
        model.save(partial)
        os.replace(partial, directory / f"{key}.keras")
    previous = directory / TRAINING_LOG
    merged = json.loads(previous.read_text()) if previous.exists() else {}
    merged.update(log)
    partial_log = directory / f".{TRAINING_LOG}.partial"
    partial_log.write_text(json.dumps(merged, indent=2) + "\n")
    os.replace(partial_log, previous)
