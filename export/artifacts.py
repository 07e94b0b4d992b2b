"""Writing an artifacts set: ONNX files, references, sample and manifest, all or nothing."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
from onnxdigits import __version__, grid_points, to_batch
from onnxdigits.manifest import Entry, ExportParity, FileEntry, Manifest, sha256_of
from onnxdigits.specs import MANIFEST, SAMPLE, SUBMODELS, SubmodelSpec

from .convert import OPSET, to_onnx
from .errors import ExportError
from .train import KERAS_DIR, TRAINING_LOG
from .validate import keras_outputs, validate

log = logging.getLogger(__name__)

SAMPLE_SIZE = 1000
REFERENCE_SIZE = 32
BATCHES = (1, 256)  # validation runs each file at these batch sizes
# What an export writes; everything else in the target directory is carried over.
OWNED = (MANIFEST, SAMPLE, "references", *(spec.file for spec in SUBMODELS.values()))


def load_submodels(directory: str | os.PathLike[str]) -> dict[str, keras.Model]:
    """Load every `<key>.keras` of the contract found in `directory`, in Keras' safe mode.

    Raises:
        ExportError: none is there.
    """
    from . import models  # noqa: F401  registers Sampling and VAE for deserialisation

    directory = Path(directory)
    found = {key: directory / f"{key}.keras" for key in SUBMODELS}
    found = {key: path for key, path in found.items() if path.exists()}
    if not found:
        raise ExportError(f"no trained models in {directory}; run `onnxdigits train` first")
    return {
        key: keras.models.load_model(path, safe_mode=True, compile=False)
        for key, path in found.items()
    }


def model_inputs(spec: SubmodelSpec, images: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Fixed real inputs for a submodel: test digits, or latent points (a 3x3 quantile grid from
    the 5% to the 95% quantile, then draws from the prior)."""
    if spec.input_names[0] == "image":
        return to_batch(images[:count])
    grid = grid_points(3)
    rng = np.random.default_rng(seed)
    prior = rng.standard_normal((count, spec.inputs[0].shape[0]), dtype=np.float32)
    return np.concatenate([grid, prior])[:count]


def export(
    submodels: dict[str, keras.Model],
    out: str | os.PathLike[str],
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    metrics: Callable[[Path], dict[str, dict[str, Any]]] | None = None,
    training: dict[str, Any] | None = None,
) -> Manifest:
    """Export submodels to an artifacts set, validating each against Keras, all or nothing.

    The set is written into a temporary directory beside `out`, which replaces `out` only once
    every file is written and valid: a failure leaves the previous set as it was. Files in `out`
    that an export does not own (such as `keras/`) are carried over.

    Args:
        submodels: Keras submodels by manifest key.
        out: the set's directory.
        x_test, y_test: real test digits (uint8) for validation, references and the sample.
        metrics: called with the new set's directory, before it replaces `out`; returns each
            model's test metrics for the manifest.
        training: the training log to record.

    Returns:
        The manifest written.

    Raises:
        ValidationError: a file differs from Keras by more than its tolerance.
        ExportError: nothing to export, or `out` cannot be written.
    """
    import onnx
    import tensorflow as tf
    import tf2onnx

    unknown = sorted(set(submodels) - set(SUBMODELS))
    if unknown or not submodels:
        raise ExportError(
            f"cannot export {unknown or 'nothing'}; the contract has {list(SUBMODELS)}"
        )
    out = Path(out).absolute()
    _recover(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would otherwise become the set's
    try:
        (staging / "references").mkdir()
        entries: dict[str, Entry] = {}
        for key, model in submodels.items():
            spec = SUBMODELS[key]
            data = to_onnx(model, spec).SerializeToString()
            checks = model_inputs(spec, x_test, max(BATCHES))
            parity = validate(data, model, spec, checks, BATCHES)
            (staging / spec.file).write_bytes(data)
            inputs = model_inputs(spec, x_test, REFERENCE_SIZE)
            _savez(
                staging / spec.reference,
                {spec.input_names[0]: inputs, **keras_outputs(model, spec, inputs)},
            )
            entries[key] = Entry(
                spec=spec,
                file=spec.file,
                sha256=sha256_of(data),
                bytes=len(data),
                reference=FileEntry.of(staging, spec.reference),
                parity=ExportParity(spec.atol, BATCHES, parity),
            )
        _savez(staging / SAMPLE, {"x_test": x_test[:SAMPLE_SIZE], "y_test": y_test[:SAMPLE_SIZE]})
        manifest = Manifest(
            models=entries,
            sample=FileEntry.of(staging, SAMPLE),
            sample_count=int(min(SAMPLE_SIZE, len(x_test))),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            producer={
                "onnxdigits": __version__,
                "keras": keras.__version__,
                "keras_backend": keras.backend.backend(),
                "tensorflow": tf.__version__,
                "tf2onnx": tf2onnx.__version__,
                "onnx": onnx.__version__,
                "opset": OPSET,
            },
            training=training or {},
        )
        _write_json(staging / MANIFEST, manifest.to_json())
        if metrics is not None:
            figures = metrics(staging)
            manifest = replace(
                manifest,
                models={
                    key: replace(entry, metrics=figures.get(entry.spec.model, {}))
                    for key, entry in entries.items()
                },
            )
            _write_json(staging / MANIFEST, manifest.to_json())
        _carry_over(out, staging)
        _replace(out, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def export_dir(
    directory: str | os.PathLike[str],
    x_test: np.ndarray,
    y_test: np.ndarray,
    keras_dir: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> Manifest:
    """Export the `.keras` files of `directory/keras` (or `keras_dir`) into `directory`."""
    keras_dir = Path(keras_dir) if keras_dir else Path(directory) / KERAS_DIR
    log_path = keras_dir / TRAINING_LOG
    training = json.loads(log_path.read_text()) if log_path.exists() else None
    return export(load_submodels(keras_dir), directory, x_test, y_test, training=training, **kwargs)


def _savez(path: Path, arrays: dict[str, Any]) -> None:
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _carry_over(out: Path, staging: Path) -> None:
    """Hard-link (or copy) into the new set what the old one holds that an export does not own."""
    if not out.is_dir():
        return
    for item in out.iterdir():
        if item.name in OWNED:
            continue
        target = staging / item.name
        if item.is_dir():
            shutil.copytree(item, target, copy_function=_link_or_copy)
        else:
            _link_or_copy(item, target)


def _link_or_copy(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _recover(out: Path) -> None:
    """Put back a set that an export killed between its two renames left aside."""
    if out.exists():
        return
    for retired in sorted(out.parent.glob(f".{out.name}.old-*/{out.name}")):
        log.warning("restoring %s, left aside by an interrupted export", out)
        os.replace(retired, out)
        shutil.rmtree(retired.parent, ignore_errors=True)
        return


def _replace(out: Path, staging: Path) -> None:
    """Swap the staged set in for `out` with two renames; the old one is removed after."""
    retired = None
    if out.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, retired / out.name)
    try:
        os.replace(staging, out)
    except BaseException:
        if retired is not None:
            os.replace(retired / out.name, out)
        raise
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
