"""Reading an artifacts set: the manifest, checksummed model bytes, references and the sample."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .classes import LatentClasses
from .errors import ArtifactError
from .specs import MANIFEST, SCHEMA_VERSION, SUBMODELS, SubmodelSpec

ENV_VAR = "ONNXDIGITS_ARTIFACTS"


def shipped_root() -> Path:
    """Return the directory of the artifacts set installed with the package."""
    spec = importlib.util.find_spec("onnxdigits.artifacts")
    if spec is None or not spec.submodule_search_locations:
        raise ArtifactError("the shipped artifacts are not installed; reinstall onnxdigits")
    return Path(list(spec.submodule_search_locations)[0])


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _where(root: Path | None) -> str:
    return str(root / MANIFEST) if root is not None else MANIFEST


@dataclass(frozen=True)
class FileEntry:
    """A file of the set: its path inside the set, its sha256 and its size."""

    file: str
    sha256: str
    bytes: int | None = None

    @classmethod
    def of(cls, root: Path, relpath: str) -> FileEntry:
        """Describe the file at `root / relpath` as it is now."""
        data = (root / relpath).read_bytes()
        return cls(relpath, sha256_of(data), len(data))

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "bytes": self.bytes}

    @classmethod
    def from_json(cls, raw: object, what: str, where: str = MANIFEST) -> FileEntry:
        """Read a file entry.

        Raises:
            ArtifactError: no entry, no file name, or no sha256.
        """
        if not isinstance(raw, dict) or not isinstance(raw.get("file"), str):
            raise ArtifactError(f"{where} lists no {what}")
        if not isinstance(raw.get("sha256"), str):
            raise ArtifactError(f"{where} gives no sha256 for the {what}")
        size = raw.get("bytes")
        return cls(raw["file"], raw["sha256"], size if isinstance(size, int) else None)


@dataclass(frozen=True)
class ExportParity:
    """What the export measured: each output's max abs diff from Keras, at these batch sizes."""

    atol: float
    batches: tuple[int, ...]
    max_abs_diff: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "atol": self.atol,
            "batches": list(self.batches),
            "max_abs_diff": dict(self.max_abs_diff),
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ExportParity:
        return cls(
            float(raw["atol"]),
            tuple(int(b) for b in raw["batches"]),
            {str(k): float(v) for k, v in raw["max_abs_diff"].items()},
        )


@dataclass(frozen=True)
class Entry:
    """One submodel's manifest entry, checked against the contract in `specs`.

    `reference` and `parity` are None when the manifest lacks them; reading a reference then
    raises `ArtifactError`. `latent_classes`, on a generator's entry, is each digit's region of
    the latent space (`onnxdigits.classes`); None when the set has none.
    """

    spec: SubmodelSpec
    file: str
    sha256: str
    bytes: int
    reference: FileEntry | None = None
    parity: ExportParity | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    rewrites: tuple[str, ...] = ()  # graph rewrites applied after conversion, in order
    latent_classes: LatentClasses | None = None

    def to_json(self) -> dict[str, Any]:
        spec = self.spec
        raw: dict[str, Any] = {
            "file": self.file,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "inputs": [tensor.to_json() for tensor in spec.inputs],
            "outputs": [tensor.to_json() for tensor in spec.outputs],
            "latent_dim": spec.latent_dim,
            "parity": self.parity.to_json() if self.parity else None,
            "reference": self.reference.to_json() if self.reference else None,
            "metrics": dict(self.metrics),
        }
        if self.rewrites:
            raw["rewrites"] = list(self.rewrites)
        if self.latent_classes is not None:
            raw["latent_classes"] = self.latent_classes.to_json()
        return raw

    @classmethod
    def from_json(cls, key: str, raw: object, where: str = MANIFEST) -> Entry:
        """Read the entry of `key` and check it against the contract.

        Raises:
            ArtifactError: an unknown key, a malformed entry, or tensors other than the
                contract's.
        """
        spec = SUBMODELS.get(key)
        if spec is None:
            raise ArtifactError(
                f"{key!r} is no model this onnxdigits knows ({', '.join(SUBMODELS)}); "
                "a set with it needs a newer onnxdigits"
            )
        if not isinstance(raw, dict):
            raise ArtifactError(f"{where} has no model {key!r}")
        try:
            names = ([t["name"] for t in raw["inputs"]], [t["name"] for t in raw["outputs"]])
            reference = raw.get("reference")
            parity = raw.get("parity")
            classes = raw.get("latent_classes")
            entry = cls(
                spec=spec,
                file=str(raw["file"]),
                sha256=str(raw["sha256"]),
                bytes=int(raw["bytes"]),
                reference=FileEntry.from_json(reference, f"reference of {key!r}", where)
                if reference
                else None,
                parity=ExportParity.from_json(parity) if parity else None,
                metrics=dict(raw.get("metrics") or {}),
                rewrites=tuple(str(r) for r in raw.get("rewrites") or ()),
                latent_classes=LatentClasses.from_json(classes, spec.latent_dim or 0)
                if classes is not None
                else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"the manifest entry of {key!r} is malformed: {exc!r}") from None
        problem = spec.mismatch(*names)
        if problem:
            raise ArtifactError(f"the manifest says {key!r} {problem}")
        return entry


@dataclass(frozen=True)
class Manifest:
    """A set's `manifest.json`: its models, sample and provenance."""

    models: dict[str, Entry]
    sample: FileEntry
    sample_count: int
    created: str
    producer: dict[str, Any]
    training: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "created": self.created,
            "producer": dict(self.producer),
            "sample": {**self.sample.to_json(), "count": self.sample_count},
            "training": dict(self.training),
            "models": {key: entry.to_json() for key, entry in self.models.items()},
        }

    @classmethod
    def from_json(cls, raw: object, root: Path | None = None) -> Manifest:
        """Read a whole manifest, every entry checked against the contract.

        Raises:
            ArtifactError: an unknown schema version, or anything malformed.
        """
        where = _where(root)
        top = check_top(raw, where)
        sample = FileEntry.from_json(top.get("sample"), "sample", where)
        return cls(
            models={
                key: Entry.from_json(key, value, where) for key, value in top["models"].items()
            },
            sample=sample,
            sample_count=int(top["sample"].get("count") or 0),
            created=str(top.get("created", "")),
            producer=dict(top.get("producer") or {}),
            training=dict(top.get("training") or {}),
        )


def check_top(raw: object, where: str) -> dict[str, Any]:
    """Check a manifest's schema version and its "models" object, and return the manifest.

    Raises:
        ArtifactError: another schema version, or no "models" object.
    """
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{where} has schema version {version!r}; this onnxdigits reads version "
            f"{SCHEMA_VERSION}: export the set again or install a matching onnxdigits"
        )
    if not isinstance(raw.get("models"), dict):
        raise ArtifactError(f'{where} has no "models" object')
    return raw


class Artifacts:
    """An artifacts set on disk: `manifest.json` and the files it lists with their sha256.

    Entries are read when first asked for, so one malformed entry leaves the others usable and
    `verify` can report it.

    Args:
        root: the set's directory; None means `$ONNXDIGITS_ARTIFACTS`, else the shipped set.

    Raises:
        ArtifactError: no such directory, no manifest, an unreadable one, or one of an unknown
            schema version.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            root = os.environ.get(ENV_VAR) or shipped_root()
        self.root = Path(root)
        path = self.root / MANIFEST
        if not self.root.is_dir():
            what = "is not a directory" if self.root.exists() else "does not exist"
            raise ArtifactError(
                f"the artifacts directory {self.root} {what}; pass the directory of an exported "
                "set, or leave --artifacts out for the shipped one"
            )
        try:
            self.json: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ArtifactError(
                f"no {MANIFEST} in {self.root}; run `onnxdigits export --out {self.root}` "
                "or pass the directory of an exported set"
            ) from None
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read {path}: {exc}") from None
        self._models: dict[str, Any] = check_top(self.json, str(path))["models"]

    @classmethod
    def of(cls, artifacts: ArtifactsLike) -> Artifacts:
        """The set itself when given one, else the set at that directory (None: the default)."""
        return artifacts if isinstance(artifacts, Artifacts) else cls(artifacts)

    def __repr__(self) -> str:
        return f"Artifacts({str(self.root)!r})"

    @property
    def keys(self) -> list[str]:
        return list(self._models)

    @property
    def manifest(self) -> Manifest:
        """The whole manifest, every entry checked (raises `ArtifactError` if any is bad)."""
        return Manifest.from_json(self.json, self.root)

    def entry(self, key: str) -> Entry:
        """Return the manifest entry of `key`, checked against the contract.

        Raises:
            ArtifactError: the key is absent, or its entry disagrees with the contract.
        """
        if key in SUBMODELS and key not in self._models:
            raise ArtifactError(f"{self.root / MANIFEST} has no model {key!r}; it has {self.keys}")
        return Entry.from_json(key, self._models.get(key), str(self.root / MANIFEST))

    def read(self, relpath: str, sha256: str) -> bytes:
        """Return the bytes of a file of the set after checking them against `sha256`.

        Raises:
            ArtifactError: the path leaves the set, the file is missing, or its digest differs.
        """
        path = (self.root / relpath).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ArtifactError(f"the manifest points outside {self.root}: {relpath!r}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
        digest = sha256_of(data)
        if digest != sha256:
            raise ArtifactError(
                f"{path} fails its checksum (sha256 {digest[:12]}…, manifest {sha256[:12]}…): "
                "the file was changed or truncated; export the set again or restore it"
            )
        return data

    def model_bytes(self, key: str) -> bytes:
        """Return the verified ONNX bytes of submodel `key`."""
        entry = self.entry(key)
        return self.read(entry.file, entry.sha256)

    def reference(self, key: str) -> dict[str, np.ndarray]:
        """Return the stored inputs and Keras outputs of submodel `key`, by tensor name."""
        return self._npz(self._reference_entry(self.entry(key)))

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the shipped real-digit sample: uint8 images (N, 28, 28) and uint8 labels (N,)."""
        arrays = self._npz(self._sample_entry())
        try:
            return arrays["x_test"], arrays["y_test"]
        except KeyError as exc:
            raise ArtifactError(f"the sample lacks {exc}") from None

    def _sample_entry(self) -> FileEntry:
        return FileEntry.from_json(self.json.get("sample"), "sample", str(self.root / MANIFEST))

    def _reference_entry(self, entry: Entry) -> FileEntry:
        if entry.reference is None:
            raise ArtifactError(f"{self.root / MANIFEST} lists no reference of {entry.spec.key!r}")
        return entry.reference

    def _npz(self, listed: FileEntry) -> dict[str, np.ndarray]:
        data = self.read(listed.file, listed.sha256)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ArtifactError(f"cannot read {self.root / listed.file}: {exc}") from None

    def verify(self) -> dict[str, str | None]:
        """Check every listed file against its checksum: each model, its reference, the sample.

        Returns:
            For each file of the set (or entry that cannot be read), None when it holds, else
            what is wrong.
        """
        result: dict[str, str | None] = {}

        def check(name: str, listed: Callable[[], FileEntry]) -> None:
            try:
                file = listed()
                name = file.file
                self.read(file.file, file.sha256)
                result[name] = None
            except ArtifactError as exc:
                result[name] = str(exc)

        check("sample", self._sample_entry)
        for key in self.keys:
            try:
                entry = self.entry(key)
            except ArtifactError as exc:
                result[key] = str(exc)
                continue
            check(entry.file, partial(FileEntry, entry.file, entry.sha256, entry.bytes))
            check(f"reference of {key}", partial(self._reference_entry, entry))
        return result


ArtifactsLike = Artifacts | str | os.PathLike[str] | None
