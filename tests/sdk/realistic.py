"""An evaluation set of digit images such as users feed the classifier, generated in code.

The images are what a user is likely to hand over: typeface digits in several weights,
handwriting drawn as strokes on clean pages and on shaded, noisy pages saved as JPEG, digits
left in a corner of a small canvas, marker and pen strokes, and scikit-learn's 8x8 scans
enlarged; each is the bytes of a PNG or JPEG file, with its true label. A fixed seed makes the
same set on every machine.

`python -m tests.sdk.realistic` prints the accuracy of each category through the shipped
classifier (`--per N` images per category, `--seed S`, `--images OLD.py` through another
version of sdk/images.py, `--save DIR` writes the files); `--time` prints the normaliser's
time per image instead, beside `--images`' when given."""

from __future__ import annotations

import argparse
import io
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONTS = Path("/usr/share/fonts/truetype/dejavu")
PER_CATEGORY = 120  # twelve of each digit: one error costs 0.0083
SMALL = 400  # small images are cheap to make and read: more of them, for a finer measure
SEED = 0

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


CLEAN = dict(paper=(235, 255), ink=(0, 40))
PAGE = dict(paper=(195, 235), ink=(15, 75), noise=(4, 12), colour=True, kind="JPEG")

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


def _normaliser(path: Path) -> ModuleType:
    """Another version of sdk/images.py (such as git HEAD's), loaded beside the installed one."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("onnxdigits._images_under_test", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _machine() -> str:
    """The CPU's model, cores and vector width, and the load average (timings are shared)."""
    import os
    import platform

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    model = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if "model name" in line),
        platform.processor(),
    )
    width = 512 if " avx512f" in info else 256 if " avx2" in info else 128
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{model}, {os.cpu_count()} cores, {width}-bit vectors; load average {load}"


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


def main(argv: list[str] | None = None) -> None:
    """Print the accuracy of each category through the shipped classifier, as a table; or,
    with --time, the normaliser's time per image."""
    import onnxdigits
    import onnxdigits.models

    parser = argparse.ArgumentParser(prog="python -m tests.sdk.realistic", description=__doc__)
    parser.add_argument("--per", type=int, help="images per category (else each its own count)")
    parser.add_argument("--seed", type=int, default=SEED, help="the generator's seed")
    parser.add_argument("--device", default="cpu", help="where the classifier runs")
    parser.add_argument(
        "--images", type=Path, help="use the normaliser in this copy of sdk/images.py instead"
    )
    parser.add_argument(
        "--time",
        action="store_true",
        help="time load_image per image (median, ms), beside --images' when given",
    )
    parser.add_argument("--save", type=Path, help="also write every file into this folder")
    args = parser.parse_args(argv)
    other = _normaliser(args.images) if args.images else None
    if args.time:
        normalisers = [onnxdigits.load_image] + ([other.load_image] if other else [])
        print(_machine())
        print(
            "| category | installed ms | --images ms | --images / installed |\n|---|---:|---:|---:|"
        )
        mnist = [encode(digit, "PNG") for digit in _mnist_sample()[0][: args.per or 100]]
        rows = [("MNIST test digits, 28x28 PNG", mnist)] + [
            (c.name, generate(c, args.per or 40, args.seed)[0])
            for c in CATEGORIES
            if not missing(c)
        ]
        for name, files in rows:
            ms = _timings(files, normalisers)
            ratio = f"{ms[1] / ms[0]:.2f}x" if other else "-"
            before = f"{ms[1]:.2f}" if other else "-"
            print(f"| {name} | {ms[0]:.2f} | {before} | {ratio} |", flush=True)
        return
    if other:
        onnxdigits.models.to_batch = other.to_batch  # type: ignore[attr-defined]
    classifier = onnxdigits.Classifier(device=args.device)
    print("| category | images | accuracy | target |\n|---|---:|---:|---:|")
    for number, category in enumerate(CATEGORIES):
        if missing(category):
            print(f"| {category.name} | - | no {', '.join(missing(category))} | - |")
            continue
        files, labels = generate(category, args.per, args.seed)
        predicted = predict(classifier, files)
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            for index, (data, label, got) in enumerate(zip(files, labels, predicted)):
                kind = "jpg" if data[:2] == b"\xff\xd8" else "png"
                name = f"{number:02d}-{index:03d}-label{label}-read{got}.{kind}"
                (args.save / name).write_bytes(data)
        accuracy = float(np.mean(predicted == labels))
        print(f"| {category.name} | {len(files)} | {accuracy:.3f} | {category.target:.2f} |")


if __name__ == "__main__":
    main()
