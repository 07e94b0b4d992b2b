"""The four models of the notes (the two Keras teaching notes this project grew from, which the
docs/index.md describes) in Keras 3, built from small named blocks with `keras.ops` only.

Two recipes build them: "shipped", the models of the shipped set (deeper dense layers, a linear
first convolution in the conv VAE), and "notes", the notes' models as they were written. Each
builder returns its trainable model and the submodels that export takes, keyed as in the manifest
("vae.encoder", ...). Submodels share their layers with the trainable model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
from keras import layers, ops
from onnxdigits.specs import IMAGE_SHAPE, LATENT_DIM

from .errors import ExportError

PIXELS = 28 * 28


@keras.saving.register_keras_serializable(package="onnxdigits")
class Sampling(layers.Layer):
    """Draws z = z_mean + exp(z_log_var / 2) * eps with eps ~ N(0, I)."""

    def __init__(self, seed: int | None = None, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):  # type: ignore[no-untyped-def]
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + ops.exp(0.5 * z_log_var) * epsilon

    def get_config(self) -> dict[str, object]:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="onnxdigits")
class VAE(keras.Model):
    """Trains an encoder and a generator on the negative ELBO: summed pixel BCE plus KL.

    `kl_weight` (beta, 1 by default) weighs the KL term in the loss that is minimised: below 1,
    the encoder is pushed less towards the prior and its means keep the classes further apart.
    Besides the loss, fit and evaluate report the ELBO's two terms unweighted, each a mean over
    images in nats: `reconstruction` (the BCE) and `kl` (`val_reconstruction` and `val_kl` on
    validation data), so that their sum is the negative ELBO whatever the weight.
    """

    kl_weight = 1.0

    def __init__(
        self,
        encoder: keras.Model,
        generator: keras.Model,
        seed: int | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder
        self.generator = generator
        self.sampling = Sampling(seed, name="sampling")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction")
        self.kl_tracker = keras.metrics.Mean(name="kl")

    def call(self, images, training=False):  # type: ignore[no-untyped-def]
        z_mean, z_log_var = self.encoder(images, training=training)
        z = self.sampling([z_mean, z_log_var])
        return self.generator(z, training=training), z_mean, z_log_var

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):  # type: ignore[no-untyped-def]
        reconstruction, z_mean, z_log_var = y_pred
        bce, kl = elbo_terms(x, reconstruction, z_mean, z_log_var)
        return ops.mean(bce + self.kl_weight * kl)

    def compute_metrics(self, x, y, y_pred, sample_weight=None):  # type: ignore[no-untyped-def]
        # The terms again, from the same draw of z: Keras updates metrics here on every backend.
        reconstruction, z_mean, z_log_var = y_pred
        bce, kl = elbo_terms(x, reconstruction, z_mean, z_log_var)
        self.reconstruction_tracker.update_state(bce)
        self.kl_tracker.update_state(kl)
        return super().compute_metrics(x, y, y_pred, sample_weight)


def elbo_terms(images, reconstruction, z_mean, z_log_var):  # type: ignore[no-untyped-def]
    """The two terms of each image's negative ELBO, in nats.

    Returns:
        (reconstruction, kl), each (N,): binary cross-entropy summed over the 784 pixels (Keras
        clips probabilities to [1e-7, 1 - 1e-7]), and KL(q(z|x) || N(0, I)).
    """
    target = ops.reshape(images, (-1, PIXELS))
    output = ops.reshape(reconstruction, (-1, PIXELS))
    bce = ops.sum(ops.binary_crossentropy(target, output), axis=-1)
    kl = -0.5 * ops.sum(1.0 + z_log_var - ops.square(z_mean) - ops.exp(z_log_var), axis=-1)
    return bce, kl


def conv_stage(x, filters: int, name: str):  # type: ignore[no-untyped-def]
    """The classifier's block: a 3x3 same-padded ReLU convolution, then 2x2 max pooling."""
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv")(x)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x)


def dense_stack(x, units: Sequence[int], name: str, activation: str = "relu"):  # type: ignore[no-untyped-def]
    """Dense layers named `{name}_1`, `{name}_2`, ..., ReLU unless told otherwise."""
    for i, width in enumerate(units, 1):
        x = layers.Dense(width, activation=activation, name=f"{name}_{i}")(x)
    return x


def build_classifier(
    filters: Sequence[int] = (10, 20, 120),
    dense: int = 200,
    dropout: float = 0.3,
    head: str = "dense",
) -> dict[str, keras.Model]:
    """The notes' CNN: three conv stages, Flatten (1080), Dense 200 ReLU, Dense 10 softmax.

    Args:
        head: "dense" for Flatten -> Dense(dense) -> Dense 10, or "linear" for the notes'
            Flatten -> Dense 10 variant.
        dropout: dropout rate before each dense layer while training; 0 for none.

    Returns:
        {"classifier": model}, taking image (N, 28, 28, 1) to probs (N, 10).
    """
    if head not in ("dense", "linear"):
        raise ExportError(f'head must be "dense" or "linear"; got {head!r}')
    image = keras.Input(IMAGE_SHAPE, name="image")
    x = image
    for i, width in enumerate(filters, 1):
        x = conv_stage(x, width, f"stage{i}")
    x = layers.Flatten(name="flatten")(x)
    if head == "dense":
        x = layers.Dropout(dropout, name="dropout_1")(x)
        x = layers.Dense(dense, activation="relu", name="hidden")(x)
    x = layers.Dropout(dropout, name="dropout_2")(x)
    probs = layers.Dense(10, activation="softmax", name="probs")(x)
    return {"classifier": keras.Model(image, probs, name="classifier")}


def _dense_generator(
    model: str, hidden: Sequence[int], latent_dim: int, activation: str = "relu"
) -> keras.Model:
    z = keras.Input((latent_dim,), name="z")
    x = dense_stack(z, list(reversed(hidden)), "generator", activation)
    x = layers.Dense(PIXELS, activation="sigmoid", name="pixels")(x)
    return keras.Model(z, layers.Reshape(IMAGE_SHAPE, name="digit")(x), name=f"{model}_generator")


def build_ae(
    hidden: Sequence[int] = (512, 256), latent_dim: int = LATENT_DIM
) -> dict[str, keras.Model]:
    """Dense autoencoder 784 -> hidden -> latent_dim -> reversed hidden -> 784 (sigmoid).

    The latent code is standardised (a BatchNormalization without scale or offset).

    Returns:
        {"ae": trainable model, "ae.encoder": image -> z, "ae.generator": z -> image}.
    """
    image = keras.Input(IMAGE_SHAPE, name="image")
    x = dense_stack(layers.Flatten(name="flatten")(image), hidden, "encoder")
    # The code is standardised so that the generator's N(0, I) grid and samples cover it, and so
    # that float32 parity holds to 1e-5: an unscaled code grows past 50 and its ulp with it.
    code = layers.Dense(latent_dim, name="code")(x)
    z = layers.BatchNormalization(center=False, scale=False, name="z")(code)
    encoder = keras.Model(image, z, name="ae_encoder")
    generator = _dense_generator("ae", hidden, latent_dim)
    model = keras.Model(image, generator(encoder(image)), name="ae")
    return {"ae": model, "ae.encoder": encoder, "ae.generator": generator}


def _posterior(x, latent_dim: int):  # type: ignore[no-untyped-def]
    return (
        layers.Dense(latent_dim, name="z_mean")(x),
        layers.Dense(latent_dim, name="z_log_var")(x),
    )


def build_vae(
    hidden: Sequence[int] = (512, 256), latent_dim: int = LATENT_DIM, seed: int | None = None
) -> dict[str, keras.Model]:
    """Dense VAE 784 -> hidden (ReLU) -> z_mean, z_log_var -> sampling -> hidden -> 784 sigmoid.

    Returns:
        {"vae": trainable VAE, "vae.encoder": image -> (z_mean, z_log_var), deterministic,
        "vae.generator": z -> image}.
    """
    image = keras.Input(IMAGE_SHAPE, name="image")
    x = dense_stack(layers.Flatten(name="flatten")(image), hidden, "encoder")
    encoder = keras.Model(image, _posterior(x, latent_dim), name="vae_encoder")
    generator = _dense_generator("vae", hidden, latent_dim)
    return {
        "vae": VAE(encoder, generator, seed, name="vae"),
        "vae.encoder": encoder,
        "vae.generator": generator,
    }


def build_cvae(
    filters: int = 64,
    dense: int = 128,
    latent_dim: int = LATENT_DIM,
    first_activation: str | None = None,
    seed: int | None = None,
) -> dict[str, keras.Model]:
    """The deconv notes' convolutional VAE.

    Encoder: Conv2D 1 (2x2, same) -> Conv2D 64 (2x2, stride 2) -> 2 x Conv2D 64 (3x3, same) ->
    Flatten 12544 -> Dense 128 -> z_mean, z_log_var. Generator: Dense 128 -> Dense 12544 ->
    Reshape 14x14x64 -> 2 x Conv2DTranspose 64 (3x3, same) -> Conv2DTranspose 64 (3x3, stride 2,
    valid: 29x29) -> Conv2D 1 (2x2, valid, sigmoid) -> 28x28x1.

    Args:
        first_activation: of the single-filter first convolution. The notes used ReLU, whose
            one filter can die and collapse the posterior; None (linear) trains reliably.

    Returns:
        {"cvae": trainable VAE, "cvae.encoder", "cvae.generator"}.
    """
    image = keras.Input(IMAGE_SHAPE, name="image")
    x = layers.Conv2D(1, 2, padding="same", activation=first_activation, name="conv_in")(image)
    x = layers.Conv2D(filters, 2, strides=2, padding="same", activation="relu", name="conv_down")(x)
    for i in (1, 2):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"conv_{i}")(x)
    x = layers.Dense(dense, activation="relu", name="encoder_1")(layers.Flatten(name="flatten")(x))
    encoder = keras.Model(image, _posterior(x, latent_dim), name="cvae_encoder")

    z = keras.Input((latent_dim,), name="z")
    side = IMAGE_SHAPE[0] // 2
    x = dense_stack(z, (dense, side * side * filters), "generator")
    x = layers.Reshape((side, side, filters), name="unflatten")(x)
    for i in (1, 2):
        x = layers.Conv2DTranspose(
            filters, 3, padding="same", activation="relu", name=f"deconv_{i}"
        )(x)
    x = layers.Conv2DTranspose(
        filters, 3, strides=2, padding="valid", activation="relu", name="deconv_up"
    )(x)
    digit = layers.Conv2D(1, 2, padding="valid", activation="sigmoid", name="digit")(x)
    generator = keras.Model(z, digit, name="cvae_generator")
    return {
        "cvae": VAE(encoder, generator, seed, name="cvae"),
        "cvae.encoder": encoder,
        "cvae.generator": generator,
    }


BUILDERS: dict[str, Callable[..., dict[str, keras.Model]]] = {
    "classifier": build_classifier,
    "ae": build_ae,
    "vae": build_vae,
    "cvae": build_cvae,
}


# --- the notes' models, as they were written ------------------------------------------------------


def build_notes_classifier() -> dict[str, keras.Model]:
    """The notes' Sequential CNN, built as they built it: by adding reusable lists of layers.

    `conv_layer` holds the input and three 3x3 same-padded ReLU convolutions (10, 20, 120
    filters), each followed by 2x2 max pooling, down to 3x3x120 = 1080 features; `fc_layer` is
    Flatten -> Dense 200 ReLU -> Dense 10 softmax, and `fc_single_layer` the notes' 1080 -> 10
    variant, Flatten -> Dense 10 softmax. No dropout, as in the notes.

    Returns:
        {"classifier": Sequential(conv_layer + fc_layer), 241,850 parameters;
        "classifier.single": Sequential(conv_layer + fc_single_layer), 34,450 parameters}. The
        two share conv_layer's layer objects, and so their weights: fitting one changes the other.
    """
    conv_layer: list[layers.Layer] = [layers.InputLayer(shape=IMAGE_SHAPE, name="image")]
    for i, filters in enumerate((10, 20, 120), 1):
        conv_layer += [
            layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"stage{i}_conv"),
            layers.MaxPooling2D(2, name=f"stage{i}_pool"),
        ]
    fc_layer = [
        layers.Flatten(name="flatten"),
        layers.Dense(200, activation="relu", name="hidden"),
        layers.Dense(10, activation="softmax", name="probs"),
    ]
    fc_single_layer = [
        layers.Flatten(name="flatten_single"),
        layers.Dense(10, activation="softmax", name="probs_single"),
    ]
    return {
        "classifier": keras.Sequential(conv_layer + fc_layer, name="classifier"),
        "classifier.single": keras.Sequential(
            conv_layer + fc_single_layer, name="classifier_single"
        ),
    }


def build_notes_ae(latent_dim: int = LATENT_DIM) -> dict[str, keras.Model]:
    """The notes' dense autoencoder: 784 -> 100 sigmoid -> latent_dim ReLU -> 100 sigmoid -> 784
    sigmoid, 158,186 parameters with a 2-D code.

    Returns:
        {"ae": trainable model, "ae.encoder": image -> z, "ae.generator": z -> image}.
    """
    image = keras.Input(IMAGE_SHAPE, name="image")
    x = dense_stack(layers.Flatten(name="flatten")(image), (100,), "encoder", "sigmoid")
    z = layers.Dense(latent_dim, activation="relu", name="z")(x)
    encoder = keras.Model(image, z, name="ae_encoder")
    generator = _dense_generator("ae", (100,), latent_dim, "sigmoid")
    model = keras.Model(image, generator(encoder(image)), name="ae")
    return {"ae": model, "ae.encoder": encoder, "ae.generator": generator}


def build_notes_vae(
    latent_dim: int = LATENT_DIM, seed: int | None = None
) -> dict[str, keras.Model]:
    """The notes' dense VAE: 784 -> 100 ReLU -> z_mean, z_log_var -> sampling -> 100 ReLU -> 784
    sigmoid (`build_vae` with one hidden layer of 100)."""
    return build_vae((100,), latent_dim, seed)


def build_notes_cvae(
    latent_dim: int = LATENT_DIM, seed: int | None = None
) -> dict[str, keras.Model]:
    """The deconv notes' convolutional VAE as written: `build_cvae` with the ReLU on its
    single-filter first convolution."""
    return build_cvae(latent_dim=latent_dim, first_activation="relu", seed=seed)


NOTES_BUILDERS: dict[str, Callable[..., dict[str, keras.Model]]] = {
    "classifier": build_notes_classifier,
    "ae": build_notes_ae,
    "vae": build_notes_vae,
    "cvae": build_notes_cvae,
}
RECIPES: dict[str, dict[str, Callable[..., dict[str, keras.Model]]]] = {
    "shipped": BUILDERS,
    "notes": NOTES_BUILDERS,
    "world": BUILDERS,  # the shipped models; only the classifier's training differs
}
