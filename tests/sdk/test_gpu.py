"""The CUDA path, on a machine with an NVIDIA GPU and onnxruntime-gpu (`pytest -m gpu`)."""

from __future__ import annotations

import numpy as np
import onnxdigits
import pytest
from onnxdigits.verify import GPU_ATOL, check_parity


def _cuda_or_skip(artifacts: onnxdigits.Artifacts) -> onnxdigits.Classifier:
    try:
        return onnxdigits.Classifier(artifacts=artifacts, device="cuda")
    except onnxdigits.DeviceError as exc:
        pytest.skip(f"no CUDA here: {exc}")


pytestmark = pytest.mark.gpu


def test_the_session_really_runs_on_cuda(artifacts) -> None:
    classifier = _cuda_or_skip(artifacts)
    assert classifier.device == "cuda:0"
    assert classifier.providers[0] == "CUDAExecutionProvider"
    print("providers:", classifier.providers)


def test_cuda_outputs_match_the_stored_keras_references(artifacts) -> None:
    _cuda_or_skip(artifacts)
    results = check_parity(artifacts, "cuda")
    for result in results:
        print(result)
    assert all(r.provider == "CUDAExecutionProvider" for r in results)
    assert all(r.ok and r.atol == GPU_ATOL for r in results)


def test_cuda_labels_agree_with_the_cpu(artifacts, sample, classifier) -> None:
    cuda = _cuda_or_skip(artifacts)
    images = sample[0]
    np.testing.assert_allclose(
        cuda.predict_proba(images), classifier.predict_proba(images), atol=GPU_ATOL
    )


def test_cuda_takes_200000_images_in_one_call(artifacts, sample) -> None:
    cuda = _cuda_or_skip(artifacts)
    images = np.resize(sample[0], (200_000, 28, 28))
    labels = cuda.predict(images)
    assert labels.shape == (200_000,)
    np.testing.assert_array_equal(labels[:1000], cuda.predict(sample[0]))


def test_cuda_serves_eight_threads(artifacts, sample) -> None:
    from concurrent.futures import ThreadPoolExecutor

    cuda = _cuda_or_skip(artifacts)
    slices = [sample[0][i : i + 40] for i in range(0, 1000, 40)]
    serial = [cuda.predict_proba(s) for s in slices]
    with ThreadPoolExecutor(8) as pool:
        futures = [[pool.submit(cuda.predict_proba, s) for s in slices] for _ in range(8)]
        for thread in futures:
            for future, expected in zip(thread, serial):
                np.testing.assert_array_equal(future.result(timeout=120), expected)
