"""Robustness of the SDK: bad inputs, damaged artifacts, huge batches, threads and fuzzing.

Nothing here assumes what the shipped models answer: outputs are compared with serial calls on
the same objects, so the tests hold for the shipped set and for any other export alike.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import re
import struct
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxdigits
import onnxruntime
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from onnxdigits import ArtifactError, Classifier, Encoder, Generator, InputError, OnnxDigitsError
from onnxdigits.manifest import sha256_of
from onnxdigits.models import chunks
from onnxdigits.specs import LATENT_MODELS, MANIFEST, SUBMODELS
from PIL import Image

from tests.conftest import flip_byte

# --------------------------------------------------------------------------------------------
# Shared helpers


@pytest.fixture(scope="module")
def good(classifier: Classifier, sample) -> tuple[np.ndarray, np.ndarray]:
    """A few good images and the classifier's answer on them, taken before any bad call."""
    images = sample[0][:8]
    return images, classifier.predict_proba(images)


def assert_still_works(classifier: Classifier, good: tuple[np.ndarray, np.ndarray]) -> None:
    images, expected = good
    np.testing.assert_array_equal(classifier.predict_proba(images), expected)
    np.testing.assert_array_equal(classifier.predict(images), expected.argmax(axis=1))


def raises_input_error(fragment: str):
    return pytest.raises(InputError, match=re.escape(fragment))


def check_input_error(excinfo: pytest.ExceptionInfo) -> None:
    """InputError is both the SDK's own error and a ValueError."""
    assert isinstance(excinfo.value, ValueError)
    assert isinstance(excinfo.value, OnnxDigitsError)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A few dozen bytes whose IHDR claims a huge 8-bit grey image; nothing that size exists."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00"))
        + png_chunk(b"IEND", b"")
    )


def digit_png(image: np.ndarray, scale: int = 4) -> bytes:
    """A real digit as PNG bytes, enlarged so that half the file cuts into its pixel data."""
    buffer = io.BytesIO()
    Image.fromarray(image).resize((28 * scale, 28 * scale)).save(buffer, format="PNG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Bad images


def _full(shape, value, dtype) -> np.ndarray:
    return np.full(shape, value, dtype=dtype)


def _with(value, dtype=np.float32) -> np.ndarray:
    """Good pixels in [0, 1] with one bad value in the middle."""
    array = np.full((2, 28, 28), 0.5, dtype=dtype)
    array[1, 14, 14] = value
    return array


BAD_IMAGES: list[tuple[str, Callable[[], object], str]] = [
    ("rank-1", lambda: np.zeros(28, np.uint8), "images of shape (28,)"),
    ("rank-5", lambda: np.zeros((2, 2, 28, 28, 1), np.uint8), "images of shape (2, 2, 28, 28, 1)"),
    ("27x28", lambda: np.zeros((27, 28), np.uint8), "images of shape (27, 28)"),
    ("N-27x28", lambda: np.zeros((3, 27, 28), np.uint8), "images of shape (3, 27, 28)"),
    ("rgb", lambda: np.zeros((2, 28, 28, 3), np.uint8), "images of shape (2, 28, 28, 3)"),
    ("flat-783", lambda: np.zeros((2, 783), np.uint8), "images of shape (2, 783)"),
    ("scalar", lambda: np.uint8(3), "images of shape ()"),
    ("zero-images", lambda: np.zeros((0, 28, 28), np.uint8), "no images"),
    ("zero-flat", lambda: np.zeros((0, 784), np.float32), "no images"),
    ("empty-list", lambda: [], "no images: an empty list"),
    ("ragged-list", lambda: [np.zeros((28, 28)), np.zeros((27, 28))], "images[1]: images of shape"),
    ("nan", lambda: _with(np.nan), "contain NaN"),
    ("nan-float64", lambda: _with(np.nan, np.float64), "contain NaN"),
    ("+inf", lambda: _with(np.inf), "contain Inf"),
    ("-inf", lambda: _with(-np.inf), "contain Inf"),
    ("+inf-float16", lambda: _with(np.inf, np.float16), "contain Inf"),
    ("float-1.5", lambda: _with(1.5), "floating pixels must lie in [0, 1]"),
    ("float--0.1", lambda: _with(-0.1, np.float64), "floating pixels must lie in [0, 1]"),
    ("float-0..255", lambda: _full((1, 28, 28), 255.0, np.float32), "pass a uint8 array"),
    ("int16-256", lambda: _full((2, 28, 28), 256, np.int16), "integer pixels must lie in 0..255"),
    ("int16--1", lambda: _full((1, 28, 28), -1, np.int16), "integer pixels must lie in 0..255"),
    (
        "int64-huge",
        lambda: _full((1, 28, 28), 2**40, np.int64),
        "integer pixels must lie in 0..255",
    ),
    ("bool", lambda: np.ones((1, 28, 28), bool), "dtype bool cannot be pixels"),
    (
        "complex",
        lambda: np.full((1, 28, 28), 0.5 + 0.5j, np.complex64),
        "dtype complex64 cannot be pixels",
    ),
    ("object", lambda: np.full((1, 28, 28), 1, dtype=object), "dtype object cannot be pixels"),
    ("string", lambda: np.full((1, 28, 28), "7"), "dtype <U1 cannot be pixels"),
]


@pytest.mark.parametrize("call", ["to_batch", "predict"])
@pytest.mark.parametrize(("make", "fragment"), [pytest.param(m, f, id=i) for i, m, f in BAD_IMAGES])
def test_bad_images_raise_input_error(classifier, good, call: str, make, fragment: str) -> None:
    function = onnxdigits.to_batch if call == "to_batch" else classifier.predict
    with raises_input_error(fragment) as excinfo:
        function(make())
    check_input_error(excinfo)
    assert_still_works(classifier, good)


def _missing(tmp_path: Path, sample) -> object:
    return tmp_path / "does-not-exist.png"


def _missing_str(tmp_path: Path, sample) -> object:
    return str(tmp_path / "does-not-exist.png")


def _directory(tmp_path: Path, sample) -> object:
    (tmp_path / "folder.png").mkdir()
    return tmp_path / "folder.png"


def _text(tmp_path: Path, sample) -> object:
    path = tmp_path / "x.png"
    path.write_bytes(b"this is a text file, not a PNG\n" * 4)
    return path


def _text_bytes(tmp_path: Path, sample) -> object:
    return b"this is a text file, not a PNG\n"


def _truncated(tmp_path: Path, sample) -> object:
    data = digit_png(sample[0][0])
    path = tmp_path / "truncated.png"
    path.write_bytes(data[: len(data) // 2])
    return path


def _truncated_bytes(tmp_path: Path, sample) -> object:
    data = digit_png(sample[0][0])
    return data[: len(data) // 2]


def _bomb(tmp_path: Path, sample) -> object:
    path = tmp_path / "huge.png"
    path.write_bytes(bomb_png())
    return path


def _bomb_bytes(tmp_path: Path, sample) -> object:
    return bomb_png()


def _one_bad_in_a_list(tmp_path: Path, sample) -> object:
    good_path = tmp_path / "good.png"
    good_path.write_bytes(digit_png(sample[0][0], scale=1))
    return [good_path, tmp_path / "does-not-exist.png"]


BAD_FILES = [
    ("missing-path", _missing, "no such image file"),
    ("missing-str", _missing_str, "no such image file"),
    ("directory", _directory, "is a directory"),
    ("text-file", _text, "is not a readable image"),
    ("text-bytes", _text_bytes, "image bytes is not a readable image"),
    ("truncated-png", _truncated, "is not a readable image"),
    ("truncated-bytes", _truncated_bytes, "image bytes is not a readable image"),
    ("20000x20000-png", _bomb, "too large"),
    ("20000x20000-bytes", _bomb_bytes, "too large"),
    ("list-with-a-missing-file", _one_bad_in_a_list, "no such image file"),
]


@pytest.mark.parametrize("call", ["to_batch", "predict"])
@pytest.mark.parametrize(("make", "fragment"), [pytest.param(m, f, id=i) for i, m, f in BAD_FILES])
def test_bad_image_files_raise_input_error(
    classifier, good, sample, tmp_path: Path, call: str, make, fragment: str
) -> None:
    function = onnxdigits.to_batch if call == "to_batch" else classifier.predict
    source = make(tmp_path, sample)
    with raises_input_error(fragment) as excinfo:
        function(source)
    check_input_error(excinfo)
    assert_still_works(classifier, good)


def test_the_bomb_png_is_tiny_and_only_its_header_is_huge() -> None:
    """The 20000x20000 case really is refused on its header, not after allocating the pixels."""
    data = bomb_png()
    assert len(data) < 100
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(data))


def test_a_good_png_file_still_classifies_like_its_array(classifier, sample, tmp_path) -> None:
    """The file route works at all, so the failures above are about the files, not the route.
    (A file is normalised even at 28x28, so only its label is the array's.)"""
    path = tmp_path / "digit.png"
    Image.fromarray(sample[0][0]).save(path)
    np.testing.assert_array_equal(classifier.predict(path), classifier.predict(sample[0][:1]))


# --------------------------------------------------------------------------------------------
# Bad latent points


@pytest.fixture(scope="module")
def generator(artifacts) -> Generator:
    return Generator("vae", artifacts=artifacts, device="cpu")


def _z_with(value) -> np.ndarray:
    z = np.zeros((3, 2), np.float32)
    z[1, 1] = value
    return z


def _z_with64(value: float) -> np.ndarray:
    z = np.zeros((3, 2), np.float64)
    z[1, 1] = value
    return z


BAD_LATENTS = [
    (
        "width-3",
        lambda: np.zeros((4, 3), np.float32),
        "latent points of shape (4, 3); expected (N, 2)",
    ),
    ("width-1", lambda: np.zeros((4, 1), np.float32), "latent points of shape (4, 1)"),
    ("rank-1", lambda: np.zeros(2, np.float32), "latent points of shape (2,)"),
    ("rank-3", lambda: np.zeros((1, 1, 2), np.float32), "latent points of shape (1, 1, 2)"),
    ("scalar", lambda: np.float32(0), "latent points of shape ()"),
    ("zero-rows", lambda: np.zeros((0, 2), np.float32), "no latent points"),
    ("nan", lambda: _z_with(np.nan), "z[1, 1] is NaN; latent points must be finite"),
    ("+inf", lambda: _z_with(np.inf), "z[1, 1] is Inf;"),
    ("-inf-float64", lambda: _z_with(-np.inf).astype(np.float64), "z[1, 1] is -Inf;"),
    # Finite in float64, beyond float32: the cast made them Inf, and the images NaN.
    ("1e39", lambda: _z_with64(1e39), "z[1, 1] is 1e+39, beyond float32's range"),
    ("-1e308", lambda: _z_with64(-1e308), "z[1, 1] is -1e+308, beyond float32's range"),
    # Finite in float32 too, but the generator's first layer overflows.
    ("3e38", lambda: _z_with64(3e38), "z[1] = [0, 3e+38] is too far out to decode"),
    ("3e38-as-list", lambda: [[0.0, 0.0], [-3e38, 0.0]], "z[1] = [-3e+38, 0] is too far out"),
    ("bool", lambda: np.ones((3, 2), bool), "dtype bool; expected real numbers"),
    ("complex", lambda: np.ones((3, 2), np.complex64), "dtype complex64"),
    ("string", lambda: np.full((3, 2), "1"), "dtype <U1"),
    ("ragged", lambda: [[0.0, 1.0], [0.0]], "not an array"),
]


@pytest.mark.parametrize(
    ("make", "fragment"), [pytest.param(m, f, id=i) for i, m, f in BAD_LATENTS]
)
def test_bad_latent_points_raise_input_error(generator, make, fragment: str) -> None:
    good_z = np.array([[0.0, 0.0], [1.0, -1.0]], np.float32)
    expected = generator.decode(good_z)
    with raises_input_error(fragment) as excinfo:
        generator.decode(make())
    check_input_error(excinfo)
    np.testing.assert_array_equal(generator.decode(good_z), expected)


# --------------------------------------------------------------------------------------------
# Damaged artifacts


def build(key: str, root: Path) -> object:
    """Construct the SDK object that loads submodel `key` from the set at `root`."""
    if key == "classifier":
        return Classifier(artifacts=root, device="cpu")
    model, part = key.split(".")
    return (Encoder if part == "encoder" else Generator)(model, artifacts=root, device="cpu")


@pytest.fixture
def onnxruntime_forbidden(monkeypatch) -> list[tuple]:
    """Make any onnxruntime session creation fail the test: the bytes must never reach it."""
    calls: list[tuple] = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        pytest.fail("onnxruntime.InferenceSession was called with unverified model bytes")

    monkeypatch.setattr(onnxruntime, "InferenceSession", forbidden)
    return calls


class _Reached(Exception):
    pass


def test_the_onnxruntime_guard_is_really_in_the_path(artifacts_copy, monkeypatch) -> None:
    """On an intact set the patched constructor is reached, so the guard below proves something."""

    def reached(*args, **kwargs):
        raise _Reached

    monkeypatch.setattr(onnxruntime, "InferenceSession", reached)
    with pytest.raises(_Reached):
        Classifier(artifacts=artifacts_copy, device="cpu")


def test_a_missing_manifest_raises_artifact_error(artifacts_copy, onnxruntime_forbidden) -> None:
    (artifacts_copy / MANIFEST).unlink()
    with pytest.raises(ArtifactError, match=f"no {re.escape(MANIFEST)} in"):
        onnxdigits.Artifacts(artifacts_copy)
    with pytest.raises(ArtifactError, match=f"no {re.escape(MANIFEST)} in"):
        Classifier(artifacts=artifacts_copy, device="cpu")
    assert onnxruntime_forbidden == []


@pytest.mark.parametrize("version", [999, 0, "1", None])
def test_an_unknown_schema_version_raises_artifact_error(
    artifacts_copy, onnxruntime_forbidden, version
) -> None:
    path = artifacts_copy / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["schema_version"] = version
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ArtifactError, match=re.escape(f"has schema version {version!r}")):
        onnxdigits.Artifacts(artifacts_copy)
    with pytest.raises(ArtifactError, match="schema version"):
        Classifier(artifacts=artifacts_copy, device="cpu")
    assert onnxruntime_forbidden == []


def test_an_unparseable_manifest_raises_artifact_error(
    artifacts_copy, onnxruntime_forbidden
) -> None:
    (artifacts_copy / MANIFEST).write_text('{"schema_version": 1, "models": {', encoding="utf-8")
    with pytest.raises(ArtifactError, match="cannot read"):
        onnxdigits.Artifacts(artifacts_copy)
    assert onnxruntime_forbidden == []


@pytest.mark.parametrize(
    "sample_entry, message",
    [
        (None, "lists no sample"),
        ({"file": "sample.npz"}, "no sha256"),
        ({"sha256": "0"}, "no sample"),
    ],
)
def test_a_malformed_sample_entry_raises_artifact_error(
    artifacts_copy, sample_entry, message
) -> None:
    manifest = json.loads((artifacts_copy / MANIFEST).read_text())
    manifest["sample"] = sample_entry
    (artifacts_copy / MANIFEST).write_text(json.dumps(manifest))
    store = onnxdigits.Artifacts(artifacts_copy)
    with pytest.raises(ArtifactError, match=message):
        store.sample()
    assert store.verify()["sample"] is not None
    assert all(problem is None for name, problem in store.verify().items() if name != "sample")


def test_a_sample_holding_pickled_objects_is_refused(artifacts_copy) -> None:
    # Checksummed correctly, so only allow_pickle=False stands between it and unpickling.
    path = artifacts_copy / "sample.npz"
    np.savez(path, x_test=np.array([object()] * 2), y_test=np.zeros(2, np.uint8))
    manifest = json.loads((artifacts_copy / MANIFEST).read_text())
    manifest["sample"].update(sha256=sha256_of(path.read_bytes()), bytes=path.stat().st_size)
    (artifacts_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="pickle"):
        onnxdigits.Artifacts(artifacts_copy).sample()


def test_a_model_whose_graph_breaks_the_contract_raises_artifact_error(artifacts_copy) -> None:
    # A correctly checksummed file in the wrong place: the manifest points "classifier" at the
    # vae encoder, whose tensors are not the classifier's.
    manifest = json.loads((artifacts_copy / MANIFEST).read_text())
    wrong = manifest["models"]["vae.encoder"]
    manifest["models"]["classifier"].update(
        file=wrong["file"], sha256=wrong["sha256"], bytes=wrong["bytes"]
    )
    (artifacts_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="export the set again"):
        Classifier(artifacts=artifacts_copy, device="cpu")


@pytest.mark.parametrize("key", sorted(SUBMODELS))
def test_a_deleted_model_file_raises_artifact_error(
    artifacts_copy, onnxruntime_forbidden, key
) -> None:
    file = onnxdigits.Artifacts(artifacts_copy).entry(key).file
    (artifacts_copy / file).unlink()
    with pytest.raises(ArtifactError, match=rf"cannot read .*{re.escape(file)}"):
        build(key, artifacts_copy)
    assert onnxruntime_forbidden == []


@pytest.mark.parametrize("key", sorted(SUBMODELS))
def test_a_flipped_byte_raises_artifact_error(artifacts_copy, onnxruntime_forbidden, key) -> None:
    file = onnxdigits.Artifacts(artifacts_copy).entry(key).file
    flip_byte(artifacts_copy / file)
    with pytest.raises(ArtifactError, match=rf"{re.escape(file)} fails its checksum"):
        build(key, artifacts_copy)
    assert onnxruntime_forbidden == []


@pytest.mark.parametrize("key", sorted(SUBMODELS))
def test_a_truncated_model_raises_artifact_error(
    artifacts_copy, onnxruntime_forbidden, key
) -> None:
    file = onnxdigits.Artifacts(artifacts_copy).entry(key).file
    path = artifacts_copy / file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match=rf"{re.escape(file)} fails its checksum.*truncated"):
        build(key, artifacts_copy)
    assert onnxruntime_forbidden == []


def test_an_emptied_model_raises_artifact_error(artifacts_copy, onnxruntime_forbidden) -> None:
    (artifacts_copy / "classifier.onnx").write_bytes(b"")
    with pytest.raises(ArtifactError, match="fails its checksum"):
        Classifier(artifacts=artifacts_copy, device="cpu")
    assert onnxruntime_forbidden == []


def test_a_manifest_pointing_outside_the_set_raises_artifact_error(
    artifacts_copy, onnxruntime_forbidden
) -> None:
    path = artifacts_copy / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["models"]["classifier"]["file"] = "../classifier.onnx"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ArtifactError, match="points outside"):
        Classifier(artifacts=artifacts_copy, device="cpu")
    assert onnxruntime_forbidden == []


def test_verify_reports_the_flipped_file_and_nothing_else(artifacts_copy) -> None:
    assert all(
        problem is None for problem in onnxdigits.Artifacts(artifacts_copy).verify().values()
    )
    flip_byte(artifacts_copy / "classifier.onnx")
    report = onnxdigits.Artifacts(artifacts_copy).verify()
    assert "fails its checksum" in (report["classifier.onnx"] or "")
    others = {file: problem for file, problem in report.items() if file != "classifier.onnx"}
    assert others and all(problem is None for problem in others.values()), others
    # every submodel, reference and the sample are among the files checked
    assert {spec.file for spec in SUBMODELS.values()} <= set(report)


# --------------------------------------------------------------------------------------------
# Huge batches and chunking (CPU)


def test_70000_images_in_one_call_equal_70_calls_of_1000(classifier, sample) -> None:
    images = np.resize(sample[0], (70_000, 28, 28))
    whole = classifier.predict_proba(images)
    assert whole.shape == (70_000, 10) and whole.dtype == np.float32
    parts = np.concatenate(
        [classifier.predict_proba(images[start : start + 1000]) for start in range(0, 70_000, 1000)]
    )
    np.testing.assert_array_equal(whole, parts)


@pytest.mark.parametrize("batch_size", [1, 7, 49, 50, 51])
def test_a_small_batch_size_joins_chunks_exactly(artifacts, classifier, sample, batch_size) -> None:
    images = sample[0][:50]
    chunked = Classifier(artifacts=artifacts, device="cpu", batch_size=batch_size)
    assert chunked.batch_size == batch_size
    np.testing.assert_array_equal(chunked.predict_proba(images), classifier.predict_proba(images))
    np.testing.assert_array_equal(chunked.predict(images), classifier.predict(images))


@pytest.mark.parametrize("model", LATENT_MODELS)
def test_small_batch_sizes_join_latent_chunks_exactly(artifacts, sample, model) -> None:
    images = sample[0][:50]
    encoder, small_encoder = (
        Encoder(model, artifacts=artifacts, device="cpu", batch_size=b) for b in (None, 7)
    )
    z = encoder.embed(images)
    np.testing.assert_array_equal(small_encoder.embed(images), z)
    generator, small_generator = (
        Generator(model, artifacts=artifacts, device="cpu", batch_size=b) for b in (None, 7)
    )
    np.testing.assert_array_equal(small_generator.decode(z), generator.decode(z))


@pytest.mark.parametrize(
    ("count", "size", "lengths"),
    [
        (1, 1024, [1]),
        (1024, 1024, [1024]),
        (1025, 1024, [512, 513]),
        (10_000, 1024, [1000] * 10),  # equal runs, not nine full ones and a scrap
        (5, 2, [2, 1, 2]),
        (70_000, 16_384, [14_000] * 5),
    ],
)
def test_chunks_cover_the_batch_in_balanced_runs(count, size, lengths) -> None:
    parts = chunks(count, size)
    assert [p.stop - p.start for p in parts] == lengths
    assert parts[0].start == 0 and parts[-1].stop == count
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, "8"])
def test_a_batch_size_that_is_not_a_positive_integer_is_refused(artifacts, batch_size) -> None:
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        Classifier(artifacts=artifacts, device="cpu", batch_size=batch_size)


# --------------------------------------------------------------------------------------------
# Concurrency


def _labels_in_a_child(classifier: Classifier, images: np.ndarray, queue) -> None:
    queue.put(classifier.predict(images))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_can_use_a_classifier_its_parent_ran_on_many_threads(
    classifier, sample
) -> None:
    images = np.resize(sample[0], (2000, 28, 28))
    expected = classifier.predict(images)  # onnxruntime's threads now exist in the parent
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_labels_in_a_child, args=(classifier, images, queue))
    child.start()
    try:
        got = queue.get(timeout=120)  # a thread pool inherited without its threads would hang
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("smallest", "spread"),
    [(1, 13), (150, 300)],
    ids=["small batches", "larger batches"],
)
def test_threads_sharing_one_classifier_get_the_serial_answers(
    classifier, sample, smallest: int, spread: int
) -> None:
    threads, calls = 8, 25
    images = sample[0]
    slices = []
    for k in range(threads * calls):
        size = smallest + k % spread
        start = (k * 37) % (len(images) - size)
        slices.append(slice(start, start + size))
    serial = [classifier.predict_proba(images[s]) for s in slices]

    barrier = threading.Barrier(threads)

    def worker(thread: int) -> list[np.ndarray]:
        barrier.wait(timeout=60)
        return [classifier.predict_proba(images[slices[thread * calls + i]]) for i in range(calls)]

    executor = ThreadPoolExecutor(max_workers=threads)
    try:
        futures = [executor.submit(worker, t) for t in range(threads)]
        results = [future.result(timeout=120) for future in futures]
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
    for thread, outputs in enumerate(results):
        for i, got in enumerate(outputs):
            np.testing.assert_array_equal(got, serial[thread * calls + i])


# --------------------------------------------------------------------------------------------
# Property-based: to_batch returns the models' input form or raises InputError, never else


VALID_SHAPES = [
    (28, 28),
    *((n, 28, 28) for n in (1, 2, 3)),
    *((n, 28, 28, 1) for n in (1, 2, 3)),
    *((n, 784) for n in (1, 2, 3)),
]
INVALID_SHAPES = [
    (),
    (28,),
    (784,),
    (27, 28),
    (28, 27),
    (1, 783),
    (0, 784),
    (0, 28, 28),
    (0, 28, 28, 1),
    (1, 28, 27),
    (2, 1, 28, 28),
    (1, 28, 28, 3),
    (1, 1, 28, 28, 1),
]
DTYPES = [np.uint8, np.int16, np.int64, np.float16, np.float32, np.float64, np.bool_, np.complex64]


@st.composite
def pixel_arrays(draw) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(st.sampled_from(VALID_SHAPES + INVALID_SHAPES))
    # Any value at all, values in range (so valid arrays come up too), or values in range but
    # for some just above or just below it (so each bound is probed on its own).
    low, high = {"any": (None, None), "in": (0, 1), "above": (0, 1.5), "below": (-0.5, 1)}[
        draw(st.sampled_from(["any", "in", "above", "below"]))
    ]
    elements = None
    if low is not None and dtype.kind in "ui":
        info = np.iinfo(dtype)
        elements = st.integers(max(round(low * 255), info.min), min(round(high * 255), info.max))
    elif low is not None and dtype.kind == "f":
        elements = st.floats(low, high, width=8 * dtype.itemsize)
    array = draw(arrays(dtype, shape, elements=elements))
    if draw(st.booleans()):
        array = np.asfortranarray(array)
    return array


def _acceptable(array: np.ndarray) -> bool:
    if array.shape not in VALID_SHAPES or array.dtype.kind not in "uif":
        return False
    if array.dtype.kind == "f":
        return bool(np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1)
    return bool(array.min() >= 0 and array.max() <= 255)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(pixel_arrays())
def test_to_batch_returns_model_input_or_raises_input_error(array: np.ndarray) -> None:
    try:
        batch = onnxdigits.to_batch(array)
    except InputError:
        event("refused")
        assert not _acceptable(array), "a valid array was refused"
        return
    event("accepted")
    assert _acceptable(array), "an invalid array was accepted"
    assert isinstance(batch, np.ndarray)
    assert batch.dtype == np.float32 and batch.flags.c_contiguous
    assert batch.shape == (array.size // 784, 28, 28, 1)
    assert np.isfinite(batch).all() and batch.min() >= 0.0 and batch.max() <= 1.0
    expected = array.astype(np.float64) / (255.0 if array.dtype.kind in "ui" else 1.0)
    np.testing.assert_allclose(batch.ravel(), expected.reshape(-1), rtol=0, atol=1e-6)
