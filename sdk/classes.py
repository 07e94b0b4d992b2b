"""Where each digit lives in a 2-D latent space: a small Gaussian mixture per class, and draws.

The exporter fits each latent model's regions from the training digits' embeddings and records
them on the generator's manifest entry as `latent_classes`:

    {"method": "<words>",
     "digits": [{"digit": 0, "components": [{"weight": 1.0, "mean": [x, y],
                                             "cov": [[a, b], [b, c]]}, ...]},
                ... one entry per digit, 0 to 9 in order]}

`LatentClasses` reads and writes that object, gives each digit's log density at latent points,
and draws points of a digit for `Generator.sample(n, digit=d)`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["DIGITS", "MAX_ROUNDS", "SHARE", "Component", "LatentClasses", "gaussian_log_pdf"]

DIGITS = 10
# A digit's draw is kept only where that digit holds at least this share of the ten densities
# (equal priors): its own region of the plane, away from the borders it shares with others.
# Elsewhere it is drawn again; after `MAX_ROUNDS` rounds the last draws are kept as they are.
SHARE = 0.5
MAX_ROUNDS = 64
_LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_pdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Log density of N(mean, cov) at each row of `x`.

    Args:
        x: float (N, d); mean: (d,); cov: (d, d), symmetric positive definite.

    Returns:
        float64 (N,).

    Raises:
        numpy.linalg.LinAlgError: `cov` is not positive definite.
    """
    chol = np.linalg.cholesky(np.asarray(cov, np.float64))
    centred = (np.asarray(x, np.float64) - mean).T
    solved = np.linalg.solve(chol, centred)  # L^-1 (x - mean): its squared norm is Mahalanobis
    log_det = 2.0 * np.sum(np.log(np.diag(chol)))
    return -0.5 * (np.sum(solved**2, axis=0) + log_det + len(mean) * _LOG_2PI)


@dataclass(frozen=True)
class Component:
    """One Gaussian of a digit's mixture: its weight, mean (d,) and covariance (d, d)."""

    weight: float
    mean: tuple[float, ...]
    cov: tuple[tuple[float, ...], ...]

    def to_json(self) -> dict[str, Any]:
        return {"weight": self.weight, "mean": list(self.mean), "cov": [list(r) for r in self.cov]}


@dataclass(frozen=True)
class LatentClasses:
    """Each digit's region of one latent space: a Gaussian mixture per digit, 0 to 9.

    Attributes:
        method: how the mixtures were fitted, in words.
        digits: the components of digit d at index d.
    """

    method: str
    digits: tuple[tuple[Component, ...], ...]

    @property
    def latent_dim(self) -> int:
        return len(self.digits[0][0].mean)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "digits": [
                {"digit": digit, "components": [c.to_json() for c in components]}
                for digit, components in enumerate(self.digits)
            ],
        }

    @classmethod
    def from_json(cls, raw: object, latent_dim: int) -> LatentClasses:
        """Read and check a `latent_classes` object.

        Raises:
            ValueError: anything other than ten digits in order, each with components of a
                positive weight (summing to 1), a finite mean of `latent_dim` values and a
                symmetric positive definite covariance.
        """
        if not isinstance(raw, dict) or not isinstance(raw.get("method"), str):
            raise ValueError('latent_classes is no object with a "method" string')
        entries = raw.get("digits")
        if not isinstance(entries, list) or len(entries) != DIGITS:
            raise ValueError(f"latent_classes needs {DIGITS} digits; got {_length(entries)}")
        digits = []
        for expected, entry in enumerate(entries):
            if not isinstance(entry, dict) or entry.get("digit") != expected:
                raise ValueError(f"latent_classes' entry {expected} is not digit {expected}")
            components = entry.get("components")
            if not isinstance(components, list) or not components:
                raise ValueError(f"digit {expected} has no components")
            digits.append(tuple(_component(c, latent_dim, expected) for c in components))
            total = sum(c.weight for c in digits[-1])
            if not math.isclose(total, 1.0, abs_tol=1e-6):
                raise ValueError(f"digit {expected}'s weights sum to {total}, not 1")
        return cls(raw["method"], tuple(digits))

    @classmethod
    def of(
        cls,
        method: str,
        mixtures: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> LatentClasses:
        """Build from each digit's (weights (k,), means (k, d), covariances (k, d, d))."""
        return cls(
            method,
            tuple(
                tuple(
                    Component(
                        float(w),
                        tuple(float(v) for v in m),
                        tuple(tuple(float(v) for v in row) for row in c),
                    )
                    for w, m, c in zip(weights, means, covs)
                )
                for weights, means, covs in mixtures
            ),
        )

    def log_density(self, z: np.ndarray) -> np.ndarray:
        """Each digit's mixture log density at latent points: float64 (N, 10) for z (N, d)."""
        columns = []
        for components in self.digits:
            parts = np.stack(
                [
                    math.log(c.weight) + gaussian_log_pdf(z, np.array(c.mean), np.array(c.cov))
                    for c in components
                ]
            )
            top = parts.max(axis=0)
            columns.append(top + np.log(np.exp(parts - top).sum(axis=0)))
        return np.stack(columns, axis=1)

    def posterior(self, z: np.ndarray) -> np.ndarray:
        """Each digit's share of the ten densities at latent points (equal priors): float64
        (N, 10), rows summing to 1."""
        log_density = self.log_density(z)
        shares = np.exp(log_density - log_density.max(axis=1, keepdims=True))
        return shares / shares.sum(axis=1, keepdims=True)

    def sample(self, digit: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw `n` points of `digit` from its mixture, kept only inside its region.

        A draw where the digit holds less than `SHARE` of the ten densities (where another
        digit is as likely) is drawn again, at most `MAX_ROUNDS` rounds.

        Args:
            digit: 0..9.
            n: how many points.
            rng: the source of randomness.

        Returns:
            float32 (n, d).
        """
        components = self.digits[digit]
        weights = np.array([c.weight for c in components])
        means = np.array([c.mean for c in components])
        factors = np.linalg.cholesky(np.array([c.cov for c in components]))
        points = np.empty((n, self.latent_dim))
        missing = np.arange(n)
        for _ in range(MAX_ROUNDS):
            which = rng.choice(len(components), size=len(missing), p=weights)
            noise = rng.standard_normal((len(missing), self.latent_dim))
            points[missing] = means[which] + np.einsum("nij,nj->ni", factors[which], noise)
            missing = missing[self.posterior(points[missing])[:, digit] < SHARE]
            if not len(missing):
                break
        return points.astype(np.float32)


def _length(value: object) -> str:
    return str(len(value)) if isinstance(value, list) else type(value).__name__


def _component(raw: object, latent_dim: int, digit: int) -> Component:
    """Read and check one component of `digit` (see `LatentClasses.from_json`)."""
    where = f"a component of digit {digit}"
    try:
        weight = float(raw["weight"])  # type: ignore[index]
        mean = np.array(raw["mean"], dtype=np.float64)  # type: ignore[index]
        cov = np.array(raw["cov"], dtype=np.float64)  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where} is malformed: {exc!r}") from None
    if not (weight > 0 and math.isfinite(weight)):
        raise ValueError(f"{where} has weight {weight}; weights are positive")
    if mean.shape != (latent_dim,) or cov.shape != (latent_dim, latent_dim):
        raise ValueError(
            f"{where} has a mean of shape {mean.shape} and a covariance of shape {cov.shape}; "
            f"expected ({latent_dim},) and ({latent_dim}, {latent_dim})"
        )
    if not (np.isfinite(mean).all() and np.isfinite(cov).all() and np.allclose(cov, cov.T)):
        raise ValueError(f"{where} has a mean or covariance that is not finite and symmetric")
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(f"{where} has a covariance that is not positive definite") from None
    return Component(
        weight, tuple(float(v) for v in mean), tuple(tuple(float(v) for v in r) for r in cov)
    )
