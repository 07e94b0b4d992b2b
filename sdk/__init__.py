"""onnxdigits: Keras MNIST models exported to ONNX, run with onnxruntime, CUDA first.

`import onnxdigits` is the SDK. It never imports TensorFlow or Keras; training and export live
in `onnxdigits.export`.
"""

from .errors import ArtifactError, DeviceError, InputError, OnnxDigitsError
from .images import load_image, save_png, tile, to_batch, to_image
from .manifest import Artifacts, ArtifactsLike
from .models import Classifier, Encoder, Generator, grid_points, reconstruct

__version__ = "0.1.0"

__all__ = [
    "Artifacts",
    "ArtifactsLike",
    "ArtifactError",
    "Classifier",
    "DeviceError",
    "Encoder",
    "Generator",
    "grid_points",
    "InputError",
    "OnnxDigitsError",
    "load_image",
    "reconstruct",
    "save_png",
    "tile",
    "to_batch",
    "to_image",
]
