"""An evaluation set of digit images such as users feed the classifier, generated in code.

The images are what a user is likely to hand over: typeface digits in several weights,
handwriting drawn as strokes on clean pages and on shaded, noisy pages saved as JPEG, digits
left in a corner of a small canvas, marker and pen strokes, and scikit-learn's 8x8 scans
enlarged; each is the bytes of a PNG or JPEG file, with its true label. A fixed seed makes the
same set on every machine.

A second set damages MNIST's own test digits (the shipped sample's 1,000, or the test set of an
mnist.npz) in each of the ways that digits are spoilt on their way to a program, keeping them
28x28, and reads each both as an array (straight to the classifier) and as a PNG file (through
the normaliser): a normaliser that never hurts reads the files at least as well as the arrays.

`onnxdigits bench damage` prints the accuracy of each category through the shipped classifier
(`--per N` images per category, `--seed S`, `--images OLD.py` through another version of
sdk/images.py, `--save DIR` writes the files, `--data mnist.npz` damages the whole test set,
`--part inputs|damage` one table only); `--time` prints the normaliser's time per image instead,
beside `--images`' when given. The tests hold the normaliser to the same sets.

scikit-learn's scans need the bench extra (`pip install 'onnxdigits[bench]'`); without it that
category is left out, and its row says so."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import machine, tables
from .normaliser import load_normaliser

FONTS = Path("/usr/share/fonts/truetype/dejavu")
PER_CATEGORY = 120  # twelve of each digit: one error costs 0.0083
SMALL = 400  # small images are cheap to make and read: more of them, for a finer measure
SEED = 0
MNIST_SIDE = 28  # MNIST's side

Stroke = list[tuple[float, float]]


# --------------------------------------------------------------------------------------------
# Handwritten digits as strokes in a unit box (x to the right, y down)


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, stop: float) -> Stroke:
    """Points along an ellipse from angle `start` to `stop` (degrees, counter-clockwise, y up)."""
    steps = max(8, int(abs(stop - start) / 8))
    angles = np.radians(np.linspace(start, stop, steps))
    return [(cx + rx * math.cos(a), cy - ry * math.sin(a)) for a in angles]


# Each digit has a few ways of being written, as MNIST's writers did; each way is a list of
# strokes. The shapes follow common handwriting, not any typeface.
TEMPLATES: dict[int, list[list[Stroke]]] = {
    0: [
        [_arc(0.5, 0.5, 0.3, 0.46, 100, 470)],
        [_arc(0.5, 0.5, 0.36, 0.45, 80, 440)],
    ],
    1: [
        [[(0.55, 0.03), (0.45, 0.97)]],
        [[(0.5, 0.02), (0.5, 0.98)]],
    ],
    2: [
        [_arc(0.5, 0.3, 0.32, 0.27, 160, -30) + [(0.15, 0.95), (0.88, 0.93)]],
        [
            _arc(0.48, 0.28, 0.3, 0.25, 170, -20)
            + [(0.2, 0.94)]
            + _arc(0.5, 0.85, 0.3, 0.1, 200, 330)
        ],
    ],
    3: [
        [_arc(0.47, 0.27, 0.3, 0.24, 150, -90) + _arc(0.47, 0.74, 0.33, 0.24, 90, -150)],
        [[(0.15, 0.05), (0.8, 0.05), (0.42, 0.42)] + _arc(0.47, 0.7, 0.33, 0.27, 100, -150)],
    ],
    4: [
        [[(0.62, 0.02), (0.1, 0.66), (0.9, 0.66)], [(0.66, 0.3), (0.66, 0.98)]],
        [[(0.22, 0.02), (0.15, 0.58), (0.88, 0.56)], [(0.72, 0.04), (0.7, 0.98)]],
    ],
    5: [
        [[(0.85, 0.04), (0.28, 0.04), (0.22, 0.44)], _arc(0.5, 0.69, 0.34, 0.28, 140, -150)],
        [
            [(0.25, 0.04), (0.2, 0.44)] + _arc(0.5, 0.69, 0.34, 0.28, 140, -150),
            [(0.25, 0.04), (0.85, 0.04)],
        ],
    ],
    6: [
        [_arc(1.0, 0.62, 0.75, 0.6, 100, 180) + _arc(0.5, 0.7, 0.26, 0.26, 180, -180)],
        [[(0.7, 0.02), (0.28, 0.55)] + _arc(0.5, 0.72, 0.27, 0.25, 150, -210)],
    ],
    7: [
        [[(0.1, 0.05), (0.9, 0.05), (0.38, 0.98)]],
        [[(0.12, 0.1), (0.12, 0.04), (0.88, 0.04), (0.5, 0.98)]],
    ],
    8: [
        [_arc(0.5, 0.27, 0.25, 0.24, -90, 270), _arc(0.5, 0.73, 0.3, 0.24, 90, 450)],
        [
            _arc(0.5, 0.27, 0.24, 0.24, 0, 270)
            + _arc(0.5, 0.73, 0.29, 0.24, 90, -270)
            + _arc(0.5, 0.27, 0.24, 0.24, 270, 360)
        ],
    ],
    9: [
        [_arc(0.45, 0.3, 0.28, 0.26, 0, 360), [(0.73, 0.3), (0.65, 0.98)]],
        [_arc(0.45, 0.3, 0.28, 0.26, -10, 350) + [(0.7, 0.55), (0.55, 0.98)]],
    ],
}


def handwriting(label: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One way of writing `label`, slanted, turned, stretched and wobbling as a hand does."""
    variants = TEMPLATES[label]
    strokes = [np.array(s, dtype=np.float64) for s in variants[rng.integers(len(variants))]]
    turn = math.radians(rng.uniform(-10, 10))
    slant = rng.uniform(-0.1, 0.3)
    width = rng.uniform(0.75, 1.1)
    out = []
    for points in strokes:
        points = points - 0.5
        # A smooth wobble along each stroke: two slow waves of a few hundredths of the height.
        t = np.linspace(0, 1, len(points))[:, None]
        for _ in range(2):
            phase, freq = rng.uniform(0, 2 * math.pi, 2), rng.uniform(0.5, 2.0)
            points = points + 0.015 * np.sin(2 * math.pi * freq * t + phase)
        x, y = points[:, 0] * width, points[:, 1]
        x = x - slant * y
        c, s = math.cos(turn), math.sin(turn)
        out.append(np.stack([c * x - s * y, s * x + c * y], axis=1))
    return out


def draw_strokes(
    strokes: list[np.ndarray],
    size: tuple[int, int],
    box: tuple[float, float, float],
    stroke: float,
    ink: float = 255.0,
) -> np.ndarray:
    """Strokes drawn 4x oversampled and reduced: float (H, W) ink coverage times `ink`.

    `box` is (left, top, height) in pixels: where the digit's bounding box goes.
    """
    over = 4
    points = np.concatenate(strokes)
    lo, hi = points.min(axis=0), points.max(axis=0)
    left, top, height = box
    scale = height / (hi[1] - lo[1])
    canvas = Image.new("L", (size[0] * over, size[1] * over), 0)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(stroke * over))
    for points_ in strokes:
        xy = [
            ((x - lo[0]) * scale * over + left * over, (y - lo[1]) * scale * over + top * over)
            for x, y in points_
        ]
        draw.line(xy, fill=255, width=width, joint="curve")
        for x, y in (xy[0], xy[-1]):  # round pen ends
            r = width / 2
            draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
    reduced = canvas.resize(size, Image.Resampling.BOX)
    return np.asarray(reduced, dtype=np.float64) * (ink / 255.0)


def _digit_extent(strokes: list[np.ndarray]) -> float:
    """Width over height of the strokes' box."""
    points = np.concatenate(strokes)
    span = points.max(axis=0) - points.min(axis=0)
    return float(span[0] / span[1])


# --------------------------------------------------------------------------------------------
# Pages and files


def encode(pixels: np.ndarray, kind: str, quality: int = 85) -> bytes:
    """uint8 (H, W) or (H, W, 3) pixels as the bytes of a PNG or JPEG file."""
    buffer = io.BytesIO()
    image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
    if kind == "JPEG":
        image.save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="PNG")
    return buffer.getvalue()


def _page(
    rng: np.random.Generator,
    label: int,
    *,
    side: tuple[int, int],
    digit: tuple[float, float],
    stroke: tuple[float, float],
    paper: tuple[float, float],
    ink: tuple[float, float],
    gradient: float = 0.0,
    noise: tuple[float, float] = (0.0, 0.0),
    colour: bool = False,
    kind: str = "PNG",
) -> bytes:
    """A handwritten digit on a page.

    side: the page's side range in pixels; digit: the digit's height as a fraction of the page;
    stroke: the pen's width as a fraction of the digit's height; paper, ink: grey levels;
    gradient: grey levels by which the light falls off across the page, in a random direction;
    noise: the range of the sensor noise's standard deviation; colour: a tinted page and ink.
    """
    strokes = handwriting(label, rng)
    width = height = int(rng.integers(side[0], side[1] + 1))
    digit_height = rng.uniform(*digit) * height
    digit_width = digit_height * _digit_extent(strokes)
    pen = rng.uniform(*stroke) * digit_height
    margin = pen / 2 + 1  # anywhere on the page, the pen's width included
    left = rng.uniform(margin, max(margin, width - margin - digit_width))
    top = rng.uniform(margin, max(margin, height - margin - digit_height))
    coverage = draw_strokes(strokes, (width, height), (left, top, digit_height), pen, 1)
    paper_level, ink_level = rng.uniform(*paper), rng.uniform(*ink)
    # The light: a linear fall-off of `gradient` levels across the page, in any direction.
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height) - 0.5
    ramp = xx * math.cos(angle) + yy * math.sin(angle)
    ramp = ramp / (np.ptp(ramp) or 1.0)
    light = 1.0 + gradient / paper_level * (ramp - ramp.mean())
    grey = (paper_level * (1 - coverage) + ink_level * coverage) * light
    sigma = rng.uniform(*noise)
    if colour:
        tint_paper = np.array([1.0, rng.uniform(0.95, 1.0), rng.uniform(0.85, 0.97)])
        tint_ink = np.array([rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0), 1.0])
        grey3 = grey[..., None] * np.where(coverage[..., None] > 0.5, tint_ink, tint_paper)
        pixels = grey3 + rng.normal(0, sigma, grey3.shape) if sigma else grey3
    else:
        pixels = grey + rng.normal(0, sigma, grey.shape) if sigma else grey
    return encode(pixels, kind, int(rng.integers(60, 91)))


@cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS / name), size)


REGULAR_FACES = (
    "DejaVuSans.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansCondensed.ttf",
    "DejaVuSerifCondensed.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSerif-Italic.ttf",
)
BOLD_FACES = (
    "DejaVuSans-Bold.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansCondensed-Bold.ttf",
    "DejaVuSerifCondensed-Bold.ttf",
    "DejaVuSans-BoldOblique.ttf",
)
LIGHT_FACES = ("DejaVuSans-ExtraLight.ttf",)


def _typeface(
    rng: np.random.Generator, label: int, faces: tuple[str, ...], thicken: float = 0.0
) -> bytes:
    """`label` set in one of `faces`, dark on a light canvas or (one in four) light on dark.

    thicken: extra stroke around the glyph, as a fraction of the font size (a felt pen's
    outline on a typed digit).
    """
    size = int(rng.integers(28, 121))
    font = _font(faces[rng.integers(len(faces))], size)
    extra = round(thicken * size)
    text = str(label)
    left, top, right, bottom = font.getbbox(text, stroke_width=extra)
    margin = rng.integers(2, size // 2 + 3, size=4)
    width = right - left + margin[0] + margin[1]
    height = bottom - top + margin[2] + margin[3]
    dark_on_light = rng.random() >= 0.25
    ground, fill = (255, 0) if dark_on_light else (0, 255)
    ground = ground - int(rng.integers(0, 30)) if dark_on_light else int(rng.integers(0, 30))
    image = Image.new("L", (int(width), int(height)), ground)
    ImageDraw.Draw(image).text(
        (margin[0] - left, margin[2] - top),
        text,
        font=font,
        fill=fill,
        stroke_width=extra,
        stroke_fill=fill,
    )
    return encode(np.asarray(image), "PNG")


def _corner(rng: np.random.Generator, label: int, mnist: tuple[np.ndarray, np.ndarray]) -> bytes:
    """A real MNIST digit of `label` shrunk into the top-left corner of a 28x28 PNG, dark on
    light."""
    images, labels = mnist
    choice = rng.choice(np.flatnonzero(labels == label))
    digit = images[choice]
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    crop = Image.fromarray(digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    scale = rng.uniform(12, 17) / max(crop.size)
    crop = crop.resize(
        (max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale))),
        Image.Resampling.LANCZOS,
    )
    canvas = Image.new("L", (28, 28), 0)
    canvas.paste(crop, (int(rng.integers(0, 3)), int(rng.integers(0, 3))))
    return encode(255 - np.asarray(canvas, dtype=np.float64), "PNG")


@cache
def _sklearn_digits() -> tuple[np.ndarray, np.ndarray] | None:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    bunch = load_digits()
    return bunch.images, bunch.target


def _eight_by_eight(rng: np.random.Generator, label: int) -> bytes:
    """One of scikit-learn's 8x8 scans (0..16 ink) of `label`, enlarged, dark on white."""
    digits = _sklearn_digits()
    assert digits is not None
    images, labels = digits
    scan = images[rng.choice(np.flatnonzero(labels == label))]
    side = int(rng.choice([24, 32, 48, 64]))
    grey = Image.fromarray(np.round(255 - scan * (255 / 16)).astype(np.uint8))
    resample = (Image.Resampling.BICUBIC, Image.Resampling.BILINEAR)[rng.integers(2)]
    return encode(np.asarray(grey.resize((side, side), resample), dtype=np.float64), "PNG")


# --------------------------------------------------------------------------------------------
# The categories


@dataclass(frozen=True)
class Category:
    """A kind of input, how to make one image of it, and the accuracy the issue asks for."""

    name: str
    make: Callable[[np.random.Generator, int], bytes]
    target: float
    count: int = PER_CATEGORY
    needs: tuple[str, ...] = ()  # modules or font files without which it is skipped
    floor: float | None = None  # what the tests hold it to where the target is not yet met


def _mnist_sample() -> tuple[np.ndarray, np.ndarray]:
    import onnxdigits

    return onnxdigits.Artifacts().sample()


CLEAN: dict[str, Any] = dict(paper=(235, 255), ink=(0, 40))
PAGE: dict[str, Any] = dict(paper=(195, 235), ink=(15, 75), noise=(4, 12), colour=True, kind="JPEG")

CATEGORIES: list[Category] = [
    Category(
        "drawn, clean even page (PNG)",
        lambda rng, d: _page(
            rng, d, side=(48, 200), digit=(0.5, 0.8), stroke=(0.07, 0.12), **CLEAN
        ),
        1.00,
    ),
    Category(
        "drawn, noisy JPEG page, 30-level gradient",
        lambda rng, d: _page(
            rng, d, side=(120, 320), digit=(0.3, 0.7), stroke=(0.08, 0.16), gradient=30, **PAGE
        ),
        0.98,
    ),
    Category(
        "drawn, noisy JPEG page, 90-level gradient",
        lambda rng, d: _page(
            rng, d, side=(120, 320), digit=(0.3, 0.7), stroke=(0.08, 0.16), gradient=90, **PAGE
        ),
        0.98,
    ),
    Category(
        "drawn, thick marker",
        lambda rng, d: _page(
            rng, d, side=(64, 240), digit=(0.5, 0.75), stroke=(0.16, 0.24), **CLEAN
        ),
        0.98,
    ),
    Category(
        "drawn, thin pen",
        lambda rng, d: _page(
            rng, d, side=(160, 400), digit=(0.5, 0.85), stroke=(0.02, 0.04), **CLEAN
        ),
        0.98,
    ),
    Category(
        "drawn, uncentred on a small canvas",
        lambda rng, d: _page(
            rng, d, side=(28, 56), digit=(0.45, 0.65), stroke=(0.08, 0.14), **CLEAN
        ),
        0.98,
        SMALL,
    ),
    Category(
        "MNIST digit in the top-left corner of 28x28",
        lambda rng, d: _corner(rng, d, _mnist_sample()),
        0.98,
        SMALL,
    ),
    Category(
        "typeface, regular faces",
        lambda rng, d: _typeface(rng, d, REGULAR_FACES),
        0.98,
        needs=REGULAR_FACES,
    ),
    Category(
        "typeface, bold faces",
        lambda rng, d: _typeface(rng, d, BOLD_FACES),
        0.98,
        needs=BOLD_FACES,
    ),
    Category(
        "typeface, extra-light face",
        lambda rng, d: _typeface(rng, d, LIGHT_FACES),
        0.98,
        needs=LIGHT_FACES,
    ),
    Category(
        "typeface, thickened strokes",
        lambda rng, d: _typeface(rng, d, REGULAR_FACES, thicken=0.05),
        0.98,
        needs=REGULAR_FACES,
    ),
    # Not met: 0.9665 over seeds 0-4 (400 each) after, 0.9670 before; the misread are written
    # in styles MNIST lacks (an open-topped 4 read as 6) or are illegible at 8x8. The tests hold
    # it to 0.96 until the classifier is retrained (see the note).
    Category(
        "scikit-learn 8x8 scans, enlarged",
        _eight_by_eight,
        0.97,
        SMALL,
        needs=("sklearn",),
        floor=0.96,
    ),
    # Last, so that adding it left the seeds of the others as they were.
    Category(
        "typeface, bold faces thickened (black weight)",
        lambda rng, d: _typeface(rng, d, BOLD_FACES, thicken=0.04),
        0.98,
        needs=BOLD_FACES,
    ),
]


# --------------------------------------------------------------------------------------------
# Damage done to MNIST's own test digits: what happens to a digit on its way to a program.
# Each kind takes a digit (float (28, 28) in 0..255, light on black) and a generator and returns
# the damaged digit, still 28x28, so that it can be read both as an array (straight to the
# classifier) and as a file (a PNG through load_image). The kinds and their strengths are this
# project's own, from what pens, scanners, cameras and people do to digits.


def _grown3(image: np.ndarray, how: Callable[..., np.ndarray] = np.maximum) -> np.ndarray:
    """Each pixel the largest (or, with np.minimum, the smallest) of its 3x3 square."""
    padded = np.pad(image, 1, mode="edge")
    height, width = image.shape
    out = image.copy()
    for dy in range(3):
        for dx in range(3):
            out = how(out, padded[dy : dy + height, dx : dx + width])
    return out


def _resize(image: np.ndarray, size: tuple[int, int], how: Image.Resampling) -> np.ndarray:
    """A float image resampled to `size` (width, height)."""
    return np.asarray(Image.fromarray(image.astype(np.float32)).resize(size, how), np.float64)


def _warped(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The image sampled at (x, y) by bilinear interpolation; outside it is black."""
    padded = np.pad(image, 1)
    x, y = np.clip(x + 1, 0, image.shape[1]), np.clip(y + 1, 0, image.shape[0])
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    x1, y1 = np.minimum(x0 + 1, image.shape[1] + 1), np.minimum(y0 + 1, image.shape[0] + 1)
    top = padded[y0, x0] * (1 - fx) + padded[y0, x1] * fx
    bottom = padded[y1, x0] * (1 - fx) + padded[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _affine(
    image: np.ndarray, matrix: np.ndarray, shift: tuple[float, float] = (0, 0)
) -> np.ndarray:
    """The image mapped by a 2x2 matrix about its centre, then shifted by (dx, dy) pixels."""
    yy, xx = np.mgrid[0:MNIST_SIDE, 0:MNIST_SIDE].astype(np.float64)
    centre = (MNIST_SIDE - 1) / 2
    inverse = np.linalg.inv(matrix)
    u, v = xx - centre - shift[0], yy - centre - shift[1]
    x = inverse[0, 0] * u + inverse[0, 1] * v + centre
    y = inverse[1, 0] * u + inverse[1, 1] * v + centre
    return _warped(image, x, y)


def _shifted_mean(image: np.ndarray, offsets: list[tuple[float, float]]) -> np.ndarray:
    """The mean of the image shifted by each (dx, dy): a blur by that set of points."""
    yy, xx = np.mgrid[0:MNIST_SIDE, 0:MNIST_SIDE].astype(np.float64)
    return np.mean([_warped(image, xx - dx, yy - dy) for dx, dy in offsets], axis=0)


def _smooth_field(rng: np.random.Generator, coarse: int = 4) -> np.ndarray:
    """A smooth random field on 28x28 in about -1..1: coarse noise enlarged smoothly."""
    field = rng.uniform(-1, 1, (coarse, coarse))
    return _resize(field, (MNIST_SIDE, MNIST_SIDE), Image.Resampling.BICUBIC)


def _drawn(lines: list[list[tuple[float, float]]], width: float, dots: float = 0) -> np.ndarray:
    """Lines (in pixel coordinates of 28x28) drawn 4x oversampled and reduced: 0..255; with
    `dots`, each line is a row of dots that far apart instead."""
    over = 4
    canvas = Image.new("L", (MNIST_SIDE * over, MNIST_SIDE * over), 0)
    draw = ImageDraw.Draw(canvas)
    radius = width * over / 2
    for line in lines:
        xy = [(x * over, y * over) for x, y in line]
        if dots:
            for (x0, y0), (x1, y1) in zip(xy, xy[1:]):
                steps = max(1, int(math.hypot(x1 - x0, y1 - y0) / (dots * over)))
                for t in np.linspace(0, 1, steps + 1):
                    x, y = x0 + t * (x1 - x0), y0 + t * (y1 - y0)
                    draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
        else:
            draw.line(xy, fill=255, width=max(1, round(width * over)), joint="curve")
    return _resize(np.asarray(canvas, np.float64), (MNIST_SIDE, MNIST_SIDE), Image.Resampling.BOX)


def _across(rng: np.random.Generator) -> tuple[tuple[float, float], tuple[float, float]]:
    """The ends of a straight line across the image near its middle, at any angle."""
    angle = rng.uniform(0, math.pi)
    cx, cy = 14 + rng.uniform(-4, 4), 14 + rng.uniform(-4, 4)
    dx, dy = 20 * math.cos(angle), 20 * math.sin(angle)
    return (cx - dx, cy - dy), (cx + dx, cy + dy)


def _salt_and_pepper(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    rate = rng.uniform(0.05, 0.2)
    hit = rng.random(d.shape) < rate
    return np.where(hit, np.where(rng.random(d.shape) < 0.5, 0.0, 255.0), d)


def _outline(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    # The ink's region, at twice the resolution and a little thickened (a marker's digit),
    # less its inside: what an edge detector or a hollow font leaves.
    big = _resize(d, (56, 56), Image.Resampling.BILINEAR)
    for _ in range(int(rng.integers(1, 3))):
        big = _grown3(big)
    ink = big > 127
    edge = ink & ~(_grown3(ink.astype(np.float64), np.minimum) > 0.5)
    return _resize(edge * 255.0, (MNIST_SIDE, MNIST_SIDE), Image.Resampling.BOX) * 1.6


def _scribble(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    (x0, y0), (x1, y1) = _across(rng)
    turns = int(rng.integers(4, 9))
    amplitude = rng.uniform(2, 5)
    normal = np.array([-(y1 - y0), x1 - x0]) / math.hypot(x1 - x0, y1 - y0)
    points = []
    for k, t in enumerate(np.linspace(0, 1, turns + 1)):
        side = amplitude * (1 if k % 2 else -1)
        points.append(
            (x0 + t * (x1 - x0) + side * normal[0], y0 + t * (y1 - y0) + side * normal[1])
        )
    return np.maximum(d, _drawn([points], rng.uniform(1.2, 2.2)) * rng.uniform(0.7, 1.0))


def _dotted(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    line = list(_across(rng))
    return np.maximum(d, _drawn([line], rng.uniform(1.4, 2.2), dots=rng.uniform(2.5, 4)))


def _line(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    line = list(_across(rng))
    return np.maximum(d, _drawn([line], rng.uniform(1.0, 2.0)) * rng.uniform(0.6, 1.0))


def _bands(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    out = d.copy()
    width = int(rng.integers(4, 10))
    out[:, :width] = 255 - out[:, :width]
    out[:, MNIST_SIDE - width :] = 255 - out[:, MNIST_SIDE - width :]
    return out


def _region(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    out = d.copy()
    height, width = rng.integers(7, 15, 2)
    top, left = rng.integers(0, MNIST_SIDE - height + 1), rng.integers(0, MNIST_SIDE - width + 1)
    out[top : top + height, left : left + width] = (
        255 - out[top : top + height, left : left + width]
    )
    return out


def _brightness(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    return d + rng.uniform(80, 160)


def _fog(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    strength = rng.uniform(100, 200)
    fog = strength * (0.5 + 0.5 * _smooth_field(rng, int(rng.integers(3, 6))))
    return (d + fog) * 255 / (255 + strength)


def _low_contrast(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    keep = rng.uniform(0.08, 0.25)
    level = rng.uniform(40, 215)
    return level + (d - d.mean()) * keep


def _gradient(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:MNIST_SIDE, 0:MNIST_SIDE] / (MNIST_SIDE - 1) - 0.5
    ramp = xx * math.cos(angle) + yy * math.sin(angle)
    ramp = (ramp - ramp.min()) / np.ptp(ramp)
    return d * rng.uniform(0.6, 0.9) + rng.uniform(100, 180) * ramp


def _rotation(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    angle = math.radians(rng.uniform(20, 45) * rng.choice([-1, 1]))
    c, s = math.cos(angle), math.sin(angle)
    return _affine(d, np.array([[c, -s], [s, c]]))


def _shear(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    k = rng.uniform(0.3, 0.6) * rng.choice([-1, 1])
    return _affine(
        d, np.array([[1, k], [0, 1]]) if rng.random() < 0.5 else np.array([[1, 0], [k, 1]])
    )


def _scale(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    sx, sy = rng.uniform(0.55, 1.2, 2)
    return _affine(d, np.diag([sx, sy]))


def _translation(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(d.any(axis=1)), np.flatnonzero(d.any(axis=0))
    # As far as the digit can go without leaving the image, at least 3 pixels one way.
    dx = rng.uniform(-cols[0], MNIST_SIDE - 1 - cols[-1])
    dy = rng.uniform(-rows[0], MNIST_SIDE - 1 - rows[-1])
    return _affine(d, np.eye(2), (dx, dy))


def _elastic(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:MNIST_SIDE, 0:MNIST_SIDE].astype(np.float64)
    strength = rng.uniform(1.5, 2.5)
    return _warped(d, xx + strength * _smooth_field(rng, 5), yy + strength * _smooth_field(rng, 5))


def _motion_blur(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    length, angle = rng.uniform(5, 10), rng.uniform(0, math.pi)
    steps = np.linspace(-length / 2, length / 2, 9)
    return _shifted_mean(d, [(t * math.cos(angle), t * math.sin(angle)) for t in steps])


def _gaussian_blur(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    sigma = rng.uniform(1.2, 2.2)
    taps = np.arange(-7, 8)
    kernel = np.exp(-(taps**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(d, 7)
    rows = sum(w * padded[:, 7 + t : 7 + t + MNIST_SIDE] for w, t in zip(kernel, taps))
    return sum(w * rows[7 + t : 7 + t + MNIST_SIDE] for w, t in zip(kernel, taps))


def _defocus(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    radius = rng.uniform(1.8, 3.0)
    disc = [
        (dx, dy)
        for dy in np.arange(-3, 3.5, 0.5)
        for dx in np.arange(-3, 3.5, 0.5)
        if dx * dx + dy * dy <= radius * radius
    ]
    return _shifted_mean(d, disc)


def _shot_noise(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    photons = rng.uniform(2, 6)  # per grey level step of 255/photons: few photons, much noise
    return rng.poisson((d + 10) / 255 * photons) * 255 / photons


def _gaussian_noise(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    return d + rng.normal(0, rng.uniform(40, 80), d.shape)


def _jpeg(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    data = encode(d, "JPEG", int(rng.integers(3, 12)))
    return np.asarray(Image.open(io.BytesIO(data)), np.float64)


def _blots(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    canvas = Image.new("L", (MNIST_SIDE * 4, MNIST_SIDE * 4), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 4))):
        x, y = rng.uniform(2, 26, 2) * 4
        rx, ry = rng.uniform(1.5, 3.5, 2) * 4
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=255)
    blots = _resize(np.asarray(canvas, np.float64), (MNIST_SIDE, MNIST_SIDE), Image.Resampling.BOX)
    return np.maximum(d, blots)


def _low_resolution(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    side = int(rng.integers(8, 11))
    small = _resize(d, (side, side), Image.Resampling.BOX)
    how = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.NEAREST)
    return _resize(small, (MNIST_SIDE, MNIST_SIDE), how[rng.integers(3)])


def _thick(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    big = _resize(d, (56, 56), Image.Resampling.BILINEAR)
    for _ in range(int(rng.integers(2, 4))):
        big = _grown3(big)
    return _resize(big, (MNIST_SIDE, MNIST_SIDE), Image.Resampling.BOX)


def _thin(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    big = _resize(d, (56, 56), Image.Resampling.BILINEAR)
    for _ in range(int(rng.integers(1, 3))):
        eroded = _grown3(big, np.minimum)
        if eroded.max() < 100:
            break
        big = eroded
    return _resize(big, (MNIST_SIDE, MNIST_SIDE), Image.Resampling.BOX) * (255 / max(big.max(), 1))


def _glass(rng: np.random.Generator, d: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:MNIST_SIDE, 0:MNIST_SIDE]
    reach = int(rng.integers(1, 3))
    dy, dx = rng.integers(-reach, reach + 1, (2, MNIST_SIDE, MNIST_SIDE))
    return d[np.clip(yy + dy, 0, MNIST_SIDE - 1), np.clip(xx + dx, 0, MNIST_SIDE - 1)]


@dataclass(frozen=True)
class Damage:
    """A kind of damage done to MNIST's test digits, kept at 28x28."""

    name: str
    apply: Callable[[np.random.Generator, np.ndarray], np.ndarray]


DAMAGES: list[Damage] = [
    Damage("none (MNIST as it is)", lambda rng, d: d),
    Damage("salt-and-pepper, 5-20% of pixels", _salt_and_pepper),
    Damage("outline only", _outline),
    Damage("zig-zag scribble across", _scribble),
    Damage("dotted line across", _dotted),
    Damage("straight line across", _line),
    Damage("blots", _blots),
    Damage("left and right bands inverted", _bands),
    Damage("a region inverted", _region),
    Damage("brightness shift", _brightness),
    Damage("fog", _fog),
    Damage("low contrast", _low_contrast),
    Damage("gradient of light", _gradient),
    Damage("rotation 20-45 degrees", _rotation),
    Damage("shear", _shear),
    Damage("scale, each axis 0.55-1.2", _scale),
    Damage("translation", _translation),
    Damage("elastic", _elastic),
    Damage("motion blur", _motion_blur),
    Damage("Gaussian blur", _gaussian_blur),
    Damage("defocus", _defocus),
    Damage("glass blur", _glass),
    Damage("shot noise", _shot_noise),
    Damage("Gaussian noise", _gaussian_noise),
    Damage("JPEG artefacts, quality 3-11", _jpeg),
    Damage("low resolution, 8-10 pixels and back", _low_resolution),
    Damage("thick strokes", _thick),
    Damage("thin strokes", _thin),
]


def damaged(damage: Damage, images: np.ndarray, seed: int = SEED) -> np.ndarray:
    """MNIST digits (uint8 (N, 28, 28)) with `damage` done to each: uint8 (N, 28, 28), the
    same for the same seed on every machine."""
    rng = np.random.default_rng([seed, 1000 + DAMAGES.index(damage)])
    out = np.empty(images.shape, np.uint8)
    for index, digit in enumerate(images):
        out[index] = np.clip(np.round(damage.apply(rng, digit.astype(np.float64))), 0, 255)
    return out


def damage_accuracy(
    classifier: Any, damage: Damage, images: np.ndarray, labels: np.ndarray, seed: int = SEED
) -> tuple[float, float]:
    """The classifier's accuracy on the damaged digits read as arrays and as PNG files."""
    pixels = damaged(damage, images, seed)
    arrays = float(np.mean(classifier.predict(pixels) == labels))
    files = float(np.mean(predict(classifier, [encode(p, "PNG") for p in pixels]) == labels))
    return arrays, files


def missing(category: Category) -> list[str]:
    """What the category needs and this machine lacks: modules, or font files (.ttf)."""
    import importlib.util

    return [
        need
        for need in category.needs
        if not (
            (FONTS / need).is_file()
            if need.endswith(".ttf")
            else importlib.util.find_spec(need) is not None
        )
    ]


def generate(
    category: Category, count: int | None = None, seed: int = SEED
) -> tuple[list[bytes], np.ndarray]:
    """The files of one category and their labels: each digit equally often, a fixed seed.

    count: how many (the category's own count by default).
    """
    rng = np.random.default_rng([seed, CATEGORIES.index(category)])
    labels = np.arange(category.count if count is None else count) % 10
    return [category.make(rng, int(label)) for label in labels], labels


def predict(classifier: Any, files: list[bytes]) -> np.ndarray:
    """The classifier's labels for the files; -1 for a file it refuses, which counts as wrong."""
    from onnxdigits import InputError

    try:
        return np.asarray(classifier.predict(files))
    except InputError:
        labels = np.full(len(files), -1)
        for index, data in enumerate(files):
            try:
                labels[index] = classifier.predict(data)[0]
            except InputError:
                pass
        return labels


def _timings(files: list[bytes], normalisers: list[Callable[[bytes], object]]) -> list[float]:
    """Each normaliser's median milliseconds per file, taken in turns file by file (so that a
    change in the machine's load falls on all alike), each file's best of three."""
    times: list[list[float]] = [[] for _ in normalisers]
    for data in files:
        for index, normalise in enumerate(normalisers):
            best = math.inf
            for _ in range(3):
                start = time.perf_counter()
                try:
                    normalise(data)
                except ValueError:  # no ink: it took its time all the same
                    pass
                best = min(best, time.perf_counter() - start)
            times[index].append(best * 1000)
    return [float(np.median(t)) for t in times]


def timing_lines(per: int | None, seed: int, images: Path | None) -> Iterator[str]:
    """The normaliser's median wall milliseconds per file, for 28x28 MNIST PNGs and each
    category (`per` files each: by default 100 and 40), beside the normaliser in the copy of
    sdk/images.py at `images` when given: the lines of a Markdown table, as each is measured."""
    import onnxdigits

    other = load_normaliser(images) if images else None
    normalisers = [onnxdigits.load_image] + ([other.load_image] if other else [])
    info = machine.describe()
    yield f"{machine.headline(info)}; load average {machine.load_average()}"
    header = ["category", "installed ms", "--images ms", "--images / installed"]
    yield from tables.markdown(header, [])
    mnist = [encode(digit, "PNG") for digit in _mnist_sample()[0][: per or 100]]
    rows = [("MNIST test digits, 28x28 PNG", mnist)] + [
        (c.name, generate(c, per or 40, seed)[0]) for c in CATEGORIES if not missing(c)
    ]
    for name, files in rows:
        ms = _timings(files, normalisers)
        before = f"{ms[1]:.2f}" if other else "-"
        yield tables.row_line(
            [name, f"{ms[0]:.2f}", before, tables.ratio(ms[1], ms[0]) if other else "-"]
        )


def accuracy_lines(
    per: int | None = None,
    seed: int = SEED,
    device: str = "cpu",
    images: Path | None = None,
    save: Path | None = None,
    data: Path | None = None,
    part: str = "all",
) -> Iterator[str]:
    """The shipped classifier's accuracy on each generated category (`part` "inputs") and on
    each kind of damage (`part` "damage"), or both ("all"): Markdown lines, as each is measured.

    Args:
        per: images per category, and MNIST digits damaged (else each category's own count,
            and every digit).
        images: a copy of sdk/images.py whose to_batch the classifier uses instead.
        save: a folder to write every generated file into.
        data: an mnist.npz whose test set is damaged (else the shipped sample's 1,000).
    """
    import onnxdigits
    import onnxdigits.models

    if images:
        onnxdigits.models.to_batch = load_normaliser(images).to_batch
    classifier = onnxdigits.Classifier(device=device)
    if part != "damage":
        yield from _inputs_lines(classifier, per, seed, save)
    if part != "inputs":
        yield from _damage_lines(classifier, per, seed, data)


def _damage_lines(classifier: Any, per: int | None, seed: int, data: Path | None) -> Iterator[str]:
    """Each kind of damage's accuracy as arrays and as PNG files."""
    if data:
        with np.load(data, allow_pickle=False) as npz:
            images, labels = npz["x_test"], npz["y_test"]
    else:
        images, labels = _mnist_sample()
    if per:
        images, labels = images[:per], labels[:per]
    yield ""
    header = [f"damage to MNIST test digits ({len(images)}, seed {seed})", "arrays", "files"]
    yield from tables.markdown([*header, "files - arrays"], [])
    for damage in DAMAGES:
        arrays, files = damage_accuracy(classifier, damage, images, labels, seed)
        yield tables.row_line(
            [damage.name, f"{arrays:.3f}", f"{files:.3f}", f"{files - arrays:+.3f}"]
        )


def _inputs_lines(classifier: Any, per: int | None, seed: int, save: Path | None) -> Iterator[str]:
    """Each generated category's accuracy through files."""
    yield from tables.markdown(["category", "images", "accuracy", "target"], [])
    for number, category in enumerate(CATEGORIES):
        if missing(category):
            yield tables.row_line([category.name, "-", f"no {', '.join(missing(category))}", "-"])
            continue
        files, labels = generate(category, per, seed)
        predicted = predict(classifier, files)
        if save:
            save.mkdir(parents=True, exist_ok=True)
            for index, (data, label, got) in enumerate(zip(files, labels, predicted)):
                kind = "jpg" if data[:2] == b"\xff\xd8" else "png"
                name = f"{number:02d}-{index:03d}-label{label}-read{got}.{kind}"
                (save / name).write_bytes(data)
        accuracy = float(np.mean(predicted == labels))
        yield tables.row_line(
            [category.name, str(len(files)), f"{accuracy:.3f}", f"{category.target:.2f}"]
        )
