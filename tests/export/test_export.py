"""Building, training and exporting the models: contract, parity, safety and atomic writes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import onnx
import onnxdigits
import onnxruntime as ort
import pytest
from onnxdigits.export import artifacts as writer
from onnxdigits.export.artifacts import export, export_dir, load_submodels
from onnxdigits.export.data import load_mnist
from onnxdigits.export.errors import AtolError, DataError, ExportError
from onnxdigits.export.evaluate import evaluate, knn_accuracy
from onnxdigits.export.models import BUILDERS, build_classifier, build_cvae
from onnxdigits.export.train import EPOCHS, TrainConfig, train
from onnxdigits.export.validate import validate
from onnxdigits.specs import MODELS, SUBMODELS


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("name", MODELS)
def test_every_model_builds_with_named_parts(name: str) -> None:
    models = BUILDERS[name]()
    assert name in models
    for key, model in models.items():
        if key == name and name != "classifier":
            continue
        spec = SUBMODELS[key]
        assert model.name == key.replace(".", "_")
        inputs = model.inputs
        assert [tuple(t.shape) for t in inputs] == [(None, *s.shape) for s in spec.inputs]
        assert [tuple(t.shape) for t in model.outputs] == [(None, *s.shape) for s in spec.outputs]


def test_the_classifier_keeps_the_notes_structure() -> None:
    model = build_classifier()["classifier"]
    assert [model.get_layer(f"stage{i}_conv").filters for i in (1, 2, 3)] == [10, 20, 120]
    assert model.get_layer("flatten").output.shape[-1] == 1080
    assert model.get_layer("hidden").units == 200
    linear = build_classifier(head="linear")["classifier"]
    assert [layer.name for layer in linear.layers if isinstance(layer, keras.layers.Dense)] == [
        "probs"
    ]


def test_the_cvae_generator_goes_through_29x29() -> None:
    parts = build_cvae()
    assert parts["cvae.generator"].get_layer("deconv_up").output.shape[1:3] == (29, 29)
    assert parts["cvae.encoder"].get_layer("flatten").output.shape[-1] == 12544


def test_training_saves_every_submodel_loadable_in_safe_mode(trained) -> None:
    run, submodels = trained
    assert set(submodels) == set(SUBMODELS)
    loaded = load_submodels(run / "keras")  # safe_mode=True inside
    for key, model in loaded.items():
        again = keras.models.load_model(run / "keras" / f"{key}.keras", safe_mode=True)
        assert again.name == model.name
        stack = list(model.layers)
        while stack:
            layer = stack.pop()
            assert not isinstance(layer, keras.layers.Lambda), f"{key} has a Lambda layer"
            stack.extend(getattr(layer, "layers", []))
    log = json.loads((run / "keras" / "training.json").read_text())
    assert set(log) == set(MODELS)
    assert all(log[f]["config"]["epochs"] == 1 and log[f]["history"]["loss"] for f in MODELS)


def test_augmentation_trains_but_stays_out_of_the_saved_classifier(digits, tmp_path) -> None:
    config = TrainConfig(
        epochs=1, batch_size=64, validation=30, verbose=0, shift=0.1, rotation=0.03, zoom=0.1
    )
    train(["classifier"], digits["x_train"], digits["y_train"], config, tmp_path)
    saved = keras.models.load_model(tmp_path / "keras" / "classifier.keras", safe_mode=True)
    assert saved.name == "classifier"
    assert not [layer for layer in saved.layers if layer.name.startswith("random_")]
    log = json.loads((tmp_path / "keras" / "training.json").read_text())["classifier"]
    assert (log["config"]["shift"], log["config"]["rotation"], log["config"]["zoom"]) == (
        0.1,
        0.03,
        0.1,
    )


def test_the_cli_states_the_default_epochs_of_every_model() -> None:
    from click.testing import CliRunner
    from onnxdigits.cli import main

    text = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())
    assert ", ".join(f"{name} {n}" for name, n in EPOCHS.items()) in text


def test_every_onnx_output_matches_keras_on_real_digits(trained, exported, digits) -> None:
    run, submodels = trained
    images = onnxdigits.to_batch(digits["x_test"][:100])
    latents = np.random.default_rng(3).standard_normal((100, 2)).astype(np.float32)
    for key, model in submodels.items():
        spec = SUBMODELS[key]
        feed = images if spec.inputs[0].name == "image" else latents
        session = ort.InferenceSession(str(run / spec.file), providers=["CPUExecutionProvider"])
        got = session.run(None, {spec.inputs[0].name: feed})
        expected = model(feed, training=False)
        expected = expected if isinstance(expected, (list, tuple)) else [expected]
        assert [o.name for o in session.get_outputs()] == [t.name for t in spec.outputs]
        for name, a, b in zip([t.name for t in spec.outputs], got, expected):
            diff = float(np.max(np.abs(a - keras.ops.convert_to_numpy(b))))
            print(f"{key} - {name}: max diff = {diff:.1e}")
            assert diff <= 1e-5, f"{key}.{name}"


def test_the_manifest_describes_the_files(exported) -> None:
    run, manifest = exported
    assert manifest == json.loads((run / "manifest.json").read_text())
    assert manifest["schema_version"] == 1
    assert {"keras", "tensorflow", "tf2onnx", "onnx", "opset"} <= set(manifest["producer"])
    assert set(manifest["models"]) == set(SUBMODELS)
    for key, entry in manifest["models"].items():
        data = (run / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
        assert all(t["shape"][0] == "batch" for t in entry["inputs"] + entry["outputs"])
        assert set(entry["parity"]["max_abs_diff"]) == {t.name for t in SUBMODELS[key].outputs}
        assert max(entry["parity"]["max_abs_diff"].values()) <= 1e-5
        assert entry["latent_dim"] == SUBMODELS[key].latent_dim
    assert all(problem is None for problem in onnxdigits.Artifacts(run).verify().values())


def test_onnx_files_pass_the_full_checker_with_a_dynamic_batch(exported) -> None:
    run, manifest = exported
    for key, entry in manifest["models"].items():
        model = onnx.load(run / entry["file"])
        onnx.checker.check_model(model, full_check=True)
        for value in (*model.graph.input, *model.graph.output):
            assert value.type.tensor_type.shape.dim[0].dim_param == "batch", key


def test_the_exported_set_serves_the_sdk_and_reproduces_its_references(exported) -> None:
    run, _ = exported
    from onnxdigits.verify import check_parity

    results = check_parity(run, "cpu")
    assert results and all(result.ok for result in results)
    assert onnxdigits.Generator("cvae", artifacts=run, device="cpu").grid(2).shape == (56, 56)


def test_validation_reports_every_output_that_drifts(trained, digits) -> None:
    _, submodels = trained
    spec = SUBMODELS["vae.encoder"]
    from onnxdigits.export.convert import to_onnx

    proto = to_onnx(submodels["vae.encoder"], spec)
    for tensor in proto.graph.initializer:  # shift every bias: both outputs move
        if len(tensor.dims) == 1 and tensor.data_type == onnx.TensorProto.FLOAT:
            values = onnx.numpy_helper.to_array(tensor) + 0.01
            tensor.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), tensor.name))
    with pytest.raises(AtolError) as info:
        validate(
            proto.SerializeToString(),
            submodels["vae.encoder"],
            spec,
            onnxdigits.to_batch(digits["x_test"][:8]),
            batches=(1, 8),
        )
    assert "- z_mean (batch 1): max diff" in str(info.value)
    assert "- z_log_var (batch 8): max diff" in str(info.value)


def test_a_failing_export_leaves_the_previous_set_unchanged(
    trained, exported, digits, monkeypatch, tmp_path
) -> None:
    run, submodels = trained
    target = tmp_path / "set"
    shutil.copytree(run, target)
    before = _digest(target)
    written = []

    def failing_savez(path: Path, arrays: dict) -> None:
        written.append(path)
        if len(written) == 3:
            raise OSError(28, "No space left on device", str(path))
        np.savez_compressed(path, **arrays)

    monkeypatch.setattr(writer, "_savez", failing_savez)
    with pytest.raises(OSError, match="No space"):
        export(submodels, target, digits["x_test"], digits["y_test"])
    assert _digest(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["set"]  # no staging left behind
    assert onnxdigits.Classifier(artifacts=target, device="cpu").predict(
        digits["x_test"][:4]
    ).shape == (4,)
    monkeypatch.undo()
    export(submodels, target, digits["x_test"], digits["y_test"])
    assert (target / "keras").is_dir()  # carried over
    assert all(problem is None for problem in onnxdigits.Artifacts(target).verify().values())


def test_an_export_killed_midway_leaves_the_previous_set_intact(exported, digits, tmp_path) -> None:
    run, _ = exported
    target = tmp_path / "set"
    shutil.copytree(run, target)
    before = _digest(target)
    ready = tmp_path / "ready"
    np.savez(tmp_path / "test.npz", x=digits["x_test"], y=digits["y_test"])
    code = textwrap.dedent(f"""
        import os, time, numpy as np
        from pathlib import Path
        from onnxdigits.export import artifacts as writer
        real = writer._savez
        def stalled(path, arrays):
            real(path, arrays)
            Path({str(ready)!r}).touch()
            time.sleep(600)
        writer._savez = stalled
        data = np.load({str(tmp_path / "test.npz")!r})
        writer.export_dir({str(target)!r}, data["x"], data["y"])
    """)
    process = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not ready.exists():
            assert process.poll() is None, "the export ended before it was killed"
            assert time.monotonic() < deadline, "the export never started writing"
            time.sleep(0.2)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert _digest(target) == before
    assert all(problem is None for problem in onnxdigits.Artifacts(target).verify().values())
    export_dir(target, digits["x_test"], digits["y_test"])
    assert all(problem is None for problem in onnxdigits.Artifacts(target).verify().values())


def test_a_set_left_aside_by_a_kill_between_the_renames_is_restored(
    trained, exported, digits, tmp_path, monkeypatch
) -> None:
    run, submodels = trained
    target = tmp_path / "set"
    aside = tmp_path / ".set.old-x1y2"
    aside.mkdir()
    shutil.copytree(run, aside / "set")  # as `_replace` leaves it when killed between renames
    before = _digest(aside / "set")

    def failing_savez(path: Path, arrays: dict) -> None:
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(writer, "_savez", failing_savez)
    with pytest.raises(OSError):  # even a failing export puts the old set back first
        export({"classifier": submodels["classifier"]}, target, digits["x_test"], digits["y_test"])
    assert _digest(target) == before and not aside.exists()


def test_nothing_to_export_is_an_error(tmp_path) -> None:
    with pytest.raises(ExportError, match="onnxdigits train"):
        export_dir(tmp_path, np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.uint8))


def test_metrics_are_measured_from_the_onnx_files(exported, digits) -> None:
    run, _ = exported
    figures = evaluate(
        run,
        digits["x_train"],
        digits["y_train"],
        digits["x_test"][:200],
        digits["y_test"][:200],
        samples=2,
    )
    assert set(figures) == set(MODELS)
    x, y = digits["x_test"][:200], digits["y_test"][:200]
    direct = np.mean(onnxdigits.Classifier(artifacts=run, device="cpu").predict(x) == y)
    assert figures["classifier"]["test_accuracy"] == pytest.approx(direct)
    restored = onnxdigits.reconstruct(x, "ae", artifacts=run, device="cpu")
    assert figures["ae"]["test_mse"] == pytest.approx(np.mean((restored - x / 255) ** 2), rel=1e-4)
    for name in ("vae", "cvae"):
        assert 0.0 < figures[name]["test_neg_elbo"] < 784 * 16
        assert 0.0 <= figures[name]["grid_confident"] <= 1.0
    assert all(0.0 <= figures[f]["knn5_accuracy"] <= 1.0 for f in ("ae", "vae", "cvae"))


def test_knn_accuracy_votes_among_five_neighbours() -> None:
    train = np.array([[0, 0], [0, 1], [1, 0], [10, 10], [10, 11], [11, 10]], float)
    labels = np.array([0, 0, 0, 1, 1, 1])
    test = np.array([[0.5, 0.5], [10.5, 10.5]])
    assert knn_accuracy(train, labels, test, np.array([0, 1]), k=3) == 1.0
    assert knn_accuracy(train, labels, test, np.array([1, 0]), k=3) == 0.0
    assert knn_accuracy(train, labels, test, np.array([0, 1]), k=1) == 1.0
    assert knn_accuracy(train, labels, test, np.array([0, 1]), k=5) == 1.0  # 3 votes to 2


def test_load_mnist_reads_a_path_or_the_environment(sample, tmp_path, monkeypatch) -> None:
    images, labels = sample
    path = tmp_path / "mnist.npz"
    np.savez(
        path, x_train=images[:10], y_train=labels[:10], x_test=images[10:15], y_test=labels[10:15]
    )
    (x_train, y_train), (x_test, y_test) = load_mnist(path)
    np.testing.assert_array_equal(x_test, images[10:15])
    monkeypatch.setenv("ONNXDIGITS_MNIST", str(path))
    assert load_mnist()[0][0].shape == (10, 28, 28)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (None, "no MNIST file"),
        ({"x_train": np.zeros((2, 28, 28), np.uint8)}, "lacks"),
        (
            {
                "x_train": np.zeros((2, 28, 28), np.float32),
                "y_train": np.zeros(2),
                "x_test": np.zeros((1, 28, 28), np.uint8),
                "y_test": np.zeros(1),
            },
            "not MNIST",
        ),
        (
            {
                "x_train": np.array([object()] * 2),
                "y_train": np.zeros(2),
                "x_test": np.zeros((1, 28, 28), np.uint8),
                "y_test": np.zeros(1),
            },
            "pickle",
        ),
    ],
)
def test_load_mnist_refuses_bad_files(arrays, message, tmp_path) -> None:
    path = tmp_path / "mnist.npz"
    if arrays is not None:
        np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load_mnist(path)
