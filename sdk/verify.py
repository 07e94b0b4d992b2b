"""Re-checking a set's parity against its stored Keras outputs, where no TensorFlow is installed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import ArtifactError
from .manifest import Artifacts, ArtifactsLike
from .session import CUDA, create_session

__all__ = ["GPU_ATOL", "Parity", "check_parity", "max_abs_diff"]

GPU_ATOL = 1e-4  # exact mode on CUDA: TF32 off, but other kernels and summation orders


def max_abs_diff(got: np.ndarray, expected: np.ndarray) -> float:
    """The largest absolute difference of two arrays of one shape, in float64; inf if shapes differ.

    NaN anywhere gives NaN, which no tolerance accepts.
    """
    if got.shape != expected.shape:
        return float("inf")
    return float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))


@dataclass(frozen=True)
class Parity:
    """One output of one submodel against its stored Keras reference."""

    key: str
    output: str
    max_abs_diff: float
    atol: float
    provider: str

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.atol  # NaN is not ok

    def __str__(self) -> str:
        verdict = "ok  " if self.ok else "FAIL"
        return (
            f"{verdict} {self.key:<15} {self.output:<9} max diff = {self.max_abs_diff:.1e} "
            f"(atol {self.atol:.0e}, {self.provider})"
        )


def check_parity(
    artifacts: ArtifactsLike = None,
    device: str | None = None,
    *,
    fast: bool = False,
) -> list[Parity]:
    """Run every submodel of a set on its stored reference inputs and compare with Keras' outputs.

    Args:
        artifacts: the set, or its directory (None: the default set).
        device: where to run (see `create_session`).
        fast: allow TF32 on CUDA (then the GPU tolerance does not promise to hold).

    Returns:
        One `Parity` per output; the tolerance is the contract's (1e-5) on the CPU and 1e-4
        on CUDA.

    Raises:
        ArtifactError: a file is missing or fails its checksum, or a model cannot be loaded.
        DeviceError: the device cannot be had.
    """
    artifacts = Artifacts.of(artifacts)
    results = []
    for key in artifacts.keys:
        entry = artifacts.entry(key)
        reference = artifacts.reference(entry)
        session = create_session(
            artifacts.model_bytes(entry), device, fast=fast, name=str(artifacts.root / entry.file)
        )
        provider = session.get_providers()[0]
        atol = max(entry.spec.atol, GPU_ATOL) if provider == CUDA else entry.spec.atol
        names = entry.spec.output_names
        missing = {*entry.spec.input_names, *names} - set(reference)
        if missing:
            raise ArtifactError(f"the reference of {key!r} lacks {sorted(missing)}")
        feed = {tensor.name: reference[tensor.name] for tensor in entry.spec.inputs}
        for name, got in zip(names, session.run(names, feed)):
            results.append(Parity(key, name, max_abs_diff(got, reference[name]), atol, provider))
    return results
