"""The faster normaliser against a frozen copy of main's (tests/sdk/_images_frozen.py).

Its exact changes give main's output bit for bit; its one shortcut that alters pixels (a
border of one exact level taken for the page without a fit) leaves every label as it was. The
inputs are generated here: MNIST's sample digits as 28x28 PNGs, the evaluation set's files
(onnxdigits.bench.damage), canvases as the web page sends them, EXIF-rotated and page-sized JPEGs.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnxdigits
import pytest
from onnxdigits import InputError, images
from onnxdigits.bench.damage import CATEGORIES, DAMAGES, damaged, encode, generate, missing
from onnxdigits.bench.normaliser import load_normaliser
from PIL import Image

FROZEN = Path(__file__).with_name("_images_frozen.py")


@pytest.fixture(scope="module")
def frozen():
    return load_normaliser(FROZEN)


def _canvas(digit: np.ndarray) -> bytes:
    """A 280x280 RGBA canvas: the digit drawn in black on a transparent page."""
    big = np.asarray(Image.fromarray(digit).resize((280, 280), Image.Resampling.BICUBIC))
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., 3] = big
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def _photo(digit: np.ndarray, size: tuple[int, int], orientation: int = 1) -> bytes:
    """A dark digit on a page lit unevenly, as a JPEG of `size` (EXIF orientation given)."""
    rng = np.random.default_rng(int(digit.sum()))
    width, height = size
    ink = np.asarray(Image.fromarray(digit).resize((height // 2, height // 2)), np.float64)
    page = np.full((height, width), 225.0) + 30 * np.linspace(-0.5, 0.5, width)[None, :]
    top, left = height // 4, width // 3
    page[top : top + height // 2, left : left + height // 2] -= ink * 0.7
    page += rng.normal(0, 6, page.shape)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(np.clip(page, 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=85, exif=exif.tobytes()
    )
    return buffer.getvalue()


@pytest.fixture(scope="module")
def files(sample) -> list[bytes]:
    digits = sample[0]
    made = [encode(digit, "PNG") for digit in digits]
    for category in CATEGORIES:
        if not missing(category):
            made += generate(category, 40)[0]
    made += [_canvas(digit) for digit in digits[:20]]
    made += [_photo(digit, (300, 200), orientation=6) for digit in digits[20:25]]
    made += [_photo(digit, (1000, 800)) for digit in digits[25:28]]
    return made


def _read(normaliser, data: bytes) -> np.ndarray | str:
    try:
        return normaliser.load_image(data)
    except InputError as exc:
        return str(exc)


def test_without_the_flat_border_shortcut_the_output_is_mains_bit_for_bit(
    frozen, files, monkeypatch
) -> None:
    monkeypatch.setattr(images, "_FLAT_BORDER", False)
    monkeypatch.setattr(images, "_AS_IT_IS", False)  # main rebuilt every 28x28 file
    differ = []
    for index, data in enumerate(files):
        new, old = _read(images, data), _read(frozen, data)
        same = (np.array_equal(new, old) if isinstance(new, np.ndarray) else new == old) and type(
            new
        ) is type(old)
        if not same:
            differ.append(index)
    assert not differ, f"{len(differ)} of {len(files)} differ from main's: {differ[:20]}"


def test_the_flat_border_shortcut_leaves_every_label_and_changes_little(
    classifier, frozen, files, monkeypatch
) -> None:
    monkeypatch.setattr(images, "_AS_IT_IS", False)
    new = np.stack([onnxdigits.load_image(data) for data in files])
    old = np.stack([frozen.load_image(data) for data in files])
    np.testing.assert_array_equal(classifier.predict(new), classifier.predict(old))
    changed = np.abs(new.astype(int) - old.astype(int))
    assert changed.max() <= 64 and changed.mean() <= 1.0, (changed.max(), changed.mean())
    # and it is taken: MNIST's black border is one exact level
    assert not all(np.array_equal(a, b) for a, b in zip(new[:100], old[:100]))


def _digit_rebuilt_first(grey: np.ndarray) -> np.ndarray | None:
    """`images._digit` as it was before kept files skipped the rebuild: the whole image rebuilt
    first, then the rule for 28x28 files told whether the rebuild found strokes."""
    kept = grey.copy() if grey.shape == (images.SIDE, images.SIDE) else None
    found = images._strokes(grey)
    formed = None if found is None else images._formed(*found, native=kept is not None)
    if kept is None:
        return formed
    as_it_is = images._as_it_is(kept, strokes=formed is None)
    return formed if as_it_is is None else as_it_is


def test_kept_28x28_files_skip_the_rebuild_and_read_bit_for_bit_as_before(
    sample, files, monkeypatch
) -> None:
    """Every damage at 28x28 (kept, rebuilt, or refused as noise), pure noise and blank files,
    and the other inputs: the same pixels or the same refusal as with the rebuild done first."""
    rng = np.random.default_rng(0)
    inputs = [encode(d, "PNG") for damage in DAMAGES for d in damaged(damage, sample[0][:25])]
    inputs += [encode(rng.uniform(0, 255, (28, 28)), "PNG") for _ in range(10)]
    inputs += [encode(np.full((28, 28), level), "PNG") for level in (0, 128, 255)]
    inputs += files
    new = [_read(images, data) for data in inputs]
    monkeypatch.setattr(images, "_digit", _digit_rebuilt_first)
    old = [_read(images, data) for data in inputs]
    differ = [
        index
        for index, (a, b) in enumerate(zip(new, old))
        if type(a) is not type(b)
        or not (np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b)
    ]
    assert not differ, f"{len(differ)} of {len(inputs)} differ: {differ[:20]}"
    refused = sum(isinstance(a, str) for a in new)
    assert 13 <= refused < len(inputs) // 2, refused  # the noise and blank files at least


def test_cached_bases_cannot_be_changed_by_a_caller() -> None:
    with pytest.raises(ValueError):
        images._quadratic(28, 28)[0, 0] = 5.0
    with pytest.raises(ValueError):
        images._ring(28, 28)[0, 0] = False


@pytest.mark.parametrize("count", [1, 2, 7, 8, 784, 785])
def test_the_median_by_partition_is_numpys_bit_for_bit(count: int) -> None:
    values = np.random.default_rng(count).normal(0, 1, count)
    assert images._median(values) == float(np.median(values))


def test_otsus_threshold_is_mains_bit_for_bit(frozen) -> None:
    """On values of any range, size (a page's, beyond one block of the histogram) and shape."""
    rng = np.random.default_rng(0)
    for size in (5, 785, 30_000):
        for _ in range(20):
            values = rng.normal(rng.normal(0, 50), rng.uniform(0.01, 80), size)
            values = values.astype(np.float32).reshape(-1, 5)
            assert images._otsu(values) == frozen._otsu(values)
