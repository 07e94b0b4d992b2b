"""onnxdigits.export: build and fit the Keras models, export their submodels to ONNX.

This is the training side (the `train` extra), and the writing of a set for other servers
(`triton`, a Triton Inference Server model repository). Its names are imported on first use
(PEP 562), so that `load_mnist`, `evaluate` and `onnxdigits.export.triton`, which need only numpy
and the SDK, work on the plain install; the names that need Keras import it when first touched.
Importing `onnxdigits.export.models` registers the custom layers (`Sampling`, `VAE`) with
Keras; the exported submodels hold only built-in layers and load with
`keras.models.load_model(path, safe_mode=True)` without it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .artifacts import export, export_dir, load_submodels
    from .data import load_mnist
    from .errors import (
        AtolError,
        DataError,
        ExportError,
        LabelError,
        OutputMatchError,
        ShapeError,
        ValidationError,
    )
    from .evaluate import evaluate
    from .models import VAE, Sampling, build_ae, build_classifier, build_cvae, build_vae
    from .train import TrainConfig, train

# Each public name and the module that holds it.
_HOMES = {
    "AtolError": "errors",
    "DataError": "errors",
    "ExportError": "errors",
    "LabelError": "errors",
    "OutputMatchError": "errors",
    "Sampling": "models",
    "ShapeError": "errors",
    "TrainConfig": "train",
    "VAE": "models",
    "ValidationError": "errors",
    "build_ae": "models",
    "build_classifier": "models",
    "build_cvae": "models",
    "build_vae": "models",
    "evaluate": "evaluate",
    "export": "artifacts",
    "export_dir": "artifacts",
    "load_mnist": "data",
    "load_submodels": "artifacts",
    "train": "train",
}
__all__ = [
    "AtolError",
    "DataError",
    "ExportError",
    "LabelError",
    "OutputMatchError",
    "Sampling",
    "ShapeError",
    "TrainConfig",
    "VAE",
    "ValidationError",
    "build_ae",
    "build_classifier",
    "build_cvae",
    "build_vae",
    "evaluate",
    "export",
    "export_dir",
    "load_mnist",
    "load_submodels",
    "train",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
