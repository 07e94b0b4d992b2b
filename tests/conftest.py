"""Fixtures shared by every test: the shipped artifacts and their real-digit sample."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import onnxdigits
import pytest

from .ray_cluster import ray_cluster  # noqa: F401  (the two-node Ray cluster of the --ray tests)

# The tests report nothing to Ray's usage stats. Left on, Ray Data starts a thread in this process
# that polls a Prometheus which is not there every 10 s until exit, logging each failure with its
# traceback; on CPython 3.11, formatting a traceback parses source, and two threads turning source
# into AST at once can fail with "AST constructor recursion depth mismatch" (cpython#106905).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def artifacts() -> onnxdigits.Artifacts:
    """The set shipped with the package."""
    return onnxdigits.Artifacts()


@pytest.fixture(scope="session")
def sample(artifacts: onnxdigits.Artifacts) -> tuple[np.ndarray, np.ndarray]:
    """The shipped real MNIST test digits: uint8 (N, 28, 28) and their labels."""
    return artifacts.sample()


@pytest.fixture(scope="session")
def classifier(artifacts: onnxdigits.Artifacts) -> onnxdigits.Classifier:
    return onnxdigits.Classifier(artifacts=artifacts, device="cpu")


@pytest.fixture
def artifacts_copy(artifacts: onnxdigits.Artifacts, tmp_path: Path) -> Path:
    """A private copy of the shipped set, free to damage."""
    target = tmp_path / "set"
    shutil.copytree(
        artifacts.root, target, ignore=shutil.ignore_patterns("__pycache__", "*.py", "keras")
    )
    return target


def flip_byte(path: Path, offset: int | None = None) -> None:
    """Flip one byte of a file in place (the middle one by default)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if offset is None else offset] ^= 0xFF
    path.write_bytes(bytes(data))
