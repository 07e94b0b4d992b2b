"""One tiny trained-and-exported set per session: every model, one epoch on shipped digits."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
pytest.importorskip("tensorflow", reason="the export tests need the train extra")

from onnxdigits.export.artifacts import export_dir  # noqa: E402
from onnxdigits.export.train import TrainConfig, train  # noqa: E402
from onnxdigits.specs import MODELS  # noqa: E402

TRAIN_IMAGES = 300


@pytest.fixture(scope="session")
def digits(sample: tuple[np.ndarray, np.ndarray]) -> dict[str, np.ndarray]:
    """The shipped sample split into a few hundred training digits and the rest as test digits."""
    images, labels = sample
    return {
        "x_train": images[:TRAIN_IMAGES],
        "y_train": labels[:TRAIN_IMAGES],
        "x_test": images[TRAIN_IMAGES:],
        "y_test": labels[TRAIN_IMAGES:],
    }


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, digits) -> tuple[Path, dict]:
    """Every model trained for one epoch, saved under run/keras."""
    run = tmp_path_factory.mktemp("run")
    config = TrainConfig(epochs=1, batch_size=64, validation=30, verbose=0)
    submodels = train(MODELS, digits["x_train"], digits["y_train"], config, run)
    return run, submodels


@pytest.fixture(scope="session")
def exported(trained, digits) -> tuple[Path, dict]:
    """The trained models exported into run/ (with class regions fitted to the training
    digits), with their manifest as JSON."""
    run, _ = trained
    train_digits = (digits["x_train"], digits["y_train"])
    return run, export_dir(
        run, digits["x_test"], digits["y_test"], train_digits=train_digits
    ).to_json()
