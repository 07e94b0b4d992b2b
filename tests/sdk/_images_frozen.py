"""A frozen copy of the normaliser as it was on main at 84fe315 (sdk/images.py), kept so that
tests/sdk/test_images_exact.py can hold the faster one to its output bit for bit. Do not edit."""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError, check_count
from .specs import IMAGE_SHAPE

SIDE = IMAGE_SHAPE[0]
_BOX = 20  # MNIST fits each digit into a 20x20 box, then centres its mass in 28x28
_WORK = 1024  # larger images are reduced to this side first: the digit ends up 20 pixels tall
_GRID = 48  # the background is fitted on the image reduced to this side: light varies slowly
_FAINT = 0.05  # fainter than this (of the ink's level) after resampling is resampling's ripple
# MNIST's strokes, as a fraction of the box's side, measured as `_stroke_width` does: 8% of its
# digits are thinner than 0.08, 11% thicker than 0.14. Strokes outside are brought to the edge.
_STROKE = (0.08, 0.14)
_SHAPES = "(28, 28), (28, 28, 1), (N, 28, 28), (N, 28, 28, 1) or (N, 784)"
_ACCEPTED = (
    f"a numpy array of shape {_SHAPES}; a path, the bytes of an image file, a binary file "
    "object or a PIL image; or a list of these"
)

ImageSource = str | os.PathLike | bytes | BinaryIO | Image.Image
_SOURCES = (str, os.PathLike, bytes, Image.Image)
Images = np.ndarray | ImageSource | Sequence[ImageSource | np.ndarray]


def to_batch(images: Images) -> np.ndarray:
    """Bring images into the models' input form.

    Args:
        images: a numpy array of shape (28, 28), (28, 28, 1), (N, 28, 28), (N, 28, 28, 1) or
            (N, 784), uint8 (or another integer type) in 0..255 or floating in 0..1 (the dtype
            decides the scale, never the values), taken to be in MNIST form already; a PIL
            image, a path to an image file, its bytes or a binary file object open on it,
            brought to MNIST form (`load_image`); or a list or tuple of these, in any mix, whose
            images are joined in order.

    Returns:
        float32 array (N, 28, 28, 1) in [0, 1], C-contiguous.

    Raises:
        InputError: anything else, or an image that cannot be read or holds no ink, with the
            problem named (and, in a list, the item's index).
    """
    if _is_source(images):
        return _scale(_reshape(load_image(images)))  # type: ignore[arg-type]
    if isinstance(images, (list, tuple)):
        if not images:
            raise InputError(f"no images: an empty {type(images).__name__}; give at least one")
        if any(_is_source(item) for item in images) or _mixed(images):
            return np.concatenate([_item(index, item) for index, item in enumerate(images)])
    return _scale(_reshape(_as_array(images)))


def _is_source(item: object) -> bool:
    """Whether `item` is an image file (path, bytes, file object) or a PIL image."""
    return isinstance(item, _SOURCES) or (
        hasattr(item, "read") and not isinstance(item, np.ndarray)
    )


def _mixed(items: list[object] | tuple[object, ...]) -> bool:
    """Whether a list holds arrays of several shapes or dtypes, which numpy cannot stack as
    they are: such a list is read item by item."""
    if not any(isinstance(item, np.ndarray) for item in items):
        return False
    kinds = {(item.shape, item.dtype) if isinstance(item, np.ndarray) else None for item in items}
    return len(kinds) > 1


def _item(index: int, item: object) -> np.ndarray:
    """One item of a list of images, in the models' input form; errors say which item."""
    try:
        if isinstance(item, (list, tuple)):  # a nested list of pixels, not of images
            return _scale(_reshape(_as_array(item)))
        return to_batch(item)  # type: ignore[arg-type]
    except InputError as exc:
        raise InputError(f"images[{index}]: {exc}") from None


def _as_array(images: object) -> np.ndarray:
    try:
        array = np.asarray(images)
    except (ValueError, TypeError) as exc:
        raise InputError(f"images are not an array of pixels: {exc}") from None
    if array.dtype == object and array.ndim == 0:
        raise InputError(f"images cannot be a {type(images).__name__}; expected {_ACCEPTED}")
    return array


def _reshape(array: np.ndarray) -> np.ndarray:
    shape = array.shape
    if shape == (SIDE, SIDE):
        array = array[None]
    elif shape == (SIDE, SIDE, 1):
        array = array[None, ..., 0]
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
    """Read one image of a digit and bring it to MNIST form.

    Whatever its size (28x28 included): the image is made grey; its background is estimated
    and taken out, so that uneven light and a shaded page do not count as ink; the ink is what
    departs from the background, darker or lighter, and noise too faint to be ink is left out;
    strokes much thicker or thinner than MNIST's are brought into MNIST's range; and the ink's
    box is fitted into 20x20, keeping its aspect, then centred by its mass in 28x28, as MNIST's
    digits were.

    Args:
        source: a path, the file's bytes, a binary file object open on it, or a PIL image.

    Returns:
        uint8 array (28, 28), a light digit on black.

    Raises:
        InputError: a missing file, one that is not a readable image or is too large, or an
            image that holds no ink (blank or uniform), with the image named.
    """
    return _load(source, _name(source))


def _name(source: ImageSource) -> str:
    """What to call the image in a message: its path, or what it is."""
    if isinstance(source, bytes):
        return "image bytes"
    if isinstance(source, Image.Image):
        return f"the PIL image ({source.mode}, {source.size[0]}x{source.size[1]})"
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    name = getattr(source, "name", None)
    return f"the file object on {name}" if isinstance(name, str) else "the file object"


def _load(source: ImageSource, name: str) -> np.ndarray:
    """`load_image`, with the name that messages give the image."""
    image = source if isinstance(source, Image.Image) else _open(source, name)
    try:
        grey = _grey(image)
    except (OSError, SyntaxError, ValueError) as exc:  # a lazily opened PIL image decodes here
        raise InputError(f"{name} is not a readable image: {exc}") from None
    if grey.size == 0:
        raise InputError(f"{name} is empty: {image.size[0]}x{image.size[1]} pixels")
    digit = _digit(grey)
    if digit is None:
        raise InputError(
            f"{name} holds no digit: it is blank or uniform, nothing in it stands out from its "
            "background; give an image of one digit"
        )
    return digit


def _grey(image: Image.Image) -> np.ndarray:
    """The image upright and grey, float32 (H, W) in 0..255; transparent parts are background."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255
        grey = np.asarray(rgba.convert("L"), dtype=np.float32)
        # What shows through is background: put it behind the opaque part in the shade that the
        # opaque part stands out from (black behind white ink, white behind dark ink).
        weight = alpha.sum()
        ink = float((grey * alpha).sum() / weight) if weight else 0.0
        behind = 0.0 if ink > 127.5 else 255.0
        return grey * alpha + behind * (1 - alpha)
    if image.mode.startswith("I"):  # 16-bit grey: Pillow's conversion to "L" would clip it
        return np.clip(np.asarray(image, dtype=np.float32) / 257, 0, 255)
    if image.mode == "F":
        grey = np.nan_to_num(np.asarray(image, dtype=np.float32))
        return grey * 255 if grey.max() <= 1 else grey
    return np.asarray(image.convert("L"), dtype=np.float32)


def _open(source: str | os.PathLike | bytes | BinaryIO, name: str) -> Image.Image:
    """The image file, decoded; InputError naming what is wrong with it."""
    if isinstance(source, io.TextIOBase):
        raise InputError(f"{name} is open in text mode; open the image file with 'rb'")
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


def _digit(grey: np.ndarray) -> np.ndarray | None:
    """MNIST form of a grey image, float32 (H, W) in 0..255; None when it holds no ink."""
    grey = _resized(grey, min(max(grey.shape), _WORK))
    ink, threshold, noise = _ink(grey)
    mask = ink > threshold
    # A pixel above the threshold with no neighbour above it is noise, not a stroke.
    mask &= _neighbours(mask) >= 2
    if not mask.any():
        return None
    # The strokes' faint rim belongs to the digit too (MNIST's box holds every grey pixel);
    # fainter than three times the noise is background.
    floor = 3 * noise
    inked = _grown(mask, diagonal=True) & (ink > floor)
    level = max(float(np.percentile(ink[mask], 75)), threshold + 1)
    soft = np.where(inked, np.clip((ink - floor) / (level - floor), 0, 1), 0).astype(np.float32)
    cut = (threshold - floor) / (level - floor)  # the threshold on the soft scale
    rows, cols = _extent(inked)
    # The strokes are measured and mended where they are a few pixels wide and the 20-pixel
    # box is a whole multiple: the ink's box brought to at least 4x and at most 16x the box.
    side = int(np.clip(max(soft[rows, cols].shape), 4 * _BOX, 16 * _BOX))
    fine = np.clip(_resized(soft[rows, cols], side), 0, 1)
    fine = _stroke_mended(fine, cut)
    rows, cols = _extent(fine > _FAINT)
    return _centred(_resized(fine[rows, cols] * 255, _BOX))


def _resized(array: np.ndarray, side: int) -> np.ndarray:
    """A float32 (H, W) array resampled so that its longer side is `side`, keeping its aspect.

    Reducing averages each new pixel's area (no aliasing of noise or thin strokes); enlarging
    interpolates smoothly."""
    height, width = array.shape
    scale = side / max(height, width)
    if scale == 1:
        return array.astype(np.float32, copy=False)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    how = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
    image = Image.fromarray(array.astype(np.float32, copy=False))  # mode "F"
    return np.asarray(image.resize(size, how), dtype=np.float32)


def _ink(grey: np.ndarray) -> tuple[np.ndarray, float, float]:
    """How far each pixel departs from the background towards the ink, the level above which
    a pixel is ink, and the noise's scale.

    Returns:
        float32 (H, W) in grey levels (the background near 0, the ink positive whether it was
        darker or lighter than the page), the ink threshold and the noise's standard deviation.
    """
    residual = grey - _background(grey)
    noise = _noise(residual, _ring(*grey.shape))
    # The ink is whatever departs from the background by more than noise does; it is dark
    # where the departures below the background outweigh those above it.
    strong = 4 * noise
    above = float(residual[residual > strong].sum())
    below = float(-residual[residual < -strong].sum())
    ink = residual if above >= below else -residual
    return ink, max(_otsu(ink), 6 * noise), noise


def _noise(residual: np.ndarray, ring: np.ndarray) -> float:
    """The noise's standard deviation (robustly, from the median absolute departure) on the
    border, which is background however much of the middle the digit covers; at least one
    grey level."""
    return max(1.4826 * float(np.median(np.abs(residual[ring]))), 1.0)


def _background(grey: np.ndarray) -> np.ndarray:
    """The page under the digit: a smooth surface (quadratic in x and y) fitted to the grey
    levels robustly, starting from the border and leaving out whatever departs from it, so
    that light falling off across a page is taken out before anything is called ink."""
    small = _resized(grey, min(max(grey.shape), _GRID))
    basis = _quadratic(*small.shape)
    values = small.ravel().astype(np.float64)
    ring = _ring(*small.shape).ravel()
    # A robust start, which ink on the border cannot pull: the border pixels near its median.
    level = float(np.median(values[ring]))
    spread = max(1.4826 * float(np.median(np.abs(values[ring] - level))), 1.0)
    keep = ring & (np.abs(values - level) <= 3 * spread)
    for region in (ring, np.ones_like(ring)):  # the border first, then all that agrees with it
        for _ in range(5):
            coef = _least_squares(basis[keep], values[keep])
            residual = values - basis @ coef
            spread = max(1.4826 * float(np.median(np.abs(residual[keep]))), 1.0)
            update = region & (np.abs(residual) <= 3 * spread)
            if update.sum() < basis.shape[1] or (update == keep).all():
                break
            keep = update
    x, y = _coordinates(*grey.shape)
    x, y = x[None, :], y[:, None]  # the surface at every pixel, by broadcasting: (H, W)
    surface = coef[0] + coef[1] * x + coef[2] * y + coef[3] * x * x + coef[4] * x * y
    return (surface + coef[5] * y * y).astype(np.float32)


def _least_squares(basis: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The coefficients that fit `basis @ coef` to `values` best, by the normal equations (a
    6x6 system: far quicker than a general solver, and the terms are well scaled); a whisker
    of ridge keeps a fit to few pixels solvable."""
    gram = basis.T @ basis + 1e-9 * len(values) * np.eye(basis.shape[1])
    return np.linalg.solve(gram, basis.T @ values)


def _coordinates(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """x of each column's centre and y of each row's, both running over [-1, 1]."""
    return (np.arange(width) + 0.5) / width * 2 - 1, (np.arange(height) + 0.5) / height * 2 - 1


def _quadratic(height: int, width: int) -> np.ndarray:
    """The terms 1, x, y, x^2, xy, y^2 at each pixel's centre: (H*W, 6)."""
    x, y = np.meshgrid(*_coordinates(height, width))
    x, y = x.ravel(), y.ravel()
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


def _ring(height: int, width: int) -> np.ndarray:
    """bool (H, W): the outermost pixels (two deep where the image has room)."""
    depth = 2 if min(height, width) >= 16 else 1
    ring = np.ones((height, width), bool)
    ring[depth:-depth, depth:-depth] = False
    return ring


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold: the level that best splits the values into two classes."""
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-6:
        return hi
    bins = np.minimum(((values - lo) * (256 / (hi - lo))).astype(np.intp), 255)
    counts = np.bincount(bins.ravel(), minlength=256)
    edges = np.linspace(lo, hi, 257)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    total = weight[-1]
    mass = np.cumsum(counts * centres)
    below_mean = mass / np.maximum(weight, 1)
    above_mean = (mass[-1] - mass) / np.maximum(total - weight, 1)
    between = weight * (total - weight) * (below_mean - above_mean) ** 2
    return float(edges[1:][np.argmax(between)])


def _neighbours(mask: np.ndarray) -> np.ndarray:
    """int8 (H, W): how many pixels of the 3x3 square around each pixel, itself included, are
    set in a bool mask (outside it, none)."""
    padded = np.pad(mask, 1).astype(np.int8)
    height, width = mask.shape
    total = np.zeros((height, width), np.int8)
    for dy in range(3):
        for dx in range(3):
            total += padded[dy : dy + height, dx : dx + width]
    return total


def _extent(mask: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns of the box around the set pixels of a non-empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _stroke_width(shape: np.ndarray) -> float:
    """The mean width of the strokes of a bool mask, in pixels: twice its area over its outline
    (a stroke of width w and length l has area w*l and an outline of 2*l)."""
    outline = shape & (_neighbours(shape) < 9)
    return 2 * float(shape.sum()) / max(float(outline.sum()), 1.0)


def _stroke_mended(fine: np.ndarray, cut: float) -> np.ndarray:
    """Strokes much thinner or thicker than MNIST's, for the box they are in, brought to the
    edge of MNIST's range by adding or taking off a rim of one pixel at a time (the rims
    alternate between the 8 and the 4 neighbours, so that a stroke grows round, not square).

    Args:
        fine: float (H, W) in [0, 1], the digit's box at 4x to 16x the 20-pixel box.
        cut: the level above which a pixel is ink.
    """
    shape = fine > cut
    rows, cols = _extent(shape)
    side = max(shape[rows, cols].shape)
    lo, hi = (ratio * side for ratio in _STROKE)
    width = _stroke_width(shape)
    if lo <= width <= hi:
        return fine
    steps = round(abs(width - (lo if width < lo else hi)) / 2)  # a rim widens a stroke by 2
    if width < lo:
        fine = np.pad(fine, steps)
        for step in range(steps):
            fine = _grown(fine, diagonal=step % 2 == 0)
        return fine
    for step in range(steps):
        thinner = -_grown(-fine, diagonal=step % 2 == 0)
        if not (thinner > cut).any():  # never rub the digit out
            break
        fine = thinner
    return fine


def _grown(image: np.ndarray, *, diagonal: bool) -> np.ndarray:
    """Each pixel the largest of itself and its 8 neighbours (or its 4), the edge repeated."""
    padded = np.pad(image, 1, mode="edge")
    height, width = image.shape
    grown = image.copy()
    for dy in range(3):
        for dx in range(3):
            if diagonal or dy == 1 or dx == 1:
                np.maximum(grown, padded[dy : dy + height, dx : dx + width], out=grown)
    return grown


def _centred(digit: np.ndarray) -> np.ndarray:
    """The digit (float, at most 20x20) placed in 28x28 with its centre of mass in the middle."""
    mass = float(digit.sum()) or 1.0
    cy = float((digit.sum(axis=1) * np.arange(digit.shape[0])).sum()) / mass
    cx = float((digit.sum(axis=0) * np.arange(digit.shape[1])).sum()) / mass
    top = int(np.clip(round(SIDE / 2 - cy), 0, SIDE - digit.shape[0]))
    left = int(np.clip(round(SIDE / 2 - cx), 0, SIDE - digit.shape[1]))
    out = np.zeros((SIDE, SIDE), np.uint8)
    out[top : top + digit.shape[0], left : left + digit.shape[1]] = np.clip(np.round(digit), 0, 255)
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
    canvas = images  # a full grid is laid out in one copy; a partial one is padded first
    if count < rows * columns:
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
