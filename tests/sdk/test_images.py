"""The image normaliser against what users feed it, and `to_batch` at its edges.

Every file and PIL image, whatever its size, must come out in MNIST form: the ink's box fitted
into 20x20 keeping its aspect and centred by its mass in 28x28, light ink on black, the page's
light and noise taken out, strokes of MNIST's width. Arrays are taken to be in that form and
pass untouched.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxdigits
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnxdigits import InputError
from onnxdigits.bench.damage import (
    CATEGORIES,
    draw_strokes,
    generate,
    handwriting,
    missing,
    predict,
)
from PIL import Image

# --------------------------------------------------------------------------------------------
# Helpers


def png(image: np.ndarray | Image.Image, **save: object) -> bytes:
    """An image as the bytes of a PNG (or another format given by `format=`)."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.clip(np.round(image), 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, **{"format": "PNG", **save})
    return buffer.getvalue()


def centre_of_mass(digit: np.ndarray) -> tuple[float, float]:
    """(row, column) of the mass of a (28, 28) image."""
    mass = digit.astype(np.float64)
    total = mass.sum()
    rows, cols = np.indices(digit.shape)
    return float((rows * mass).sum() / total), float((cols * mass).sum() / total)


def aligned_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The mean absolute difference of two (28, 28) images in grey levels, at the best of the
    shifts by up to a pixel (centring rounds the centre of mass to a whole pixel)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return min(
        float(np.abs(np.roll(a, (dy, dx), axis=(0, 1)) - b).mean())
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
    )


def box(digit: np.ndarray) -> tuple[int, int]:
    """Height and width of the box around the non-zero pixels."""
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def shrunk(digit: np.ndarray, side: int) -> Image.Image:
    """The ink's box of an MNIST digit, resized so that its longer side is `side`."""
    rows, cols = np.flatnonzero(digit.any(axis=1)), np.flatnonzero(digit.any(axis=0))
    crop = Image.fromarray(digit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])
    scale = side / max(crop.size)
    size = (max(1, round(crop.size[0] * scale)), max(1, round(crop.size[1] * scale)))
    return crop.resize(size, Image.Resampling.LANCZOS)


def placed(
    digit: np.ndarray, canvas: tuple[int, int], side: int, at: tuple[int, int]
) -> Image.Image:
    """An MNIST digit shrunk or enlarged to `side` and pasted at `at` on a black canvas."""
    image = Image.new("L", canvas, 0)
    image.paste(shrunk(digit, side), at)
    return image


def drawn(label: int, stroke: float, *, seed: int = 0, side: int = 160) -> np.ndarray:
    """A handwritten `label` drawn with a pen `stroke` times the digit's height wide: float ink
    coverage (side, side) in [0, 1]."""
    strokes = handwriting(label, np.random.default_rng(seed))
    height = 0.6 * side
    return draw_strokes(
        strokes, (side, side), (0.2 * side, 0.2 * side, height), stroke * height, 1.0
    )


@pytest.fixture(scope="module")
def confident(classifier, sample) -> list[tuple[np.ndarray, int]]:
    """Ten sample digits, one of each label, that the classifier gets right with p >= 0.99."""
    images, labels = sample
    probs = classifier.predict_proba(images)
    good = (probs.argmax(axis=1) == labels) & (probs.max(axis=1) >= 0.99)
    return [
        (images[i], int(labels[i]))
        for i in (np.flatnonzero(good & (labels == d))[0] for d in range(10))
    ]


# --------------------------------------------------------------------------------------------
# Geometry: fitted into 20x20 and centred by mass, for every file whatever its size


def _exif_rotated(digit: np.ndarray) -> bytes:
    # The pixels are stored turned a quarter; the EXIF orientation (6: rotate 90 clockwise to
    # view) says how to turn them upright again.
    upright = Image.fromarray(255 - digit).resize((84, 84), Image.Resampling.BICUBIC)
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    return png(stored, format="JPEG", quality=95, exif=exif.tobytes())


def _rgba(digit: np.ndarray, ink: int) -> bytes:
    rgba = np.zeros((56, 56, 4), np.uint8)
    big = np.asarray(Image.fromarray(digit).resize((56, 56), Image.Resampling.BICUBIC))
    rgba[..., :3] = ink
    rgba[..., 3] = big  # the digit is where the image is opaque; the rest shows through
    return png(Image.fromarray(rgba, "RGBA"))


def _sixteen_bit(digit: np.ndarray) -> bytes:
    big = np.asarray(Image.fromarray(digit).resize((56, 56), Image.Resampling.BICUBIC))
    return png(Image.fromarray((65535 - big.astype(np.uint16) * 257).astype(np.uint16)))


def _colour_jpeg(digit: np.ndarray) -> bytes:
    big = np.asarray(Image.fromarray(digit).resize((120, 120)), dtype=np.float64) / 255
    paper, ink = np.array([250, 240, 200]), np.array([20, 40, 150])  # blue ink, yellow paper
    return png(paper * (1 - big[..., None]) + ink * big[..., None], format="JPEG", quality=80)


GEOMETRY: list[tuple[str, Callable[[np.ndarray], bytes | Image.Image]]] = [
    ("28x28 PNG as MNIST", lambda d: png(d)),
    (
        "28x28, top-left corner, dark on light",
        lambda d: png(255 - np.asarray(placed(d, (28, 28), 14, (0, 0)))),
    ),
    ("28x28, bottom-right corner", lambda d: png(placed(d, (28, 28), 12, (15, 15)))),
    ("90x40, digit at the far right", lambda d: png(placed(d, (90, 40), 30, (58, 5)))),
    ("300x200, small digit near the top-left", lambda d: png(placed(d, (300, 200), 40, (10, 12)))),
    (
        "enlarged 4x, 112x112",
        lambda d: png(Image.fromarray(d).resize((112, 112), Image.Resampling.BICUBIC)),
    ),
    (
        "inverted 84x84, dark on light",
        lambda d: png(255 - np.asarray(Image.fromarray(d).resize((84, 84)))),
    ),
    ("RGBA, black ink on a transparent page", lambda d: _rgba(d, 0)),
    ("RGBA, white ink on a transparent page", lambda d: _rgba(d, 255)),
    ("EXIF-rotated JPEG", _exif_rotated),
    ("16-bit grey PNG, dark on light", _sixteen_bit),
    ("colour JPEG, blue ink on yellow paper", _colour_jpeg),
    ("PIL image, mode L, 28x28 in a corner", lambda d: placed(d, (28, 28), 13, (1, 14))),
    ("PIL image, mode RGB, 50x70", lambda d: placed(d, (50, 70), 30, (3, 30)).convert("RGB")),
]


@pytest.mark.parametrize(("make"), [pytest.param(m, id=i) for i, m in GEOMETRY])
def test_every_file_is_fitted_and_centred_as_mnist(classifier, confident, make) -> None:
    for digit, label in confident:
        source = make(digit)
        out = onnxdigits.load_image(source)
        assert out.shape == (28, 28) and out.dtype == np.uint8
        row, col = centre_of_mass(out)
        assert abs(row - 14) <= 1 and abs(col - 14) <= 1, f"digit {label}: mass at {row, col}"
        height, width = box(out)
        assert max(height, width) in (19, 20, 21), f"digit {label}: box {height}x{width}"
        # light ink on black: the border is black and the ink bright
        assert out[[0, -1]].max() == 0 and out[:, [0, -1]].max() == 0 and out.max() >= 200
        assert classifier.predict(source)[0] == label, f"digit {label} read otherwise"


def test_the_box_keeps_its_aspect(confident) -> None:
    """A narrow digit stays narrow: its box is fitted into 20x20, not stretched to it."""
    one = next(digit for digit, label in confident if label == 1)
    rows, cols = np.flatnonzero(one.any(axis=1)), np.flatnonzero(one.any(axis=0))
    aspect = (cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1)
    out = onnxdigits.load_image(png(Image.fromarray(one).resize((140, 140))))
    height, width = box(out)
    assert height == 20 and abs(width / height - aspect) <= 0.15, (height, width, aspect)


def test_an_mnist_digit_comes_back_nearly_as_it_was(sample) -> None:
    """A 28x28 file of an MNIST digit is normalised too, and MNIST's own form is a fixed point:
    the result differs from the digit by little."""
    for digit in sample[0][:100]:
        assert aligned_difference(onnxdigits.load_image(png(digit)), digit) <= 15


# --------------------------------------------------------------------------------------------
# Light, polarity, noise, stroke width


def _page(
    coverage: np.ndarray,
    *,
    paper: float,
    ink: float,
    gradient: float = 0.0,
    noise: float = 0.0,
    jpeg: bool = False,
) -> bytes:
    """Ink coverage in [0, 1] put on a page lit unevenly (a fall-off of `gradient` levels from
    left to right), with sensor noise, as PNG or JPEG bytes."""
    height, width = coverage.shape
    light = 1 + gradient / paper * (np.linspace(0.5, -0.5, width)[None, :])
    grey = (paper * (1 - coverage) + ink * coverage) * light
    grey = grey + np.random.default_rng(0).normal(0, noise, grey.shape)
    return png(grey, format="JPEG", quality=70) if jpeg else png(grey)


@pytest.mark.parametrize(
    "page",
    [
        dict(paper=230, ink=30, gradient=90, noise=10, jpeg=True),
        dict(paper=210, ink=20, gradient=-90, noise=6, jpeg=True),
        dict(paper=30, ink=220, gradient=60, noise=8),  # light ink on a dark page
        dict(paper=128, ink=40),  # dark ink on a mid-grey page
        dict(paper=128, ink=220),  # light ink on a mid-grey page
    ],
    ids=[
        "90-levels-noisy-jpeg",
        "90-levels-the-other-way",
        "light-on-dark",
        "dark-on-grey",
        "light-on-grey",
    ],
)
def test_light_noise_and_polarity_leave_the_digit_as_on_a_clean_page(page: dict) -> None:
    for label in range(10):
        coverage = drawn(label, 0.1, seed=label)
        clean = onnxdigits.load_image(_page(coverage, paper=255, ink=0))
        got = onnxdigits.load_image(_page(coverage, **page))
        # Noise that became ink, or light taken for ink, would move and shrink the digit.
        assert aligned_difference(got, clean) <= 8, label


def test_polarity_follows_the_background_not_the_mean() -> None:
    """A ring so thick that its dark ink covers most of the page is still dark ink on a light
    page: the result is a light ring around a black middle, not a light disc."""
    yy, xx = np.mgrid[0:100, 0:100] - 49.5
    radius = np.hypot(yy, xx)
    coverage = ((radius >= 12) & (radius <= 47)).astype(np.float64)
    assert coverage.mean() > 0.5
    out = onnxdigits.load_image(_page(coverage, paper=240, ink=20))
    radius = np.hypot(*(np.mgrid[0:28, 0:28] - 14))
    assert out[radius <= 1.5].max() == 0, out
    assert out[(radius >= 5) & (radius <= 7)].mean() >= 128, out


def test_lone_specks_of_dust_are_not_ink() -> None:
    coverage = drawn(7, 0.1)
    with_dust = coverage.copy()
    with_dust[[3, 5, 150, 156], [150, 4, 6, 152]] = 1.0  # four single dark pixels, far apart
    clean = onnxdigits.load_image(_page(coverage, paper=255, ink=0))
    np.testing.assert_array_equal(onnxdigits.load_image(_page(with_dust, paper=255, ink=0)), clean)


@pytest.mark.parametrize("stroke", [0.02, 0.3], ids=["thin-pen", "thick-marker"])
def test_strokes_are_brought_towards_mnist_width(classifier, stroke: float) -> None:
    """A thin pen's or a thick marker's digits end up with about as much ink as the same digits
    written with an MNIST-like pen (left as they are, the thin ones would have a quarter of it
    and the thick ones over twice), and read right."""
    ratios = []
    for label in range(10):
        normal = onnxdigits.load_image(_page(drawn(label, 0.1, seed=label), paper=255, ink=0))
        source = _page(drawn(label, stroke, seed=label), paper=255, ink=0)
        out = onnxdigits.load_image(source)
        ratios.append(out.astype(np.float64).sum() / normal.astype(np.float64).sum())
        assert classifier.predict(source)[0] == label
    # The width measure counts a stroke's ends as outline, so a marker's strokes are measured
    # thinner than they are and are thinned only part of the way.
    assert 0.7 <= np.mean(ratios) <= 1.9, ratios


# --------------------------------------------------------------------------------------------
# No ink is not a label


def _gradient_page() -> bytes:
    xx = np.mgrid[0:240, 0:320][1]
    noise = np.random.default_rng(0).normal(0, 10, xx.shape)
    return png(180 + 90 * (xx / 320 - 0.5) + noise, format="JPEG", quality=70)


NO_INK: list[tuple[str, Callable[[], bytes]]] = [
    ("white", lambda: png(np.full((50, 50), 255))),
    ("black-28x28", lambda: png(np.zeros((28, 28)))),
    ("mid-grey", lambda: png(np.full((64, 64), 128))),
    ("noisy-jpeg-page-lit-unevenly", _gradient_page),
    ("transparent", lambda: png(Image.new("RGBA", (40, 40), (0, 0, 0, 0)))),
]


@pytest.mark.parametrize("make", [pytest.param(m, id=i) for i, m in NO_INK])
def test_an_image_without_ink_raises_input_error_naming_it(
    classifier, tmp_path: Path, make
) -> None:
    path = tmp_path / "blank.png"
    path.write_bytes(make())
    with pytest.raises(InputError, match=f"{re.escape(str(path))} holds no digit"):
        onnxdigits.load_image(path)
    with pytest.raises(InputError, match=f"images\\[1\\]: {re.escape(str(path))} holds no digit"):
        classifier.predict([png(drawn(3, 0.1) * 255), path])


# --------------------------------------------------------------------------------------------
# Accuracy on the generated evaluation set, and MNIST kept


@pytest.fixture(scope="session")
def realistic_labels(classifier) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each category's true and predicted labels (-1 for a file refused), generated once per
    session with the generator's fixed seed."""
    result = {}
    for category in CATEGORIES:
        if not missing(category):
            files, labels = generate(category)
            result[category.name] = labels, predict(classifier, files)
    return result


@pytest.mark.parametrize("category", [pytest.param(c, id=c.name) for c in CATEGORIES])
def test_accuracy_on_realistic_images_meets_the_target(realistic_labels, category) -> None:
    if category.name not in realistic_labels:
        pytest.skip(f"this machine lacks {', '.join(missing(category))}")
    labels, predicted = realistic_labels[category.name]
    assert len(labels) >= 100
    accuracy = float(np.mean(predicted == labels))
    wrong = [f"{t}->{p}" for t, p in zip(labels, predicted) if t != p]
    bar = category.target if category.floor is None else category.floor
    assert accuracy >= bar, f"{accuracy:.3f} < {bar}: {wrong}"


def test_png_round_trips_of_mnist_digits_classify_as_the_arrays_do(classifier, sample) -> None:
    images, labels = sample
    from_arrays = classifier.predict(images)
    from_files = classifier.predict([png(image) for image in images])
    assert np.mean(from_files == from_arrays) >= 0.995
    assert np.mean(from_files == labels) >= np.mean(from_arrays == labels) - 0.003


def test_arrays_pass_untouched(sample) -> None:
    """Arrays are taken to be in MNIST form: only scaled, never fitted or centred, even a digit
    pinned to a corner."""
    corner = np.asarray(placed(sample[0][0], (28, 28), 12, (0, 0)))
    np.testing.assert_array_equal(onnxdigits.to_batch(corner)[0, ..., 0], corner / np.float32(255))


# --------------------------------------------------------------------------------------------
# to_batch at its edges: accept what is unambiguous, say what came otherwise


def test_a_single_28x28x1_array_is_one_image(sample) -> None:
    digit = sample[0][0]
    np.testing.assert_array_equal(onnxdigits.to_batch(digit[..., None]), onnxdigits.to_batch(digit))


def test_a_list_may_mix_files_arrays_and_pil_images(sample, tmp_path: Path) -> None:
    images = sample[0]
    path = tmp_path / "d.png"
    path.write_bytes(png(images[1]))
    with open(path, "rb") as file:
        mixed = [
            path,
            images[0],
            images[2:4].astype(np.float32) / 255,
            Image.fromarray(images[4]),
            file,
        ]
        batch = onnxdigits.to_batch(mixed)
    assert batch.shape == (6, 28, 28, 1) and batch.dtype == np.float32 and batch.flags.c_contiguous
    from_file = onnxdigits.load_image(path) / np.float32(255)
    np.testing.assert_array_equal(batch[0, ..., 0], from_file)
    np.testing.assert_array_equal(batch[5, ..., 0], from_file)
    np.testing.assert_array_equal(batch[1:4], onnxdigits.to_batch(images[[0, 2, 3]]))  # untouched
    np.testing.assert_array_equal(
        batch[4, ..., 0], onnxdigits.load_image(Image.fromarray(images[4])) / np.float32(255)
    )


def test_a_binary_file_object_reads_as_its_path(sample, tmp_path: Path) -> None:
    path = tmp_path / "d.png"
    path.write_bytes(png(sample[0][0]))
    with open(path, "rb") as file:
        np.testing.assert_array_equal(onnxdigits.load_image(file), onnxdigits.load_image(path))
    np.testing.assert_array_equal(
        onnxdigits.load_image(io.BytesIO(path.read_bytes())), onnxdigits.load_image(path)
    )


def _text_file(tmp_path: Path) -> object:
    path = tmp_path / "d.png"
    path.write_bytes(b"\x89PNG")
    return open(path, encoding="latin-1")  # closed by the garbage collector: a test


EDGES: list[tuple[str, Callable[[Path, np.ndarray], object], str]] = [
    ("none", lambda p, d: None, "images cannot be a NoneType; expected a numpy array of shape"),
    ("dict", lambda p, d: {"image": d}, "images cannot be a dict; expected"),
    ("empty-list", lambda p, d: [], "no images: an empty list; give at least one"),
    ("empty-tuple", lambda p, d: (), "no images: an empty tuple"),
    (
        "text-mode-file",
        lambda p, d: _text_file(p),
        "open in text mode; open the image file with 'rb'",
    ),
    (
        "ragged-arrays",
        lambda p, d: [d, d[:27]],
        "images[1]: images of shape (27, 28); expected (28, 28), (28, 28, 1)",
    ),
    (
        "a-missing-file-in-a-list",
        lambda p, d: [d, p / "missing.png"],
        "images[1]: no such image file",
    ),
    ("rgb-array", lambda p, d: np.stack([d] * 3, axis=-1), "images of shape (28, 28, 3); expected"),
]


@pytest.mark.parametrize(("make", "fragment"), [pytest.param(m, f, id=i) for i, m, f in EDGES])
def test_what_cannot_be_read_is_named(
    classifier, sample, tmp_path: Path, make, fragment: str
) -> None:
    with pytest.raises(InputError, match=re.escape(fragment)):
        classifier.predict(make(tmp_path, sample[0][0]))


# --------------------------------------------------------------------------------------------
# Any image file at all: MNIST form or InputError, never anything else


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(1, 64),
    st.integers(1, 64),
    st.sampled_from(["L", "RGB", "RGBA", "LA", "I;16"]),
    st.sampled_from(["noise", "blank", "blob", "stripe"]),
    st.integers(0, 2**32 - 1),
)
def test_any_image_file_gives_mnist_form_or_input_error(
    height: int, width: int, mode: str, content: str, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    grey = np.full((height, width), float(rng.integers(0, 256)))
    if content == "noise":
        grey = rng.uniform(0, 255, (height, width))
    elif content == "blob":
        top, left = rng.integers(0, height), rng.integers(0, width)
        grey[top : top + rng.integers(1, 20), left : left + rng.integers(1, 20)] = 255 - grey[0, 0]
    elif content == "stripe":
        grey[:, : max(1, width // 3)] = 255 - grey[0, 0]
    channels = {"L": 1, "RGB": 3, "RGBA": 4, "LA": 2, "I;16": 1}[mode]
    if mode == "I;16":
        image = Image.fromarray((grey * 257).astype(np.uint16))
    elif channels == 1:
        image = Image.fromarray(grey.astype(np.uint8))
    else:
        pixels = np.repeat(grey[..., None], channels, axis=-1)
        pixels[..., -1] = rng.uniform(0, 255, (height, width)) if channels in (2, 4) else grey
        image = Image.fromarray(pixels.astype(np.uint8), mode)
    try:
        out = onnxdigits.load_image(png(image))
    except InputError as exc:
        event(str(exc).split(":")[0][:30])
        return
    event("a digit")
    assert out.shape == (28, 28) and out.dtype == np.uint8 and out.any()
