"""The quality figures, computed from the ONNX files alone through the SDK and numpy: no Keras,
no TensorFlow, so `evaluate` runs on the plain install."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnxdigits import Artifacts, Classifier, Encoder, Generator, grid_points, to_batch
from onnxdigits.manifest import ArtifactsLike
from onnxdigits.specs import LATENT_MODELS, SUBMODELS

_KNN_BLOCK = 2**22  # distances computed at once in the k-NN vote: 32 MiB of float64
_EPSILON = 1e-7  # Keras' epsilon: binary cross-entropy clips probabilities to [eps, 1 - eps]


def knn_accuracy(
    train: np.ndarray, labels: np.ndarray, test: np.ndarray, truth: np.ndarray, k: int = 5
) -> float:
    """Accuracy of a k-nearest-neighbour vote (ties to the smaller label) fit on `train`.

    Exact, by brute force over blocks of test points (embeddings have 2 dimensions: 10,000
    against 60,000 is a few seconds), so that it needs numpy alone.
    """
    if not 1 <= k <= len(train):
        raise ValueError(f"k must lie in 1..{len(train)}; got {k}")
    train = np.asarray(train, np.float64)
    test = np.asarray(test, np.float64)
    squared = np.sum(train**2, axis=1)
    index = np.empty((len(test), k), np.int64)
    block = max(1, _KNN_BLOCK // len(train))
    for start in range(0, len(test), block):
        part = test[start : start + block]
        distances = squared[None, :] - 2 * part @ train.T  # |p|^2 is the same along a row
        nearest = np.argpartition(distances, k - 1, axis=1)[:, :k]
        index[start : start + block] = nearest
    votes = np.zeros((len(test), int(labels.max()) + 1), np.int64)
    np.add.at(votes, (np.arange(len(test))[:, None], labels[index]), 1)
    return float(np.mean(votes.argmax(axis=1) == truth))


def elbo_terms(
    images: np.ndarray, reconstruction: np.ndarray, z_mean: np.ndarray, z_log_var: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The two terms of each image's negative ELBO, in nats, as `models.elbo_terms` computes
    them for training (there in Keras ops, here in numpy, so that evaluating needs no Keras).

    Args:
        images: float32 (N, 28, 28, 1) or (N, 28, 28) in [0, 1], the targets.
        reconstruction: float32 probabilities of the same number of pixels.
        z_mean, z_log_var: float32 (N, 2), the encoder's outputs.

    Returns:
        (reconstruction, kl), each float32 (N,): binary cross-entropy summed over the 784
        pixels, probabilities clipped to [1e-7, 1 - 1e-7] as Keras clips them, and
        KL(q(z|x) || N(0, I)).
    """
    target = np.reshape(images, (len(images), -1)).astype(np.float32, copy=False)
    output = np.clip(
        np.reshape(reconstruction, (len(reconstruction), -1)), _EPSILON, 1 - _EPSILON
    ).astype(np.float32, copy=False)
    bce = -(target * np.log(output) + (1 - target) * np.log(1 - output)).sum(axis=-1)
    kl = -0.5 * np.sum(1.0 + z_log_var - np.square(z_mean) - np.exp(z_log_var), axis=-1)
    return bce.astype(np.float32), kl.astype(np.float32)


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
        total += bce + kl
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
