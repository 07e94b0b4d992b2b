"""The contract between the exporter and the SDK: what each exported submodel takes and gives.

The exporter builds its TensorSpecs and validates its files from these descriptions, the SDK checks
every manifest against them; neither repeats the other's constants.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ATOL",
    "BATCH",
    "IMAGE_SHAPE",
    "LATENT_DIM",
    "LATENT_MODELS",
    "MANIFEST",
    "MODELS",
    "SAMPLE",
    "SCHEMA_VERSION",
    "SUBMODELS",
    "SubmodelSpec",
    "TensorSpec",
]

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
SAMPLE = "sample.npz"
BATCH = "batch"
IMAGE_SHAPE = (28, 28, 1)
ATOL = 1e-5


@dataclass(frozen=True)
class TensorSpec:
    """One named float32 tensor whose first axis is the dynamic batch axis."""

    name: str
    shape: tuple[int, ...]  # without the batch axis
    dtype: str = "float32"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "dtype": self.dtype, "shape": [BATCH, *self.shape]}


@dataclass(frozen=True)
class SubmodelSpec:
    """One exported submodel: its manifest key, inputs, outputs and parity tolerance."""

    key: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    latent_dim: int | None = None
    atol: float = ATOL

    @property
    def model(self) -> str:
        """The trained model it comes from: "vae" for "vae.encoder"."""
        return self.key.split(".")[0]

    @property
    def input_names(self) -> list[str]:
        return [tensor.name for tensor in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [tensor.name for tensor in self.outputs]

    def mismatch(self, inputs: list[str], outputs: list[str]) -> str | None:
        """Say how tensor names differ from the contract's, or None when they agree."""
        if (inputs, outputs) == (self.input_names, self.output_names):
            return None
        return (
            f"maps {inputs} to {outputs}, not {self.input_names} to {self.output_names} "
            f"as {self.key!r} should"
        )

    @property
    def file(self) -> str:
        return f"{self.key}.onnx"

    @property
    def reference(self) -> str:
        return f"references/{self.key}.npz"


LATENT_DIM = 2
_image = TensorSpec("image", IMAGE_SHAPE)
_z = TensorSpec("z", (LATENT_DIM,))

SUBMODELS: dict[str, SubmodelSpec] = {
    spec.key: spec
    for spec in (
        SubmodelSpec("classifier", (_image,), (TensorSpec("probs", (10,)),)),
        SubmodelSpec("ae.encoder", (_image,), (_z,), LATENT_DIM),
        SubmodelSpec("ae.generator", (_z,), (_image,), LATENT_DIM),
        *(
            spec
            for model in ("vae", "cvae")
            for spec in (
                SubmodelSpec(
                    f"{model}.encoder",
                    (_image,),
                    (TensorSpec("z_mean", (LATENT_DIM,)), TensorSpec("z_log_var", (LATENT_DIM,))),
                    LATENT_DIM,
                ),
                SubmodelSpec(f"{model}.generator", (_z,), (_image,), LATENT_DIM),
            )
        ),
    )
}

MODELS = ("classifier", "ae", "vae", "cvae")  # the trained models; a submodel's key starts so
LATENT_MODELS = MODELS[1:]
