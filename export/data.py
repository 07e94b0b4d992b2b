"""MNIST, from a path, `$ONNXDIGITS_MNIST` or Keras' cache."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .errors import DataError

MNIST_ENV = "ONNXDIGITS_MNIST"
KEYS = ("x_train", "y_train", "x_test", "y_test")
Split = tuple[np.ndarray, np.ndarray]


def load_mnist(path: str | os.PathLike[str] | None = None) -> tuple[Split, Split]:
    """Load MNIST in Keras' layout.

    Args:
        path: an npz with `x_train` (N, 28, 28) uint8, `y_train` (N,), `x_test`, `y_test`; None
            means `$ONNXDIGITS_MNIST`, else `keras.datasets.mnist.load_data()` (its cache or a
            download).

    Returns:
        ((x_train, y_train), (x_test, y_test)), images uint8 0..255, labels uint8.

    Raises:
        DataError: the file is missing or malformed, or no source is available.
    """
    path = path or os.environ.get(MNIST_ENV)
    if path is None:
        import keras

        try:
            (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
        except Exception as exc:  # Keras raises what urllib raises when it cannot download
            raise DataError(
                f"MNIST is not in Keras' cache and cannot be downloaded ({exc}); "
                f"pass --data PATH to an mnist.npz or set {MNIST_ENV}"
            ) from None
        return (x_train, y_train), (x_test, y_test)
    try:
        with np.load(Path(path), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in KEYS}
    except FileNotFoundError:
        raise DataError(f"no MNIST file at {path}; pass --data PATH or set {MNIST_ENV}") from None
    except KeyError as exc:
        raise DataError(f"{path} lacks {exc}; an MNIST npz holds {', '.join(KEYS)}") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {path} as an npz: {exc}") from None
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != x.shape[:1]:
            raise DataError(
                f"{path}: x_{split} {x.dtype}{x.shape} and y_{split} {y.shape} are not MNIST's "
                "(N, 28, 28) uint8 images with (N,) labels"
            )
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])
