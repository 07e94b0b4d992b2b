"""Either Keras backend: every model trained on JAX, with TensorFlow absent, then exported under
TensorFlow, as on a GPU machine that has JAX and no TensorFlow (see docs/training.md, on a GPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnxdigits.specs import SUBMODELS

pytest.importorskip("jax", reason="the backend test needs jax (the test extra)")

# Which recipe trains each model on JAX: the notes' classifier, whose variant is fitted with the
# shared layers frozen, and the shipped autoencoders, the GPU path of docs/training.md. The shipped
# classifier's augmentation is checked on JAX eagerly: XLA takes 45 s of CPU to compile its fit.
RECIPES = {"classifier": "notes", "ae": "shipped", "vae": "shipped", "cvae": "shipped"}
TRAIN_IMAGES = 200  # 180 to fit at batch 32 (6 steps a model), 20 to validate

# Run on JAX with TensorFlow unimportable: train through the CLI, check the augmentation, then
# record what the JAX models give on the inputs that export checks, to compare with onnxruntime.
ON_JAX = textwrap.dedent("""
    import importlib.abc
    import sys

    class Absent(importlib.abc.MetaPathFinder):  # as on a machine without them
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("tensorflow", "tf2onnx"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Absent())
    import numpy as np
    from onnxdigits.cli import main

    data, run = sys.argv[1:]
    common = ["--epochs", "1", "--batch-size", "32", "--limit", "200", "--data", data, "--out", run]
    main(["train", "--recipe", "notes", "--models", "classifier", *common], standalone_mode=False)
    main(["train", "--models", "ae,vae,cvae", *common], standalone_mode=False)

    import keras
    from onnxdigits import to_batch
    from onnxdigits.export.artifacts import load_submodels, model_inputs
    from onnxdigits.export.train import TrainConfig, augmentation
    from onnxdigits.export.validate import keras_outputs
    from onnxdigits.specs import SUBMODELS

    assert keras.backend.backend() == "jax", keras.backend.backend()
    x_test = np.load(data)["x_test"]
    batch = to_batch(x_test[:8])
    layers = augmentation(TrainConfig().fitting("classifier"), 0)
    moved = keras.Sequential(layers)(batch, training=True)
    assert len(layers) == 3 and moved.shape == batch.shape
    assert np.isfinite(moved).all() and not np.allclose(moved, batch)

    outputs = {}
    for key, model in load_submodels(f"{run}/keras").items():
        inputs = model_inputs(SUBMODELS[key], x_test, 64)
        outputs[f"{key}/input"] = inputs
        for name, value in keras_outputs(model, SUBMODELS[key], inputs).items():
            outputs[f"{key}/{name}"] = value
    np.savez(f"{run}/jax-outputs.npz", **outputs)
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "tf2onnx"))
    assert not heavy, heavy
""")
ON_TENSORFLOW = textwrap.dedent("""
    import sys
    from onnxdigits.cli import main

    data, run = sys.argv[1:]
    main(["export", "--out", run, "--data", data, "--no-metrics"], standalone_mode=False)
""")


def _python(script: str, backend: str, *args: str) -> None:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"on {backend}:\n{result.stderr[-4000:]}"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, sample) -> Path:
    """Every model trained for a few steps on JAX, then exported under TensorFlow."""
    root = tmp_path_factory.mktemp("backends")
    images, labels = sample
    data = root / "mnist.npz"
    np.savez(
        data,
        x_train=images[:TRAIN_IMAGES],
        y_train=labels[:TRAIN_IMAGES],
        x_test=images[TRAIN_IMAGES:],
        y_test=labels[TRAIN_IMAGES:],
    )
    _python(ON_JAX, "jax", str(data), str(root / "run"))
    _python(ON_TENSORFLOW, "tensorflow", str(data), str(root / "run"))
    return root / "run"


def test_jax_trains_every_model_and_tensorflow_exports_it(run: Path) -> None:
    log = json.loads((run / "keras" / "training.json").read_text())
    assert {model: entry["recipe"] for model, entry in log.items()} == RECIPES
    for model, entry in log.items():
        assert entry["keras_backend"] == "jax", model
        assert len(entry["history"]["loss"]) == 1 and np.isfinite(entry["history"]["loss"][0])
    variant = log["classifier"]["variant"]
    assert variant["accuracy_before"]["classifier"] == variant["accuracy_after"]["classifier"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["producer"]["keras_backend"] == "tensorflow"
    assert set(manifest["models"]) == set(SUBMODELS)
    for key, entry in manifest["models"].items():
        assert max(entry["parity"]["max_abs_diff"].values()) <= 1e-5, key


def test_the_onnx_files_give_what_the_models_gave_on_jax(run: Path) -> None:
    with np.load(run / "jax-outputs.npz") as npz:
        jax = dict(npz)
    for key, spec in SUBMODELS.items():
        session = ort.InferenceSession(str(run / spec.file), providers=["CPUExecutionProvider"])
        got = session.run(spec.output_names, {spec.input_names[0]: jax[f"{key}/input"]})
        for name, value in zip(spec.output_names, got):
            diff = float(np.max(np.abs(value - jax[f"{key}/{name}"])))
            assert diff <= spec.atol, f"{key} {name}: {diff:.1e}"
