"""Each benchmark without its extra: one line naming the extra to install, exit status 1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# The CLI with some libraries made unimportable, as where their extra is not installed.
RUN_WITHOUT = """
import sys
from importlib.abc import MetaPathFinder

blocked = set(sys.argv[1].split(","))

class Blocked(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Blocked())
sys.argv = ["onnxdigits", *sys.argv[2:]]
from onnxdigits.cli import main
main()
"""


def run_without(blocked: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", RUN_WITHOUT, blocked, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory, sample) -> Path:
    path = tmp_path_factory.mktemp("npz") / "digits.npz"
    np.savez(path, x_test=sample[0][:8], y_test=sample[1][:8])
    return path


@pytest.mark.parametrize(
    ("blocked", "args", "extra"),
    [
        ("httpx", ["bench", "serve", "--hosts", "uvicorn"], "onnxdigits[serve]"),
        ("pyarrow", ["bench", "score", "--no-ray"], "onnxdigits[score]"),
    ],
    ids=["serve-httpx", "score-pyarrow"],
)
def test_a_missing_extra_is_named(blocked: str, args: list[str], extra: str, npz: Path) -> None:
    if args[1] == "score":
        args = [*args, "--data", str(npz)]
    result = run_without(blocked, *args)
    assert result.returncode == 1, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and f"pip install '{extra}'" in line, line
