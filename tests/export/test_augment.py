"""The classifier's damage: each kind does what it says, measurably, and the world recipe trains."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnxdigits.export import augment
from onnxdigits.export.artifacts import export_dir
from onnxdigits.export.augment import KINDS, SIDE, Augmented, Mix
from onnxdigits.export.train import TrainConfig, train
from scipy import ndimage


@pytest.fixture(scope="module")
def real(digits) -> np.ndarray:
    """64 real digits as the classifier reads them: float32 (64, 28, 28) in [0, 1]."""
    return digits["x_train"][:64].astype(np.float32) / 255


def _square(low: int = 9, high: int = 19) -> np.ndarray:
    image = np.zeros((1, SIDE, SIDE), np.float32)
    image[0, low:high, low:high] = 1.0
    return image


# --- every kind --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_keeps_shape_dtype_and_range_and_changes_the_digits(kind: str, real) -> None:
    before = real.copy()
    out = KINDS[kind](real.copy(), np.random.default_rng(0))
    assert out.shape == real.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_array_equal(real, before)  # the input is not written to
    changed = np.abs(out - real).max(axis=(1, 2)) > 1e-3
    assert changed.mean() > 0.9, f"{kind} left {np.sum(~changed)} of {len(real)} digits alone"


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_is_reproducible_from_its_seed(kind: str, real) -> None:
    first = KINDS[kind](real.copy(), np.random.default_rng(7))
    again = KINDS[kind](real.copy(), np.random.default_rng(7))
    np.testing.assert_array_equal(first, again)


# --- geometry ----------------------------------------------------------------------------------


def test_affine_is_exact_for_the_identity_and_moves_by_whole_pixels(real) -> None:
    n = len(real)
    identity = np.broadcast_to(np.eye(2, dtype=np.float32), (n, 2, 2)).copy()
    np.testing.assert_allclose(augment.affine(real, identity, np.zeros((n, 2))), real, atol=1e-6)
    moved = augment.affine(real, identity, np.tile(np.float32([3, -2]), (n, 1)))
    # output (r, c) reads input (r + 3, c - 2): up three rows, right two columns
    np.testing.assert_allclose(moved[:, :-3, 2:], real[:, 3:, :-2], atol=1e-6)


def test_affine_turns_a_quarter_as_rot90(real) -> None:
    quarter = np.tile(np.float32([[0, 1], [-1, 0]]), (len(real), 1, 1))
    turned = augment.affine(real, quarter, np.zeros((len(real), 2)))
    np.testing.assert_allclose(turned, np.rot90(real, 1, axes=(1, 2)), atol=1e-5)


def test_random_affine_scales_each_axis(real) -> None:
    """Shrunk to at most 0.7 of its size, a digit's ink box is at most 0.7 of its old one + 2."""
    rng = np.random.default_rng(0)
    small = augment.random_affine(real, rng, 0.0, 0.0, (0.5, 0.7), 0.0)

    def extent(images: np.ndarray, axis: int) -> np.ndarray:
        ink = images.max(axis=axis) > 0.3
        return SIDE - np.argmax(ink, 1) - np.argmax(ink[:, ::-1], 1)

    for axis in (1, 2):
        assert np.all(extent(small, axis) <= 0.7 * extent(real, axis) + 2)


def test_elastic_is_the_identity_at_zero_strength_and_keeps_the_ink_mass(real) -> None:
    rng = np.random.default_rng(0)
    np.testing.assert_allclose(augment.elastic(real, rng, 0.0, 3.0), real, atol=1e-5)
    bent = augment.elastic(real, rng, 2.0, 3.0)
    assert np.abs(bent - real).max() > 0.3
    change = np.abs(bent.sum((1, 2)) / real.sum((1, 2)) - 1)
    assert np.median(change) < 0.1 and change.max() < 0.3  # it bends the digit, not erases it


# --- pen and print -----------------------------------------------------------------------------


def test_stroke_width_thickens_and_thins(real) -> None:
    ink = real.sum((1, 2))
    thin, thick, thicker = (augment.stroke_width(real, c).sum((1, 2)) for c in (-1, 1, 2))
    assert np.all(thin < ink) and np.all(ink < thick) and np.all(thick < thicker)
    # a 10-pixel bar loses one pixel to erosion and gains one per step of dilation
    bar = _square()
    assert augment.stroke_width(bar, -1).sum() == 9 * 9
    assert augment.stroke_width(bar, 1).sum() == 11 * 11


def test_outline_keeps_only_the_edges() -> None:
    out = augment.outline(_square())[0]
    ring = np.zeros((SIDE, SIDE), bool)
    ring[9:19, 9:19] = True
    ring[10:18, 10:18] = False
    np.testing.assert_array_equal(out[ring], 1.0)  # the square's border pixels stay
    np.testing.assert_array_equal(out[~ring], 0.0)  # its inside and the page are dark


def test_low_resolution_has_the_rank_of_its_grid_and_keeps_flat_images(real) -> None:
    for size in (8, 12, 16):
        coarse = augment.low_resolution(real, size)
        assert max(np.linalg.matrix_rank(image, tol=1e-4) for image in coarse) <= size
        assert np.abs(coarse - real).mean() > 0.01
    flat = np.full((2, SIDE, SIDE), 0.4, np.float32)
    np.testing.assert_allclose(augment.low_resolution(flat, 8), flat, atol=1e-6)


# --- noise -------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.1, 0.2])
def test_salt_and_pepper_sets_the_stated_fraction(rate: float) -> None:
    grey = np.full((50, SIDE, SIDE), 0.5, np.float32)
    out = augment.salt_and_pepper(grey, np.random.default_rng(0), np.full(50, rate))
    hit = out != 0.5
    assert np.all(hit.sum((1, 2)) == round(rate * SIDE * SIDE))
    assert set(np.unique(out[hit])) <= {0.0, 1.0}
    if rate:
        assert 0.4 < out[hit].mean() < 0.6  # black and white at even odds


def test_gaussian_and_shot_noise_have_their_stated_spread() -> None:
    grey = np.full((20, SIDE, SIDE), 0.5, np.float32)
    rng = np.random.default_rng(0)
    noisy = augment.gaussian_noise(grey, rng, np.full(20, 0.1))
    assert abs(float(noisy.std()) - 0.1) < 0.005 and abs(float(noisy.mean()) - 0.5) < 0.005
    shot = augment.shot_noise(grey, rng, np.full(20, 10.0))
    np.testing.assert_allclose(shot * 10, np.rint(shot * 10), atol=1e-5)  # whole photon counts
    assert abs(float(shot.var()) - 0.5 / 10) < 0.005  # Poisson: variance = mean / photons


def test_jpeg_loses_more_at_lower_quality(real) -> None:
    errors = [np.abs(augment.jpeg(real, np.full(len(real), q)) - real).mean() for q in (90, 30, 5)]
    assert errors[0] < errors[1] < errors[2]


# --- blur --------------------------------------------------------------------------------------


def test_blur_kernels_sum_to_one_and_have_their_shapes() -> None:
    n = 4
    gauss = augment.gaussian_kernels(np.full(n, 1.5))
    motion = augment.motion_kernels(np.full(n, 7.0), np.zeros(n))
    disc = augment.disc_kernels(np.full(n, 3.0))
    for kernels in (gauss, motion, disc):
        np.testing.assert_allclose(kernels.sum((1, 2)), 1.0, rtol=1e-5)
    centre = augment._KERNEL // 2
    # motion along angle 0 is a horizontal line of about 7 pixels
    assert motion[0, centre].sum() > 0.99
    assert np.count_nonzero(motion[0, centre] > 0.05) in (7, 8, 9)
    radius = np.hypot(augment._KR, augment._KC)
    assert np.all(disc[0][radius > 3.5] == 0) and np.all(disc[0][radius < 2.5] > 0)


def test_blur_spreads_ink_and_keeps_its_mass_inside(real) -> None:
    square = _square(10, 18)
    blurred = augment.convolve(square, augment.disc_kernels(np.array([2.0])))
    np.testing.assert_allclose(blurred.sum(), square.sum(), rtol=1e-4)
    assert blurred[0, 14, 14] > 0.99 and blurred[0, 10, 10] < 0.7  # the inside stays, edges soften
    sharp = np.abs(np.diff(real, axis=2)).sum()
    soft = np.abs(
        np.diff(augment.convolve(real, augment.gaussian_kernels(np.full(64, 2.0))), axis=2)
    )
    assert soft.sum() < 0.6 * sharp


# --- clutter -----------------------------------------------------------------------------------


def test_a_segment_covers_its_pixels() -> None:
    coverage, along = augment.segment_coverage(
        np.float32([[14, 3]]), np.float32([[14, 24]]), np.float32([1.0])
    )
    np.testing.assert_allclose(coverage[0, 14, 3:25], 1.0, atol=1e-5)
    assert coverage[0, [12, 16]].max() == 0 and coverage[0, 14, :2].max() == 0
    np.testing.assert_allclose(along[0, 14, 3:25], np.arange(22), atol=1e-5)


@pytest.mark.parametrize("kind", ["lines", "dotted_lines", "scribble", "blots"])
def test_clutter_only_adds_ink(kind: str, real) -> None:
    out = KINDS[kind](real.copy(), np.random.default_rng(1))
    assert np.all(out >= real - 1e-7)
    assert np.mean((out - real) > 0.3) > 0.005


def test_dotted_lines_are_broken(real) -> None:
    """Along each dotted line the ink comes and goes; a solid line's ink does not."""
    blank = np.zeros_like(real)

    def pieces(images: np.ndarray) -> float:
        eight = np.ones((3, 3))  # diagonal neighbours connect
        return float(np.mean([ndimage.label(image > 0.05, eight)[1] for image in images]))

    solid = augment.lines(blank, np.random.default_rng(3))
    dotted = augment.lines(blank, np.random.default_rng(3), dotted=True)
    assert dotted.sum() < 0.8 * solid.sum()
    assert pieces(solid) <= 2 and pieces(dotted) > 2 * pieces(solid)


# --- light -------------------------------------------------------------------------------------


def test_contrast_and_brightness_move_the_levels_exactly() -> None:
    levels = np.linspace(0, 1, SIDE * SIDE, dtype=np.float32).reshape(1, SIDE, SIDE)
    squeezed = augment.contrast(levels, np.array([0.3]), np.array([0.5]))
    assert squeezed.min() == pytest.approx(0.3) and squeezed.max() == pytest.approx(0.5)
    np.testing.assert_allclose(
        augment.brightness(levels, np.array([0.2])), np.clip(levels + 0.2, 0, 1)
    )


def test_fog_and_gradient_are_smooth_and_vanish_at_zero(real) -> None:
    rng = np.random.default_rng(0)
    zero = np.zeros(len(real))
    np.testing.assert_allclose(augment.fog(real, rng, zero), real, atol=1e-6)
    np.testing.assert_allclose(augment.gradient(real, rng, zero), real, atol=1e-6)
    blank = np.zeros_like(real)
    veil = augment.fog(blank, rng, np.full(len(real), 0.8))
    assert veil.max() > 0.3 and np.abs(np.diff(veil, axis=2)).max() < 0.15  # a smooth haze
    lit = augment.gradient(blank, rng, np.full(len(real), 0.9))
    assert np.abs(np.diff(lit, axis=1)).max() < 0.1


def test_an_inverted_band_inverts_exactly_that_band(real) -> None:
    masks = augment.band_masks(np.random.default_rng(0), len(real))
    out = augment.invert(real, masks)
    np.testing.assert_allclose(out[masks], 1 - real[masks])
    np.testing.assert_array_equal(out[~masks], real[~masks])
    # each mask is a band or a rectangle: its rows, or its columns, are each all in or all out
    for mask in masks:
        rows_whole = np.all(mask.all(1) | ~mask.any(1))
        cols_whole = np.all(mask.all(0) | ~mask.any(0))
        box = mask.any(1)[:, None] & mask.any(0)[None, :]
        assert mask.any() and (rows_whole or cols_whole or np.array_equal(box, mask))
    kinds = {(m.all(), m[:, 0].all() and m[:, -1].all() and not m.all()) for m in masks}
    assert (True, False) in kinds and (False, True) in kinds  # negatives and outer bands occur


# --- the mix and the feed ----------------------------------------------------------------------


def test_the_mix_damages_its_fraction_and_leaves_the_rest_clean(digits) -> None:
    images = digits["x_train"][:256].astype(np.float32) / 255
    still = Mix(damage=0.0, shift=0, rotation=0, zoom=0)
    np.testing.assert_array_equal(augment.augment(images, np.random.default_rng(0), still), images)
    half = Mix(damage=0.5, second=0.3, shift=0, rotation=0, zoom=0)
    out = augment.augment(images, np.random.default_rng(0), half)
    damaged = np.abs(out - images).max(axis=(1, 2)) > 1e-6
    assert 0.4 < damaged.mean() < 0.6
    moved = augment.augment(images, np.random.default_rng(0), Mix(damage=0.0))
    assert np.mean(np.abs(moved - images).max(axis=(1, 2)) > 1e-3) > 0.9  # the small moves


def test_the_feed_is_seeded_and_keeps_labels_with_their_digits(digits) -> None:
    images = digits["x_train"][:200].astype(np.float32)[..., None] / 255
    labels = digits["y_train"][:200]
    plain = Augmented(images, labels, 64, Mix(damage=0.0, shift=0, rotation=0, zoom=0), seed=3)
    seen = []
    for index in range(len(plain)):
        x, y = plain[index]
        assert x.shape[1:] == (SIDE, SIDE, 1) and x.dtype == np.float32
        chosen = plain.order[index * 64 : (index + 1) * 64]
        np.testing.assert_array_equal(x, images[chosen])
        np.testing.assert_array_equal(y, labels[chosen])
        seen.extend(chosen)
    assert sorted(seen) == list(range(200)) and len(plain) == 4
    first = plain.order.copy()
    plain.on_epoch_end()
    assert not np.array_equal(first, plain.order)  # each epoch its own shuffle

    def batches(seed: int) -> list[np.ndarray]:
        feed = Augmented(images, labels, 64, Mix(), seed)
        out = [feed[0][0], feed[1][0]]
        feed.on_epoch_end()
        return [*out, feed[0][0]]

    a, b, c = batches(5), batches(5), batches(6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], a[2])


# --- the recipe --------------------------------------------------------------------------------


def test_the_world_recipe_trains_logs_its_damage_and_exports(tmp_path, digits) -> None:
    config = TrainConfig(recipe="world", epochs=1, batch_size=64, validation=30, verbose=0)
    assert config.fitting("classifier").damage == 0.5
    train(["classifier"], digits["x_train"], digits["y_train"], config, tmp_path)
    log = json.loads((tmp_path / "keras" / "training.json").read_text())["classifier"]
    assert log["recipe"] == "world" and log["config"]["damage"] == 0.5
    assert log["config"]["second"] == 0.3 and log["damage_kinds"] == list(KINDS)
    assert len(log["history"]["loss"]) == 1 and np.isfinite(log["history"]["loss"][0])
    manifest = export_dir(tmp_path, digits["x_test"], digits["y_test"]).to_json()
    entry = manifest["models"]["classifier"]
    assert max(entry["parity"]["max_abs_diff"].values()) <= 1e-5
    assert manifest["training"]["classifier"]["config"]["damage"] == 0.5
