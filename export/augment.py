"""Damage that digits meet on their way to a program, drawn on the fly and seeded.

Designed from what happens to a digit between a pen and a classifier, not from any published
corruption benchmark: the hand and the page move it (geometry), the pen and the printer change
its strokes (pen), the sensor adds noise and the codec blocks (noise), the lens and the hand blur
it (blur), the page holds other marks (clutter), and the light is uneven (light).

Every function takes and returns float32 images (N, 28, 28) in [0, 1] with bright ink on a dark
background, the classifier's input without its channel axis, and works on the whole batch at
once (numpy and scipy; only JPEG goes image by image, through Pillow). `augment` draws a mix of
them for a batch from a numpy Generator, and `Augmented` feeds `fit` from it, seeded per batch.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
from PIL import Image
from scipy import ndimage, signal

SIDE = 28
# Pixel centres relative to the image centre, the frame every drawing below works in.
_COORDS = np.arange(SIDE, dtype=np.float32) - (SIDE - 1) / 2
_ROWS, _COLS = np.meshgrid(_COORDS, _COORDS, indexing="ij")


def _images(count: int) -> tuple[slice, ...]:
    return (slice(None),) * count


def _column(values: np.ndarray) -> np.ndarray:
    """Per-image values as (N, 1, 1), to broadcast over the pixels."""
    return np.asarray(values, np.float32).reshape(-1, 1, 1)


def _finish(images: np.ndarray) -> np.ndarray:
    return np.clip(images, 0.0, 1.0).astype(np.float32, copy=False)


# Geometry -----------------------------------------------------------------------------------


def affine(images: np.ndarray, matrices: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Map each image through its own affine transform about the centre (bilinear, black fill).

    Args:
        images: (N, 28, 28).
        matrices: (N, 2, 2), taking output (row, col) offsets from the centre to input offsets.
        shifts: (N, 2), added to the input offsets (pixels; positive moves the digit up/left).

    Returns:
        (N, 28, 28) float32.
    """
    n = len(images)
    out_offsets = np.stack([_ROWS, _COLS])  # (2, 28, 28)
    source = np.einsum("nij,jhw->nihw", matrices, out_offsets) + shifts[:, :, None, None]
    source += (SIDE - 1) / 2
    index = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, SIDE, SIDE))
    coords = np.stack([index, source[:, 0], source[:, 1]])
    return _finish(ndimage.map_coordinates(images, coords, order=1, cval=0.0))


def random_affine(
    images: np.ndarray,
    rng: np.random.Generator,
    rotation: float,
    shear: float,
    scale: tuple[float, float],
    shift: float,
    anisotropy: float = 0.0,
) -> np.ndarray:
    """Rotate by up to `rotation` radians, shear by up to `shear`, scale each axis by a factor in
    `scale` (the two axes differing by up to `anisotropy` in log), shift by up to `shift` pixels."""
    n = len(images)
    angle = rng.uniform(-rotation, rotation, n)
    skew = rng.uniform(-shear, shear, n)
    size = np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]), n))
    stretch = np.exp(rng.uniform(-anisotropy, anisotropy, n) / 2)
    cos, sin = np.cos(angle), np.sin(angle)
    forward = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
    forward = forward @ np.stack(
        [np.stack([np.ones(n), skew], -1), np.stack([np.zeros(n), np.ones(n)], -1)], 1
    )
    forward = forward * np.stack([size * stretch, size / stretch], -1)[:, :, None]
    shifts = rng.uniform(-shift, shift, (n, 2))
    return affine(images, np.linalg.inv(forward).astype(np.float32), shifts.astype(np.float32))


def elastic(images: np.ndarray, rng: np.random.Generator, alpha: float, sigma: float) -> np.ndarray:
    """Displace every pixel by a smooth random field: white noise smoothed by a Gaussian of
    `sigma` pixels, scaled so its largest displacement is about `alpha` pixels."""
    n = len(images)
    field = rng.standard_normal((2, n, SIDE, SIDE)).astype(np.float32)
    field = ndimage.gaussian_filter(field, (0, 0, sigma, sigma), mode="constant")
    field *= alpha / (np.abs(field).max(axis=(2, 3), keepdims=True) + 1e-6)
    index = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, SIDE, SIDE))
    rows = np.arange(SIDE, dtype=np.float32)[:, None] + field[0]
    cols = np.arange(SIDE, dtype=np.float32)[None, :] + field[1]
    return _finish(ndimage.map_coordinates(images, np.stack([index, rows, cols]), order=1))


# Pen and print ------------------------------------------------------------------------------


def stroke_width(images: np.ndarray, change: int) -> np.ndarray:
    """Thicker strokes (`change` > 0: grey dilation by a (change+1)-square) or thinner (< 0: grey
    erosion by a 2x2 square, which takes about one pixel off a stroke's width)."""
    if change == 0:
        return images.copy()
    if change > 0:
        return ndimage.grey_dilation(images, size=(1, change + 1, change + 1))
    return ndimage.grey_erosion(images, size=(1, 2, 2))


def outline(images: np.ndarray) -> np.ndarray:
    """Strokes reduced to their edges: each pixel less the darkest of its 3x3 neighbourhood, so
    that a stroke's inside, as bright as its surroundings, goes dark; rescaled to the image's
    own brightest ink."""
    edges = images - ndimage.grey_erosion(images, size=(1, 3, 3), mode="constant", cval=0.0)
    peak = edges.max(axis=(1, 2), keepdims=True)
    return _finish(edges * (images.max(axis=(1, 2), keepdims=True) / np.maximum(peak, 1e-6)))


def _area_matrix(size: int) -> np.ndarray:
    """(size, 28): averages the 28 pixels of a row into `size` cells, by overlap."""
    edges = np.linspace(0, SIDE, size + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    pixel = np.arange(SIDE)[None, :]
    overlap = np.clip(np.minimum(hi, pixel + 1) - np.maximum(lo, pixel), 0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def _linear_matrix(size: int) -> np.ndarray:
    """(28, size): bilinear interpolation from `size` cell centres back to 28 pixel centres."""
    centres = (np.arange(SIDE) + 0.5) * size / SIDE - 0.5
    position = np.clip(centres, 0, size - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, size - 1)
    weight = position - low
    matrix = np.zeros((SIDE, size), np.float32)
    matrix[np.arange(SIDE), low] += 1 - weight
    matrix[np.arange(SIDE), high] += weight
    return matrix


def low_resolution(images: np.ndarray, size: int) -> np.ndarray:
    """Each image averaged down to size x size cells (a coarse scan) and interpolated back."""
    down, up = _area_matrix(size), _linear_matrix(size)
    return _finish(up @ (down @ images @ down.T) @ up.T)


# Noise --------------------------------------------------------------------------------------


def gaussian_noise(images: np.ndarray, rng: np.random.Generator, sigma: np.ndarray) -> np.ndarray:
    """Add N(0, sigma^2) noise, `sigma` per image (N,)."""
    noise = rng.standard_normal(images.shape).astype(np.float32)
    return _finish(images + noise * _column(sigma))


def shot_noise(images: np.ndarray, rng: np.random.Generator, photons: np.ndarray) -> np.ndarray:
    """Photon noise: each pixel a Poisson count of `photons` (per image, (N,)) at full white."""
    scale = _column(photons)
    return _finish(rng.poisson(images * scale) / scale)


def salt_and_pepper(images: np.ndarray, rng: np.random.Generator, rate: np.ndarray) -> np.ndarray:
    """Set round(rate * 784) pixels of each image (`rate` per image, (N,)), chosen without
    repetition, to black or white at even odds."""
    n = len(images)
    count = np.rint(np.asarray(rate) * SIDE * SIDE).astype(int)
    rank = np.argsort(np.argsort(rng.random((n, SIDE * SIDE)), axis=1), axis=1)
    hit = (rank < count[:, None]).reshape(images.shape)
    value = (rng.random(images.shape) < 0.5).astype(np.float32)
    return np.where(hit, value, images).astype(np.float32)


def jpeg(images: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Each image saved as a greyscale JPEG at its `quality` (1..95, (N,)) and read back."""
    out = np.empty_like(images)
    for i, (image, q) in enumerate(zip(images, quality)):
        buffer = io.BytesIO()
        Image.fromarray(np.rint(image * 255).astype(np.uint8)).save(
            buffer, format="JPEG", quality=int(q)
        )
        out[i] = np.asarray(Image.open(buffer), np.float32) / 255
    return out


# Blur ---------------------------------------------------------------------------------------

_KERNEL = 15  # odd; each blur's support fits inside it
_KR, _KC = np.meshgrid(*(np.arange(_KERNEL, dtype=np.float32) - _KERNEL // 2,) * 2, indexing="ij")


def convolve(images: np.ndarray, kernels: np.ndarray) -> np.ndarray:
    """Each image convolved with its own kernel ((N, 15, 15), each summing to 1), black outside."""
    return _finish(signal.fftconvolve(images, kernels, mode="same", axes=(1, 2)))


def _normalised(kernels: np.ndarray) -> np.ndarray:
    return (kernels / kernels.sum(axis=(1, 2), keepdims=True)).astype(np.float32)


def gaussian_kernels(sigma: np.ndarray) -> np.ndarray:
    """Gaussian kernels of standard deviation `sigma` pixels (N,)."""
    s = _column(sigma)
    return _normalised(np.exp(-(_KR**2 + _KC**2) / (2 * s**2)))


def motion_kernels(length: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """A line of `length` pixels at `angle` radians (each (N,)), antialiased: a hand or camera
    moving during the exposure."""
    cos, sin = _column(np.cos(angle)), _column(np.sin(angle))
    along = _KR * sin + _KC * cos
    across = np.abs(-_KR * cos + _KC * sin)
    half = _column(length) / 2
    beyond = np.maximum(np.abs(along) - half, 0)
    return _normalised(np.clip(1 - np.hypot(across, beyond), 0, 1))


def disc_kernels(radius: np.ndarray) -> np.ndarray:
    """Discs of `radius` pixels (N,), antialiased: a lens out of focus."""
    return _normalised(np.clip(_column(radius) + 0.5 - np.hypot(_KR, _KC), 0, 1))


# Clutter ------------------------------------------------------------------------------------


def segment_coverage(
    start: np.ndarray, end: np.ndarray, width: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """How much of each pixel a straight stroke covers, and where along it the pixel lies.

    Args:
        start, end: (N, 2) row, col endpoints in pixel coordinates (0..27).
        width: (N,) stroke widths in pixels.

    Returns:
        coverage (N, 28, 28) in [0, 1], and the distance (N, 28, 28) along the stroke from
        `start` of each pixel's nearest point on it, in pixels.
    """
    rows = np.arange(SIDE, dtype=np.float32)[None, :, None]
    cols = np.arange(SIDE, dtype=np.float32)[None, None, :]
    d = (end - start).astype(np.float32)
    length2 = np.maximum((d**2).sum(1), 1e-6)
    t = (
        (rows - start[:, 0, None, None]) * d[:, 0, None, None]
        + (cols - start[:, 1, None, None]) * d[:, 1, None, None]
    ) / length2[:, None, None]
    t = np.clip(t, 0, 1)
    near_r = start[:, 0, None, None] + t * d[:, 0, None, None]
    near_c = start[:, 1, None, None] + t * d[:, 1, None, None]
    distance = np.hypot(rows - near_r, cols - near_c)
    coverage = np.clip(_column(width) / 2 + 0.5 - distance, 0, 1)
    return coverage.astype(np.float32), (t * np.sqrt(length2)[:, None, None]).astype(np.float32)


def _ink(images: np.ndarray, marks: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """Marks laid on the page in ink of `strength` (N,): the brighter of page and mark wins."""
    return _finish(np.maximum(images, marks * _column(strength)))


def _points(rng: np.random.Generator, n: int, margin: float = 0.0) -> np.ndarray:
    return rng.uniform(-margin, SIDE - 1 + margin, (n, 2)).astype(np.float32)


def lines(images: np.ndarray, rng: np.random.Generator, dotted: bool = False) -> np.ndarray:
    """One or two straight strokes across or beside the digit: ruled lines, crossings-out,
    underlines. `dotted` breaks each into dots or dashes at a random period."""
    n = len(images)
    marks = np.zeros_like(images)
    for k in range(2):
        start, end = _points(rng, n, 4), _points(rng, n, 4)
        coverage, along = segment_coverage(start, end, rng.uniform(0.8, 2.5, n))
        if dotted:
            period = _column(rng.uniform(2.5, 6, n))
            duty = _column(rng.uniform(0.3, 0.6, n))
            coverage *= np.mod(along + rng.uniform(0, 6, (n, 1, 1)), period) < period * duty
        if k == 1:  # the second line in about half the images
            coverage *= _column(rng.random(n) < 0.5)
        marks = np.maximum(marks, coverage)
    return _ink(images, marks, rng.uniform(0.5, 1.0, n))


def scribble(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A zig-zag of 3 to 7 strokes, like a hurried cross-out, drawn across the image."""
    n = len(images)
    centre = rng.uniform(6, 21, (n, 2)).astype(np.float32)
    angle = rng.uniform(0, np.pi, n)
    direction = np.stack([np.sin(angle), np.cos(angle)], 1).astype(np.float32)
    normal = np.stack([direction[:, 1], -direction[:, 0]], 1)
    corners = rng.integers(4, 9, n)
    span = rng.uniform(12, 26, n)[:, None]
    amplitude = rng.uniform(3, 9, n)[:, None]
    width = rng.uniform(0.8, 2.2, n)
    marks = np.zeros_like(images)
    previous = None
    for k in range(8):
        fraction = np.minimum(k / (corners - 1), 1.0)[:, None]
        side = (1 if k % 2 else -1) * amplitude * rng.uniform(0.6, 1.0, (n, 1))
        point = centre + direction * (fraction - 0.5) * span + normal * side
        if previous is not None:
            coverage, _ = segment_coverage(previous, point.astype(np.float32), width)
            marks = np.maximum(marks, coverage * _column(k < corners))
        previous = point.astype(np.float32)
    return _ink(images, marks, rng.uniform(0.5, 1.0, n))


def blots(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One to three ink blots (ellipses of 1 to 4.5 pixels' radius) anywhere on the image."""
    n = len(images)
    marks = np.zeros_like(images)
    rows = np.arange(SIDE, dtype=np.float32)[None, :, None]
    cols = np.arange(SIDE, dtype=np.float32)[None, None, :]
    count = rng.integers(1, 4, n)
    for k in range(3):
        centre = _points(rng, n)
        radii = rng.uniform(1.0, 4.5, (n, 2)).astype(np.float32)
        distance = np.hypot(
            (rows - centre[:, 0, None, None]) / radii[:, 0, None, None],
            (cols - centre[:, 1, None, None]) / radii[:, 1, None, None],
        )
        edge = np.clip((1 - distance) * radii.min(1)[:, None, None] + 0.5, 0, 1)
        marks = np.maximum(marks, edge * _column(k < count))
    return _ink(images, marks, rng.uniform(0.4, 1.0, n))


# Light --------------------------------------------------------------------------------------


def contrast(images: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Levels squeezed: black becomes `low`, white `high` (each (N,), low < high)."""
    return _finish(_column(low) + images * _column(np.asarray(high) - np.asarray(low)))


def brightness(images: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Every pixel moved by `shift` (N,), in [-1, 1], and clipped."""
    return _finish(images + _column(shift))


def smooth_field(rng: np.random.Generator, n: int, cells: int = 4) -> np.ndarray:
    """A smooth random field in [0, 1] (N, 28, 28): a cells x cells grid of uniform draws,
    interpolated bilinearly."""
    grid = rng.random((n, cells, cells)).astype(np.float32)
    up = _linear_matrix(cells)
    return up @ grid @ up.T


def fog(images: np.ndarray, rng: np.random.Generator, density: np.ndarray) -> np.ndarray:
    """A patchy veil: each pixel blended towards a smooth random haze by up to `density` (N,)."""
    veil = smooth_field(rng, len(images)) * _column(density)
    return _finish(images * (1 - veil) + veil)


def gradient(images: np.ndarray, rng: np.random.Generator, strength: np.ndarray) -> np.ndarray:
    """Uneven light: a ramp from 0 to `strength` (N,) across the image in a random direction,
    added (a lit side) or, for about half the images, multiplied in (a shaded side)."""
    n = len(images)
    angle = rng.uniform(0, 2 * np.pi, n)
    ramp = _ROWS * _column(np.sin(angle)) + _COLS * _column(np.cos(angle))
    ramp = (ramp - ramp.min(axis=(1, 2), keepdims=True)) / (SIDE - 1) / np.sqrt(2)
    ramp = ramp / ramp.max(axis=(1, 2), keepdims=True) * _column(strength)
    lit = _column(rng.random(n) < 0.5)
    return _finish(np.where(lit > 0, images + ramp, images * (1 - ramp)))


def band_masks(rng: np.random.Generator, n: int) -> np.ndarray:
    """Where to invert (N, 28, 28) bool: a band across or down the image, the two outer bands,
    a rectangle, or the whole image, each width drawn anew."""
    rows = np.arange(SIDE)[None, :, None]
    cols = np.arange(SIDE)[None, None, :]
    a = rng.integers(0, SIDE - 4, n)[:, None, None]
    b = np.minimum(a + rng.integers(4, SIDE, n)[:, None, None], SIDE)
    c = rng.integers(0, SIDE - 4, n)[:, None, None]
    d = np.minimum(c + rng.integers(4, SIDE, n)[:, None, None], SIDE)
    outer = rng.integers(3, 11, n)[:, None, None]
    kind = rng.integers(0, 6, n)[:, None, None]
    return np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3, kind == 4],
        [
            (cols >= a) & (cols < b) & (rows >= 0),  # a vertical band
            (rows >= a) & (rows < b) & (cols >= 0),  # a horizontal band
            ((cols < outer) | (cols >= SIDE - outer)) & (rows >= 0),  # left and right bands
            ((rows < outer) | (rows >= SIDE - outer)) & (cols >= 0),  # top and bottom bands
            (rows >= a) & (rows < b) & (cols >= c) & (cols < d),  # a rectangle
        ],
        np.ones((n, SIDE, SIDE), bool),  # the whole image: a negative
    )


def invert(images: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Each image inverted (1 - x) where its mask (N, 28, 28) is true, untouched elsewhere."""
    return np.where(masks, 1 - images, images).astype(np.float32)


# The mix ------------------------------------------------------------------------------------


def _geometry(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = random_affine(x, rng, np.radians(25), 0.35, (0.7, 1.15), 4.0, anisotropy=0.5)
    return elastic(x, rng, rng.uniform(0.5, 2.0), 3.0)


def _stroke(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return stroke_width(x, int(rng.choice([-1, 1, 2])))


def _resolution(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return low_resolution(x, int(rng.choice([8, 10, 12, 14, 16])))


def _blur(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return convolve(x, gaussian_kernels(rng.uniform(0.6, 2.2, len(x))))


def _motion(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return convolve(x, motion_kernels(rng.uniform(2, 9, len(x)), rng.uniform(0, np.pi, len(x))))


def _defocus(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return convolve(x, disc_kernels(rng.uniform(1, 3.5, len(x))))


def _contrast(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    spread = rng.uniform(0.15, 0.6, n)
    low = rng.uniform(0, 1 - spread)
    return contrast(x, low, low + spread)


def _brightness(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    return brightness(
        x, np.where(rng.random(n) < 0.8, rng.uniform(0.2, 0.7, n), -rng.uniform(0.1, 0.4, n))
    )


# Each kind of damage, in the order a digit meets them: the hand and the pen, then the page,
# the lens, the light and at last the sensor and the codec.
KINDS: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "geometry": _geometry,
    "stroke": _stroke,
    "outline": lambda x, rng: outline(x),
    "low_resolution": _resolution,
    "lines": lines,
    "dotted_lines": lambda x, rng: lines(x, rng, dotted=True),
    "scribble": scribble,
    "blots": blots,
    "gaussian_blur": _blur,
    "motion_blur": _motion,
    "defocus": _defocus,
    "contrast": _contrast,
    "brightness": _brightness,
    "fog": lambda x, rng: fog(x, rng, rng.uniform(0.3, 0.8, len(x))),
    "gradient": lambda x, rng: gradient(x, rng, rng.uniform(0.3, 0.9, len(x))),
    "inverted": lambda x, rng: invert(x, band_masks(rng, len(x))),
    "gaussian_noise": lambda x, rng: gaussian_noise(x, rng, rng.uniform(0.05, 0.4, len(x))),
    "shot_noise": lambda x, rng: shot_noise(x, rng, rng.uniform(2, 30, len(x))),
    "salt_and_pepper": lambda x, rng: salt_and_pepper(x, rng, rng.uniform(0.02, 0.2, len(x))),
    "jpeg": lambda x, rng: jpeg(x, rng.integers(5, 40, len(x))),
}


@dataclass(frozen=True)
class Mix:
    """How a batch is augmented.

    Every image is first moved a little, as the shipped recipe does: shifted by up to `shift` of
    the side, rotated by up to `rotation` of a turn, zoomed by up to `zoom`. A `damage` fraction
    of the images then gets one kind of damage from KINDS, drawn evenly, and a `second` fraction
    of those a second, different one; the rest stay clean, so that clean accuracy holds.
    """

    damage: float = 0.5
    second: float = 0.3
    shift: float = 0.1
    rotation: float = 0.03
    zoom: float = 0.1


def augment(images: np.ndarray, rng: np.random.Generator, mix: Mix = Mix()) -> np.ndarray:
    """A batch augmented as `mix` says.

    Args:
        images: float32 (N, 28, 28) in [0, 1], bright ink on black.
        rng: the batch's generator; the same state gives the same batch.

    Returns:
        float32 (N, 28, 28) in [0, 1].
    """
    n = len(images)
    x = np.array(images, np.float32)  # a copy: damage is written into it, image by image
    if mix.shift or mix.rotation or mix.zoom:
        x = random_affine(
            x, rng, 2 * np.pi * mix.rotation, 0.0, (1 - mix.zoom, 1 + mix.zoom), mix.shift * SIDE
        )
    names = list(KINDS)
    first = np.where(rng.random(n) < mix.damage, rng.integers(0, len(names), n), -1)
    offset = rng.integers(1, len(names), n)  # a second kind, never the first
    second = np.where(
        (first >= 0) & (rng.random(n) < mix.second), (first + offset) % len(names), -1
    )
    for k, name in enumerate(names):
        chosen = np.flatnonzero((first == k) | (second == k))
        if len(chosen):
            x[chosen] = KINDS[name](x[chosen], rng)
    return x


class Augmented(keras.utils.PyDataset):
    """Batches of shuffled training digits, augmented on the fly; each batch seeded by (seed,
    epoch, batch index), so a run is reproducible.

    Args:
        images: float32 (N, 28, 28, 1) in [0, 1]; labels: (N,).
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        mix: Mix,
        seed: int,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.images = np.asarray(images, np.float32).reshape(-1, SIDE, SIDE)
        self.labels = np.asarray(labels)
        self.batch_size = batch_size
        self.mix = mix
        self.seed = seed
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        return np.random.default_rng([self.seed, self.epoch]).permutation(len(self.images))

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        chosen = self.order[index * self.batch_size : (index + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return augment(self.images[chosen], rng, self.mix)[..., None], self.labels[chosen]

    def on_epoch_end(self) -> None:
        self.epoch += 1
        self.order = self._order()
