"""The commands that need numpy alone run where Keras, TensorFlow and scipy cannot be imported,
as on the plain install; and writing PNG bytes to a terminal is refused."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxdigits
import pytest

# Run the CLI with the training stack made unimportable, as it is on the plain install.
BLOCKED = ("keras", "tensorflow", "tf2onnx", "scipy", "jax", "torch")
RUN_BLOCKED = f"""
import sys
from importlib.abc import MetaPathFinder

class Blocked(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {BLOCKED!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Blocked())
sys.argv = ["onnxdigits", *sys.argv[1:]]
from onnxdigits.cli import main
main()
"""


def run_blocked(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_BLOCKED, *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def small_mnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An npz in Keras' layout from the shipped sample: 600 train and 200 test digits."""
    images, labels = onnxdigits.Artifacts().sample()
    images = np.resize(images, (800, 28, 28))
    labels = np.resize(labels, 800)
    path = tmp_path_factory.mktemp("data") / "mnist.npz"
    np.savez(
        path, x_train=images[:600], y_train=labels[:600], x_test=images[600:], y_test=labels[600:]
    )
    return path


def test_the_blocker_blocks() -> None:
    result = run_blocked("train", "--limit", "10", "--out", "/nonexistent")
    assert result.returncode == 1 and "train needs the train extra" in result.stderr, result.stderr


def test_bench_with_data_runs_without_keras(small_mnist: Path) -> None:
    result = run_blocked(
        "bench", "sdk", "--data", str(small_mnist), "--repeats", "3", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    assert "No module named" not in result.stderr
    assert "classif" in result.stdout


def test_evaluate_runs_without_keras(small_mnist: Path) -> None:
    result = run_blocked(
        "evaluate", "--data", str(small_mnist), "--samples", "1", "--json", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    assert "knn5_accuracy" in result.stdout and "test_neg_elbo" in result.stdout


def test_export_triton_runs_without_keras(tmp_path: Path) -> None:
    result = run_blocked("export-triton", "--out", str(tmp_path / "repo"), "--models", "vae")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "repo" / "vae_encoder" / "1" / "model.onnx").is_file()


def test_the_numpy_parts_of_export_import_no_training_stack() -> None:
    # Not blocked here: Keras and TensorFlow are installed, and must stay unimported.
    code = f"""
import sys
from onnxdigits.export.data import load_mnist
from onnxdigits.export import evaluate, load_mnist as lazy
from onnxdigits.export.triton import write_repository
assert lazy is load_mnist
print(sorted(m for m in sys.modules if m.split(".")[0] in {BLOCKED!r}))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_grid_refuses_to_write_png_to_a_terminal(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    try:
        result = subprocess.run(
            [sys.executable, "-m", "onnxdigits.cli", "grid", "--out", "-", "--device", "cpu"],
            stdout=terminal,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
        os.set_blocking(controller, False)
        try:
            written = os.read(controller, 65536)
        except BlockingIOError:
            written = b""
    finally:
        os.close(terminal)
        os.close(controller)
    assert result.returncode == 2, result.stderr
    assert "terminal" in result.stderr
    assert b"PNG" not in written
    # Redirected to a file, the same command writes the PNG.
    out = tmp_path / "grid.png"
    with out.open("wb") as file:
        done = subprocess.run(
            [sys.executable, "-m", "onnxdigits.cli", "grid", "--out", "-", "--device", "cpu"],
            stdout=file,
            timeout=300,
        )
    assert done.returncode == 0 and out.read_bytes().startswith(b"\x89PNG")
