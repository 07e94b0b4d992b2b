"""Reading an artifacts set: the manifest, checksummed model bytes, references and the sample."""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .classes import LatentClasses
from .errors import ArtifactError
from .files import read_regular
from .modelfile import check_model
from .specs import MANIFEST, SCHEMA_VERSION, SUBMODELS, SubmodelSpec

__all__ = [
    "ARTIFACTS_ENV",
    "MAX_ARRAYS_BYTES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_MANIFEST_BYTES",
    "SHIPPED_MANIFEST_SHA256",
    "Artifacts",
    "ArtifactsLike",
    "Entry",
    "ExportParity",
    "FileEntry",
    "Manifest",
    "sha256_of",
    "shipped_root",
]

ARTIFACTS_ENV = "ONNXDIGITS_ARTIFACTS"
# The sha256 of the shipped set's manifest.json. The manifest holds the sha256 of every file of
# the set, so this pins the whole set: a shipped set changed in place is refused, unless the
# caller names a set. Recompute it whenever artifacts/ changes: sha256sum artifacts/manifest.json
SHIPPED_MANIFEST_SHA256 = "e49716c983aadd75fa545a9cd71c74911dcedbc308ede7363e0c62642a3201f3"
MAX_MANIFEST_BYTES = 4 << 20  # a set's manifest is some 20 KB
MAX_FILE_BYTES = 2 << 30  # protobuf's own limit on an ONNX file; references and sample are small
MAX_ARRAYS_BYTES = 256 << 20  # a reference or sample npz, unpacked; the shipped ones hold 1 MB
MAX_DEPTH = 32  # objects and lists inside each other in a manifest; it needs 4
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
        """Read a file entry: {"file": path in the set, "sha256": 64 hex digits, "bytes": size}.

        Raises:
            ArtifactError: no entry, no file name, no sha256, or a field of the wrong type.
        """
        if not isinstance(raw, dict) or not isinstance(raw.get("file"), str):
            raise ArtifactError(f"{where} lists no {what}")
        if not isinstance(raw.get("sha256"), str):
            raise ArtifactError(f"{where} gives no sha256 for the {what}")
        return cls(
            _path(raw["file"], f"the {what}'s file", where),
            _digest(raw["sha256"], f"the {what}'s sha256", where),
            None if raw.get("bytes") is None else _size(raw["bytes"], f"the {what}'s bytes", where),
        )


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
    def from_json(cls, raw: object, what: str = "parity", where: str = MANIFEST) -> ExportParity:
        """Read a parity record.

        Raises:
            ArtifactError: a field missing or of the wrong type.
        """
        raw = _object(raw, what, where)
        batches = _list(raw.get("batches"), f"{what}.batches", where)
        diffs = _object(raw.get("max_abs_diff"), f"{what}.max_abs_diff", where)
        return cls(
            _number(raw.get("atol"), f"{what}.atol", where),
            tuple(_size(b, f"{what}.batches[{i}]", where) for i, b in enumerate(batches)),
            {k: _number(v, f"{what}.max_abs_diff.{k}", where) for k, v in diffs.items()},
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
        what = f'models["{key}"]'
        names = tuple(
            [
                _string(_object(tensor, f"{what}.{side}[{i}]", where).get("name"), "name", where)
                for i, tensor in enumerate(_list(raw.get(side), f"{what}.{side}", where))
            ]
            for side in ("inputs", "outputs")
        )
        reference = raw.get("reference")
        parity = raw.get("parity")
        latent_dim = raw.get("latent_dim")
        if latent_dim is not None:
            _size(latent_dim, f"{what}.latent_dim", where)
        entry = cls(
            spec=spec,
            file=_path(raw.get("file"), f"{what}.file", where),
            sha256=_digest(raw.get("sha256"), f"{what}.sha256", where),
            bytes=_size(raw.get("bytes"), f"{what}.bytes", where),
            reference=FileEntry.from_json(reference, f"reference of {key!r}", where)
            if reference is not None
            else None,
            parity=ExportParity.from_json(parity, f"{what}.parity", where)
            if parity is not None
            else None,
            metrics=_object(raw.get("metrics", {}), f"{what}.metrics", where, optional=True),
            rewrites=tuple(
                _string(r, f"{what}.rewrites[{i}]", where)
                for i, r in enumerate(_list(raw.get("rewrites", []), f"{what}.rewrites", where))
            ),
            latent_classes=_latent_classes(raw.get("latent_classes"), spec, what, where),
        )
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
        top = _check_top(raw, where)
        sample = FileEntry.from_json(top.get("sample"), "sample", where)
        count = top["sample"].get("count")
        return cls(
            models={
                key: Entry.from_json(key, value, where) for key, value in top["models"].items()
            },
            sample=sample,
            sample_count=0 if count is None else _size(count, "sample.count", where),
            created=top.get("created", ""),
            producer=dict(top.get("producer", {})),
            training=dict(top.get("training", {})),
        )


def _check_top(raw: object, where: str) -> dict[str, Any]:
    """Check a manifest's schema version and the types of its top-level fields (the file
    entries are checked when read), and return the manifest.

    Raises:
        ArtifactError: another schema version, no "models" object, a field of the wrong type,
            or objects and lists nested deeper than `MAX_DEPTH`.
    """
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if not isinstance(raw, dict) or type(version) is not int or version != SCHEMA_VERSION:
        raise ArtifactError(
            f"{where} has schema version {version!r}; this onnxdigits reads version "
            f"{SCHEMA_VERSION}: export the set again or install a matching onnxdigits"
        )
    if not isinstance(raw.get("models"), dict):
        raise ArtifactError(f'{where} has no "models" object')
    _check_depth(raw, where)
    _string(raw.get("created", ""), "created", where)
    _object(raw.get("producer", {}), "producer", where)
    _object(raw.get("training", {}), "training", where)
    return raw


def _parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    """Parse a manifest's bytes and check its top level (`_check_top`).

    Raises:
        ArtifactError: not UTF-8 JSON, numbers that are not finite (NaN, Infinity, 1e999),
            nesting too deep for the parser, or what `_check_top` refuses.
    """
    try:
        raw = json.loads(
            data.decode("utf-8"), parse_constant=_not_finite, parse_float=_finite_float
        )
    except RecursionError:
        raise ArtifactError(
            f"cannot read {where}: its objects and lists nest too deep to parse"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ArtifactError(f"cannot read {where}: it is not JSON ({exc})") from None
    return _check_top(raw, where)


def _not_finite(text: str) -> float:
    raise ValueError(f"{text} is no finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is beyond a float's range")
    return value


def _check_depth(raw: object, where: str) -> None:
    """Refuse objects and lists nested deeper than `MAX_DEPTH` (serialising them again, as the
    service does, would recurse as deep)."""
    level: list[dict[str, Any] | list[Any]] = [raw] if isinstance(raw, (dict, list)) else []
    for _ in range(MAX_DEPTH + 1):
        level = [
            child
            for value in level
            for child in (value.values() if isinstance(value, dict) else value)
            if isinstance(child, (dict, list))
        ]
        if not level:
            return
    raise ArtifactError(f"{where} nests objects and lists deeper than {MAX_DEPTH}")


def _kind(value: object) -> str:
    """What a JSON value is, in words, with the value when it is short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    shown = json.dumps(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"{'a string' if isinstance(value, str) else 'a number'} ({shown})"


def _wrong(what: str, where: str, expected: str, value: object) -> ArtifactError:
    return ArtifactError(f"{where}: {what} must be {expected}; it is {_kind(value)}")


def _object(value: object, what: str, where: str, *, optional: bool = False) -> dict[str, Any]:
    if optional and value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong(what, where, "an object", value)
    return value


def _list(value: object, what: str, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _wrong(what, where, "a list", value)
    return value


def _string(value: object, what: str, where: str) -> str:
    if not isinstance(value, str):
        raise _wrong(what, where, "a string", value)
    return value


def _number(value: object, what: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _wrong(what, where, "a number", value)
    return float(value)


def _latent_classes(
    value: object, spec: SubmodelSpec, what: str, where: str
) -> LatentClasses | None:
    """A generator's class regions, when it has them."""
    if value is None:
        return None
    try:
        return LatentClasses.from_json(value, spec.latent_dim or 0)
    except ValueError as exc:
        raise ArtifactError(
            f"{where}: the manifest entry of {spec.key!r} is malformed: "
            f"{what}.latent_classes: {exc}"
        ) from None


def _size(value: object, what: str, where: str) -> int:
    """A non-negative integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _wrong(what, where, "a non-negative integer", value)
    return value


def _digest(value: object, what: str, where: str) -> str:
    if not isinstance(value, str) or not _SHA256.match(value):
        raise _wrong(what, where, "a sha256 of 64 lowercase hex digits", value)
    return value


def _path(value: object, what: str, where: str) -> str:
    """A file's path inside the set (where it really points is checked when it is read)."""
    if not isinstance(value, str) or not value or "\0" in value:
        raise _wrong(what, where, "the path of a file in the set", value)
    return value


class Artifacts:
    """An artifacts set on disk: `manifest.json` and the files it lists with their sha256.

    The manifest's top level is checked on reading; its entries are read when first asked for,
    so one malformed entry leaves the others usable and `verify` can report it. Only regular
    files are read.

    The sha256s catch accidents: a file truncated, damaged or replaced by mistake. They do not
    catch a deliberate swap, since whoever can change a file can change the manifest beside it.
    Authenticity comes from elsewhere: the shipped set's manifest is pinned in the package
    (`SHIPPED_MANIFEST_SHA256`), and any other set can be signed and checked with `public_key`.

    Args:
        root: the set's directory; None means `$ONNXDIGITS_ARTIFACTS`, else the shipped set,
            which must then be the one this onnxdigits shipped.
        public_key: a PEM file of an elliptic-curve public key: the set's signature
            (`model.sig`, made by `onnxdigits export --sign-key`) must hold with it (needs the
            `sign` extra). None: no signature is checked.

    Raises:
        ArtifactError: no such directory, no manifest, an unreadable or malformed one, one of an
            unknown schema version; the shipped set changed since it shipped; or, with
            `public_key`, a signature that does not hold.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        public_key: str | os.PathLike[str] | None = None,
    ) -> None:
        shipped = root is None and not os.environ.get(ARTIFACTS_ENV)
        if root is None:
            root = os.environ.get(ARTIFACTS_ENV) or shipped_root()
        self.root = Path(root)
        path = self.root / MANIFEST
        if not self.root.is_dir():
            what = "is not a directory" if self.root.exists() else "does not exist"
            raise ArtifactError(
                f"the artifacts directory {self.root} {what}; pass the directory of an exported "
                "set, or leave --artifacts out for the shipped one"
            )
        try:
            data = read_regular(path, MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            raise ArtifactError(
                f"no {MANIFEST} in {self.root}; run `onnxdigits export --out {self.root}` "
                "or pass the directory of an exported set"
            ) from None
        except OSError as exc:
            raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
        if shipped and sha256_of(data) != SHIPPED_MANIFEST_SHA256:
            raise ArtifactError(
                f"the shipped set at {self.root} is not the one this onnxdigits shipped: its "
                f"{MANIFEST} has sha256 {sha256_of(data)[:12]}…, not "
                f"{SHIPPED_MANIFEST_SHA256[:12]}…; reinstall onnxdigits, or name the set you "
                f"mean (artifacts=, ${ARTIFACTS_ENV} or --artifacts)"
            )
        if public_key is not None:
            from .signing import verify_set

            verify_set(self.root, public_key)
        self.json: dict[str, Any] = _parse_manifest(data, str(path))
        self._models: dict[str, Any] = self.json["models"]

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

    def read(self, relpath: str, sha256: str, size: int | None = None) -> bytes:
        """Return the bytes of a file of the set after checking them against `sha256`.

        Args:
            relpath: the file's path inside the set.
            sha256: its digest, from the manifest.
            size: its size, from the manifest, when it gives one: a larger file is refused
                unread (else files up to `MAX_FILE_BYTES` are read).

        Raises:
            ArtifactError: the path leaves the set; the file is missing, not a regular file (a
                FIFO would block the reader forever) or larger than it should be; or its digest
                differs.
        """
        try:
            path = (self.root / relpath).resolve()
        except (OSError, ValueError) as exc:  # a loop of links, a NUL in the name
            raise ArtifactError(f"cannot read {self.root / relpath}: {exc}") from None
        if not path.is_relative_to(self.root.resolve()):
            raise ArtifactError(f"the manifest points outside {self.root}: {relpath!r}")
        try:
            data = read_regular(path, MAX_FILE_BYTES if size is None else size)
        except OSError as exc:
            if exc.errno == errno.EFBIG and size is not None:
                raise ArtifactError(
                    f"{path} is larger than the {size:,} bytes that the manifest lists "
                    f"({exc.strerror}): the file was changed; export the set again or restore it"
                ) from None
            raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
        digest = sha256_of(data)
        if digest != sha256:
            raise ArtifactError(
                f"{path} fails its checksum (sha256 {digest[:12]}…, manifest {sha256[:12]}…): "
                "the file was changed or truncated; export the set again or restore it"
            )
        return data

    def model_bytes(self, key: str | Entry) -> bytes:
        """Return the verified ONNX bytes of submodel `key` (or of an entry already read with
        `entry`, which is not read again).

        Raises:
            ArtifactError: as `read`; or the bytes are no ONNX model, or keep tensor data in
                other files, which onnxruntime would read from wherever the process runs.
        """
        entry = self.entry(key) if isinstance(key, str) else key
        return self._model(entry.file, entry.sha256, entry.bytes)

    def _model(self, relpath: str, sha256: str, size: int | None) -> bytes:
        data = self.read(relpath, sha256, size)
        check_model(data, str(self.root / relpath))
        return data

    def reference(self, key: str | Entry) -> dict[str, np.ndarray]:
        """Return the stored inputs and Keras outputs of submodel `key` (or of an entry already
        read), by tensor name."""
        return self._npz(self._reference_entry(self.entry(key) if isinstance(key, str) else key))

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
        data = self.read(listed.file, listed.sha256, listed.bytes)
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                unpacked = sum(member.file_size for member in archive.infolist())
            if unpacked > MAX_ARRAYS_BYTES:  # what each member's header says it unpacks to
                raise ArtifactError(
                    f"cannot read {self.root / listed.file}: its arrays unpack to "
                    f"{unpacked:,} bytes, more than the {MAX_ARRAYS_BYTES:,} allowed"
                )
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ArtifactError(f"cannot read {self.root / listed.file}: {exc}") from None

    def verify(self) -> dict[str, str | None]:
        """Check every listed file against its checksum: each model (and that it is a
        self-contained ONNX model), its reference, the sample.

        Returns:
            For each file of the set (or entry that cannot be read), None when it holds, else
            what is wrong.
        """
        result: dict[str, str | None] = {}

        def check(name: str, listed: Callable[[], FileEntry], model: bool = False) -> None:
            try:
                file = listed()
                name = file.file
                (self._model if model else self.read)(file.file, file.sha256, file.bytes)
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
            check(entry.file, partial(FileEntry, entry.file, entry.sha256, entry.bytes), True)
            check(f"reference of {key}", partial(self._reference_entry, entry))
        return result


ArtifactsLike = Artifacts | str | os.PathLike[str] | None
"""What every `artifacts=` argument takes: an `Artifacts`, a set's folder as a path, or `None` for
`$ONNXDIGITS_ARTIFACTS` and then the shipped set."""
