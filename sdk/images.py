"""Images in and out: the one normaliser that every model call goes through, and PNG output."""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from .errors import ImageTooLargeError, InputError, check_count
from .files import open_regular
from .specs import IMAGE_SHAPE

__all__ = [
    "FORMATS",
    "MAX_PIXELS",
    "SIDE",
    "ImageSource",
    "Images",
    "image_pixels",
    "load_image",
    "save_png",
    "tile",
    "to_batch",
    "to_image",
]

SIDE = IMAGE_SHAPE[0]
_BOX = 20  # MNIST fits each digit into a 20x20 box, then centres its mass in 28x28
_WORK = 1024  # larger images are reduced to this side first: the digit ends up 20 pixels tall
_GRID = 48  # the background is fitted on the image reduced to this side: light varies slowly
_BETWEEN = 0.2  # at most this share of the shades lies between two regions of inverted light
_STEP = 0.4  # and the step at their edge is at least this share of the image's range
_ORIENTATION = 0x0112  # EXIF's tag for how to turn the stored pixels upright
_STEPS = np.arange(257, dtype=np.float64)
_STEPS.flags.writeable = False
_BLOCK = 8192  # pixels a block, where a whole page would need large temporaries
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

    Files of the formats in `FORMATS` are read, up to `MAX_PIXELS` pixels as decoded (a JPEG
    decodes at a reduced scale where it is larger than the normaliser needs, so a larger one
    can pass); an image larger than the normaliser's working size is reduced as it is read.

    Args:
        source: a path (of a regular file), the file's bytes, a binary file object open on it,
            or a PIL image.

    Returns:
        uint8 array (28, 28), a light digit on black.

    Raises:
        InputError: a missing file, one that is empty, not a regular file, not a readable
            image of those formats, or larger than `MAX_PIXELS`; or an image in which nothing
            stands out as strokes; always with the image named.
    """
    return _load(source, _name(source))


def image_pixels(source: ImageSource) -> int:
    """How many pixels reading an image will decode, from its header alone: nothing is decoded.

    For a budget over several images (a request's, say) before any of them is read. A JPEG
    larger than the normaliser needs is decoded at a reduced scale, so its count can be less
    than its width times its height; it is what `load_image` will hold.

    Args:
        source: as for `load_image`. A file object is left where it was (one that cannot
            seek is read whole, as Pillow would).

    Returns:
        The decoded width times height.

    Raises:
        InputError: a missing file, or one that is empty, not a regular file or not a readable
            image of the formats in `FORMATS`; or one too large to open at all (an ICO file
            with a frame beyond `MAX_PIXELS`, which Pillow decodes as it opens it, or any image
            beyond Pillow's own refusal, 179 megapixels); always with the image named.
    """
    name = _name(source)
    if isinstance(source, Image.Image):
        return source.size[0] * source.size[1]
    with _header(source, name) as image:
        return image.size[0] * image.size[1]


def _name(source: ImageSource) -> str:
    """What to call the image in a message: its path, or what it is (never an object's repr,
    which holds a heap address, so that the same bad input always gets the same words)."""
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
    if isinstance(source, Image.Image):
        _check_budget(source.size, name)
        image = source
    else:
        image = _open(source, name)
    try:
        grey = _grey(_reduced(image))
    except Exception as exc:  # a lazily opened PIL image decodes here; Exception, so ^C passes
        raise InputError(f"{name} is not a readable image: {_reason(exc)}") from None
    if grey.size == 0:
        raise InputError(f"{name} is empty: {image.size[0]}x{image.size[1]} pixels")
    try:
        digit = _digit(grey)
    except InputError:
        raise
    except Exception as exc:  # whatever the maths meets in a hostile file is the file's fault
        raise InputError(f"{name} could not be read as a digit: {_reason(exc)}") from None
    if digit is None:
        raise InputError(
            f"{name} holds no digit: nothing in it stands out from its background as strokes "
            "(it is blank, uniform or noise only); give an image of one digit"
        )
    return digit


def _grey(image: Image.Image) -> np.ndarray:
    """The image upright and grey, float32 (H, W) in 0..255; transparent parts are background."""
    if image.getexif().get(_ORIENTATION, 1) != 1:  # else exif_transpose would only copy it
        image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255
        grey = np.asarray(rgba.convert("L"), dtype=np.float32)
        # What shows through is background: put it behind the opaque part in the shade that the
        # opaque part stands out from (black behind white ink, white behind dark ink).
        weight = alpha.sum()
        opaque = grey * alpha
        ink = float(opaque.sum() / weight) if weight else 0.0
        behind = 0.0 if ink > 127.5 else 255.0
        through = np.subtract(1, alpha, out=alpha)
        through *= behind
        opaque += through
        return opaque
    if image.mode == "L":
        return np.asarray(image, dtype=np.float32)
    if image.mode.startswith("I") or image.mode == "F":  # Pillow's "L" would clip or wrap them
        return _levels(np.asarray(image, dtype=np.float32), image.mode)
    return np.asarray(image.convert("L"), dtype=np.float32)


def _levels(values: np.ndarray, mode: str) -> np.ndarray:
    """Grey levels 0..255 from a 16- or 32-bit integer image ("I", "I;16"...) or a floating one
    ("F"): 16-bit data is scaled from 0..65535, floating data from 0..1 or taken as 0..255 when
    it lies there; any other range is stretched onto 0..255, which keeps the contrast that the
    normaliser looks at.

    Raises:
        InputError: NaN or infinite pixels (without the image's name; the caller adds it).
    """
    finite = np.isfinite(values)
    if not finite.all():
        count = int(values.size - np.count_nonzero(finite))
        raise InputError(f"{count} of its pixels are NaN or infinite; pixels must be numbers")
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode == "F" and lo >= 0 and hi <= 1:
        return values * 255
    if mode != "F" and lo >= 0 and hi <= 65535:
        return values / 257
    if lo >= 0 and hi <= 255:
        return values
    span = hi - lo
    if span == 0:
        return np.zeros_like(values)
    # In float64: the span of float32 extremes overflows float32.
    return ((values.astype(np.float64) - lo) * (255 / span)).astype(np.float32)


# Formats read: those that photos, scans and drawings come in. Pillow opens some forty more,
# EPS through Ghostscript among them; every other format is refused unread.
FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO")
# The most pixels an image may decode to: 10 megapixels, a 4K screenshot (8.3) or a page scanned
# at 300 dpi (8.7) with room to spare; a larger JPEG, as photos come, decodes at a reduced scale
# and passes. The normaliser works at 1,024 pixels on the longer side, so nothing more is needed,
# and reading that many costs at most about 160 MB (a WebP; a PNG about 90). Pillow's own limit,
# 89 megapixels, let a PNG of 392 KB take 2.8 GB.
MAX_PIXELS = 10_000_000
# A transposition for each EXIF orientation, as `ImageOps.exif_transpose` does it.
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ADDRESS = re.compile(r"\s*<[^<>]*\bat 0x[0-9a-fA-F]+>")  # an object's repr: differs per run


def _open(source: str | os.PathLike | bytes | BinaryIO, name: str) -> Image.Image:
    """The image file, decoded within the pixel budget; InputError naming what is wrong."""
    with _header(source, name) as image:
        _check_budget(image.size, name)
        image.load()
        image.getexif()  # parsed now: a TIFF's is read from the file, which is closed after
    return image


@contextlib.contextmanager
def _header(source: str | os.PathLike | bytes | BinaryIO, name: str) -> Iterator[Image.Image]:
    """The image file opened on its header, nothing decoded yet, and a JPEG set to decode at the
    smallest scale that still gives the normaliser its working size; a file opened here is
    closed after, and a caller's file object is left where it was."""
    if isinstance(source, io.TextIOBase):
        raise InputError(f"{name} is open in text mode; open the image file with 'rb'")
    with contextlib.ExitStack() as stack, _errors(name):
        if isinstance(source, bytes):
            file: BinaryIO = io.BytesIO(source)
        elif isinstance(source, (str, os.PathLike)):
            file = stack.enter_context(open_regular(source))
        elif getattr(source, "seekable", lambda: False)():
            file = source
            stack.callback(file.seek, file.tell())
        else:  # Pillow reads such a stream whole too
            file = io.BytesIO(source.read())
        file.seek(0)  # where Pillow starts reading, whatever the position
        magic = file.read(4)
        if not magic:
            raise InputError(f"{name} is not a readable image: the file is empty")
        if magic == b"\x00\x00\x01\x00":  # an ICO file, which Pillow decodes as it opens it
            for size in _ico_sizes(file):
                _check_budget(size, name)
        file.seek(0)
        image = Image.open(file, formats=FORMATS)
        if image.format == "JPEG" or image.format == "MPO":
            width, height = image.size
            scale = _WORK / max(width, height)
            if scale < 1:
                image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
        yield image


@contextlib.contextmanager
def _errors(name: str) -> Iterator[None]:
    """Turn whatever opening or decoding an image file raises into InputError naming it."""
    try:
        yield
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"no such image file: {name}") from None
    except IsADirectoryError:
        raise InputError(f"{name} is a directory, not an image file") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(f"{name} is too large to decode safely: {_reason(exc)}") from None
    except UnidentifiedImageError:
        raise InputError(
            f"{name} is not a readable image: not a file of the formats read here "
            f"({', '.join(FORMATS)}), or a damaged one"
        ) from None
    except MemoryError:
        raise InputError(
            f"{name} is not a readable image: it needs more memory than there is"
        ) from None
    except Exception as exc:  # Pillow's plugins raise many kinds on a hostile file; ^C passes
        raise InputError(f"{name} is not a readable image: {_reason(exc)}") from None


def _ico_sizes(file: BinaryIO) -> list[tuple[int, int]]:
    """The sizes of an ICO file's frames as their own headers give them (a frame is a PNG or a
    BMP, which may be larger than the icon's directory says)."""
    file.seek(4)
    count = int.from_bytes(file.read(2), "little")
    entries = file.read(16 * count)
    sizes = []
    for index in range(len(entries) // 16):
        offset = int.from_bytes(entries[16 * index + 12 : 16 * index + 16], "little")
        file.seek(offset)
        head = file.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n":  # IHDR's width and height, big-endian
            sizes.append((int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")))
        elif int.from_bytes(head[:4], "little") == 12:  # BITMAPCOREHEADER: 16-bit sides
            sizes.append((int.from_bytes(head[4:6], "little"), int.from_bytes(head[6:8], "little")))
        elif len(head) >= 12:  # BITMAPINFOHEADER and later: signed 32-bit sides
            width = abs(int.from_bytes(head[4:8], "little", signed=True))
            sizes.append((width, abs(int.from_bytes(head[8:12], "little", signed=True))))
    return sizes


def _check_budget(size: tuple[int, int], name: str) -> None:
    """Refuse an image that decodes to more than `MAX_PIXELS` pixels."""
    pixels = size[0] * size[1]
    if pixels > MAX_PIXELS:
        raise ImageTooLargeError(
            f"{name} is too large to decode safely: {size[0]}x{size[1]} pixels "
            f"({pixels / 1e6:.1f} megapixels as decoded); images of at most "
            f"{MAX_PIXELS / 1e6:.1f} megapixels are read (a digit needs far fewer: scale it down)"
        )


def _reduced(image: Image.Image) -> Image.Image:
    """An image larger than the normaliser's working size brought down to it as `_resized`
    would (area averaging, with transparency premultiplied), and turned upright; smaller
    images as they are. Reducing the decoded image first, rather than its grey levels, keeps a
    large image's cost at a few bytes per pixel."""
    width, height = image.size
    if max(width, height) <= _WORK:
        return image
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    if image.mode == "PA" or "transparency" in image.info:
        image = image.convert("RGBA")  # a palette or a colour key cannot be averaged
    elif image.mode in ("1", "P"):
        image = image.convert("L")  # Pillow resizes these by nearest neighbour only
    scale = _WORK / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    reduced = image.resize(size, Image.Resampling.BOX)
    reduced.info = {}  # upright below, so no orientation must be applied again
    method = _UPRIGHT.get(orientation) if isinstance(orientation, int) else None
    return reduced if method is None else reduced.transpose(method)


def _reason(exc: BaseException) -> str:
    """An exception's message without heap addresses, or its type when it has none."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _ADDRESS.sub("", str(exc)).strip() or type(exc).__name__


def _digit(grey: np.ndarray) -> np.ndarray | None:
    """MNIST form of a grey image (float32 (H, W) in 0..255): uint8 (28, 28); None when it
    holds no ink.

    A 28x28 image whose ink is already centred as MNIST's is (`_as_it_is`) is kept as it is
    (turned light on dark if need be): the classifier is trained on damage as it comes
    at that size (noise, clutter, inverted bands, fog, blur), and rebuilding such an image
    from its thresholded ink loses more than it mends (measured on onnxdigits.bench.damage's
    damage: outlines 0.79 rebuilt against 0.88 kept, inverted bands 0.71 against 0.96, fog
    0.81 against 0.99).
    """
    native = grey.shape == (SIDE, SIDE)
    if _AS_IT_IS and native:
        as_it_is = _as_it_is(grey)
        if as_it_is is not None:
            # Kept: the rebuilding is needed only to learn whether it finds strokes, and where
            # it finds none the image must also show a digit's share of ink (else refused).
            if _strokes(grey.copy()) is not None:
                return as_it_is
            return _as_it_is(grey, strokes=True)
    found = _strokes(grey)
    return None if found is None else _formed(*found, native=native)


# A 28x28 image whose ink's centre of mass lies within this many pixels of the middle is in
# MNIST's form already (MNIST centred each digit's mass; a digit pushed into a corner of 28x28
# is 7 or more pixels off). False: every image rebuilt (the tests of the rebuilding itself).
_AS_IT_IS = True
_CENTRED = 5.0
_STROKE_SHARE = (0.04, 0.4)
_MIDDLE = SIDE / 2  # where `_centred` puts a digit's mass
_ROWS, _COLS = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)


def _as_it_is(grey: np.ndarray, *, strokes: bool = False) -> np.ndarray | None:
    """A 28x28 grey image (float32 0..255) in MNIST's form, light ink on black, uint8 (28, 28):
    as it is, or turned over where an even light border shows dark ink (a dark digit on a
    light page); None where its ink is not centred, and the image is rebuilt. `strokes`: the
    rebuilding found none, so the image must show a digit's share of ink to be one."""
    border = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    background = float(np.median(border))
    departure = grey - np.float32(background)
    ink = np.abs(departure, dtype=np.float64)
    weight = float(ink.sum())
    if weight == 0:
        return None
    row, col = float((ink * _ROWS).sum()) / weight, float((ink * _COLS).sum()) / weight
    if math.hypot(row - _MIDDLE, col - _MIDDLE) > _CENTRED:
        return None
    strong = ink > 32
    # Where the rebuilding found no strokes (fog or noise over them), the image is a digit only
    # if what departs from the page covers a digit's share of it, not most of it as noise does.
    if strokes and not _STROKE_SHARE[0] <= float(np.mean(ink > 48)) <= _STROKE_SHARE[1]:
        return None
    even = float(np.mean(np.abs(border - background) < 32)) >= 0.9
    if even and strong.any() and float(departure[strong].mean()) < 0:
        grey = 255 - grey
    return np.minimum(np.maximum(np.rint(grey), 0), 255).astype(np.uint8)


def _strokes(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float] | None:
    """The strokes of a grey image (float32 (H, W) in 0..255), as `_formed` takes them: their
    mask, the ink, its threshold and its noise level; None when it holds none."""
    grey = _resized(grey, min(max(grey.shape), _WORK))
    grey = _despeckled(grey)
    grey = _uninverted(grey)
    ink, threshold, noise = _ink(grey)
    mask = ink > threshold
    # A pixel above the threshold with no neighbour above it is noise, not a stroke.
    mask &= _neighbours(mask) >= 2
    if not mask.any():
        return None
    return mask, ink, threshold, noise


def _formed(
    mask: np.ndarray, ink: np.ndarray, threshold: float, noise: float, *, native: bool
) -> np.ndarray:
    """The image rebuilt in MNIST's form from its strokes (`_strokes`); `native`: it is 28x28."""
    # From here on only the ink's box matters (a pixel's margin round it for the rim).
    rows, cols = _extent(mask)
    height, width = mask.shape
    rows = slice(max(rows.start - 1, 0), min(rows.stop + 1, height))
    cols = slice(max(cols.start - 1, 0), min(cols.stop + 1, width))
    mask, ink = mask[rows, cols], ink[rows, cols]
    # The strokes' faint rim belongs to the digit too (MNIST's box holds every grey pixel);
    # fainter than three times the noise is background.
    floor = 3 * noise
    inked = _grown(mask, diagonal=True) & (ink > floor)
    level = max(float(np.percentile(ink[mask], 75)), threshold + 1)
    scaled = np.minimum(np.maximum((ink - floor) / (level - floor), 0), 1)
    soft = np.where(inked, scaled, 0).astype(np.float32)
    cut = (threshold - floor) / (level - floor)  # the threshold on the soft scale
    rows, cols = _extent(inked)
    # The strokes are measured and mended where they are a few pixels wide and the 20-pixel
    # box is a whole multiple: the ink's box brought to at least 4x and at most 16x the box.
    extent = max(soft[rows, cols].shape)
    side = min(max(extent, 4 * _BOX), 16 * _BOX)
    fine = np.minimum(np.maximum(_resized(soft[rows, cols], side), 0), 1)
    fine = _stroke_mended(fine, cut)
    rows, cols = _extent(fine > _FAINT)
    fine = fine[rows, cols]
    box = _BOX
    if native:
        # 28x28 is MNIST's own size: ink wider than MNIST's box there is clutter beside the
        # digit (a line, a scribble, a blot) or a digit already as large as it should be, so
        # it keeps its size instead of being shrunk into the box.
        wide = round(max(fine.shape) * extent / side)
        box = min(SIDE, wide) if wide > _BOX + 5 else _BOX
    return _centred(_resized(fine * 255, box))


def _despeckled(grey: np.ndarray) -> np.ndarray:
    """The image with salt-and-pepper noise taken out: where many pixels are isolated extremes
    (at the image's darkest or lightest, unlike all eight of their neighbours), each pixel
    becomes the median of its 3x3 square; otherwise the image as it was.

    Whether they are many is judged on a grid of about 4,000 pixels (every pixel of a small
    image), so that a clean page costs little."""
    height, width = grey.shape
    if min(height, width) < 3:
        return grey
    stride = max(1, math.isqrt(height * width // 4096))
    rows, cols = slice(1, height - 1, stride), slice(1, width - 1, stride)
    centre = grey[rows, cols]
    lo, hi = float(centre.min()), float(centre.max())
    span = hi - lo
    if span <= 0:
        return grey
    isolated = (centre <= lo + 0.1 * span) | (centre >= hi - 0.1 * span)
    few = 0.01 * isolated.size  # real strokes and pages hold next to none: one in a hundred
    # Unlike all eight neighbours (a thin line's pixel has two alike); the left and right
    # ones first, which settle most images.
    for dy, dx in ((0, -1), (0, 1), (-1, -1), (-1, 0), (-1, 1), (1, -1), (1, 0), (1, 1)):
        if dx == -1 and dy == -1 and isolated.sum() < few:
            return grey
        side = grey[1 + dy : height - 1 + dy : stride, 1 + dx : width - 1 + dx : stride]
        isolated &= np.abs(centre - side) > 0.5 * span
    if isolated.sum() < few:
        return grey
    padded = np.pad(grey, 1, mode="edge")
    shifted = [padded[dy : dy + height, dx : dx + width] for dy in range(3) for dx in range(3)]
    return np.partition(np.stack(shifted), 4, axis=0)[4]


def _uninverted(grey: np.ndarray) -> np.ndarray:
    """The image with regions whose light is inverted (a band, a box printed light on dark in a
    dark-on-light page) turned back, so that one background runs under the whole digit.

    The background's shade at each pixel is the median of a square several strokes wide (a
    median keeps a region's sharp edge where it is, and strokes are too thin to move it); where
    it splits into two shades with sharp edges between them, the smaller part is inverted."""
    height, width = grey.shape
    if min(height, width) < 16:
        return grey
    # Cheap first: such a region reaching the edge leaves the edge in two shades, and few
    # pixels of it in between (light falling off across a page passes through them all).
    edge = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    lo, hi = float(edge.min()), float(edge.max())
    if hi - lo < 64 or (np.abs(edge - (lo + hi) / 2) < 0.25 * (hi - lo)).mean() > 0.2:
        return grey
    small = _resized(grey, min(max(grey.shape), _GRID))
    lo, hi = np.percentile(small, [2, 98])
    span = float(hi - lo)
    # Cheap first: a second shade covers a good part of the image or it is not there.
    light = small > lo + 0.5 * span
    if span < 64 or not 0.2 <= light.mean() <= 0.8:
        return grey
    reach = max(3, max(small.shape) // 3) // 2 * 2 + 1  # a few strokes wide, odd
    half = reach // 2
    padded = np.pad(small, half, mode="reflect")
    h, w = small.shape
    window = np.stack(
        [padded[dy : dy + h, dx : dx + w] for dy in range(reach) for dx in range(reach)]
    )
    shade = np.median(window, axis=0)
    gap = float(shade.max() - shade.min())
    if gap < 0.5 * span:
        return grey
    mid = float(shade.min()) + gap / 2
    # Sharp edges: few pixels of shade in between the two shades (light falling off across
    # the page, or fog, passes through every shade in between).
    between = np.abs(shade - mid) < 0.25 * gap
    flip = shade > mid
    if flip.mean() > 0.5:
        flip = ~flip
    # Only what is wider than a stroke: a thick stroke's core is not a region of its own.
    flip = _opened(flip, reach - 2)
    # A region reaching the image's edge (a band, a margin, a label's box cut by the frame):
    # strokes keep inside it.
    contact = int(flip[[0, -1]].sum() + flip[1:-1, [0, -1]].sum())
    reaches = contact >= reach - 2  # along the edge for a region's width, not a stroke's
    if between.mean() > _BETWEEN or flip.mean() < 0.04 or not reaches or not _boxy(flip):
        return grey
    # And a step at its edge, from one shade to the other between neighbouring pixels: a thick
    # stroke's core ends inside the stroke, where both sides are ink.
    # (the shades' edge may sit a pixel off the step: the largest step within a pixel counts)
    rows = np.pad(np.abs(small[:, 1:] - small[:, :-1]), ((0, 0), (1, 1)))
    cols = np.pad(np.abs(small[1:] - small[:-1]), ((1, 1), (0, 0)))
    rows = np.maximum(np.maximum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])
    cols = np.maximum(np.maximum(cols[:-2], cols[1:-1]), cols[2:])
    steps = np.concatenate([rows[flip[:, 1:] != flip[:, :-1]], cols[flip[1:] != flip[:-1]]])
    if steps.size == 0 or np.median(steps) < _STEP * span:
        return grey
    flip = np.asarray(
        Image.fromarray(flip).resize((width, height), Image.Resampling.NEAREST), dtype=bool
    )
    outside = float(np.median(grey[~flip]))
    inside = float(np.median(grey[flip]))
    # The shades' edge is a median's, good to a pixel or two: within two pixels of it, a pixel
    # belongs to the region whose shade it is nearer, so that the edge is where the step is and
    # no sliver of the region is left standing as a stroke.
    near = _grown(_grown(flip, diagonal=True), diagonal=True)
    near &= ~_eroded(_eroded(flip))
    flip = np.where(near, np.abs(grey - inside) < np.abs(grey - outside), flip)
    return np.where(flip, outside + inside - grey, grey).astype(np.float32)


def _boxy(mask: np.ndarray) -> bool:
    """Whether a bool mask is made of boxes (bands, rectangles): most of the rows that cross it
    cross about as many of its pixels, and so do most of its columns; a digit's strokes are
    crossed by some lines for long and by others for short."""
    for lines in (mask, mask.T):
        counts = lines.sum(axis=1)
        counts = counts[counts > 0]
        alike = np.abs(counts - np.median(counts)) <= 2
        if alike.mean() < 0.6:
            return False
    return True


def _opened(mask: np.ndarray, reach: int) -> np.ndarray:
    """The parts of a bool mask that a square of side `reach` fits in (beyond the image's edge
    counts as set, so a band along the edge keeps its width)."""
    half = reach // 2
    height, width = mask.shape
    for axis, size in ((0, height), (1, width)):  # eroded, one axis at a time
        padded = np.pad(
            mask, [(half, half) if a == axis else (0, 0) for a in (0, 1)], constant_values=True
        )
        out = np.ones_like(mask)
        for shift in range(reach):
            out &= padded[shift : shift + size] if axis == 0 else padded[:, shift : shift + size]
        mask = out
    for axis, size in ((0, height), (1, width)):  # then grown back
        padded = np.pad(mask, [(half, half) if a == axis else (0, 0) for a in (0, 1)])
        out = np.zeros_like(mask)
        for shift in range(reach):
            out |= padded[shift : shift + size] if axis == 0 else padded[:, shift : shift + size]
        mask = out
    return mask


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
    residual = _departure(grey, _background(grey))
    noise = _noise(residual)
    # The ink is whatever departs from the background by more than noise does; it is dark
    # where the departures below the background outweigh those above it.
    strong = 4 * noise
    above = float(residual[residual > strong].sum())
    below = float(-residual[residual < -strong].sum())
    ink = residual if above >= below else np.negative(residual, out=residual)
    return ink, max(_otsu(ink), 6 * noise), noise


def _noise(residual: np.ndarray) -> float:
    """The noise's standard deviation (robustly, from the median absolute departure) on the
    border (`_ring`'s pixels), which is background however much of the middle the digit
    covers; at least one grey level."""
    height, width = residual.shape
    depth = 2 if min(height, width) >= 16 else 1
    if height <= 2 * depth or width <= 2 * depth:
        ring = residual.ravel()
    else:  # the ring's strips (a median does not depend on the order)
        middle = residual[depth:-depth]
        ring = np.concatenate(
            [
                residual[:depth].ravel(),
                residual[-depth:].ravel(),
                middle[:, :depth].ravel(),
                middle[:, -depth:].ravel(),
            ]
        )
    return max(1.4826 * _median(np.abs(ring)), 1.0)


def _median(values: np.ndarray) -> float:
    """The median of a 1-D array, as np.median gives it (bit for bit), by one partition."""
    count = values.size
    half = count // 2
    if count % 2:
        return float(np.partition(values, half)[half])
    low, high = np.partition(values, (half - 1, half))[half - 1 : half + 1]
    return float((low + high) / 2)


def _background(grey: np.ndarray) -> np.ndarray:
    """The page under the digit: a smooth surface (quadratic in x and y) fitted to the grey
    levels robustly, starting from the border and leaving out whatever departs from it, so
    that light falling off across a page is taken out before anything is called ink.

    Returns:
        float64 (6,): the surface's coefficients of 1, x, y, x^2, xy, y^2 (`_quadratic`).
    """
    small = _resized(grey, min(max(grey.shape), _GRID))
    if _FLAT_BORDER:
        edge = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
        level = float(edge[0])
        if (edge == level).all():
            # A border of one exact level (a drawing, a rendering, MNIST's own digits) is a
            # page that no light falls across: the page is that level, without a fit.
            return np.array([level, 0, 0, 0, 0, 0], dtype=np.float64)
    basis = _quadratic(*small.shape)
    values = small.ravel().astype(np.float64)
    ring = _ring(*small.shape).ravel()
    # A robust start, which ink on the border cannot pull: the border pixels near its median.
    border = values[ring]
    level = _median(border)
    spread = max(1.4826 * _median(np.abs(border - level)), 1.0)
    keep = ring & (np.abs(values - level) <= 3 * spread)
    for region in (ring, None):  # the border first, then all that agrees with it
        for _ in range(5):
            coef = _least_squares(basis[keep], values[keep])
            distance = np.abs(values - basis @ coef)
            spread = max(1.4826 * _median(distance[keep]), 1.0)
            update = distance <= 3 * spread
            if region is not None:
                update &= region
            if np.count_nonzero(update) < basis.shape[1] or np.array_equal(update, keep):
                break
            keep = update
    return coef


def _departure(grey: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """float32 (H, W): the grey levels less the background's surface (`_background`'s
    coefficients) at every pixel, worked out in float64 and rounded to float32 as the surface,
    a block of rows at a time (the terms in x are a row's, those in y a column's)."""
    if not coef[1:].any():  # a level page: the same difference, without the terms
        return grey - np.float32(coef[0])
    x, y = _coordinates(*grey.shape)
    x, y = x[None, :], y[:, None]
    start = coef[0] + coef[1] * x  # (1, W)
    square_x = coef[3] * x * x
    slope_xy = coef[4] * x
    term_y, square_y = coef[2] * y, coef[5] * y * y  # (H, 1)
    out = np.empty(grey.shape, np.float32)
    rows = max(1, 16384 // grey.shape[1])  # a block's float64 temporaries stay in the cache
    block = np.empty((rows, grey.shape[1]))
    mixed = np.empty((rows, grey.shape[1]))
    for top in range(0, grey.shape[0], rows):
        part = slice(top, top + rows)
        count = len(y[part])
        surface, cross = block[:count], mixed[:count]
        # The surface in the order `c0 + c1 x + c2 y + c3 x x + c4 x y + c5 y y` sums it.
        np.add(start, term_y[part], out=surface)
        surface += square_x
        np.multiply(slope_xy, y[part], out=cross)
        surface += cross
        surface += square_y[part]
        np.subtract(grey[part], surface.astype(np.float32), out=out[part])
    return out


_EYE = np.eye(6)
# Whether a border of one exact level is taken for the page without fitting a surface: the one
# shortcut that alters pixels (slightly, on such images); off, the normaliser gives main's
# output bit for bit, which tests/sdk/test_images_exact.py holds it to.
_FLAT_BORDER = True
try:
    from numpy.linalg import _umath_linalg

    _SOLVE: Any = _umath_linalg.solve1
except (ImportError, AttributeError):  # another numpy's layout: the public solver
    _SOLVE = None


def _least_squares(basis: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The coefficients that fit `basis @ coef` to `values` best, by the normal equations (a
    6x6 system: far quicker than a general solver, and the terms are well scaled); a whisker
    of ridge keeps a fit to few pixels solvable."""
    gram = basis.T @ basis + 1e-9 * len(values) * _EYE
    if _SOLVE is None:
        return np.linalg.solve(gram, basis.T @ values)
    # np.linalg.solve's own kernel without its per-call checks and error state (the ridge
    # keeps the system positive definite): a third of the fit's time on small images.
    return _SOLVE(gram, basis.T @ values, signature="dd->d")


@lru_cache(maxsize=64)
def _coordinates(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """x of each column's centre and y of each row's, both running over [-1, 1]."""
    return (np.arange(width) + 0.5) / width * 2 - 1, (np.arange(height) + 0.5) / height * 2 - 1


@lru_cache(maxsize=64)
def _quadratic(height: int, width: int) -> np.ndarray:
    """The terms 1, x, y, x^2, xy, y^2 at each pixel's centre: (H*W, 6)."""
    x, y = np.meshgrid(*_coordinates(height, width))
    x, y = x.ravel(), y.ravel()
    basis = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    basis.flags.writeable = False  # cached: shared by every call
    return basis


@lru_cache(maxsize=64)
def _ring(height: int, width: int) -> np.ndarray:
    """bool (H, W): the outermost pixels (two deep where the image has room)."""
    depth = 2 if min(height, width) >= 16 else 1
    ring = np.ones((height, width), bool)
    ring[depth:-depth, depth:-depth] = False
    ring.flags.writeable = False  # cached: shared by every call
    return ring


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold: the level that best splits the values into two classes."""
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-6:
        return hi
    scale = 256 / (hi - lo)
    flat = values.ravel()
    counts = np.zeros(256, np.intp)
    # The histogram a block at a time: the blocks' temporaries stay small enough for the
    # allocator to reuse instead of mapping fresh pages for each (and counts add exactly).
    for start in range(0, flat.size, _BLOCK):
        scaled = flat[start : start + _BLOCK] - lo
        scaled *= scale
        bins = np.minimum(scaled.astype(np.intp), 255)
        counts += np.bincount(bins, minlength=256)
    edges = _STEPS * ((hi - lo) / 256)  # np.linspace(lo, hi, 257), bit for bit
    edges += lo
    edges[-1] = hi
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
    height, width = mask.shape
    padded = np.zeros((height + 2, width + 2), np.int8)
    padded[1:-1, 1:-1] = mask
    rows = padded[:-2] + padded[1:-1]  # the 3x3 sums, one axis at a time
    rows += padded[2:]
    total = rows[:, :-2] + rows[:, 1:-1]
    total += rows[:, 2:]
    return total


def _extent(mask: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns of the box around the set pixels of a non-empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _stroke_width(shape: np.ndarray) -> float:
    """The mean width of the strokes of a bool mask, in pixels: twice its area over its outline
    (a stroke of width w and length l has area w*l and an outline of 2*l)."""
    outline = shape & ~_eroded(shape)
    return 2 * float(shape.sum()) / max(float(outline.sum()), 1.0)


def _eroded(mask: np.ndarray) -> np.ndarray:
    """bool (H, W): the pixels of a mask whose whole 3x3 square is set (outside it, none is)."""
    height, width = mask.shape
    padded = np.zeros((height + 2, width + 2), bool)
    padded[1:-1, 1:-1] = mask
    rows = padded[:-2] & padded[1:-1] & padded[2:]
    return rows[:, :-2] & rows[:, 1:-1] & rows[:, 2:]


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
        padded = np.zeros((fine.shape[0] + 2 * steps, fine.shape[1] + 2 * steps), fine.dtype)
        padded[steps : steps + fine.shape[0], steps : steps + fine.shape[1]] = fine
        fine = padded
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
    height, width = image.shape
    padded = np.empty((height + 2, width + 2), image.dtype)
    padded[1:-1, 1:-1] = image
    padded[0, 1:-1], padded[-1, 1:-1] = image[0], image[-1]
    padded[:, 0], padded[:, -1] = padded[:, 1], padded[:, -2]
    # The largest is the same whichever order it is taken in: the 3x3 square's is the largest
    # over three rows of the largest over three columns.
    if diagonal:
        rows = np.maximum(padded[:-2], padded[1:-1])
        np.maximum(rows, padded[2:], out=rows)
        grown = np.maximum(rows[:, :-2], rows[:, 1:-1])
        return np.maximum(grown, rows[:, 2:], out=grown)
    grown = np.maximum(image, padded[:-2, 1:-1])
    np.maximum(grown, padded[2:, 1:-1], out=grown)
    np.maximum(grown, padded[1:-1, :-2], out=grown)
    return np.maximum(grown, padded[1:-1, 2:], out=grown)


def _centred(digit: np.ndarray) -> np.ndarray:
    """The digit (float, at most 20x20) placed in 28x28 with its centre of mass in the middle."""
    mass = float(digit.sum()) or 1.0
    cy = float((digit.sum(axis=1) * np.arange(digit.shape[0])).sum()) / mass
    cx = float((digit.sum(axis=0) * np.arange(digit.shape[1])).sum()) / mass
    top = min(max(round(SIDE / 2 - cy), 0), SIDE - digit.shape[0])
    left = min(max(round(SIDE / 2 - cx), 0), SIDE - digit.shape[1])
    out = np.zeros((SIDE, SIDE), np.uint8)
    pixels = np.minimum(np.maximum(np.rint(digit), 0), 255)
    out[top : top + digit.shape[0], left : left + digit.shape[1]] = pixels
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
