"""onnxdigits.export: build and fit the Keras models, export their submodels to ONNX.

This is the training side (the `train` extra). Importing it imports Keras and registers the
custom layers, so saved `.keras` files load with `keras.models.load_model(path, safe_mode=True)`.
"""

from .artifacts import export, export_dir, load_submodels
from .data import load_mnist
from .errors import AtolError, DataError, ExportError, OutputMatchError, ShapeError, ValidationError
from .evaluate import evaluate
from .models import VAE, Sampling, build_ae, build_classifier, build_cvae, build_vae
from .train import TrainConfig, train

__all__ = [
    "AtolError",
    "DataError",
    "ExportError",
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
