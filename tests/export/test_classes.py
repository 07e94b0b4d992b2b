"""Class regions and metadata written into sets: the fit, export, and the set-editing commands."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxdigits
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnxdigits.cli import main
from onnxdigits.errors import ArtifactError
from onnxdigits.export import metadata
from onnxdigits.export.artifacts import add_class_regions, describe_set
from onnxdigits.export.classes import fit_classes, fit_mixture
from onnxdigits.export.errors import ValidationError
from onnxdigits.specs import LATENT_MODELS, SUBMODELS
from onnxdigits.verify import check_parity
from PIL import Image

from ..conftest import flip_byte


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _draw(rng: np.random.Generator, weights, means, covs, count: int) -> np.ndarray:
    which = rng.choice(len(weights), size=count, p=weights)
    return np.array([rng.multivariate_normal(means[j], covs[j]) for j in which])


# --- the fit ---------------------------------------------------------------------------------


def test_the_fit_recovers_known_gaussians_and_mixtures() -> None:
    rng = np.random.default_rng(0)
    truth = []
    points, labels = [], []
    for digit in range(10):
        centre = np.array([np.cos(digit), np.sin(digit)]) * 8
        if digit % 2:  # a single Gaussian, tilted
            c = 0.5 * np.array([[1.0, 0.6], [0.6, 1.0]]) * (1 + digit / 10)
            mixture = (np.array([1.0]), centre[None], c[None])
        else:  # two well-apart Gaussians, 70/30
            mixture = (
                np.array([0.7, 0.3]),
                np.stack([centre, centre + [3.0, -2.0]]),
                np.stack([0.3 * np.eye(2), np.diag([0.5, 0.1])]),
            )
        truth.append(mixture)
        points.append(_draw(rng, *mixture, 3000))
        labels.append(np.full(3000, digit))
    regions, unfiltered = fit_classes(np.concatenate(points), np.concatenate(labels), "points")
    assert unfiltered == []
    assert "by BIC" in regions.method and "points" in regions.method
    for digit, (weights, means, covs) in enumerate(truth):
        fitted = regions.digits[digit]
        assert len(fitted) == len(weights), f"digit {digit}: {len(fitted)} components"
        for component, w, m, c in zip(fitted, weights, means, covs):  # heaviest first, as truth
            assert component.weight == pytest.approx(w, abs=0.03)
            np.testing.assert_allclose(component.mean, m, atol=0.06)
            np.testing.assert_allclose(component.cov, c, atol=0.08)


def test_bic_prefers_one_gaussian_for_one_gaussian() -> None:
    x = np.random.default_rng(1).multivariate_normal([1, -2], [[2, 0.3], [0.3, 0.5]], 4000)
    fits = [fit_mixture(x, k) for k in (1, 2, 3)]
    assert min(range(3), key=lambda i: fits[i].bic(len(x))) == 0
    assert fits[2].log_likelihood >= fits[0].log_likelihood - 1e-6  # more parts fit no worse
    np.testing.assert_allclose(fits[0].means[0], x.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(fits[0].covs[0], np.cov(x.T, bias=True), atol=1e-4)


def test_kept_points_drive_the_fit_unless_too_few() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=(2000, 2))
    labels = np.repeat(np.arange(10), 200)
    keep = z[:, 0] > 0  # the right half of every digit's points
    keep[labels == 3] = False
    keep[np.flatnonzero(labels == 3)[:10]] = True  # digit 3: too few kept
    regions, unfiltered = fit_classes(z, labels, "points", keep)
    assert unfiltered == [3] and "digits 3" in regions.method
    means = [sum(c.weight * c.mean[0] for c in components) for components in regions.digits]
    assert all(m > 0.5 for d, m in enumerate(means) if d != 3)
    assert abs(means[3]) < 0.2


# --- export ----------------------------------------------------------------------------------


def test_the_export_fits_regions_and_writes_metadata(exported) -> None:
    run, manifest = exported
    for key, entry in manifest["models"].items():
        path = run / entry["file"]
        props = (
            ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            .get_modelmeta()
            .custom_metadata_map
        )
        assert props["producer"] == "onnxdigits"
        assert props["producer_version"] == onnxdigits.__version__
        assert props["submodel"] == key and props["role"].startswith(f"{key}: ")
        assert json.loads(props["labels"]) == [str(d) for d in range(10)]
        assert props["license"] == "MIT" and "CC BY-SA 3.0" in props["training_data"]
        assert props["model_card"] == "README.md#model-card"
        assert json.loads(props["parity"])["max_abs_diff"] == entry["parity"]["max_abs_diff"]
        assert json.loads(props["training"])["images"] > 0
        spec = SUBMODELS[key]
        if spec.input_names[0] == "image":
            assert "[0, 1]" in props["input_scale"] and "white digit" in props["input_polarity"]
        else:
            assert "white digit" in props["output_polarity"]
        if spec.latent_dim:
            assert props["latent_dim"] == "2"
            prior = "none" if spec.model == "ae" else "N(0, I)"
            assert props["latent_prior"].startswith(prior)
        else:
            assert "latent_prior" not in props
        if key.endswith(".generator"):
            regions = entry["latent_classes"]
            assert len(regions["digits"]) == 10
            assert json.loads(props["latent_classes"]) == regions
            assert regions == onnxdigits.Artifacts(run).entry(key).latent_classes.to_json()
        else:
            assert "latent_classes" not in entry and "latent_classes" not in props
        # The digest is of the file with its metadata.
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert all(result.ok for result in check_parity(run, "cpu"))
    generator = onnxdigits.Generator("vae", artifacts=run, device="cpu")
    assert generator.sample(3, seed=0, digit=5).shape == (3, 28, 28)


# --- editing a set: metadata and regions ---------------------------------------------------


def test_metadata_is_written_into_a_set_with_its_graphs_unchanged(artifacts_copy: Path) -> None:
    _without_regions(artifacts_copy)
    before = _digest(artifacts_copy)
    plain = {key: (artifacts_copy / spec.file).read_bytes() for key, spec in SUBMODELS.items()}
    entries = describe_set(artifacts_copy)
    assert set(entries) == set(SUBMODELS)
    after = _digest(artifacts_copy)
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {"manifest.json", *(spec.file for spec in SUBMODELS.values())}
    assert set(after) == set(before)
    store = onnxdigits.Artifacts(artifacts_copy)
    assert all(problem is None for problem in store.verify().values())
    for key, spec in SUBMODELS.items():
        data = (artifacts_copy / spec.file).read_bytes()
        assert metadata.same_graph(plain[key], data)
        assert metadata.read(data)["submodel"] == key
        assert onnx.load_from_string(data).producer_version == onnxdigits.__version__
    assert all(result.ok for result in check_parity(artifacts_copy, "cpu"))
    # Once written, there is nothing more to write.
    assert describe_set(artifacts_copy) == {}
    assert _digest(artifacts_copy) == after


def test_a_graph_changed_while_writing_metadata_is_refused(artifacts_copy: Path, monkeypatch):
    before = _digest(artifacts_copy)
    real = metadata.write

    def drifting(data: bytes, props: dict[str, str]) -> bytes:
        model = onnx.load_from_string(real(data, props))
        if props["submodel"] == "vae.generator":
            model.graph.node[-1].name += "_moved"  # a changed graph
        return model.SerializeToString()

    monkeypatch.setattr(metadata, "write", drifting)
    with pytest.raises(ValidationError, match="metadata of vae.generator changed its graph"):
        describe_set(artifacts_copy)
    assert _digest(artifacts_copy) == before
    assert [p.name for p in artifacts_copy.parent.iterdir()] == [artifacts_copy.name]


def test_a_tampered_set_gets_no_metadata(artifacts_copy: Path) -> None:
    flip_byte(artifacts_copy / "references" / "ae.encoder.npz")
    before = _digest(artifacts_copy)
    with pytest.raises(ArtifactError, match="fails its checksum"):
        describe_set(artifacts_copy)
    assert _digest(artifacts_copy) == before


def _without_regions(root: Path) -> None:
    """The set at `root` as export made sets before regions and metadata: neither in its
    manifest nor in its files (the shipped set has both)."""
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["models"].values():
        entry.pop("latent_classes", None)
        model = onnx.load(str(root / entry["file"]))
        del model.metadata_props[:]
        data = model.SerializeToString()
        (root / entry["file"]).write_bytes(data)
        entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def test_regions_are_added_to_the_manifest_alone(artifacts_copy: Path, sample) -> None:
    _without_regions(artifacts_copy)
    before = _digest(artifacts_copy)
    images, labels = sample
    entries = add_class_regions(artifacts_copy, images, labels)
    assert set(entries) == {f"{m}.generator" for m in LATENT_MODELS}
    after = _digest(artifacts_copy)
    assert {n for n in after if after[n] != before[n]} == {"manifest.json"}
    store = onnxdigits.Artifacts(artifacts_copy)
    for model in LATENT_MODELS:
        regions = store.entry(f"{model}.generator").latent_classes
        assert regions is not None and regions == entries[f"{model}.generator"].latent_classes
        assert "1,000 training digits" in regions.method and "classifier reads" in regions.method
    assert store.entry("vae.encoder").latent_classes is None


def test_regions_added_to_a_described_set_reach_its_metadata(artifacts_copy: Path, sample) -> None:
    _without_regions(artifacts_copy)
    describe_set(artifacts_copy)
    data = (artifacts_copy / "vae.generator.onnx").read_bytes()
    assert "latent_classes" not in metadata.read(data)
    images, labels = sample
    add_class_regions(artifacts_copy, images, labels)
    store = onnxdigits.Artifacts(artifacts_copy)
    assert all(problem is None for problem in store.verify().values())
    props = metadata.read(store.model_bytes("vae.generator"))
    assert (
        json.loads(props["latent_classes"]) == store.entry("vae.generator").latent_classes.to_json()
    )
    assert metadata.same_graph(data, store.model_bytes("vae.generator"))


# --- the commands ----------------------------------------------------------------------------


def test_the_fit_classes_and_write_metadata_commands(artifacts_copy: Path, sample, tmp_path):
    _without_regions(artifacts_copy)
    images, labels = sample
    data = tmp_path / "mnist.npz"
    np.savez(data, x_train=images, y_train=labels, x_test=images[:10], y_test=labels[:10])
    runner = CliRunner()
    out = tmp_path / "sevens.png"
    refused = runner.invoke(
        main, ["sample", "--digit", "7", "--artifacts", str(artifacts_copy), "--out", str(out)]
    )
    assert refused.exit_code == 1 and "no class regions" in refused.stderr
    assert "onnxdigits fit-classes" in refused.stderr and not out.exists()

    fitted = runner.invoke(
        main, ["fit-classes", "--data", str(data), "--artifacts", str(artifacts_copy)]
    )
    assert fitted.exit_code == 0, fitted.output
    assert fitted.stdout.count("components per digit: ") == 3
    drawn = runner.invoke(
        main,
        [
            "sample",
            "--digit",
            "7",
            "--count",
            "16",
            "--seed",
            "1",
            "--artifacts",
            str(artifacts_copy),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert drawn.exit_code == 0, drawn.output
    picture = np.asarray(Image.open(out))
    tiles = picture.reshape(4, 28, 4, 28).transpose(0, 2, 1, 3).reshape(16, 28, 28)
    read = onnxdigits.Classifier(artifacts=artifacts_copy, device="cpu").predict(tiles)
    assert np.mean(read == 7) >= 0.75

    summary = runner.invoke(main, ["info", "--artifacts", str(artifacts_copy), "--device", "cpu"])
    assert "metadata    classifier.onnx: none (`onnxdigits write-metadata`" in summary.stdout
    written = runner.invoke(main, ["write-metadata", "--artifacts", str(artifacts_copy)])
    assert written.exit_code == 0, written.output
    assert written.stdout.count("\tsha256 ") == len(SUBMODELS)
    again = runner.invoke(main, ["write-metadata", "--artifacts", str(artifacts_copy)])
    assert again.exit_code == 0 and again.stdout == "" and "already has" in again.stderr
    shown = runner.invoke(main, ["info", "--artifacts", str(artifacts_copy), "--device", "cpu"])
    assert shown.exit_code == 0, shown.output
    line = next(x for x in shown.stdout.splitlines() if "vae.generator.onnx" in x)
    assert (
        line.startswith("metadata    vae.generator.onnx: onnxdigits ") and "latent_classes" in line
    )
    full = runner.invoke(
        main, ["info", "--metadata", "--artifacts", str(artifacts_copy), "--device", "cpu"]
    )
    assert "  license          MIT\n" in full.stdout
    assert "  role             cvae.generator: the convolutional" in full.stdout
    copy = tmp_path / "tampered"
    shutil.copytree(artifacts_copy, copy)
    flip_byte(copy / "classifier.onnx")
    failed = runner.invoke(main, ["write-metadata", "--artifacts", str(copy)])
    assert failed.exit_code == 1 and "fails its checksum" in failed.stderr
