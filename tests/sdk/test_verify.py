"""`Artifacts.verify()` and `check_parity` must look at every file a set lists, references and
sample included, and say which one is wrong.

What the set lists is read here from `manifest.json` itself, not through the code under test,
so a verify that skips a kind of file cannot agree with itself by leaving it out of both.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnxdigits
import pytest
from onnxdigits import ArtifactError
from onnxdigits.manifest import sha256_of
from onnxdigits.specs import MANIFEST
from onnxdigits.verify import check_parity

from tests.conftest import flip_byte


def listed_files(root: Path) -> dict[str, str]:
    """Every file the manifest at `root` lists, with what it is: the sample, each model and
    each model's reference."""
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    files = {manifest["sample"]["file"]: "sample"}
    for key, entry in manifest["models"].items():
        files[entry["file"]] = f"model {key}"
        files[entry["reference"]["file"]] = f"reference of {key}"
    return files


def test_the_set_lists_a_reference_for_every_model(artifacts) -> None:
    """The tests below mean something only if there are references to skip."""
    kinds = listed_files(artifacts.root).values()
    models = [kind for kind in kinds if kind.startswith("model ")]
    references = [kind for kind in kinds if kind.startswith("reference of ")]
    assert models and len(references) == len(models)


def test_verify_names_every_file_it_checked_and_finds_them_sound(artifacts) -> None:
    report = artifacts.verify()
    assert set(report) == set(listed_files(artifacts.root)), report
    assert all(problem is None for problem in report.values()), report


def _files_of_the_shipped_set() -> list[tuple[str, str]]:
    return sorted(listed_files(onnxdigits.Artifacts().root).items())


@pytest.mark.parametrize(
    "file", [pytest.param(f, id=f"{kind}: {f}") for f, kind in _files_of_the_shipped_set()]
)
def test_verify_catches_a_flipped_byte_in_any_file(artifacts_copy: Path, file: str) -> None:
    flip_byte(artifacts_copy / file)
    report = onnxdigits.Artifacts(artifacts_copy).verify()
    assert "fails its checksum" in (report.get(file) or ""), report
    assert all(problem is None for name, problem in report.items() if name != file), report


@pytest.mark.parametrize("kind", ["reference", "sample"])
def test_verify_reports_a_missing_reference_or_sample(artifacts_copy: Path, kind: str) -> None:
    file = next(f for f, what in listed_files(artifacts_copy).items() if what.startswith(kind))
    (artifacts_copy / file).unlink()
    report = onnxdigits.Artifacts(artifacts_copy).verify()
    assert "cannot read" in (report.get(file) or ""), report


def test_check_parity_gives_every_output_of_every_model(artifacts) -> None:
    results = check_parity(artifacts, "cpu")
    expected = {
        (key, name) for key in artifacts.keys for name in artifacts.entry(key).spec.output_names
    }
    assert {(r.key, r.output) for r in results} == expected
    assert all(r.ok for r in results), [str(r) for r in results if not r.ok]


def test_check_parity_refuses_a_tampered_reference(artifacts_copy: Path) -> None:
    file = next(f for f, what in listed_files(artifacts_copy).items() if what.startswith("ref"))
    flip_byte(artifacts_copy / file)
    with pytest.raises(ArtifactError, match="fails its checksum"):
        check_parity(artifacts_copy, "cpu")


def test_check_parity_catches_a_reference_that_disagrees(artifacts_copy: Path) -> None:
    """A reference rewritten with one output nudged past the tolerance, its checksum updated so
    that only the comparison can catch it: that output, and only it, fails."""
    path = artifacts_copy / MANIFEST
    manifest = json.loads(path.read_text(encoding="utf-8"))
    entry = manifest["models"]["classifier"]["reference"]
    reference_path = artifacts_copy / entry["file"]
    with np.load(reference_path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    arrays["probs"] = arrays["probs"].copy()
    arrays["probs"][0, 0] += 1e-3
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    reference_path.write_bytes(buffer.getvalue())
    entry["sha256"], entry["bytes"] = sha256_of(buffer.getvalue()), len(buffer.getvalue())
    path.write_text(json.dumps(manifest), encoding="utf-8")

    assert onnxdigits.Artifacts(artifacts_copy).verify()[entry["file"]] is None
    failed = [r for r in check_parity(artifacts_copy, "cpu") if not r.ok]
    assert [(r.key, r.output) for r in failed] == [("classifier", "probs")]
    assert failed[0].max_abs_diff == pytest.approx(1e-3, rel=1e-2)
