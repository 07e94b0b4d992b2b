"""The notes' recipe: its models as the notes wrote them, trained, logged and exported."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import onnxdigits
import pytest
from click.testing import CliRunner
from onnxdigits.cli import main
from onnxdigits.export.artifacts import export_dir
from onnxdigits.export.errors import ExportError
from onnxdigits.export.models import (
    NOTES_BUILDERS,
    RECIPES,
    build_notes_ae,
    build_notes_classifier,
    build_notes_cvae,
    build_notes_vae,
)
from onnxdigits.export.train import FITTINGS, TrainConfig, train
from onnxdigits.specs import MODELS, SUBMODELS

LOSS_TERMS = ("reconstruction", "kl")


@pytest.fixture(scope="module")
def notes_run(tmp_path_factory: pytest.TempPathFactory, digits) -> tuple[Path, dict, dict]:
    """Every notes model trained for the recipe's own epochs on a few hundred digits, exported."""
    run = tmp_path_factory.mktemp("notes")
    config = TrainConfig(recipe="notes", validation=30, verbose=0)
    test = (digits["x_test"], digits["y_test"])
    submodels = train(MODELS, digits["x_train"], digits["y_train"], config, run, test=test)
    manifest = export_dir(run, digits["x_test"], digits["y_test"]).to_json()
    return run, submodels, manifest


# --- the models as the notes wrote them ----------------------------------------------------------


def test_the_notes_classifier_adds_two_block_lists_sharing_the_convolutions() -> None:
    built = build_notes_classifier()
    classifier, single = built["classifier"], built["classifier.single"]
    assert isinstance(classifier, keras.Sequential) and isinstance(single, keras.Sequential)
    assert classifier.count_params() == 241_850
    assert single.count_params() == 34_450  # conv_layer's 23,640 + 1080 * 10 + 10
    convs = [layer for layer in classifier.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.filters for layer in convs] == [10, 20, 120]
    assert all(any(layer is other for other in single.layers) for layer in convs)
    assert single.get_layer("flatten_single").output.shape[-1] == 1080
    dense = [layer for layer in classifier.layers if isinstance(layer, keras.layers.Dense)]
    assert [(layer.units, layer.activation.__name__) for layer in dense] == [
        (200, "relu"),
        (10, "softmax"),
    ]
    assert not [layer for layer in classifier.layers if isinstance(layer, keras.layers.Dropout)]


def _probs(model: keras.Model, images: np.ndarray) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(images, training=False))


@pytest.mark.parametrize("freeze", [False, True])
def test_fitting_the_variant_changes_the_classifier_unless_frozen(freeze: bool, digits) -> None:
    """The notes' lesson: the two models share their convolution layers' weights."""
    keras.utils.set_random_seed(0)
    built = build_notes_classifier()
    classifier, single = built["classifier"], built["classifier.single"]
    images = onnxdigits.to_batch(digits["x_train"][:64])
    before = _probs(classifier, images)
    if freeze:
        for layer in single.layers[:6]:  # conv_layer's convolutions and poolings
            layer.trainable = False
    single.compile(keras.optimizers.Adadelta(1.0), loss="sparse_categorical_crossentropy")
    single.train_on_batch(images, digits["y_train"][:64])
    changed = float(np.max(np.abs(_probs(classifier, images) - before)))
    assert (changed == 0.0) if freeze else (changed > 1e-4), changed


def test_the_notes_autoencoder_is_784_100_2_100_784() -> None:
    built = build_notes_ae()
    assert built["ae"].count_params() == 158_186
    encoder, generator = built["ae.encoder"], built["ae.generator"]
    dense = [
        (layer.units, layer.activation.__name__)
        for model in (encoder, generator)
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense)
    ]
    assert dense == [(100, "sigmoid"), (2, "relu"), (100, "sigmoid"), (784, "sigmoid")]
    shared = {id(w) for w in built["ae"].weights}
    assert {id(w) for w in encoder.weights + generator.weights} == shared


def test_the_notes_vaes_are_the_notes_and_examples_architectures() -> None:
    vae = build_notes_vae()
    dense = [
        (layer.name, layer.units, layer.activation.__name__)
        for model in (vae["vae.encoder"], vae["vae.generator"])
        for layer in model.layers
        if isinstance(layer, keras.layers.Dense)
    ]
    assert dense == [
        ("encoder_1", 100, "relu"),
        ("z_mean", 2, "linear"),
        ("z_log_var", 2, "linear"),
        ("generator_1", 100, "relu"),
        ("pixels", 784, "sigmoid"),
    ]
    first = build_notes_cvae()["cvae.encoder"].get_layer("conv_in")
    assert (first.filters, first.activation.__name__) == (1, "relu")


def test_every_notes_model_keeps_the_contract() -> None:
    assert set(RECIPES) == set(FITTINGS) == {"shipped", "notes", "world"}
    for family, builder in NOTES_BUILDERS.items():
        assert family in builder()
        for key, model in builder().items():
            if key not in SUBMODELS:
                continue
            spec = SUBMODELS[key]
            assert model.name == key.replace(".", "_")
            assert [tuple(t.shape) for t in model.inputs] == [(None, *s.shape) for s in spec.inputs]
            assert [tuple(t.shape) for t in model.outputs] == [
                (None, *s.shape) for s in spec.outputs
            ]


# --- the recipe's settings ------------------------------------------------------------------------


def test_a_config_changes_only_what_it_names() -> None:
    vae = TrainConfig(recipe="notes", epochs=2).fitting("vae")
    assert (vae.epochs, vae.batch_size, vae.optimizer, vae.learning_rate) == (
        2,
        100,
        "adadelta",
        1.0,
    )
    assert TrainConfig(shift=0.2).fitting("ae").shift == 0.0  # only the classifier is augmented
    shipped = TrainConfig().fitting("classifier")
    assert (shipped.epochs, shipped.shift, shipped.optimizer, shipped.cosine) == (
        40,
        0.1,
        "adam",
        True,
    )
    assert TrainConfig(recipe="notes").fitting("classifier").shift == 0.0
    with pytest.raises(ExportError, match="unknown recipe 'paper'"):
        TrainConfig(recipe="paper").fitting("vae")


def test_the_cli_offers_every_recipe_and_states_its_epochs() -> None:
    from onnxdigits.cli.training import train_command

    recipe = next(p for p in train_command.params if p.name == "recipe")
    assert list(recipe.type.choices) == list(FITTINGS)  # type: ignore[attr-defined]
    text = " ".join(CliRunner().invoke(main, ["train", "--help"]).output.split())
    for name, fittings in FITTINGS.items():
        stated = ", ".join(f"{model} {fitting.epochs}" for model, fitting in fittings.items())
        assert f"{name} {stated}" in text


# --- trained, logged and exported ----------------------------------------------------------------


def test_the_log_records_the_recipe_and_both_classifiers_before_and_after(notes_run) -> None:
    run, _, _ = notes_run
    log = json.loads((run / "keras" / "training.json").read_text())
    assert {log[m]["recipe"] for m in MODELS} == {"notes"}
    for model, fitting in FITTINGS["notes"].items():
        config = log[model]["config"]
        assert (config["epochs"], config["optimizer"], config["batch_size"]) == (
            fitting.epochs,
            fitting.optimizer,
            fitting.batch_size,
        )
        assert len(log[model]["history"]["loss"]) == fitting.epochs
    assert log["classifier"]["parameters"] == 241_850 and log["ae"]["parameters"] == 158_186
    variant = log["classifier"]["variant"]
    assert variant["parameters"] == 34_450 and variant["accuracy_on"] == "test"
    assert variant["images"] == 700
    assert {"stage1_conv", "stage2_conv", "stage3_conv"} <= set(variant["frozen"])
    before, after = variant["accuracy_before"], variant["accuracy_after"]
    assert before["classifier"] == after["classifier"]  # frozen: the classifier is untouched
    assert log["classifier"]["history"]["val_accuracy"] and variant["history"]["loss"]
    assert all(0.0 <= value <= 1.0 for value in (*before.values(), *after.values()))


@pytest.mark.parametrize("model", ["vae", "cvae"])
def test_the_vaes_log_both_loss_terms_per_epoch_on_train_and_validation(notes_run, model) -> None:
    run, _, _ = notes_run
    history = json.loads((run / "keras" / "training.json").read_text())[model]["history"]
    epochs = FITTINGS["notes"][model].epochs
    for prefix in ("", "val_"):
        terms = [np.array(history[prefix + term]) for term in LOSS_TERMS]
        assert all(len(values) == epochs for values in terms)
        assert np.all(terms[0] > 0) and np.all(terms[1] >= 0)
        # the loss is the mean over images of the two terms' sum, so it is their means' sum
        np.testing.assert_allclose(terms[0] + terms[1], history[prefix + "loss"], rtol=1e-4)


def test_the_kl_weight_weighs_the_kl_in_the_loss_and_is_logged(digits, tmp_path) -> None:
    """beta below 1: the loss is reconstruction + beta * KL, the logged terms stay unweighted."""
    config = TrainConfig(epochs=1, limit=200, validation=40, kl_weight=0.25, verbose=0)
    assert config.fitting("vae").kl_weight == 0.25 and config.fitting("ae").kl_weight == 1.0
    train(["vae"], digits["x_train"], digits["y_train"], config, tmp_path)
    log = json.loads((tmp_path / "keras" / "training.json").read_text())["vae"]
    assert log["config"]["kl_weight"] == 0.25
    history = log["history"]
    for prefix in ("", "val_"):
        reconstruction, kl = (np.array(history[prefix + term]) for term in LOSS_TERMS)
        assert np.all(kl > 0)
        np.testing.assert_allclose(reconstruction + 0.25 * kl, history[prefix + "loss"], rtol=1e-4)


def test_the_notes_set_exports_with_parity_and_serves_the_sdk(notes_run, digits) -> None:
    run, submodels, manifest = notes_run
    assert set(manifest["models"]) == set(SUBMODELS)
    for key, entry in manifest["models"].items():
        assert max(entry["parity"]["max_abs_diff"].values()) <= 1e-5, key
    assert manifest["training"]["classifier"]["recipe"] == "notes"
    saved = keras.models.load_model(run / "keras" / "classifier.keras", safe_mode=True)
    assert saved.count_params() == 241_850 and all(layer.trainable for layer in saved.layers)
    images = digits["x_test"][:50]
    probs = onnxdigits.Classifier(artifacts=run, device="cpu").predict_proba(images)
    expected = _probs(submodels["classifier"], onnxdigits.to_batch(images))
    assert float(np.max(np.abs(probs - expected))) <= 1e-5
    z = onnxdigits.Encoder("ae", artifacts=run, device="cpu").embed(images)
    assert z.min() >= 0.0  # the notes' ReLU code
