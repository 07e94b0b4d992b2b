"""Damage done to MNIST's own digits (onnxdigits.bench.damage's DAMAGES), read as arrays and as
PNG files: the normaliser must never make a digit harder to read than its raw pixels were.

Each kind is made from the shipped sample's 1,000 test digits with the generator's fixed seed.
"""

from __future__ import annotations

import numpy as np
import onnxdigits
import pytest
from onnxdigits import images
from onnxdigits.bench.damage import DAMAGES
from onnxdigits.bench.damage import damage_accuracy as accuracy_as_arrays_and_files
from PIL import Image

from tests.sdk.test_images import aligned_difference, box, png

# Where files still read worse than arrays by more than 0.01 with the shipped classifier
# (measured: files - arrays on seed 0); strict, so that meeting one is noticed.
NOT_YET = {
    "a region inverted": "-0.072: the region moves the ink's mass off the middle, so the digit "
    "is rebuilt, and the region's edge is read as strokes",
}


@pytest.fixture(scope="session")
def damage_accuracy(classifier, sample) -> dict[str, tuple[float, float]]:
    """Each kind's accuracy as arrays and as files."""
    images, labels = sample
    return {
        damage.name: accuracy_as_arrays_and_files(classifier, damage, images, labels)
        for damage in DAMAGES
    }


def _params() -> list:
    return [
        pytest.param(
            d.name,
            id=d.name,
            marks=[pytest.mark.xfail(reason=NOT_YET[d.name], strict=True)]
            if d.name in NOT_YET
            else [],
        )
        for d in DAMAGES
    ]


@pytest.mark.parametrize("name", _params())
def test_files_read_at_least_as_well_as_arrays(damage_accuracy, name: str) -> None:
    arrays, files = damage_accuracy[name]
    # (a whisker below 0.01: one image in a thousand is 0.001, and 0.832 - 0.01 is not 0.822)
    assert files >= arrays - 0.01 - 1e-9, f"files {files:.3f} < arrays {arrays:.3f} - 0.01"


@pytest.mark.parametrize(
    ("name", "bar"),
    [
        ("none (MNIST as it is)", 0.985),  # the classifier reads 989 of these 1,000 as arrays
        ("salt-and-pepper, 5-20% of pixels", 0.95),  # main's normaliser: 0.67
        ("left and right bands inverted", 0.9),  # main's: 0.11
        ("thick strokes", 0.97),  # a thick stroke's core is not an inverted region
    ],
)
def test_accuracy_through_files(damage_accuracy, name: str, bar: float) -> None:
    assert damage_accuracy[name][1] >= bar, damage_accuracy[name]


@pytest.fixture
def rebuilt(monkeypatch) -> None:
    """Every image rebuilt from its ink, 28x28 ones already in MNIST's form included: the
    tests of the rebuilding itself."""
    monkeypatch.setattr(images, "_AS_IT_IS", False)


def test_a_centred_28x28_file_is_kept_as_it_is(sample) -> None:
    digits = sample[0][:50]
    for digit in digits:
        np.testing.assert_array_equal(onnxdigits.load_image(png(digit)), digit)


def test_a_centred_28x28_dark_digit_on_a_light_page_is_turned_over(sample) -> None:
    for digit in sample[0][:50]:
        np.testing.assert_array_equal(onnxdigits.load_image(png(255 - digit)), digit)


def test_an_uncentred_28x28_file_is_rebuilt(sample) -> None:
    """A digit shrunk into a corner of 28x28 is not in MNIST's form: it is rebuilt, centred."""
    for label, digit in enumerate(sample[0][:10]):
        small = np.asarray(Image.fromarray(digit).resize((14, 14), Image.Resampling.LANCZOS))
        corner = np.zeros((28, 28), np.uint8)
        corner[:14, :14] = small
        out = onnxdigits.load_image(png(corner)).astype(float)
        rows, cols = np.mgrid[0:28, 0:28]
        mass = out.sum()
        centre = ((out * rows).sum() / mass, (out * cols).sum() / mass)
        assert np.hypot(centre[0] - 14, centre[1] - 14) < 1.5, (label, centre)
        assert max(box(out.astype(np.uint8))) >= 18, label  # grown from 14 to MNIST's 20


def test_a_28x28_digit_under_fog_is_kept_though_no_strokes_are_found(sample) -> None:
    """Haze over the whole image hides the strokes from the rebuilding; the digit is still
    there, centred, and kept."""
    rng = np.random.default_rng(0)
    for digit in sample[0][:20]:
        fog = 120 + 60 * rng.random((28, 28))
        foggy = np.rint(np.clip(digit * 0.5 + fog, 0, 255)).astype(np.uint8)
        out = onnxdigits.load_image(png(foggy))
        np.testing.assert_array_equal(out, foggy)


def test_28x28_noise_is_not_a_digit() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (28, 28))
    with pytest.raises(onnxdigits.InputError, match="holds no digit"):
        onnxdigits.load_image(png(noise))


def _digit(sample, label: int) -> np.ndarray:
    images, labels = sample
    return images[np.flatnonzero(labels == label)[0]]


@pytest.mark.parametrize("rate", [0.05, 0.2])
@pytest.mark.usefixtures("rebuilt")
def test_salt_and_pepper_is_taken_out_before_ink_is_decided(sample, rate: float) -> None:
    for label in range(10):
        digit = _digit(sample, label)
        rng = np.random.default_rng(label)
        hit = rng.random(digit.shape) < rate
        noisy = np.where(hit, np.where(rng.random(digit.shape) < 0.5, 0, 255), digit)
        clean = onnxdigits.load_image(png(digit))
        got = onnxdigits.load_image(png(noisy))
        # Left in, salt far from the digit sets its box and shrinks it to a speck.
        assert aligned_difference(got, clean) <= 20, label


@pytest.mark.usefixtures("rebuilt")
def test_a_thin_diagonal_line_is_not_salt_and_pepper() -> None:
    """Pixels of a one-pixel diagonal line have no like 4-neighbour, but two like diagonal
    ones: a median would rub such a digit (an outline) out."""
    image = np.zeros((28, 28))
    for k in range(6, 22):
        image[k, k] = image[k, 27 - k] = 255
    out = onnxdigits.load_image(png(image))
    assert box(out)[0] >= 19 and out.astype(float).sum() > 255 * 20


@pytest.mark.parametrize("width", [4, 5])
@pytest.mark.usefixtures("rebuilt")
def test_inverted_bands_are_turned_back_and_their_edges_are_not_strokes(sample, width: int) -> None:
    close = []
    for label in range(10):
        digit = _digit(sample, label)
        banded = digit.astype(np.int64)
        banded[:, :width] = 255 - banded[:, :width]
        banded[:, -width:] = 255 - banded[:, -width:]
        clean = onnxdigits.load_image(png(digit))
        got = onnxdigits.load_image(png(banded))
        close.append(aligned_difference(got, clean) <= 30)
    # Taken for ink, the white bands would fill the box and the digit would vanish; a digit
    # whose strokes run along a band's edge (a wide 0) may still lose its stroke there.
    assert sum(close) >= 8, close


@pytest.mark.usefixtures("rebuilt")
def test_clutter_beside_a_28x28_digit_does_not_shrink_it(sample) -> None:
    """Blots in two corners of a 28x28 MNIST digit: the digit keeps its 20 rows instead of
    being shrunk so that digit and blots fit in 20."""
    for label in range(10):
        digit = _digit(sample, label).copy()
        digit[0:3, 0:3] = digit[25:28, 25:28] = 255
        out = onnxdigits.load_image(png(digit))
        rows = np.flatnonzero(out.any(axis=1))
        assert rows[-1] - rows[0] + 1 >= 22, label
