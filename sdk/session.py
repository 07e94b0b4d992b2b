"""The one place that creates onnxruntime sessions and decides what device they run on."""

from __future__ import annotations

import os
import re
import shutil
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from . import cuda
from .errors import ArtifactError, DeviceError

if TYPE_CHECKING:
    import onnxruntime

__all__ = ["CPU", "CUDA", "DEVICE_ENV", "Device", "create_session", "gpu_present"]

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICE_ENV = "ONNXDIGITS_DEVICE"
_DEVICE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")
_cuda_failures: dict[int, str] = {}
_lock = threading.Lock()
_warned = False


@dataclass(frozen=True)
class Device:
    """A parsed device request: "auto", "cpu", "cuda" or "cuda:N"."""

    kind: str
    index: int = 0

    @classmethod
    def parse(cls, device: str | None) -> Device:
        """Parse a request; None means `$ONNXDIGITS_DEVICE`, else "auto".

        Raises:
            DeviceError: not one of the forms above (the variable's name is given when the
                bad value came from it).
        """
        origin = ""
        if device is None:
            device = os.environ.get(DEVICE_ENV) or "auto"
            origin = f" (from ${DEVICE_ENV})"
        match = _DEVICE.match(device.strip().lower()) if isinstance(device, str) else None
        if match is None or (match[1] == "cpu" and match[2]) or (match[1] == "auto" and match[2]):
            raise DeviceError(
                f'unknown device {device!r}{origin}; use "auto", "cpu", "cuda" or "cuda:N"'
            )
        return cls(match[1], int(match[2] or 0))

    def __str__(self) -> str:
        return f"cuda:{self.index}" if self.kind == "cuda" and self.index else self.kind


def gpu_present() -> bool:
    """Whether this machine shows an NVIDIA GPU to its driver (cheap: no CUDA is loaded)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return True
    if any(Path("/dev").glob("nvidia[0-9]*")):
        return True
    return sys.platform == "win32" and shutil.which("nvidia-smi") is not None


def create_session(
    model: bytes, device: str | None = None, *, fast: bool = False, name: str = "the model"
) -> onnxruntime.InferenceSession:
    """Create an onnxruntime session on the device asked for, and check what it really got.

    Args:
        model: the ONNX model's bytes, already verified against the manifest.
        device: "auto" (CUDA when it really comes up, else the CPU), "cpu", "cuda" or
            "cuda:N"; None for `$ONNXDIGITS_DEVICE`, else "auto". "auto" warns once when this
            machine has an NVIDIA GPU but CUDA does not come up; without a GPU it picks the CPU
            quietly.
        fast: on CUDA, allow TF32 matrix maths; exact float32 otherwise.
        name: what to call the model in messages (its file).

    Returns:
        The session; `session.get_providers()[0]` names where it runs.

    Raises:
        DeviceError: an unknown device, or "cuda" when CUDA cannot be had, saying why.
        ArtifactError: onnxruntime cannot load the model on the CPU.
    """
    import onnxruntime as ort

    request = Device.parse(device)
    options = ort.SessionOptions()
    if request.kind != "cpu":
        reason = _cuda_failures.get(request.index)
        if reason is None:
            session, reason = _try_cuda(ort, model, options, request.index, fast)
            if session is not None:
                return session
            _cuda_failures[request.index] = reason
        if request.kind == "cuda":
            raise DeviceError(
                f"device {str(request)!r} cannot be had: {reason}. `onnxdigits info` shows "
                "what CUDA needs here; device='cpu' (--device cpu) runs on the CPU"
            )
        if gpu_present():
            _warn_once(
                f"running on the CPU although this machine has an NVIDIA GPU: {reason}. "
                "Pass device='cpu' (--device cpu) to choose it and silence this."
            )
    try:
        return ort.InferenceSession(model, options, providers=[CPU])
    except Exception as exc:
        # onnxruntime's own errors (Fail, InvalidGraph, ...) share no base class but its module:
        # the bytes are no model it can run. Anything else is no verdict on the model.
        if not type(exc).__module__.startswith("onnxruntime."):
            raise
        text = " ".join(str(exc).split())
        raise ArtifactError(
            f"onnxruntime cannot load {name}: {text[:400]}; export the set again or restore it"
        ) from None


def _try_cuda(
    ort: ModuleType, model: bytes, options: onnxruntime.SessionOptions, index: int, fast: bool
) -> tuple[onnxruntime.InferenceSession | None, str]:
    """Return a CUDA session, or None and the reason CUDA did not come up."""
    if CUDA not in ort.get_available_providers():
        return None, cuda.diagnose(load_libraries=False).advice()
    if gpu_present():
        cuda.preload(ort)
    cuda_options = {"device_id": str(index), "use_tf32": "1" if fast else "0"}
    # onnxruntime logs its own failure to load the CUDA libraries at error level before falling
    # back silently; the caller reports it once, in words, instead.
    with _lock:
        ort.set_default_logger_severity(4)
        try:
            session = ort.InferenceSession(model, options, providers=[(CUDA, cuda_options), CPU])
        except Exception as exc:  # onnxruntime raises its own untyped errors for a bad device id
            return None, f"onnxruntime could not start CUDA device {index}: {exc}"
        finally:
            ort.set_default_logger_severity(2)  # onnxruntime's default; it has no getter
    if session.get_providers()[0] != CUDA:
        advice = cuda.diagnose().advice()
        return None, f"onnxruntime-gpu {ort.__version__} could not load CUDA" + (
            f": {advice}" if advice else ""
        )
    return session, ""


def _warn_once(message: str) -> None:
    global _warned
    with _lock:
        if _warned:
            return
        _warned = True
    # Point the warning at the caller's line, outside this package.
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(__package__):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, RuntimeWarning, stacklevel=level)
