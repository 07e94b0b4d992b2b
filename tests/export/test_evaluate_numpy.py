"""`evaluate`'s numpy figures against the Keras ops that training uses, on real digits through
the shipped set's ONNX files."""

from __future__ import annotations

import keras
import numpy as np
import onnxdigits
import pytest
from onnxdigits.export.evaluate import elbo_terms, knn_accuracy
from onnxdigits.export.models import elbo_terms as keras_elbo_terms


@pytest.mark.parametrize("model", ["vae", "cvae"])
def test_elbo_terms_match_keras(
    model: str, artifacts: onnxdigits.Artifacts, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    images = sample[0][:16]
    x = onnxdigits.to_batch(images)
    z_mean, z_log_var = onnxdigits.Encoder(model, artifacts=artifacts, device="cpu").encode(x)
    generator = onnxdigits.Generator(model, artifacts=artifacts, device="cpu")
    reconstruction = generator.decode(z_mean)
    reconstruction[0, :3, :3] = 0.0  # probabilities at the clip's edges too
    reconstruction[1, :3, :3] = 1.0
    bce, kl = elbo_terms(x, reconstruction, z_mean, z_log_var)
    expected = [
        keras.ops.convert_to_numpy(term)
        for term in keras_elbo_terms(x, reconstruction, z_mean, z_log_var)
    ]
    np.testing.assert_allclose(bce, expected[0], rtol=1e-5)
    np.testing.assert_allclose(kl, expected[1], rtol=1e-5, atol=1e-6)
    assert bce.shape == kl.shape == (16,)


def test_knn_accuracy_matches_a_kd_tree(
    artifacts: onnxdigits.Artifacts, sample: tuple[np.ndarray, np.ndarray]
) -> None:
    from scipy.spatial import cKDTree

    images, labels = sample
    z = onnxdigits.Encoder("vae", artifacts=artifacts, device="cpu").embed(images)
    train, test = z[:700], z[700:]
    ours = knn_accuracy(train, labels[:700], test, labels[700:])
    _, index = cKDTree(train).query(test, k=5)
    votes = np.zeros((len(test), 10), np.int64)
    np.add.at(votes, (np.arange(len(test))[:, None], labels[:700][index]), 1)
    assert ours == float(np.mean(votes.argmax(axis=1) == labels[700:]))
