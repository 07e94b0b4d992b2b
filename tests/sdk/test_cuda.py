"""The CUDA diagnosis, branch by branch, as far as a machine without a GPU can reach them."""

from __future__ import annotations

import ctypes.util
import shutil
import types
from pathlib import Path

import onnxruntime
import pytest
from onnxdigits import DeviceError, cuda
from onnxdigits.session import create_session

H200 = "NVIDIA H200"


def fake_proc(root: Path, driver: bool = True, gpus: tuple[str, ...] = (H200,)) -> Path:
    """A /proc with the NVIDIA driver's files, as the driver writes them."""
    if driver:
        (root / "driver/nvidia").mkdir(parents=True)
        (root / "driver/nvidia/version").write_text(
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.82.07  Release Build  "
            "(dvs-builder@U22)  Wed Jul 30 2025\nGCC version:  gcc version 12.2.0\n"
        )
    for i, name in enumerate(gpus):
        info = root / f"driver/nvidia/gpus/0000:00:0{i}.0/information"
        info.parent.mkdir(parents=True)
        info.write_text(f"Model: \t\t {name}\nIRQ:   \t\t 0\nGPU UUID: \t GPU-0\n")
    return root


def a_real_library() -> str:
    """A shared library that loads on any Linux machine, standing in for a CUDA one."""
    name = ctypes.util.find_library("m")
    if name is None:
        pytest.skip("no libm to stand in for a CUDA library")
    return name


def test_no_cuda_provider_says_to_install_onnxruntime_gpu(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    report = cuda.diagnose(fake_proc(tmp_path))
    assert not report.provider and report.libraries == ()
    assert "no CUDA execution provider" in report.advice()
    assert "onnxdigits[cuda]" in report.advice()
    assert "provider    CUDAExecutionProvider absent" in report.lines()


def test_no_driver_and_no_gpu_say_cuda_cannot_run_here(tmp_path) -> None:
    report = cuda.diagnose(tmp_path)
    if not report.provider:
        pytest.skip("this onnxruntime has no CUDA provider")
    assert (report.driver, report.gpus, report.libraries) == (None, (), ())
    assert "no NVIDIA GPU or driver" in report.advice()
    assert "driver      none" in report.lines() and "gpu         none" in report.lines()


def test_a_gpu_without_its_driver_says_to_install_the_driver(tmp_path) -> None:
    report = cuda.diagnose(fake_proc(tmp_path, driver=False))
    if not report.provider:
        pytest.skip("this onnxruntime has no CUDA provider")
    assert report.gpus == (H200,) and report.driver is None
    assert "install the driver" in report.advice()


def test_the_driver_gpus_and_each_library_are_named(monkeypatch, tmp_path) -> None:
    library = a_real_library()
    monkeypatch.setattr(
        cuda,
        "_needed",
        lambda ort, built: [
            ((library,), False),
            (("libcudnn_not_here.so.9",), False),
            (("libcufft_not_here.so.12",), True),
        ],
    )
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    report = cuda.diagnose(fake_proc(tmp_path, gpus=(H200, H200)))
    assert report.driver == "580.82.07" and report.gpus == (H200, H200)
    lines = report.lines()
    assert f"gpu         {H200}, {H200}" in lines
    assert f"library     {library}: loads (system search path)" in lines
    assert any(line.startswith("library     libcudnn_not_here.so.9: MISSING") for line in lines)
    assert any("libcufft_not_here.so.12: missing, optional" in line for line in lines)
    # only the required library that is missing counts, and the advice names it and the fix
    assert report.missing == ["libcudnn_not_here.so.9"]
    assert "libcudnn_not_here.so.9" in report.advice() and "onnxdigits[cuda]" in report.advice()
    assert lines[-1].startswith("advice")


def test_a_library_is_taken_from_nvidias_pip_packages_first(tmp_path) -> None:
    name = a_real_library()
    found = next(
        (
            p
            for d in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64")
            if (p := Path(d) / name).is_file()
        ),
        None,
    )
    if found is None:
        pytest.skip(f"cannot find the file of {name}")
    site = tmp_path / "site-packages"
    (site / "nvidia/cu13/lib").mkdir(parents=True)
    shutil.copy(found, site / "nvidia/cu13/lib" / name)
    library = cuda._load(("nvidia", "cu13", "lib", name), [site])
    assert library.loaded_from == str(site / "nvidia/cu13/lib" / name)


def test_everything_present_gives_no_advice(monkeypatch, tmp_path) -> None:
    library = a_real_library()
    monkeypatch.setattr(cuda, "_needed", lambda ort, built: [((library,), False)])
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    report = cuda.diagnose(fake_proc(tmp_path))
    assert report.missing == [] and report.advice() == ""
    assert not any(line.startswith("advice") for line in report.lines())


def test_preload_runs_once_and_keeps_stdout_clean(monkeypatch, capsys) -> None:
    calls = []

    def preload_dlls() -> None:
        calls.append(1)
        print("Failed to load libcudnn.so.9: not found")

    monkeypatch.setattr(cuda, "_preloaded", False)
    fake = types.SimpleNamespace(preload_dlls=preload_dlls)
    assert "libcudnn.so.9" in cuda.preload(fake)  # type: ignore[arg-type]
    assert cuda.preload(fake) == ""  # type: ignore[arg-type]
    assert calls == [1]
    assert capsys.readouterr().out == ""


def test_preload_is_skipped_where_onnxruntime_lacks_it(monkeypatch) -> None:
    monkeypatch.setattr(cuda, "_preloaded", False)
    assert cuda.preload(types.SimpleNamespace()) == ""  # type: ignore[arg-type]


def test_a_cuda_device_that_cannot_be_had_says_what_to_do(artifacts) -> None:
    try:
        create_session(artifacts.model_bytes("classifier"), "cuda")
    except DeviceError as exc:
        message = str(exc)
    else:
        pytest.skip("CUDA came up here")
    assert "onnxdigits info" in message and "device='cpu'" in message
    assert cuda.diagnose().advice() in message
