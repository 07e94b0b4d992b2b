"""Reading an artifacts set: the manifest, checksummed model bytes, references and the sample."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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


@dataclass(frozen=True)
class Entry:
    """One submodel's manifest entry, checked against the contract in `specs`."""

    spec: SubmodelSpec
    file: str
    sha256: str
    bytes: int
    reference: dict[str, Any]
    parity: dict[str, Any]
    metrics: dict[str, Any]


class Artifacts:
    """An artifacts set on disk: `manifest.json` and the files it lists with their sha256.

    Args:
        root: the set's directory; None means `$ONNXDIGITS_ARTIFACTS`, else the shipped set.

    Raises:
        ArtifactError: no manifest, an unreadable one, or one of an unknown schema version.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            root = os.environ.get(ENV_VAR) or shipped_root()
        self.root = Path(root)
        path = self.root / MANIFEST
        try:
            self.manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ArtifactError(
                f"no {MANIFEST} in {self.root}; run `onnxdigits export --out {self.root}` "
                "or pass the directory of an exported set"
            ) from None
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"cannot read {path}: {exc}") from None
        version = self.manifest.get("schema_version") if isinstance(self.manifest, dict) else None
        if version != SCHEMA_VERSION:
            raise ArtifactError(
                f"{path} has schema version {version!r}; this onnxdigits reads version "
                f"{SCHEMA_VERSION}: export the set again or install a matching onnxdigits"
            )
        if not isinstance(self.manifest.get("models"), dict):
            raise ArtifactError(f'{path} has no "models" object')

    def __repr__(self) -> str:
        return f"Artifacts({str(self.root)!r})"

    @property
    def keys(self) -> list[str]:
        return list(self.manifest["models"])

    def entry(self, key: str) -> Entry:
        """Return the manifest entry of `key`, checked against the contract.

        Raises:
            ArtifactError: the key is absent, or its entry disagrees with the contract.
        """
        spec = SUBMODELS.get(key)
        if spec is None:
            raise ArtifactError(
                f"{key!r} is no model this onnxdigits knows ({', '.join(SUBMODELS)}); "
                "a set with it needs a newer onnxdigits"
            )
        raw = self.manifest["models"].get(key)
        if not isinstance(raw, dict):
            raise ArtifactError(f"{self.root / MANIFEST} has no model {key!r}; it has {self.keys}")
        try:
            entry = Entry(
                spec=spec,
                file=str(raw["file"]),
                sha256=str(raw["sha256"]),
                bytes=int(raw["bytes"]),
                reference=dict(raw.get("reference") or {}),
                parity=dict(raw.get("parity") or {}),
                metrics=dict(raw.get("metrics") or {}),
            )
            io = ([t["name"] for t in raw["inputs"]], [t["name"] for t in raw["outputs"]])
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"the manifest entry of {key!r} is malformed: {exc!r}") from None
        expected = ([t.name for t in spec.inputs], [t.name for t in spec.outputs])
        if io != expected:
            raise ArtifactError(
                f"the manifest says {key!r} maps {io[0]} to {io[1]}; "
                f"this onnxdigits expects {expected[0]} to {expected[1]}"
            )
        return entry

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
        return self._npz(*self._listed(self.entry(key).reference, f"reference of {key!r}"))

    def sample(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the shipped real-digit sample: uint8 images (N, 28, 28) and uint8 labels (N,)."""
        arrays = self._npz(*self._listed(self.manifest.get("sample"), "sample"))
        try:
            return arrays["x_test"], arrays["y_test"]
        except KeyError as exc:
            raise ArtifactError(f"the sample lacks {exc}") from None

    def _listed(self, info: object, what: str) -> tuple[str, str]:
        """The (file, sha256) of a file the manifest lists beside the models."""
        if not isinstance(info, dict) or not isinstance(info.get("file"), str):
            raise ArtifactError(f"{self.root / MANIFEST} lists no {what}")
        if not isinstance(info.get("sha256"), str):
            raise ArtifactError(f"{self.root / MANIFEST} gives no sha256 for the {what}")
        return info["file"], info["sha256"]

    def _npz(self, relpath: str, sha256: str) -> dict[str, np.ndarray]:
        data = self.read(relpath, sha256)
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ArtifactError(f"cannot read {self.root / relpath}: {exc}") from None

    def verify(self) -> dict[str, str | None]:
        """Check every listed file against its checksum.

        Returns:
            For each file of the set (or entry that cannot be read), None when it holds, else
            what is wrong.
        """
        listed: list[tuple[str, object, str]] = [("sample", self.manifest.get("sample"), "sample")]
        result: dict[str, str | None] = {}
        for key in self.keys:
            try:
                entry = self.entry(key)
            except ArtifactError as exc:
                result[key] = str(exc)
                continue
            listed.append((entry.file, {"file": entry.file, "sha256": entry.sha256}, key))
            listed.append((f"reference of {key}", entry.reference, f"reference of {key!r}"))
        for name, info, what in listed:
            try:
                relpath, sha256 = self._listed(info, what)
                name = relpath
                self.read(relpath, sha256)
                result[name] = None
            except ArtifactError as exc:
                result[name] = str(exc)
        return result
