"""The SDK's front classes on the shipped artifacts and real digits."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import onnxdigits
import pytest
from onnxdigits import DeviceError, Encoder, Generator
from scipy.stats import norm

LATENT = ("ae", "vae", "cvae")


@pytest.fixture(scope="module", params=LATENT)
def generator(request: pytest.FixtureRequest, artifacts: onnxdigits.Artifacts) -> Generator:
    return Generator(request.param, artifacts=artifacts, device="cpu")


@pytest.fixture(scope="module", params=LATENT)
def encoder(request: pytest.FixtureRequest, artifacts: onnxdigits.Artifacts) -> Encoder:
    return Encoder(request.param, artifacts=artifacts, device="cpu")


def test_labels_match_the_truth_on_the_sample(classifier, sample) -> None:
    images, labels = sample
    predicted = classifier.predict(images)
    assert predicted.dtype == np.int64 and predicted.shape == labels.shape
    assert np.mean(predicted == labels) >= 0.98


def test_probabilities_are_a_distribution(classifier, sample) -> None:
    probs = classifier.predict_proba(sample[0][:200])
    assert probs.dtype == np.float32 and probs.shape == (200, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert (probs >= 0).all()


def test_every_accepted_layout_gives_the_same_answer(classifier, sample) -> None:
    images = sample[0][:16]
    expected = classifier.predict_proba(images)
    for layout in (
        images[:, :, :, None],
        images.reshape(16, 784),
        images.astype(np.float64) / 255,
        images.astype(np.int32),
    ):
        np.testing.assert_array_equal(classifier.predict_proba(layout), expected)
    np.testing.assert_array_equal(classifier.predict_proba(images[0]), expected[:1])


def test_uint8_and_float_digits_embed_equally(encoder, sample) -> None:
    images = sample[0][:64]
    as_float = images.astype(np.float32) / 255
    np.testing.assert_array_equal(encoder.embed(images), encoder.embed(as_float))


def test_embeddings_and_posteriors(encoder, sample) -> None:
    images = sample[0][:32]
    z = encoder.embed(images)
    assert z.dtype == np.float32 and z.shape == (32, 2) and np.isfinite(z).all()
    if encoder.model == "ae":
        with pytest.raises(onnxdigits.OnnxDigitsError, match="embed"):
            encoder.encode(images)
    else:
        z_mean, z_log_var = encoder.encode(images)
        np.testing.assert_array_equal(z_mean, z)
        assert z_log_var.shape == (32, 2) and np.isfinite(z_log_var).all()


def test_outputs_match_the_stored_keras_references(artifacts) -> None:
    for key in artifacts.keys:
        reference = artifacts.reference(key)
        model, part = key.split(".") if "." in key else (key, "classifier")
        if part == "classifier":
            got = onnxdigits.Classifier(artifacts=artifacts, device="cpu").predict_proba(
                reference["image"]
            )
            expected = reference["probs"]
        elif part == "encoder":
            got = Encoder(model, artifacts=artifacts, device="cpu").embed(reference["image"])
            expected = reference["z" if model == "ae" else "z_mean"]
        else:
            got = Generator(model, artifacts=artifacts, device="cpu").decode(reference["z"])
            expected = reference["image"][..., 0]
        assert np.max(np.abs(got - expected)) <= 1e-5, key


def test_grid_shape_range_and_cells(generator) -> None:
    n, lo, hi = 5, 0.1, 0.9
    grid = generator.grid(n, lo, hi)
    assert grid.dtype == np.float32 and grid.shape == (28 * n, 28 * n)
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    q = norm.ppf(np.linspace(lo, hi, n))
    for i, j in [(0, 0), (0, n - 1), (n - 1, 0), (2, 3)]:
        cell = grid[28 * i : 28 * (i + 1), 28 * j : 28 * (j + 1)]
        expected = generator.decode(np.array([[q[j], q[i]]], np.float32))[0]
        np.testing.assert_allclose(cell, expected, atol=1e-6)


def test_the_default_grid_is_the_notes_15x15(generator) -> None:
    assert generator.grid().shape == (420, 420)


def test_sampling_is_seeded_and_in_range(generator) -> None:
    first, again, other = (
        generator.sample(8, seed=1),
        generator.sample(8, seed=1),
        generator.sample(8, seed=2),
    )
    assert first.shape == (8, 28, 28) and first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_interpolation_runs_from_end_to_end(generator) -> None:
    z0, z1 = np.array([-1.0, 0.5]), np.array([1.0, -0.5])
    path = generator.interpolate(z0, z1, steps=5)
    assert path.shape == (5, 28, 28)
    np.testing.assert_allclose(path[0], generator.decode(z0[None])[0], atol=1e-6)
    np.testing.assert_allclose(path[-1], generator.decode(z1[None])[0], atol=1e-6)


def test_reconstruction_resembles_the_digit(sample) -> None:
    images = sample[0][:64]
    restored = onnxdigits.reconstruct(images, "vae", device="cpu")
    error = np.mean((restored - images / 255.0) ** 2)
    blank = np.mean((images / 255.0) ** 2)
    assert restored.shape == (64, 28, 28) and error < blank


def test_objects_say_where_they_run(classifier) -> None:
    assert classifier.device == "cpu"
    assert classifier.providers == ["CPUExecutionProvider"]


def test_cuda_without_a_gpu_raises_device_error(artifacts) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        try:
            onnxdigits.Classifier(artifacts=artifacts, device="cuda")
        except DeviceError as exc:
            assert "CUDA" in str(exc)
            return
        pytest.skip("a CUDA device is present here")
    with pytest.raises(DeviceError, match="CUDA"):
        onnxdigits.Classifier(artifacts=artifacts, device="cuda")


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cpu:0", ""])
def test_unknown_devices_are_refused(artifacts, device: str) -> None:
    with pytest.raises(DeviceError, match="unknown device"):
        onnxdigits.Classifier(artifacts=artifacts, device=device)


@pytest.mark.parametrize(("gpu", "warnings"), [(False, "0"), (True, "1")], ids=["no-gpu", "gpu"])
def test_auto_warns_once_only_where_a_gpu_is_present_but_cuda_fails(
    gpu: bool, warnings: str
) -> None:
    code = textwrap.dedent(f"""
        import warnings, onnxdigits, onnxdigits.session
        onnxdigits.session.gpu_present = lambda: {gpu}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = onnxdigits.Classifier(device="auto")
            second = onnxdigits.Generator(device="auto")
        print(first.device, len([w for w in caught if "CPU" in str(w.message)]))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    device, count = out.stdout.split()
    if device.startswith("cuda"):
        pytest.skip("CUDA came up here")
    assert (device, count) == ("cpu", warnings)


def test_the_default_device_comes_from_the_environment(artifacts, monkeypatch) -> None:
    monkeypatch.setenv("ONNXDIGITS_DEVICE", "cpu")
    assert onnxdigits.Classifier(artifacts=artifacts).device == "cpu"
    monkeypatch.setenv("ONNXDIGITS_DEVICE", "gpu")
    with pytest.raises(DeviceError, match=r"unknown device 'gpu' \(from \$ONNXDIGITS_DEVICE\)"):
        onnxdigits.Classifier(artifacts=artifacts)
    # an explicit device wins over the variable
    assert onnxdigits.Classifier(artifacts=artifacts, device="cpu").device == "cpu"


def test_interpolation_checks_both_ends(artifacts) -> None:
    generator = Generator("vae", artifacts=artifacts, device="cpu")
    with pytest.raises(onnxdigits.InputError, match=r"expected \(N, 2\)"):
        generator.interpolate([0, 0], [1, 2, 3])
    with pytest.raises(onnxdigits.InputError, match="NaN"):
        generator.interpolate([0, 0], [np.nan, 0])


@pytest.mark.parametrize(
    "images, columns, message",
    [
        (np.zeros((0, 28, 28)), None, "no images"),
        (np.zeros((2, 27, 28)), None, "shape"),
        (np.zeros((2, 28, 28)), 0, "columns"),
        (np.zeros((2, 28, 28)), -1, "columns"),
    ],
)
def test_tile_refuses_what_it_cannot_lay_out(images, columns, message) -> None:
    with pytest.raises(onnxdigits.InputError, match=message):
        onnxdigits.tile(images, columns)


def test_tile_lays_out_row_by_row(sample) -> None:
    images = sample[0][:5]
    canvas = onnxdigits.tile(images, 3)
    assert canvas.shape == (56, 84) and canvas.dtype == np.uint8
    np.testing.assert_array_equal(canvas[28:, :28], images[3])
    assert not canvas[28:, 56:].any()
    full = onnxdigits.tile(sample[0][:6], 3)  # a full grid: no padding
    np.testing.assert_array_equal(full[:28, :84], np.hstack(sample[0][:3]))
    np.testing.assert_array_equal(full[28:, 56:], sample[0][5])


def test_importing_the_sdk_defers_onnxruntime_to_the_first_model() -> None:
    # Import speed itself is measured by `onnxdigits bench sdk`, never asserted here.
    code = "import sys, onnxdigits; print('onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_sdk_never_imports_a_training_framework(tmp_path) -> None:
    code = textwrap.dedent(f"""
        import sys, onnxdigits
        onnxdigits.Classifier(device="cpu").predict(onnxdigits.Artifacts().sample()[0][:4])
        onnxdigits.Generator("cvae", device="cpu").grid(3)
        onnxdigits.save_png(onnxdigits.Generator(device="cpu").grid(2), r"{tmp_path / "g.png"}")
        import onnxdigits.verify, onnxdigits.cli
        frameworks = ("tensorflow", "keras", "tf2onnx")
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in frameworks)
        print(heavy)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_a_bad_seed_raises_input_error(generator, seed) -> None:
    with pytest.raises(onnxdigits.InputError, match="seed must be a non-negative integer"):
        generator.sample(2, seed=seed)


def test_a_seed_repeats_its_draw(generator) -> None:
    np.testing.assert_array_equal(generator.sample(3, seed=7), generator.sample(3, seed=7))
