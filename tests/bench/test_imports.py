"""The benchmarks load only when a `bench` command runs: neither the SDK nor the CLI's start
imports them (the CLI's cold start is one of their own figures)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
import onnxdigits
import onnxdigits.cli
loaded = sorted(name for name in sys.modules if name.startswith("onnxdigits.bench"))
assert not loaded, loaded
"""


def test_neither_the_sdk_nor_the_cli_imports_the_benchmarks() -> None:
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
