"""Hostile artifacts sets: FIFOs where files should be, models with external data or that are no
models, manifests of the wrong types or shapes, and a changed shipped set. Each gives an
`ArtifactError` saying what is wrong, before onnxruntime sees anything it should not.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxdigits
import onnxruntime
import pytest
from onnx.external_data_helper import set_external_data
from onnxdigits import ArtifactError, Classifier
from onnxdigits.manifest import SHIPPED_MANIFEST_SHA256, sha256_of
from onnxdigits.specs import MANIFEST

# --------------------------------------------------------------------------------------------
# Helpers


def edit_manifest(root: Path, change: Callable[[dict], object]) -> None:
    path = root / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest), encoding="utf-8")


def replace_model(root: Path, key: str, data: bytes) -> None:
    """Put `data` in place of submodel `key`'s file, with its digest and size in the manifest,
    as someone who can write the set would."""
    entry = json.loads((root / MANIFEST).read_text())["models"][key]
    (root / entry["file"]).write_bytes(data)
    edit_manifest(root, lambda m: m["models"][key].update(sha256=sha256_of(data), bytes=len(data)))


@pytest.fixture
def onnxruntime_forbidden(monkeypatch) -> list[tuple]:
    """Fail the test if onnxruntime is asked to create a session: the bytes must not reach it."""
    calls: list[tuple] = []

    def forbidden(*args, **kwargs):
        calls.append(args)
        pytest.fail("onnxruntime.InferenceSession was called with bytes it must not see")

    monkeypatch.setattr(onnxruntime, "InferenceSession", forbidden)
    return calls


# --------------------------------------------------------------------------------------------
# FIFOs and other files that are not regular files (issue 20, item 4)

_LOAD = """
import sys
from onnxdigits import ArtifactError, Artifacts, Classifier
root, what = sys.argv[1:]
try:
    if what == "classifier":
        Classifier(artifacts=root, device="cpu")
    elif what == "sample":
        Artifacts(root).sample()
    else:
        Artifacts(root)
    print("loaded")
except ArtifactError as exc:
    print(exc)
"""


def _in_a_process(*args: str) -> subprocess.CompletedProcess[str]:
    """Run in a fresh process with a timeout: a reader blocked on a FIFO would block forever."""
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, check=False
    )


needs_fifos = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")


@needs_fifos
@pytest.mark.parametrize(
    ("file", "what"),
    [
        ("classifier.onnx", "classifier"),
        ("sample.npz", "sample"),
        (MANIFEST, "artifacts"),
    ],
)
def test_a_fifo_in_the_set_is_refused_without_blocking(artifacts_copy, file: str, what: str):
    (artifacts_copy / file).unlink()
    os.mkfifo(artifacts_copy / file)
    done = _in_a_process("-c", _LOAD, str(artifacts_copy), what)
    assert "it is a FIFO (named pipe), not a regular file" in done.stdout, done
    assert f"cannot read {artifacts_copy / file}" in done.stdout, done


@needs_fifos
@pytest.mark.parametrize("command", ["verify", "info"])
def test_verify_and_info_report_a_fifo_and_exit_1(artifacts_copy, command: str) -> None:
    (artifacts_copy / "classifier.onnx").unlink()
    os.mkfifo(artifacts_copy / "classifier.onnx")
    done = _in_a_process(
        "-m", "onnxdigits.cli", command, "--artifacts", str(artifacts_copy), "--device", "cpu"
    )
    assert done.returncode == 1, done
    assert "classifier.onnx: it is a FIFO (named pipe), not a regular file" in done.stdout, done


def test_a_directory_in_place_of_a_file_is_refused(artifacts_copy, onnxruntime_forbidden):
    (artifacts_copy / "classifier.onnx").unlink()
    (artifacts_copy / "classifier.onnx").mkdir()
    with pytest.raises(ArtifactError, match="it is a directory, not a regular file"):
        Classifier(artifacts=artifacts_copy, device="cpu")


def test_a_file_larger_than_the_manifest_says_is_refused_unread(
    artifacts_copy, onnxruntime_forbidden
) -> None:
    with (artifacts_copy / "classifier.onnx").open("ab") as file:
        file.truncate(3 << 30)  # 3 GB of holes: reading it would take 3 GB
    declared = json.loads((artifacts_copy / "manifest.json").read_text())["models"]["classifier"]
    with pytest.raises(
        ArtifactError, match=f"larger than the {declared['bytes']:,} bytes that the"
    ):
        Classifier(artifacts=artifacts_copy, device="cpu")


# --------------------------------------------------------------------------------------------
# External data and files that are no models (item 7)


def _externalised(data: bytes, location: str) -> tuple[bytes, bytes]:
    """The model with its largest initializer moved out to `location`, and that tensor's bytes."""
    model = onnx.load_from_string(data)
    tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    weights = tensor.raw_data
    set_external_data(tensor, location=location, offset=0, length=len(weights))
    tensor.data_location = onnx.TensorProto.EXTERNAL
    tensor.ClearField("raw_data")
    return model.SerializeToString(), weights


@pytest.mark.parametrize("location", ["secret_in_cwd.bin", "../secret.bin", "/tmp/secret.bin"])
def test_a_model_with_external_data_is_refused(
    artifacts_copy, artifacts, tmp_path, monkeypatch, location: str
) -> None:
    """onnxruntime reads a model's external data from the working directory when the model
    comes as bytes: the file is put there, so without the check the swapped weights load."""
    data, weights = _externalised(artifacts.model_bytes("classifier"), location)
    replace_model(artifacts_copy, "classifier", data)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "secret_in_cwd.bin").write_bytes(weights)
    if location == "secret_in_cwd.bin":  # it really loads, from wherever the process runs
        onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    with pytest.raises(ArtifactError, match=re.escape(f"outside the file (in {location!r})")):
        Classifier(artifacts=artifacts_copy, device="cpu")
    problem = onnxdigits.Artifacts(artifacts_copy).verify()["classifier.onnx"]
    assert problem and "keeps tensor data outside the file" in problem


JUNK = [
    ("empty", b"", "it has no graph"),
    ("zeros", bytes(64), "a field numbered 0"),
    ("random", np.random.default_rng(0).bytes(4096), "is not an ONNX model"),
    ("text", b"this is not a model\n" * 10, "is not an ONNX model"),
    # Parses as a ModelProto with an empty graph: only onnxruntime can tell it is no model.
    ("empty-graph", b"\x08\x07\x3a\x00", "onnxruntime cannot load"),
    ("cut-in-half", None, "is not an ONNX model"),
]


@pytest.mark.parametrize(
    ("data", "message"), [pytest.param(data, message, id=name) for name, data, message in JUNK]
)
def test_junk_with_a_matching_digest_is_an_artifact_error(
    artifacts_copy, artifacts, data: bytes | None, message: str
) -> None:
    if data is None:
        whole = artifacts.model_bytes("classifier")
        data = whole[: len(whole) // 2]
    replace_model(artifacts_copy, "classifier", data)
    with pytest.raises(ArtifactError, match=message) as excinfo:
        Classifier(artifacts=artifacts_copy, device="cpu")
    assert "classifier.onnx" in str(excinfo.value)


# --------------------------------------------------------------------------------------------
# Manifests of the wrong shape (item 8)


def _set(*path: str, value: object) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        target = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _write(root: Path, text: bytes) -> None:
    (root / MANIFEST).write_bytes(text)


DEEP = b'{"schema_version": 1, "models": {}, "producer": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

# Refused when the set is opened: the manifest's file and top level.
BAD_MANIFESTS = [
    ("nested-100000-deep", lambda r: _write(r, DEEP), "nest too deep to parse"),
    (
        "nested-40-deep",
        lambda r: edit_manifest(r, _set("training", value=json.loads("[" * 40 + "]" * 40))),
        "nests objects and lists deeper than 32",
    ),
    (
        "producer-a-string",
        lambda r: edit_manifest(r, _set("producer", value="x")),
        'producer must be an object; it is a string ("x")',
    ),
    (
        "producer-a-list",
        lambda r: edit_manifest(r, _set("producer", value=[1])),
        "producer must be an object; it is a list",
    ),
    (
        "training-null",
        lambda r: edit_manifest(r, _set("training", value=None)),
        "training must be an object; it is null",
    ),
    (
        "created-a-number",
        lambda r: edit_manifest(r, _set("created", value=5)),
        "created must be a string; it is a number (5)",
    ),
    (
        "schema-version-true",
        lambda r: edit_manifest(r, _set("schema_version", value=True)),
        "has schema version True",
    ),
    (
        "schema-version-1.0",
        lambda r: edit_manifest(r, _set("schema_version", value=1.0)),
        "has schema version 1.0",
    ),
    (
        "models-a-list",
        lambda r: edit_manifest(r, _set("models", value=[])),
        'has no "models" object',
    ),
    (
        "nan",
        lambda r: _write(r, b'{"schema_version": 1, "models": {}, "x": NaN}'),
        "NaN is no finite number",
    ),
    (
        "1e999",
        lambda r: _write(r, b'{"schema_version": 1, "models": {}, "x": 1e999}'),
        "1e999 is beyond a float's range",
    ),
    (
        "not-utf8",
        lambda r: _write(r, b'{"schema_version": 1, "models": {}, "x": "\xff"}'),
        "it is not JSON",
    ),
    ("too-large", lambda r: _write(r, b" " * (5 << 20) + b"{}"), "more than the 4,194,304 allowed"),
    ("not-an-object", lambda r: _write(r, b"[1, 2]"), "has schema version None"),
]


@pytest.mark.parametrize(
    ("damage", "message"), [pytest.param(d, m, id=name) for name, d, m in BAD_MANIFESTS]
)
def test_a_malformed_manifest_is_refused_when_the_set_is_opened(
    artifacts_copy, onnxruntime_forbidden, damage, message: str
) -> None:
    damage(artifacts_copy)
    with pytest.raises(ArtifactError) as excinfo:
        onnxdigits.Artifacts(artifacts_copy)
    assert message in str(excinfo.value)
    with pytest.raises(ArtifactError):
        Classifier(artifacts=artifacts_copy, device="cpu")


# Refused when the entry is read (the others stay usable, and verify reports it).
BAD_ENTRIES = [
    (
        "bytes-a-string",
        _set("models", "classifier", "bytes", value="12"),
        'models["classifier"].bytes must be a non-negative integer; it is a string ("12")',
    ),
    (
        "bytes-negative",
        _set("models", "classifier", "bytes", value=-1),
        "bytes must be a non-negative integer; it is a number (-1)",
    ),
    (
        "bytes-true",
        _set("models", "classifier", "bytes", value=True),
        "bytes must be a non-negative integer; it is true",
    ),
    (
        "sha256-short",
        _set("models", "classifier", "sha256", value="abc"),
        "sha256 must be a sha256 of 64 lowercase hex digits",
    ),
    (
        "file-a-number",
        _set("models", "classifier", "file", value=3),
        'models["classifier"].file must be the path of a file in the set',
    ),
    (
        "file-with-nul",
        _set("models", "classifier", "file", value="a\u0000b"),
        "the path of a file in the set",
    ),
    (
        "inputs-a-string",
        _set("models", "classifier", "inputs", value="image"),
        "inputs must be a list",
    ),
    (
        "input-name-a-number",
        _set("models", "classifier", "inputs", value=[{"name": 1}]),
        "name must be a string; it is a number (1)",
    ),
    (
        "parity-atol-a-string",
        _set("models", "classifier", "parity", "atol", value="x"),
        "parity.atol must be a number",
    ),
    (
        "parity-batches-floats",
        _set("models", "classifier", "parity", "batches", value=[1.5]),
        "parity.batches[0] must be a non-negative integer",
    ),
    ("parity-a-list", _set("models", "classifier", "parity", value=[]), "parity must be an object"),
    (
        "metrics-a-list",
        _set("models", "classifier", "metrics", value=[]),
        "metrics must be an object",
    ),
    (
        "rewrites-a-string",
        _set("models", "classifier", "rewrites", value="abc"),
        "rewrites must be a list",
    ),
    (
        "latent-dim-negative",
        _set("models", "classifier", "latent_dim", value=-2),
        "latent_dim must be a non-negative integer",
    ),
    (
        "reference-sha256-a-number",
        _set("models", "classifier", "reference", "sha256", value=7),
        "gives no sha256 for the reference",
    ),
    (
        "reference-bytes-a-string",
        _set("models", "classifier", "reference", "bytes", value="x"),
        "bytes must be a non-negative integer",
    ),
]


@pytest.mark.parametrize(
    ("change", "message"), [pytest.param(c, m, id=name) for name, c, m in BAD_ENTRIES]
)
def test_a_malformed_entry_is_refused_and_reported(artifacts_copy, change, message: str) -> None:
    edit_manifest(artifacts_copy, change)
    store = onnxdigits.Artifacts(artifacts_copy)
    with pytest.raises(ArtifactError, match=re.escape(message)):
        Classifier(artifacts=store, device="cpu")
    with pytest.raises(ArtifactError, match=re.escape(message)):
        store.manifest  # noqa: B018  every entry checked: what GET /v1/models reads
    report = store.verify()
    assert any(problem and message in problem for problem in report.values()), report
    assert report["vae.encoder.onnx"] is None  # the others stay usable


@pytest.mark.parametrize(
    ("count", "message"),
    [
        ("x", 'sample.count must be a non-negative integer; it is a string ("x")'),
        (-5, "it is a number (-5)"),
    ],
)
def test_a_malformed_sample_count_is_refused(artifacts_copy, count, message: str) -> None:
    edit_manifest(artifacts_copy, _set("sample", "count", value=count))
    with pytest.raises(ArtifactError, match=re.escape(message)):
        onnxdigits.Artifacts(artifacts_copy).manifest  # noqa: B018


def test_the_whole_manifest_reads_as_json_again(artifacts) -> None:
    """What the service answers on GET /v1/models: every field serialisable, as checked."""
    manifest = artifacts.manifest
    json.dumps(manifest.to_json(), allow_nan=False)
    assert manifest.producer and isinstance(manifest.producer, dict)


# --------------------------------------------------------------------------------------------
# The shipped set, pinned (item 6)


def test_the_shipped_manifest_is_the_pinned_one(artifacts) -> None:
    """Fails whenever artifacts/ changes until the pin follows it: recompute it with
    `sha256sum artifacts/manifest.json` and set SHIPPED_MANIFEST_SHA256 in sdk/manifest.py."""
    digest = hashlib.sha256((artifacts.root / MANIFEST).read_bytes()).hexdigest()
    assert digest == SHIPPED_MANIFEST_SHA256, (
        f"artifacts/manifest.json has sha256 {digest}; set SHIPPED_MANIFEST_SHA256 to it"
    )


@pytest.fixture
def shipped_copy(artifacts_copy, monkeypatch) -> Path:
    """A copy of the shipped set standing in for it: where the default set is looked for."""
    monkeypatch.setattr(onnxdigits.manifest, "shipped_root", lambda: artifacts_copy)
    monkeypatch.delenv("ONNXDIGITS_ARTIFACTS", raising=False)
    return artifacts_copy


def _swap_classifier(root: Path) -> None:
    """The issue's attack: another valid classifier (here the shipped one with its last bias
    zeroed, a model that answers differently), with its digest and size written into the
    manifest, so that every checksum holds."""
    model = onnx.load(root / "classifier.onnx")
    bias = model.graph.initializer[-1]
    bias.raw_data = bytes(len(bias.raw_data))
    replace_model(root, "classifier", model.SerializeToString())


def test_a_swapped_shipped_classifier_is_refused_by_default(shipped_copy) -> None:
    assert onnxdigits.Artifacts().root == shipped_copy  # the intact copy passes the pin
    _swap_classifier(shipped_copy)
    assert all(problem is None for problem in onnxdigits.Artifacts(shipped_copy).verify().values())
    with pytest.raises(ArtifactError, match="is not the one this onnxdigits shipped"):
        onnxdigits.Artifacts()
    with pytest.raises(ArtifactError, match="is not the one this onnxdigits shipped"):
        Classifier(device="cpu")


def test_a_set_named_by_the_caller_is_not_held_to_the_pin(shipped_copy, monkeypatch) -> None:
    _swap_classifier(shipped_copy)
    assert Classifier(artifacts=shipped_copy, device="cpu").predict(np.zeros((1, 28, 28))).shape
    monkeypatch.setenv("ONNXDIGITS_ARTIFACTS", str(shipped_copy))
    assert onnxdigits.Artifacts().root == shipped_copy
