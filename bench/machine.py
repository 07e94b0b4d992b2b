"""What a figure was measured on: the CPU, its vector width, cores, GPU, versions, the load."""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows of it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def vector_width() -> str:
    """The widest x86 vector extension this CPU and its operating system support ("AVX-512",
    "AVX2", "AVX"), or the machine's own ("NEON" on ARM64): onnxruntime's CPU kernels, its
    blocked convolutions' channel block (16 with AVX-512, 8 with AVX2) among them, are chosen so.

    The answer is numpy's run-time CPU detection, which checks what onnxruntime checks: the
    CPUID bits and that the operating system saves the registers (XCR0); /proc/cpuinfo's flags
    show the CPUID bits only.
    """
    features: dict[str, bool] = {}
    for module in ("numpy._core._multiarray_umath", "numpy.core._multiarray_umath"):  # 2.x, 1.x
        try:
            features = dict(importlib.import_module(module).__cpu_features__)
            break
        except (ImportError, AttributeError):
            continue
    for flag, name in (("AVX512F", "AVX-512"), ("AVX2", "AVX2"), ("AVX", "AVX"), ("ASIMD", "NEON")):
        if features.get(flag):
            return name
    return platform.machine() or "unknown"


def gpu_name() -> str | None:
    """The GPUs nvidia-smi names, one a line; None without nvidia-smi or a GPU."""
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def load_average(values: Sequence[float] | None = None) -> str:
    """The load average over 1, 5 and 15 minutes (now, or `values` from os.getloadavg), as
    "0.52 0.61 0.70"."""
    return " ".join(f"{value:.2f}" for value in (values or os.getloadavg()))


def describe() -> dict[str, Any]:
    """What the figures were measured on.

    Returns:
        {"cpu", "cores", "vector", "gpu", "python", "onnxruntime", "onnxdigits", "date"}.
    """
    import onnxruntime
    from onnxdigits import __version__

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "vector": vector_width(),
        "gpu": gpu_name(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "onnxdigits": __version__,
        "date": datetime.now(UTC).date().isoformat(),
    }


def headline(info: dict[str, Any]) -> str:
    """The start of every table's first line: "DATE, CPU (N cores, VECTOR), GPU"."""
    vector = f", {info['vector']}" if info.get("vector") else ""
    gpu = f", {info['gpu']}" if info.get("gpu") else ""
    return f"{info['date']}, {info['cpu']} ({info['cores']} cores{vector}){gpu}"


def versions(*names: str) -> str:
    """ "name version, ..." of the distributions among `names` that are installed."""
    found = []
    for name in names:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)
