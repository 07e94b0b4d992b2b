"""What this machine has for CUDA, in words: the driver and GPUs, the libraries onnxruntime-gpu
needs, and what to do when a CUDA session does not come up.

onnxruntime falls back to the CPU silently when a CUDA library is missing; this module says which
one, so that `onnxdigits info` and a failed `device="cuda"` can name the next step.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

__all__ = ["CUDA_EXTRA", "CudaReport", "Library", "diagnose", "preload"]

CUDA_EXTRA = "pip install 'onnxdigits[cuda]'"
_preloaded = False
_preload_lock = threading.Lock()


@dataclass(frozen=True)
class Library:
    """One shared library a CUDA session needs, and where it loaded from (None: it did not)."""

    name: str
    loaded_from: str | None
    error: str = ""
    optional: bool = False


@dataclass(frozen=True)
class CudaReport:
    """A diagnosis of CUDA for onnxruntime on this machine."""

    onnxruntime: str
    package: str
    built_for: str | None  # the CUDA version the onnxruntime build targets, e.g. "13.0"
    provider: bool  # whether this onnxruntime has the CUDA execution provider at all
    driver: str | None  # the NVIDIA kernel driver's version
    gpus: tuple[str, ...]
    libraries: tuple[Library, ...] = ()

    @property
    def missing(self) -> list[str]:
        return [lib.name for lib in self.libraries if lib.loaded_from is None and not lib.optional]

    def advice(self) -> str:
        """The next step, in one sentence; empty when nothing is missing."""
        if not self.provider:
            return (
                f"this onnxruntime ({self.package} {self.onnxruntime}) has no CUDA execution "
                "provider: install onnxruntime-gpu on a Linux or Windows x86-64 machine with an "
                f"NVIDIA GPU ({CUDA_EXTRA})"
            )
        if not self.gpus and self.driver is None:
            return "this machine shows no NVIDIA GPU or driver, so CUDA cannot run here"
        if self.driver is None:
            return "no NVIDIA driver is loaded: install the driver for this GPU"
        if self.missing:
            return (
                f"CUDA libraries that {self.package} {self.onnxruntime} needs are missing "
                f"({', '.join(self.missing)}): {CUDA_EXTRA} brings them"
            )
        return ""

    def lines(self) -> list[str]:
        """The report as lines of text for `onnxdigits info`."""
        built = f", built for CUDA {self.built_for}" if self.built_for else ""
        out = [f"onnxruntime {self.package} {self.onnxruntime}{built}"]
        out.append(f"provider    CUDAExecutionProvider {'present' if self.provider else 'absent'}")
        out.append(f"driver      {self.driver or 'none'}")
        out.append(f"gpu         {', '.join(self.gpus) if self.gpus else 'none'}")
        for lib in self.libraries:
            if lib.loaded_from:
                state = f"loads ({lib.loaded_from})"
            else:
                state = ("missing, optional" if lib.optional else "MISSING") + (
                    f": {lib.error}" if lib.error else ""
                )
            out.append(f"library     {lib.name}: {state}")
        advice = self.advice()
        if advice:
            out.append(f"advice      {advice}")
        return out


def _driver(proc: Path) -> tuple[str | None, tuple[str, ...]]:
    """The kernel driver's version and the GPUs' names, read from /proc."""
    driver = None
    try:
        first = (proc / "driver/nvidia/version").read_text().splitlines()[0]
        words = first.split()
        driver = next((w for w in words if w[:1].isdigit() and "." in w), first.strip())
    except (OSError, IndexError):
        pass
    gpus = []
    for info in sorted((proc / "driver/nvidia/gpus").glob("*/information")):
        try:
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    gpus.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    return driver, tuple(gpus)


def _needed(ort: ModuleType, built_for: str | None) -> list[tuple[tuple[str, ...], bool]]:
    """The libraries a CUDA session of these models needs, relative to site-packages, each with
    whether it is optional. cuDNN is not: the convolutions run on it. FFT and runtime
    compilation are: these models use neither."""
    windows = sys.platform == "win32"
    driver = [] if windows else [(("libcuda.so.1",), False)]  # the driver's own library
    try:  # onnxruntime's own list (1.21+), which knows each CUDA line's file names
        paths = ort._get_nvidia_dll_paths(windows, True, True)
    except (AttributeError, TypeError, ValueError):
        major = (built_for or "12").split(".")[0]
        paths = [(f"libcudart.so.{major}",), (f"libcublas.so.{major}",), ("libcudnn.so.9",)]
    return driver + [
        (tuple(p), "cufft" in p[-1] or "nvrtc" in p[-1] or "cudnn_" in p[-1]) for p in paths
    ]


def _load(relative: tuple[str, ...], roots: list[Path], optional: bool = False) -> Library:
    """Load a library from the nvidia pip packages first, then the system's search path."""
    name = relative[-1]
    for root in roots:
        path = root.joinpath(*relative)
        if len(relative) > 1 and path.is_file():
            try:
                ctypes.CDLL(str(path))
                return Library(name, str(path), optional=optional)
            except OSError:
                pass
    try:
        ctypes.CDLL(name)
        return Library(name, "system search path", optional=optional)
    except OSError as exc:
        return Library(name, None, str(exc).split(":")[-1].strip(), optional)


def diagnose(proc: Path = Path("/proc"), load_libraries: bool = True) -> CudaReport:
    """Diagnose CUDA for onnxruntime here.

    Args:
        proc: where to read the NVIDIA driver's files (tests point it elsewhere).
        load_libraries: try to load each CUDA library onnxruntime needs (only where it has the
            CUDA provider and a driver is there).

    Returns:
        The report; `report.advice()` is the next step, if any.
    """
    import onnxruntime as ort
    from onnxruntime import onnxruntime_validation

    try:
        package, version, built_for = onnxruntime_validation.get_package_name_and_version_info()
    except (AttributeError, ValueError):
        package, version, built_for = "onnxruntime", ort.__version__, None
    provider = "CUDAExecutionProvider" in ort.get_available_providers()
    driver, gpus = _driver(proc)
    libraries: tuple[Library, ...] = ()
    if provider and load_libraries and driver is not None:
        roots = [Path(p) for p in sys.path if p.endswith("site-packages")]
        libraries = tuple(
            _load(relative, roots, optional) for relative, optional in _needed(ort, built_for)
        )
    return CudaReport(version, package, built_for or None, provider, driver, gpus, libraries)


def preload(ort: ModuleType) -> str:
    """Load the CUDA and cuDNN libraries from nvidia's pip packages once, where onnxruntime can
    (`onnxruntime.preload_dlls`, 1.21+), so that a machine with only a driver needs no
    LD_LIBRARY_PATH. Returns what onnxruntime printed while doing it (it prints, not logs)."""
    global _preloaded
    with _preload_lock:
        if _preloaded or not hasattr(ort, "preload_dlls"):
            return ""
        _preloaded = True
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            try:
                ort.preload_dlls()
            except (OSError, RuntimeError) as exc:
                print(f"preload_dlls failed: {exc}")
        return printed.getvalue()
