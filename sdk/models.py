"""The SDK's front classes: a classifier, an encoder and a generator over exported ONNX files."""

from __future__ import annotations

import functools
import math
import numbers
from statistics import NormalDist

import numpy as np

from .classes import DIGITS, LatentClasses
from .errors import (
    ArtifactError,
    InputError,
    NoClassRegionsError,
    OnnxDigitsError,
    check_count,
    unknown_model,
)
from .images import Images, tile, to_batch
from .manifest import Artifacts, ArtifactsLike
from .session import CUDA, create_session
from .specs import LATENT_MODELS

__all__ = ["CHUNK", "Classifier", "Encoder", "Generator", "chunks", "grid_points", "reconstruct"]

# onnxruntime's CUDA provider fails inside cuDNN MaxPool on a run of 65,536 images, so larger
# calls are cut into chunks, run one after another. On the CPU, chunks of about a thousand
# images keep a chunk's activations in cache, and each session spreads its operators over the
# cores with onnxruntime's own threads: measured against single-threaded sessions each given a
# share of the call, as fast on the classifier and faster on the dense models and on small calls
# (a 15x15 grid), where splitting cost up to 1.5x (docs/benchmarks.md).
CHUNK = {"cpu": 1024, "cuda": 16384}


def chunks(count: int, size: int) -> list[slice]:
    """Cut `count` rows into as few runs of at most `size` as there can be, of equal length."""
    parts = math.ceil(count / size)
    bounds = [round(i * count / parts) for i in range(parts + 1)]
    return [slice(a, b) for a, b in zip(bounds, bounds[1:])]


class _Submodel:
    """One verified ONNX submodel in one onnxruntime session."""

    def __init__(
        self,
        key: str,
        artifacts: ArtifactsLike,
        device: str | None,
        fast: bool,
        batch_size: int | None,
    ) -> None:
        if batch_size is not None:
            batch_size = check_count("batch_size", batch_size)
        self.artifacts = Artifacts.of(artifacts)
        self.entry = self.artifacts.entry(key)
        self.session = create_session(
            self.artifacts.model_bytes(self.entry),
            device,
            fast=fast,
            name=str(self.artifacts.root / self.entry.file),
        )
        spec = self.entry.spec
        problem = spec.mismatch(
            [value.name for value in self.session.get_inputs()],
            [value.name for value in self.session.get_outputs()],
        )
        if problem:
            raise ArtifactError(f"{self.entry.file} {problem}; export the set again")
        self.providers: list[str] = self.session.get_providers()
        if self.providers[0] == CUDA:
            index = self.session.get_provider_options()[CUDA].get("device_id", "0")
            self.device = f"cuda:{index}"
        else:
            self.device = "cpu"
        self.batch_size = int(batch_size or CHUNK[self.device.split(":")[0]])
        self._input = spec.input_names[0]
        self._outputs = spec.output_names

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.entry.spec.key!r}, device={self.device!r})"

    def run_batch(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the session over a batch already in its input form, in chunks of at most
        `batch_size`, and join the outputs.

        Args:
            batch: images as `to_batch` returns them, float32 (N, 28, 28, 1) in [0, 1], or
                latent points float32 (N, latent_dim); not checked again, so that a caller that
                has normalised them (the service) does not pay for it twice.

        Returns:
            The submodel's outputs in the manifest's order, each with N rows.
        """

        def run(part: slice) -> list[np.ndarray]:
            return self.session.run(self._outputs, {self._input: batch[part]})

        parts = chunks(len(batch), self.batch_size)
        if len(parts) == 1:
            return run(parts[0])
        return [np.concatenate(outputs) for outputs in zip(*map(run, parts))]


class Classifier(_Submodel):
    """The CNN digit classifier.

    Args:
        artifacts: an `Artifacts` set or its directory; None for `$ONNXDIGITS_ARTIFACTS`, else
            the set shipped with the package.
        device: "auto", "cpu", "cuda" or "cuda:N"; None for `$ONNXDIGITS_DEVICE`, else "auto"
            (see `create_session`).
        fast: on CUDA, allow TF32; outputs then drift from Keras by more than 1e-4.
        batch_size: the largest run given to onnxruntime at once; larger calls are chunked.

    Raises:
        ArtifactError: the set is missing, malformed or tampered with.
        DeviceError: the device cannot be had.
        InputError: a batch_size that is not a positive integer.
    """

    def __init__(
        self,
        *,
        artifacts: ArtifactsLike = None,
        device: str | None = None,
        fast: bool = False,
        batch_size: int | None = None,
    ) -> None:
        super().__init__("classifier", artifacts, device, fast, batch_size)

    def predict_proba(self, images: Images) -> np.ndarray:
        """Return class probabilities, float32 (N, 10). Raises InputError for bad images."""
        return self.run_batch(to_batch(images))[0]

    def predict(self, images: Images) -> np.ndarray:
        """Return labels, int64 (N,). Raises InputError for bad images."""
        return self.predict_proba(images).argmax(axis=1).astype(np.int64)


class _LatentSubmodel(_Submodel):
    """The encoder or generator of one latent model."""

    part = ""

    def __init__(
        self,
        model: str = "vae",
        *,
        artifacts: ArtifactsLike = None,
        device: str | None = None,
        fast: bool = False,
        batch_size: int | None = None,
    ) -> None:
        if model not in LATENT_MODELS:
            raise InputError(unknown_model(model, LATENT_MODELS))
        self.model = model
        super().__init__(f"{model}.{self.part}", artifacts, device, fast, batch_size)


class Encoder(_LatentSubmodel):
    """An encoder into the 2-D latent space of "ae", "vae" or "cvae" (other args: `Classifier`)."""

    part = "encoder"

    def embed(self, images: Images) -> np.ndarray:
        """Return the embedding, float32 (N, 2): `z` for "ae", `z_mean` for the VAEs."""
        return self.run_batch(to_batch(images))[0]

    def encode(self, images: Images) -> tuple[np.ndarray, np.ndarray]:
        """Return the VAE posterior (`z_mean`, `z_log_var`), each float32 (N, 2).

        Raises:
            InputError: bad images.
            OnnxDigitsError: the model is "ae", which has no posterior; use `embed`.
        """
        if len(self._outputs) != 2:
            raise OnnxDigitsError(f"the {self.model} encoder has no z_log_var; use embed()")
        z_mean, z_log_var = self.run_batch(to_batch(images))
        return z_mean, z_log_var


def grid_points(n: int = 15, lo: float = 0.05, hi: float = 0.95) -> np.ndarray:
    """The notes' latent grid: point i*n + j is [ppf(q[j]), ppf(q[i])], q = linspace(lo, hi, n).

    Returns:
        float32 (n * n, 2), ppf being the standard normal quantile.

    Raises:
        InputError: n < 1, or not 0 < lo < hi < 1.
    """
    return _checked_grid_points(n, lo, hi).copy()


def _checked_grid_points(n: int, lo: float, hi: float) -> np.ndarray:
    """`grid_points` after checking its arguments, read-only and shared: no copy."""
    n = check_count("n", n)
    if not 0.0 < lo < hi < 1.0:
        raise InputError(f"the quantiles need 0 < lo < hi < 1; got lo={lo}, hi={hi}")
    return _grid_points(n, float(lo), float(hi))


@functools.lru_cache(maxsize=8)
def _grid_points(n: int, lo: float, hi: float) -> np.ndarray:
    """`grid_points`, read-only, made once per grid: in Python the quantiles take a good part of
    the time that the dense generators take to decode a 15x15 grid."""
    ppf = NormalDist().inv_cdf
    values = np.array([ppf(q) for q in np.linspace(lo, hi, n)], dtype=np.float32)
    rows, columns = np.meshgrid(values, values, indexing="ij")
    points = np.stack([columns.ravel(), rows.ravel()], axis=1)
    points.flags.writeable = False
    return points


class Generator(_LatentSubmodel):
    """A generator (decoder) from the 2-D latent space of "ae", "vae" or "cvae".

    Other args as for `Classifier`.
    """

    part = "generator"

    @property
    def latent_dim(self) -> int:
        return self.entry.spec.inputs[0].shape[0]

    def decode(self, z: np.ndarray) -> np.ndarray:
        """Decode latent points.

        Args:
            z: real array (N, latent_dim), finite.

        Returns:
            float32 (N, 28, 28) in [0, 1].

        Raises:
            InputError: the wrong rank or width, no points, a non-real dtype, a point that is
                not finite or lies beyond float32's range, or one so far out that the
                generator overflows there (its image would be NaN); the message names it, as
                "z[i, j]" or "z[i]".
        """
        latents = self._latents(z)
        images = self.run_batch(latents)[0][..., 0]
        finite = np.isfinite(images.reshape(len(images), -1)).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise InputError(
                f"z[{row}] = [{', '.join(f'{v:g}' for v in latents[row])}] is too far out to "
                "decode: the generator "
                "overflows float32 there and gives NaN (the prior puts nearly every point "
                "within +-4 of 0)"
            )
        return images

    @property
    def latent_classes(self) -> LatentClasses | None:
        """Each digit's region of the latent space, from the manifest; None if the set has none."""
        return self.entry.latent_classes

    def sample(self, n: int, seed: int | None = None, *, digit: int | None = None) -> np.ndarray:
        """Decode `n` points drawn from the prior N(0, I), or from one digit's region.

        Args:
            n: how many.
            seed: a non-negative integer for a repeatable draw; None for a fresh one.
            digit: 0..9 to draw from that digit's region of the latent space (its Gaussian
                mixture in the manifest, each point kept where the digit holds at least half
                the ten densities: `onnxdigits.classes`); None for the prior.

        Returns:
            float32 (n, 28, 28) in [0, 1].

        Raises:
            InputError: n < 1, a seed that is not a non-negative integer, a digit outside
                0..9, or a digit asked of a set whose manifest has no class regions
                (`NoClassRegionsError`).
        """
        n = check_count("n", n)
        if seed is not None:
            seed = check_count("seed", seed, minimum=0)
        rng = np.random.default_rng(seed)
        if digit is None:
            return self.decode(rng.standard_normal((n, self.latent_dim), dtype=np.float32))
        if isinstance(digit, bool) or not isinstance(digit, numbers.Integral):
            raise InputError(f"digit must be an integer 0..9 or None; got {digit!r}")
        if not 0 <= digit < DIGITS:
            raise InputError(f"digit must lie in 0..9; got {digit}")
        regions = self.latent_classes
        if regions is None:
            raise NoClassRegionsError(
                f"the {self.model} generator of {self.artifacts.root} has no class regions, so "
                "it cannot draw a chosen digit; add them with `onnxdigits fit-classes --data "
                f"mnist.npz --artifacts {self.artifacts.root}`, or sample without a digit"
            )
        return self.decode(regions.sample(int(digit), n, rng))

    def grid(self, n: int = 15, lo: float = 0.05, hi: float = 0.95) -> np.ndarray:
        """Decode the notes' latent manifold (`grid_points`) in one batched call.

        The 28x28 cell in row i, column j is decode([ppf(q[j]), ppf(q[i])]).

        Returns:
            float32 (28 n, 28 n) in [0, 1].

        Raises:
            InputError: n < 1, or not 0 < lo < hi < 1.
        """
        # The grid's points are finite float32 by construction: they are decoded as they are,
        # without the copy and the checks that `decode` gives points from outside, which cost
        # a few percent of a dense generator's 15x15 grid.
        return tile(self.run_batch(_checked_grid_points(n, lo, hi))[0][..., 0], n)

    def interpolate(self, z0: np.ndarray, z1: np.ndarray, steps: int = 10) -> np.ndarray:
        """Decode `steps` points on the line from z0 to z1, both ends included: (steps, 28, 28)."""
        steps = check_count("steps", steps, minimum=2)
        start, end = (self._latents(np.asarray(z).reshape(1, -1))[0] for z in (z0, z1))
        t = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        return self.decode(start + t * (end - start))

    def _latents(self, z: object) -> np.ndarray:
        try:
            array = np.asarray(z)
        except (ValueError, TypeError) as exc:
            raise InputError(f"latent points are not an array: {exc}") from None
        if array.dtype.kind not in "fiu":
            raise InputError(f"latent points of dtype {array.dtype}; expected real numbers")
        if array.ndim != 2 or array.shape[1] != self.latent_dim:
            raise InputError(
                f"latent points of shape {array.shape}; expected (N, {self.latent_dim})"
            )
        if len(array) == 0:
            raise InputError("no latent points; give at least one")
        _check_finite(array, array, "")
        with np.errstate(over="ignore"):  # what overflows is found and named just below
            latents = np.ascontiguousarray(array, dtype=np.float32)
        _check_finite(latents, array, ", beyond float32's range (+-3.4e+38)")
        return latents


def _check_finite(z: np.ndarray, given: np.ndarray, why: str) -> None:
    """Raise InputError naming the first element of `z` that is not finite, with its value in
    `given`, the caller's array (the cast to float32 turns 1e39 into Inf)."""
    bad = ~np.isfinite(z)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"z[{row}, {column}] is {_number(float(given[row, column]))}{why}; latent points "
            "must be finite numbers"
        )


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    return f"{value:g}"


def reconstruct(
    images: Images,
    model: str = "vae",
    *,
    artifacts: ArtifactsLike = None,
    device: str | None = None,
) -> np.ndarray:
    """Encode images and decode their embeddings: float32 (N, 28, 28) in [0, 1]."""
    encoder = Encoder(model, artifacts=artifacts, device=device)
    generator = Generator(model, artifacts=encoder.artifacts, device=device)
    return generator.decode(encoder.embed(images))
