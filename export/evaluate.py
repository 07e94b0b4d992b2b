"""The quality figures, computed from the ONNX files alone through the SDK."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from onnxdigits import Artifacts, Classifier, Encoder, Generator, grid_points, to_batch
from onnxdigits.manifest import ArtifactsLike
from onnxdigits.specs import LATENT_MODELS, SUBMODELS

from .models import elbo_terms


def knn_accuracy(
    train: np.ndarray, labels: np.ndarray, test: np.ndarray, truth: np.ndarray, k: int = 5
) -> float:
    """Accuracy of a k-nearest-neighbour vote (ties to the smaller label) fit on `train`."""
    from scipy.spatial import cKDTree

    if not 1 <= k <= len(train):
        raise ValueError(f"k must lie in 1..{len(train)}; got {k}")
    _, index = cKDTree(train).query(test, k=k)
    index = index.reshape(len(test), k)
    votes = np.zeros((len(test), int(labels.max()) + 1), np.int64)
    np.add.at(votes, (np.arange(len(test))[:, None], labels[index]), 1)
    return float(np.mean(votes.argmax(axis=1) == truth))


def negative_elbo(
    encoder: Encoder, generator: Generator, images: np.ndarray, samples: int, seed: int
) -> float:
    """The mean over images of the negative ELBO that training minimises (`elbo_terms`), its
    expectation over z ~ q(z|x) taken from `samples` draws per image."""
    x = to_batch(images)
    z_mean, z_log_var = encoder.encode(images)
    rng = np.random.default_rng(seed)
    total = np.zeros(len(x), np.float64)
    for _ in range(samples):
        eps = rng.standard_normal(z_mean.shape, dtype=np.float32)
        reconstruction = generator.decode(z_mean + np.exp(0.5 * z_log_var) * eps)
        bce, kl = elbo_terms(x, reconstruction, z_mean, z_log_var)
        total += keras.ops.convert_to_numpy(bce + kl)
    return float(np.mean(total / samples))


def evaluate(
    artifacts: ArtifactsLike,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    samples: int = 10,
    seed: int = 0,
    device: str | None = "cpu",
) -> dict[str, dict[str, Any]]:
    """Compute the quality figures of every model in a set.

    Args:
        artifacts: the set, or its directory.
        x_train, y_train: uint8 images and labels the 5-NN vote is fit on.
        x_test, y_test: uint8 images and labels everything is measured on.
        samples: draws of z per image for the VAEs' ELBO.
        device: where to run the ONNX files (see `onnxdigits.Classifier`).

    Returns:
        By model: classifier `test_accuracy`; ae `test_mse`; vae and cvae `test_neg_elbo` (nats
        per image); every latent model `knn5_accuracy`; the VAEs `grid_confident`, the share of
        their 15x15 grid that the classifier labels with probability >= 0.9. Each also records
        the image counts it used. Where the classifier and a generator's class regions are
        there, `conditional_figures` too.
    """
    artifacts = Artifacts.of(artifacts)
    present = {SUBMODELS[key].model for key in artifacts.keys}
    counts = {"test_images": int(len(x_test)), "train_images": int(len(x_train))}
    figures: dict[str, dict[str, Any]] = {}
    classifier = Classifier(artifacts=artifacts, device=device) if "classifier" in present else None
    if classifier is not None:
        accuracy = float(np.mean(classifier.predict(x_test) == y_test))
        figures["classifier"] = {"test_accuracy": accuracy, "test_images": counts["test_images"]}
    for model in LATENT_MODELS:
        if model not in present:
            continue
        encoder = Encoder(model, artifacts=artifacts, device=device)
        generator = Generator(model, artifacts=artifacts, device=device)
        result: dict[str, Any] = {
            "knn5_accuracy": knn_accuracy(
                encoder.embed(x_train), y_train, encoder.embed(x_test), y_test
            ),
        }
        if model == "ae":
            decoded = generator.decode(encoder.embed(x_test))
            result["test_mse"] = float(np.mean((decoded - to_batch(x_test)[..., 0]) ** 2))
        else:
            result["test_neg_elbo"] = negative_elbo(encoder, generator, x_test, samples, seed)
            result["elbo_samples"] = samples
        if classifier is not None:
            cells = generator.decode(grid_points(15))
            result["grid_confident"] = float(
                np.mean(classifier.predict_proba(cells).max(axis=1) >= 0.9)
            )
        if classifier is not None and generator.latent_classes is not None:
            result.update(conditional_figures(generator, classifier, seed=seed))
        figures[model] = {**result, **counts}
    return figures


def conditional_figures(
    generator: Generator, classifier: Classifier, samples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """How often digits drawn by request are read as the digit asked for.

    Args:
        generator: a generator whose set has class regions (`Generator.sample(digit=d)`).
        classifier: reads the drawn digits.
        samples: digits drawn per digit 0..9.
        seed: digit d is drawn with seed `seed + d`.

    Returns:
        `conditional_accuracy`, the mean over digits of the share of `samples` draws of digit
        d that the classifier labels d; `conditional_by_digit`, that share for each digit 0..9;
        `conditional_samples`, the draws per digit.

    Raises:
        InputError: the generator's set has no class regions.
    """
    shares = [
        float(np.mean(classifier.predict(generator.sample(samples, seed + d, digit=d)) == d))
        for d in range(10)
    ]
    return {
        "conditional_accuracy": float(np.mean(shares)),
        "conditional_by_digit": shares,
        "conditional_samples": samples,
    }
