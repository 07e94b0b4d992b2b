"""What the benchmarks say they ran on: one detection of the vector width, one machine line."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
from onnxdigits.bench import machine


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64") or not Path("/proc/cpuinfo").exists(),
    reason="compares with the flags of Linux's /proc/cpuinfo on x86-64",
)
def test_the_vector_width_agrees_with_the_cpu_flags() -> None:
    flags = next(
        line.split(":", 1)[1].split()
        for line in Path("/proc/cpuinfo").read_text().splitlines()
        if line.startswith("flags")
    )
    expected = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "AVX"
    assert machine.vector_width() == expected
    assert machine.describe()["vector"] == expected


def test_the_description_names_the_cpu_cores_and_versions() -> None:
    import onnxruntime
    from onnxdigits import __version__

    info = machine.describe()
    assert info["cpu"] == machine.cpu_name() and info["cpu"]
    assert info["cores"] >= 1
    assert info["onnxruntime"] == onnxruntime.__version__ and info["onnxdigits"] == __version__
    line = machine.headline(info)
    assert line.startswith(f"{info['date']}, {info['cpu']} ({info['cores']} cores, ")


@pytest.mark.parametrize(
    ("gpu", "vector", "expected"),
    [
        (None, "AVX2", "2026-11-28, Some CPU (2 cores, AVX2)"),
        ("NVIDIA H100", "AVX-512", "2026-11-28, Some CPU (2 cores, AVX-512), NVIDIA H100"),
        (None, None, "2026-11-28, Some CPU (2 cores)"),
    ],
)
def test_the_headline(gpu: str | None, vector: str | None, expected: str) -> None:
    info = {"date": "2026-11-28", "cpu": "Some CPU", "cores": 2, "vector": vector, "gpu": gpu}
    assert machine.headline(info) == expected


def test_versions_name_only_what_is_installed() -> None:
    import numpy

    assert machine.versions("numpy", "no-such-distribution") == f"numpy {numpy.__version__}"
