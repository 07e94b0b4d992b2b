"""Writing an artifacts set: ONNX files, references, sample and manifest, all or nothing."""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import keras
import numpy as np
from onnxdigits import Artifacts, __version__, grid_points, to_batch
from onnxdigits.errors import ArtifactError
from onnxdigits.files import put_back, staging_name, swap_in
from onnxdigits.manifest import Entry, ExportParity, FileEntry, Manifest, sha256_of
from onnxdigits.signing import SIGNATURE
from onnxdigits.specs import MANIFEST, SAMPLE, SUBMODELS, SubmodelSpec

from . import metadata
from .classes import fit_set_classes
from .convert import OPSET, to_onnx
from .errors import ExportError, ValidationError
from .rewrite import rewrite
from .train import KERAS_DIR, TRAINING_LOG
from .validate import compare, keras_outputs, validate

log = logging.getLogger(__name__)

SAMPLE_SIZE = 1000
REFERENCE_SIZE = 32
BATCHES = (1, 256)  # validation runs each file at these batch sizes
# What an export writes; everything else in the target directory is carried over. A signature
# is not: it would be stale (`export --sign-key` signs the new set).
OWNED = (MANIFEST, SAMPLE, "references", SIGNATURE, *(spec.file for spec in SUBMODELS.values()))


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
    train_digits: tuple[np.ndarray, np.ndarray] | None = None,
) -> Manifest:
    """Export submodels to an artifacts set, validating each against Keras, all or nothing.

    Each converted graph is rewritten for speed, exactly (`onnxdigits.export.rewrite`), before
    it is validated; the manifest names the rewrites applied to each file. The set is written
    into a temporary directory beside `out`, which replaces `out` only once every file is
    written and valid: a failure leaves the previous set as it was. Files in `out` that an
    export does not own (such as `keras/`) are carried over. Once the figures are measured,
    each latent model's class regions are fitted (given `train_digits`) and every file gets
    its metadata (`onnxdigits.export.metadata`); the digests are taken after that.

    Args:
        submodels: Keras submodels by manifest key.
        out: the set's directory.
        x_test, y_test: real test digits (uint8) for validation, references and the sample.
        metrics: called with the new set's directory, before it replaces `out`; returns each
            model's test metrics for the manifest.
        training: the training log to record.
        train_digits: uint8 training images (N, 28, 28) and their labels, to fit each latent
            model's class regions from (`fit_set_classes`); None fits none.

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
    staging = _staging(out)
    try:
        (staging / "references").mkdir()
        entries: dict[str, Entry] = {}
        for key, model in submodels.items():
            spec = SUBMODELS[key]
            proto, rewrites = rewrite(to_onnx(model, spec))
            if rewrites:
                log.info("%s - rewritten: %s", key, ", ".join(rewrites))
            data = proto.SerializeToString()
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
                rewrites=rewrites,
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
        _write_manifest(staging, manifest)
        if train_digits is not None:  # before the figures, which measure drawing by digit
            regions = fit_set_classes(staging, *train_digits)
            manifest = replace(
                manifest,
                models={
                    key: replace(entry, latent_classes=regions.get(key))
                    for key, entry in manifest.models.items()
                },
            )
            _write_manifest(staging, manifest)
        if metrics is not None:
            figures = metrics(staging)
            manifest = replace(
                manifest,
                models={
                    key: replace(entry, metrics=figures.get(entry.spec.model, {}))
                    for key, entry in manifest.models.items()
                },
            )
            _write_manifest(staging, manifest)
        manifest = replace(manifest, models=_describe(staging, manifest))
        _write_manifest(staging, manifest)
        _carry_over(out, staging)
        swap_in(staging, out)
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


def rewrite_set(
    directory: str | os.PathLike[str],
    images: np.ndarray,
    keys: Sequence[str] | None = None,
) -> dict[str, Entry]:
    """Rewrite the ONNX files of an exported set for speed, exactly, all or nothing.

    Each file is rewritten as `export` rewrites a converted graph, then checked: every output
    against the set's stored Keras references (at batch 1 and all of them) within the
    contract's tolerance, and against the unrewritten file on real inputs (`images`, or latent
    points), where a classifier must also give every image the same label. Only then are the
    new files and the manifest (new sha256, size, rewrites and parity) written, into a
    directory beside the set that replaces it whole; the references and everything else are
    carried over unchanged. A file that no rewrite applies to is left as it is.

    Args:
        directory: the set.
        images: real digits, uint8 (N, 28, 28), to compare labels and outputs on.
        keys: the submodels to rewrite; None for every one in the set.

    Returns:
        The new manifest entry of each file rewritten; empty when none was (nothing written).

    Raises:
        ArtifactError: the set is missing, malformed or fails a checksum.
        ExportError: a key the set does not have.
        ValidationError: a rewritten file disagrees with the references or the unrewritten one.
    """
    import onnx

    store = _open(directory, "rewritten")
    unknown = sorted(set(keys or ()) - set(store.keys))
    if unknown:
        raise ExportError(
            f"{store.root} has no {', '.join(unknown)}; it has {', '.join(store.keys)}"
        )
    rewritten: dict[str, tuple[bytes, Entry]] = {}
    for key in keys or store.keys:
        entry = store.entry(key)
        plain = store.model_bytes(entry)
        proto, names = rewrite(onnx.load_from_string(plain))
        if not names:
            continue
        data = proto.SerializeToString()
        parity = _check_rewrite(entry.spec, data, plain, store.reference(entry), images)
        log.info("%s - rewritten: %s", key, ", ".join(names))
        entry = replace(entry, rewrites=entry.rewrites + names, parity=parity)
        data = _restamp(data, entry, store.json)
        rewritten[key] = (data, replace(entry, sha256=sha256_of(data), bytes=len(data)))
    if not rewritten:
        return {}
    _commit(
        store,
        {key: entry for key, (_, entry) in rewritten.items()},
        {key: data for key, (data, _) in rewritten.items()},
    )
    return {key: entry for key, (_, entry) in rewritten.items()}


def add_class_regions(
    directory: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    device: str | None = "cpu",
) -> dict[str, Entry]:
    """Fit each latent model's class regions from the set's own ONNX files, into its manifest.

    The regions are fitted as `export` fits them (`fit_set_classes`) and recorded on each
    generator's entry; only the manifest changes, except that a generator file that already
    carries onnxdigits' metadata gets its regions there too (and its new digest). The set is
    replaced whole, or left as it was.

    Args:
        directory: the set.
        images: uint8 (N, 28, 28), the MNIST training digits.
        labels: (N,), their digits.
        device: where to run the ONNX files.

    Returns:
        The new entry of each generator.

    Raises:
        ArtifactError: the set is missing, malformed or fails a checksum.
        ExportError: the set has no latent model, or the digits are too few to fit.
    """
    store = _open(directory, "changed")
    regions = fit_set_classes(store, images, labels, device)
    if not regions:
        raise ExportError(f"{store.root} has no latent model (an encoder and its generator)")
    entries = {
        key: replace(store.entry(key), latent_classes=value) for key, value in regions.items()
    }
    files: dict[str, bytes] = {}
    for key, entry in entries.items():
        data = store.model_bytes(entry)
        restamped = _restamp(data, entry, store.json)
        if restamped != data:
            files[key] = restamped
            entries[key] = replace(entry, sha256=sha256_of(restamped), bytes=len(restamped))
    _commit(store, entries, files)
    return entries


def describe_set(directory: str | os.PathLike[str]) -> dict[str, Entry]:
    """Write each ONNX file's metadata (`onnxdigits.export.metadata`) into an exported set.

    Each file is rewritten with its metadata from the manifest, then checked: its graph must be
    the same as before (nodes, weights, tensors, opsets) and its outputs must still match the
    set's stored Keras references within the contract's tolerance. Only then are the files and
    the manifest (new sha256 and size) written, into a directory beside the set that replaces
    it whole. A file whose metadata is already as it would be written is left as it is.

    Args:
        directory: the set.

    Returns:
        The new entry of each file rewritten; empty when none was (nothing written).

    Raises:
        ArtifactError: the set is missing, malformed or fails a checksum.
        ValidationError: a file's graph changed, or it no longer matches its references.
    """
    store = _open(directory, "described")
    entries: dict[str, Entry] = {}
    files: dict[str, bytes] = {}
    for key in store.keys:
        entry = store.entry(key)
        plain = store.model_bytes(entry)
        data = metadata.write(plain, metadata.properties(entry, store.json))
        if data == plain:
            continue
        if not metadata.same_graph(plain, data):
            raise ValidationError(f"writing the metadata of {key} changed its graph")
        _against_references(data, entry.spec, store.reference(entry), (1,))
        files[key] = data
        entries[key] = replace(entry, sha256=sha256_of(data), bytes=len(data))
        log.info("%s - metadata written: %d properties", key, len(metadata.read(data)))
    if files:
        _commit(store, entries, files)
    return entries


def _restamp(data: bytes, entry: Entry, manifest: dict[str, Any]) -> bytes:
    """A file that carries onnxdigits' metadata with it brought up to date with `entry`; any
    other file as it is."""
    if metadata.read(data).get("producer") != metadata.PRODUCER:
        return data
    return metadata.write(data, metadata.properties(entry, manifest))


def _describe(root: Path, manifest: Manifest) -> dict[str, Entry]:
    """Write each file of a set being exported with its metadata; return the entries with
    their new digests."""
    entries = {}
    raw = manifest.to_json()
    for key, entry in manifest.models.items():
        path = root / entry.file
        data = metadata.write(path.read_bytes(), metadata.properties(entry, raw))
        path.write_bytes(data)
        entries[key] = replace(entry, sha256=sha256_of(data), bytes=len(data))
    return entries


def _open(directory: str | os.PathLike[str], done: str) -> Artifacts:
    """The set at `directory`, put back if an edit was interrupted, with every file checked.

    Raises:
        ArtifactError: it is missing, malformed, or a file fails its checksum.
    """
    root = Path(directory).absolute()
    _recover(root)
    store = Artifacts(root)
    problems = [problem for problem in store.verify().values() if problem]
    if problems:
        raise ArtifactError(f"{root} fails its checks, so it is not {done}: {problems[0]}")
    return store


def _commit(store: Artifacts, entries: dict[str, Entry], files: dict[str, bytes]) -> None:
    """Replace a set whole by one with new files and manifest entries, the rest carried over.

    Args:
        store: the set as it is.
        entries: the new manifest entry of each key changed; the others are kept as they are.
        files: the new bytes of each key's file, for the keys whose file changes.
    """
    root = store.root
    staging = _staging(root)
    try:
        for key, data in files.items():
            (staging / entries[key].file).write_bytes(data)
        manifest = store.manifest
        models = {key: entries.get(key, entry) for key, entry in manifest.models.items()}
        _write_manifest(staging, replace(manifest, models=models))
        _carry_over(
            root, staging, owned={MANIFEST, SIGNATURE, *(entries[key].file for key in files)}
        )
        problems = [problem for problem in Artifacts(staging).verify().values() if problem]
        if problems:  # a file changed under us while it was being carried over
            raise ArtifactError(f"the new set fails its checks: {problems[0]}")
        swap_in(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _check_rewrite(
    spec: SubmodelSpec,
    data: bytes,
    plain: bytes,
    reference: dict[str, np.ndarray],
    images: np.ndarray,
) -> ExportParity:
    """Check a rewritten file against the stored Keras outputs and against the unrewritten file;
    return its parity with Keras."""
    from onnxdigits.session import create_session

    diffs = _against_references(data, spec, reference, (1,))
    batches = (1, len(reference[spec.input_names[0]]))
    real = to_batch(images) if spec.input_names[0] == "image" else model_inputs(spec, images, 256)
    session = create_session(plain, "cpu")
    names = spec.output_names

    def unrewritten(feed: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, {spec.input_names[0]: feed})))

    compare(data, spec, real, (len(real),), unrewritten, "the unrewritten file")
    return ExportParity(spec.atol, batches, diffs)


def _against_references(
    data: bytes, spec: SubmodelSpec, reference: dict[str, np.ndarray], batches: tuple[int, ...]
) -> dict[str, float]:
    """Check an ONNX file against a set's stored Keras outputs at these batch sizes and at all
    of them; return each output's max abs diff."""
    inputs = reference[spec.input_names[0]]
    return compare(
        data,
        spec,
        inputs,
        (*batches, len(inputs)),
        lambda feed: {name: reference[name][: len(feed)] for name in spec.output_names},
        "the stored Keras outputs",
    )


def _savez(path: Path, arrays: dict[str, Any]) -> None:
    with path.open("wb") as handle:
        np.savez_compressed(handle, **arrays)


def _write_manifest(root: Path, manifest: Manifest) -> None:
    """Write a set's manifest.json (into a staging directory: the set is swapped in whole)."""
    (root / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n", encoding="utf-8")


def _carry_over(out: Path, staging: Path, owned: Collection[str] = OWNED) -> None:
    """Hard-link (or copy) into the new set what the old one holds that the writer does not own."""
    if not out.is_dir():
        return
    for item in out.iterdir():
        if item.name in owned:
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
    if put_back(out):
        log.warning("restored %s, left aside by an interrupted export", out)


def _staging(out: Path) -> Path:
    """A new directory beside `out` to build its replacement in, swapped in by `swap_in`."""
    staging = staging_name(out)
    staging.mkdir()
    return staging
