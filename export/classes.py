"""Fitting each digit's region of a latent space: Gaussian mixtures by EM, in numpy alone.

The regions are read by the SDK (`onnxdigits.classes.LatentClasses`), which draws the points
that `Generator.sample(n, digit=d)` decodes.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
from onnxdigits import Artifacts, Classifier, Encoder, Generator
from onnxdigits.classes import DIGITS, LatentClasses, gaussian_log_pdf
from onnxdigits.manifest import ArtifactsLike
from onnxdigits.specs import LATENT_MODELS, SUBMODELS

from .errors import ExportError

log = logging.getLogger(__name__)
MAX_COMPONENTS = 3
MIN_KEPT = 50  # fewer kept points than this fit a digit poorly: all its points are fitted
# Added to each covariance's diagonal, relative to the data's variance, so that a component
# that collapses onto a few points stays a proper Gaussian.
RIDGE = 1e-6
ITERATIONS = 200
TOLERANCE = 1e-5  # stop once the mean log-likelihood per point gains less than this
STARTS = 3  # EM runs from different seeds per k; the likeliest is kept


class Mixture(NamedTuple):
    """A fitted Gaussian mixture: weights (k,), means (k, d), covariances (k, d, d), and its
    total log-likelihood on the data it was fitted to."""

    weights: np.ndarray
    means: np.ndarray
    covs: np.ndarray
    log_likelihood: float

    @property
    def parameters(self) -> int:
        k, d = self.means.shape
        return k * (d + d * (d + 1) // 2) + k - 1

    def bic(self, count: int) -> float:
        """The Bayesian information criterion on `count` points; lower is better."""
        return -2.0 * self.log_likelihood + self.parameters * math.log(count)


def _log_parts(
    x: np.ndarray, weights: np.ndarray, means: np.ndarray, covs: np.ndarray
) -> np.ndarray:
    """Each point's log of weight times density under each component: (N, k)."""
    return np.stack(
        [np.log(w) + gaussian_log_pdf(x, m, c) for w, m, c in zip(weights, means, covs)], axis=1
    )


def _logsumexp(parts: np.ndarray) -> np.ndarray:
    top = parts.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(parts - top).sum(axis=1, keepdims=True)))[:, 0]


def _start(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeds: each next centre drawn with probability by squared distance."""
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        distance = np.min([np.sum((x - c) ** 2, axis=1) for c in centres], axis=0)
        centres.append(x[rng.choice(len(x), p=distance / distance.sum())])
    return np.array(centres)


def fit_mixture(x: np.ndarray, k: int, seed: int = 0) -> Mixture:
    """Fit a k-component Gaussian mixture to points by EM, from `STARTS` k-means++ starts.

    Args:
        x: float (N, d) with N > k * d.
        k: components.
        seed: seeds the starts.

    Returns:
        The likeliest mixture found.

    Raises:
        ValueError: too few points for k components, or points that are not finite.
    """
    x = np.asarray(x, np.float64)
    count, dim = x.shape
    if count <= k * dim or not np.isfinite(x).all():
        raise ValueError(f"cannot fit {k} Gaussians to {count} points in {dim}-D (or not finite)")
    ridge = RIDGE * float(np.mean(np.var(x, axis=0))) * np.eye(dim)
    rng = np.random.default_rng(seed)
    best: Mixture | None = None
    for _ in range(STARTS if k > 1 else 1):
        centres = _start(x, k, rng)
        nearest = np.argmin([np.sum((x - c) ** 2, axis=1) for c in centres], axis=0)
        resp = np.eye(k)[nearest]
        previous = -np.inf
        for _ in range(ITERATIONS):
            # M step: weighted moments of the points each component is responsible for.
            mass = resp.sum(axis=0) + 1e-12
            weights = mass / count
            means = (resp.T @ x) / mass[:, None]
            covs = np.stack(
                [
                    ((resp[:, j, None] * (x - means[j])).T @ (x - means[j])) / mass[j]
                    for j in range(k)
                ]
            )
            covs += ridge
            # E step.
            parts = _log_parts(x, weights, means, covs)
            total = _logsumexp(parts)
            resp = np.exp(parts - total[:, None])
            likelihood = float(total.sum())
            if likelihood - previous < TOLERANCE * count:
                break
            previous = likelihood
        if best is None or likelihood > best.log_likelihood:
            best = Mixture(weights, means, covs, likelihood)
    assert best is not None
    return best


def fit_classes(
    z: np.ndarray,
    labels: np.ndarray,
    what: str,
    keep: np.ndarray | None = None,
    max_components: int = MAX_COMPONENTS,
) -> tuple[LatentClasses, list[int]]:
    """Fit each digit's region: a mixture of 1 to `max_components` Gaussians per digit, the
    number chosen by BIC.

    Args:
        z: float (N, d), the embeddings.
        labels: int (N,), their digits 0..9, each present.
        what: the embeddings and the points kept, in words, for the method (e.g. "z_mean of
            the 60,000 training digits").
        keep: bool (N,), the points to fit each digit to; a digit with fewer than
            `MIN_KEPT` of them kept is fitted to all its points. None keeps all.
        max_components: the largest mixture tried.

    Returns:
        The regions, and the digits fitted to all their points for want of kept ones.

    Raises:
        ValueError: a digit with too few points, or points that are not finite.
    """
    z = np.asarray(z, np.float64)
    labels = np.asarray(labels)
    keep = np.ones(len(z), bool) if keep is None else np.asarray(keep, bool)
    mixtures = []
    unfiltered = []
    for digit in range(DIGITS):
        mine = labels == digit
        if np.count_nonzero(mine & keep) >= MIN_KEPT:
            mine &= keep
        elif not keep[labels == digit].all():
            unfiltered.append(digit)
        points = z[mine]
        fits = [fit_mixture(points, k, seed=digit) for k in range(1, max_components + 1)]
        best = min(fits, key=lambda fit: fit.bic(len(points)))
        order = np.argsort(-best.weights)  # the heaviest component first
        mixtures.append((best.weights[order], best.means[order], best.covs[order]))
    method = (
        f"a Gaussian mixture per digit, 1 to {max_components} components chosen by BIC, fitted "
        f"by EM to the {what}"
    )
    if unfiltered:
        method += f" (digits {', '.join(map(str, unfiltered))}: all their points, too few kept)"
    return LatentClasses.of(method, mixtures), unfiltered


def fit_set_classes(
    artifacts: ArtifactsLike,
    images: np.ndarray,
    labels: np.ndarray,
    device: str | None = "cpu",
) -> dict[str, LatentClasses]:
    """Fit the regions of every latent model of a set from its own ONNX files.

    Each training digit is embedded by the model's encoder (`z` for ae, `z_mean` for the VAEs).
    Where the set has a classifier, each digit's region is fitted to the embeddings that the
    model's generator decodes into an image the classifier reads as that digit: the part of
    the plane where the model draws it (in a 2-D space, 4 and 9, 3, 5 and 8 overlap, and where
    they do the generator draws one of them only).

    Args:
        artifacts: the set.
        images: uint8 (N, 28, 28), the training digits.
        labels: (N,), their digits.
        device: where to run the ONNX files.

    Returns:
        By generator key ("vae.generator", ...), for each latent model whose encoder and
        generator the set has: its regions. Empty for a set with none.

    Raises:
        ExportError: digits too few to fit.
    """
    store = Artifacts.of(artifacts)
    classifier = Classifier(artifacts=store, device=device) if "classifier" in store.keys else None
    found: dict[str, LatentClasses] = {}
    for model in LATENT_MODELS:
        if not {f"{model}.encoder", f"{model}.generator"} <= set(store.keys):
            continue
        z = Encoder(model, artifacts=store, device=device).embed(images)
        what = f"{SUBMODELS[f'{model}.encoder'].output_names[0]} of {len(images):,} training digits"
        keep = None
        if classifier is not None:
            decoded = Generator(model, artifacts=store, device=device).decode(z)
            keep = classifier.predict(decoded) == labels
            what += (
                f", those {int(keep.sum()):,} whose decoded embedding the set's classifier "
                "reads as their label"
            )
        try:
            found[f"{model}.generator"], _ = fit_classes(z, labels, what, keep)
        except ValueError as exc:
            raise ExportError(f"cannot fit the {model}'s class regions: {exc}") from None
        log.info("%s.generator - class regions: %s", model, found[f"{model}.generator"].method)
    return found
