"""Images in and out: the one normaliser that every model call goes through, and PNG output."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError, check_count
from .specs import IMAGE_SHAPE

SIDE = IMAGE_SHAPE[0]
_BOX = 20  # MNIST fits each digit into a 20x20 box, then centres its mass in 28x28
_SHAPES = "(28, 28), (N, 28, 28), (N, 28, 28, 1) or (N, 784)"

ImageSource = str | os.PathLike | bytes | Image.Image
_SOURCES = (str, os.PathLike, bytes, Image.Image)
Images = np.ndarray | ImageSource | Sequence[ImageSource] | Sequence[np.ndarray]


def to_batch(images: Images) -> np.ndarray:
    """Bring images into the models' input form.

    Args:
        images: a numpy array of shape (28, 28), (N, 28, 28), (N, 28, 28, 1) or (N, 784), uint8
            (or another integer type) in 0..255 or floating in 0..1 (the dtype decides the scale,
            never the values); a PIL image, a path to an image file or its bytes; or a sequence
            of those. Images that are not arrays are brought to MNIST form (`load_image`).

    Returns:
        float32 array (N, 28, 28, 1) in [0, 1], C-contiguous.

    Raises:
        InputError: anything else, with the problem named.
    """
    if isinstance(images, _SOURCES):
        array: np.ndarray = load_image(images)
    elif (
        isinstance(images, (list, tuple))
        and images
        and all(isinstance(i, _SOURCES) for i in images)
    ):
        array = np.stack([load_image(item) for item in images])
    else:
        array = _as_array(images)
    return _scale(_reshape(array))


def _as_array(images: object) -> np.ndarray:
    try:
        return np.asarray(images)
    except (ValueError, TypeError) as exc:
        raise InputError(f"images are not an array of pixels: {exc}") from None


def _reshape(array: np.ndarray) -> np.ndarray:
    shape = array.shape
    if shape == (SIDE, SIDE):
        array = array[None]
    elif array.ndim == 2 and shape[1] == SIDE * SIDE:
        array = array.reshape(-1, SIDE, SIDE)
    elif array.ndim == 4 and shape[1:] == (SIDE, SIDE, 1):
        array = array[..., 0]
    elif not (array.ndim == 3 and shape[1:] == (SIDE, SIDE)):
        raise InputError(f"images of shape {shape}; expected {_SHAPES}")
    if array.shape[0] == 0:
        raise InputError(f"no images: shape {shape}; give at least one")
    return array


def _scale(array: np.ndarray) -> np.ndarray:
    kind = array.dtype.kind
    if kind in "ui":
        if array.dtype != np.uint8:
            lo, hi = array.min(), array.max()
            if lo < 0 or hi > 255:
                raise InputError(
                    f"integer pixels must lie in 0..255; these span {lo}..{hi} ({array.dtype})"
                )
        scaled = np.divide(array, np.float32(255), dtype=np.float32)
    elif kind == "f":
        lo, hi = array.min(), array.max()
        if not (0.0 <= lo and hi <= 1.0):  # NaN fails both comparisons
            if np.isnan(lo) or np.isnan(hi):
                raise InputError("images contain NaN; every pixel must be a number in [0, 1]")
            if np.isinf(lo) or np.isinf(hi):
                raise InputError("images contain Inf; every pixel must be a number in [0, 1]")
            raise InputError(
                f"floating pixels must lie in [0, 1]; these span {lo:g}..{hi:g} "
                "(for 0..255 data pass a uint8 array)"
            )
        scaled = array.astype(np.float32, copy=False)
    else:
        raise InputError(
            f"images of dtype {array.dtype} cannot be pixels; "
            "expected uint8 (0..255) or floating (0..1)"
        )
    return np.ascontiguousarray(scaled[..., None])


def load_image(source: ImageSource) -> np.ndarray:
    """Read one image and bring it to MNIST form.

    The image is made grey; a dark digit on a light background is inverted; unless it is
    already 28x28, the digit is cropped, fitted into a 20x20 box and centred by its mass in
    28x28, as MNIST's digits were.

    Args:
        source: a path, the file's bytes, or a PIL image.

    Returns:
        uint8 array (28, 28), a light digit on black.

    Raises:
        InputError: a missing file, or one that is not a readable image or is too large.
    """
    name = "image bytes" if isinstance(source, bytes) else str(source)
    if isinstance(source, Image.Image):
        image = source
    else:
        image = _open(source, name)
    try:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            background = Image.new("RGBA", image.size, "white")
            image = Image.alpha_composite(background, image.convert("RGBA"))
        grey = np.asarray(image.convert("L"), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as exc:  # a lazily opened PIL image decodes here
        raise InputError(f"{name} is not a readable image: {exc}") from None
    if grey.size == 0:
        raise InputError(f"{name} is empty: {image.size[0]}x{image.size[1]} pixels")
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 127:
        grey = 255 - grey
    return grey if grey.shape == (SIDE, SIDE) else _fit(grey)


def _open(source: str | os.PathLike | bytes, name: str) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        # Pillow refuses twice its pixel limit and only warns above it; both are refused here,
        # by size, because a warnings filter would be process-wide and not thread-safe.
        limit = Image.MAX_IMAGE_PIXELS
        if limit is not None and image.size[0] * image.size[1] > limit:
            raise Image.DecompressionBombError(
                f"{image.size[0]}x{image.size[1]} pixels exceed Pillow's limit of {limit}"
            )
        image.load()
    except FileNotFoundError:
        raise InputError(f"no such image file: {name}") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{name} is too large to decode safely: {exc}") from None
    except IsADirectoryError:
        raise InputError(f"{name} is a directory, not an image file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name} is not a readable image: {exc}") from None
    return image


def _fit(grey: np.ndarray) -> np.ndarray:
    ink = grey > 0.25 * max(int(grey.max()), 1)
    if not ink.any():
        return np.zeros((SIDE, SIDE), np.uint8)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = Image.fromarray(grey[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    scale = _BOX / max(crop.size)
    size = (max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale)))
    digit = np.asarray(crop.resize(size, Image.Resampling.LANCZOS), dtype=np.float64)
    mass = digit.sum() or 1.0
    cy = (digit.sum(axis=1) * np.arange(digit.shape[0])).sum() / mass
    cx = (digit.sum(axis=0) * np.arange(digit.shape[1])).sum() / mass
    top = int(np.clip(round(SIDE / 2 - cy), 0, SIDE - digit.shape[0]))
    left = int(np.clip(round(SIDE / 2 - cx), 0, SIDE - digit.shape[1]))
    out = np.zeros((SIDE, SIDE), np.uint8)
    out[top : top + digit.shape[0], left : left + digit.shape[1]] = np.clip(digit, 0, 255)
    return out


def tile(images: np.ndarray, columns: int | None = None) -> np.ndarray:
    """Lay images out in a grid.

    Args:
        images: float array (N, 28, 28) or (N, 28, 28, 1).
        columns: images per row; None for a square-ish grid.

    Returns:
        array (28 * rows, 28 * columns) of the images' dtype; cells past N stay 0.

    Raises:
        InputError: images of another shape, none, or columns < 1.
    """
    images = _reshape(_as_array(images))
    count = len(images)
    columns = math.ceil(math.sqrt(count)) if columns is None else check_count("columns", columns)
    rows = math.ceil(count / columns)
    canvas = np.zeros((rows * columns, SIDE, SIDE), images.dtype)
    canvas[:count] = images
    return (
        canvas.reshape(rows, columns, SIDE, SIDE)
        .transpose(0, 2, 1, 3)
        .reshape(rows * SIDE, columns * SIDE)
    )


def to_image(array: np.ndarray, *, invert: bool = False) -> Image.Image:
    """Turn a 2-D array into a greyscale PIL image.

    Args:
        array: (H, W), floating in [0, 1] or uint8; a trailing channel axis of 1 is dropped.
        invert: dark digits on white instead of MNIST's white on black.

    Returns:
        A PIL image of mode "L".

    Raises:
        InputError: not 2-D, or values out of range.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 2:
        raise InputError(f"an image must be 2-D (H, W); got shape {array.shape}")
    if array.size == 0:
        raise InputError(f"an image needs pixels; got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.round(_scale(array[None])[0, ..., 0] * 255).astype(np.uint8)
    return Image.fromarray(255 - array if invert else array)


def save_png(array: np.ndarray, path: str | os.PathLike, *, invert: bool = False) -> Path:
    """Write a 2-D array as a greyscale PNG and return its path (see `to_image`)."""
    path = Path(path)
    to_image(array, invert=invert).save(path, format="PNG")
    return path
