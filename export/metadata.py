"""What each exported ONNX file says about itself, in its `metadata_props`.

Other tools open these files without onnxdigits (Netron, onnxruntime in C#, C++, Java or
JavaScript, whose sessions read the properties with `get_modelmeta().custom_metadata_map`), so
every file carries, as strings (structured values as JSON): who made it and with what, which
submodel it is and what it does, the labels, the scale and polarity of its images, the latent
prior, its training and test figures, its class regions (generators), the licenses and where the
model card is. Writing them changes no node, weight or tensor of the graph; `same_graph` checks
that.
"""

from __future__ import annotations

import json
from typing import Any

import onnx
from onnxdigits import __version__
from onnxdigits.classes import DIGITS
from onnxdigits.manifest import Entry

PRODUCER = "onnxdigits"
MODEL_CARD = "README.md#model-card"  # in the onnxdigits repository and source distribution
LICENSE = "MIT"
TRAINING_DATA = (
    "MNIST, by Yann LeCun, Corinna Cortes and Christopher J. C. Burges, under CC BY-SA 3.0"
)
LABELS = json.dumps([str(digit) for digit in range(DIGITS)])
_MODELS = {
    "classifier": "the CNN digit classifier",
    "ae": "the dense autoencoder",
    "vae": "the dense VAE",
    "cvae": 'the convolutional ("deconv") VAE',
}
_ROLES = {
    "classifier": "a 28x28 digit image to the ten probabilities of its label (probs[:, i] for "
    "digit i)",
    "ae.encoder": "encoder: a 28x28 digit image to its code z in the 2-D latent space",
    "vae.encoder": "encoder: a 28x28 digit image to its posterior q(z|x) = N(z_mean, "
    "exp(z_log_var)) over the 2-D latent space",
    "generator": "generator (decoder): a point z of the 2-D latent space to a 28x28 digit image",
}
_PRIORS = {
    "ae": "none: a plain autoencoder is trained without one, so its codes follow no set "
    "distribution (onnxdigits draws z from N(0, I) for it all the same)",
    "vae": "N(0, I) over the 2 latent dimensions: training pulls q(z|x) toward it; decode draws "
    "from it to make new digits",
}
_IMAGE_SCALE = "float32 pixels in [0, 1] (uint8 value / 255), shape (batch, 28, 28, 1)"
_IMAGE_POLARITY = (
    "white digit (1.0) on a black background (0.0), as in MNIST: the digit fitted into 20x20 "
    "and centred by its centre of mass in 28x28 (onnxdigits.load_image brings any image so)"
)
# The keys this module writes: rewriting the metadata replaces these and keeps any other.
KEYS = (
    "producer",
    "producer_version",
    "toolchain",
    "submodel",
    "role",
    "labels",
    "input_scale",
    "input_polarity",
    "output_scale",
    "output_polarity",
    "latent_dim",
    "latent_prior",
    "latent_classes",
    "training",
    "test_figures",
    "parity",
    "rewrites",
    "license",
    "training_data",
    "model_card",
)


def role(key: str) -> str:
    """What submodel `key` is and does, in words."""
    model, _, part = key.partition(".")
    doing = _ROLES.get(key) or _ROLES.get(part) or _ROLES[f"vae.{part}"]
    return f"{key}: {_MODELS[model]}'s {doing}" if part else f"{key}: {_MODELS[model]}: {doing}"


def properties(entry: Entry, manifest: dict[str, Any]) -> dict[str, str]:
    """The metadata of one file of a set, from its manifest entry and the whole manifest.

    Args:
        entry: the file's manifest entry (its figures, parity, rewrites and class regions).
        manifest: the set's manifest as JSON (its producer versions and training log).

    Returns:
        Key to string value, in `KEYS` order; absent figures are left out.
    """
    spec = entry.spec
    producer = manifest.get("producer") or {}
    tools = ", ".join(
        f"{name} {producer[name]}"
        for name in ("keras", "tensorflow", "tf2onnx", "onnx")
        if name in producer
    )
    if producer.get("keras_backend"):
        tools += f" (Keras backend {producer['keras_backend']})"
    if producer.get("opset"):
        tools += f", opset {producer['opset']}"
    props: dict[str, str] = {
        "producer": PRODUCER,
        "producer_version": str(producer.get("onnxdigits") or __version__),
        "toolchain": tools,
        "submodel": spec.key,
        "role": role(spec.key),
        "labels": LABELS,
    }
    if spec.input_names[0] == "image":
        props["input_scale"] = _IMAGE_SCALE
        props["input_polarity"] = _IMAGE_POLARITY
    else:
        props["input_scale"] = (
            f"z: float32 (batch, {spec.latent_dim}), a point of the latent space, unbounded"
        )
    if spec.output_names[0] == "image":
        props["output_scale"] = _IMAGE_SCALE
        props["output_polarity"] = _IMAGE_POLARITY
    if spec.latent_dim is not None:
        props["latent_dim"] = str(spec.latent_dim)
        props["latent_prior"] = _PRIORS.get(spec.model, _PRIORS["vae"])
    if entry.latent_classes is not None:
        props["latent_classes"] = json.dumps(entry.latent_classes.to_json())
    training = _training(manifest.get("training", {}).get(spec.model))
    if training:
        props["training"] = json.dumps(training)
    if entry.metrics:
        props["test_figures"] = json.dumps(entry.metrics)
    if entry.parity is not None:
        props["parity"] = json.dumps({"against": "Keras", **entry.parity.to_json()})
    if entry.rewrites:
        props["rewrites"] = json.dumps(list(entry.rewrites))
    props["license"] = LICENSE
    props["training_data"] = TRAINING_DATA
    props["model_card"] = MODEL_CARD
    return props


def _training(log: object) -> dict[str, Any]:
    """A model's training, from its training log: the settings, the image counts and the
    last epoch's figures."""
    if not isinstance(log, dict):
        return {}
    config = log.get("config") or {}
    settings = ("recipe", "epochs", "batch_size", "learning_rate", "seed", "kl_weight")
    summary: dict[str, Any] = {name: config[name] for name in settings if name in config}
    for name in ("images", "validation"):
        if name in log:
            summary[name] = log[name]
    history = log.get("history") or {}
    last = {name: values[-1] for name, values in history.items() if values}
    if last:
        summary["last_epoch"] = last
    return summary


def write(data: bytes, props: dict[str, str]) -> bytes:
    """Return the ONNX file `data` with `props` as its metadata (replacing the keys of `KEYS`,
    keeping any other), its producer set to onnxdigits and its doc string to the role.

    Raises:
        ValueError: the result's graph differs from the input's (a bug).
    """
    model = onnx.load_from_string(data)
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in KEYS]
    del model.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        model.metadata_props.add(key=key, value=value)
    model.producer_name = PRODUCER
    model.producer_version = props.get("producer_version", __version__)
    if "role" in props:
        model.doc_string = props["role"]
    written = model.SerializeToString()
    if not same_graph(data, written):
        raise ValueError("writing metadata changed the graph")
    return written


def read(data: bytes) -> dict[str, str]:
    """The metadata of an ONNX file, key to value."""
    return {p.key: p.value for p in onnx.load_from_string(data).metadata_props}


def same_graph(a: bytes, b: bytes) -> bool:
    """Whether two ONNX files compute the same thing: the same graph (nodes, weights, tensors),
    opsets, IR version and functions, whatever their metadata."""
    first, second = onnx.load_from_string(a), onnx.load_from_string(b)
    for model in (first, second):
        del model.metadata_props[:]
        model.producer_name = model.producer_version = model.doc_string = ""
    return first.SerializeToString(deterministic=True) == second.SerializeToString(
        deterministic=True
    )
