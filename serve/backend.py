"""The SDK objects that the service runs, and the backend that runs them in this process.

`Models` is what a host loads: the classifier and each latent model's encoder and generator, from
one artifacts set on one device. The plain host calls it through `LocalBackend`; Ray Serve's model
deployments each hold one (`deployments.py`). Its methods take arrays already in the models' input
form: the HTTP layer parses and normalises what clients send.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnxdigits import Artifacts, Classifier, Encoder, Generator
from onnxdigits.errors import InputError, unknown_model
from onnxdigits.manifest import ArtifactsLike
from onnxdigits.specs import LATENT_MODELS
from starlette.concurrency import run_in_threadpool

from .errors import AbsentModelError

SUBMODEL_PARTS = ("encoder", "generator")


def check_model(model: str) -> str:
    """Return `model` if it is a latent model; else raise InputError naming the choices."""
    if model not in LATENT_MODELS:
        raise InputError(unknown_model(model, LATENT_MODELS))
    return model


class Models:
    """The classifier and/or the encoders and generators of every latent model the set has,
    loaded once.

    A set that lacks some models (`train --models` makes such sets) is served with those it
    has; asking for another raises `AbsentModelError`, and `absent` lists them.
    Each object may be called from many threads at once (the SDK's promise).

    Args:
        artifacts: an `Artifacts` set or its directory; None for the default set.
        device: "auto", "cpu", "cuda" or "cuda:N"; None for `$ONNXDIGITS_DEVICE`, else "auto".
        classifier: load the classifier.
        latent: load the encoder and generator of ae, vae and cvae.

    Raises:
        ArtifactError: the set is missing, malformed or tampered with.
        DeviceError: the device cannot be had.
    """

    def __init__(
        self,
        artifacts: ArtifactsLike = None,
        device: str | None = None,
        *,
        classifier: bool = True,
        latent: bool = True,
    ) -> None:
        self.artifacts = Artifacts.of(artifacts)
        store = self.artifacts
        has = set(store.keys)
        wanted = (["classifier"] if classifier else []) + [
            f"{m}.{part}" for m in (LATENT_MODELS if latent else ()) for part in SUBMODEL_PARTS
        ]
        self.absent = [key for key in wanted if key not in has]
        self.classifier = (
            Classifier(artifacts=store, device=device)
            if classifier and "classifier" in has
            else None
        )
        models = LATENT_MODELS if latent else ()
        self.encoders = {
            m: Encoder(m, artifacts=store, device=device) for m in models if f"{m}.encoder" in has
        }
        self.generators = {
            m: Generator(m, artifacts=store, device=device)
            for m in models
            if f"{m}.generator" in has
        }
        self._sample_latent: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _absent(self, key: str) -> AbsentModelError:
        return AbsentModelError(
            f"the artifacts set in use ({self.artifacts.root}) has no {key}; this service has "
            f"{', '.join(self.served) or 'no model'} (GET /v1/models lists them)"
        )

    @property
    def served(self) -> list[str]:
        """The submodel keys loaded."""
        keys = ["classifier"] if self.classifier is not None else []
        keys += [f"{m}.encoder" for m in self.encoders]
        return keys + [f"{m}.generator" for m in self.generators]

    def _encoder(self, model: str) -> Encoder:
        if check_model(model) not in self.encoders:
            raise self._absent(f"{model}.encoder")
        return self.encoders[model]

    def _generator(self, model: str) -> Generator:
        if check_model(model) not in self.generators:
            raise self._absent(f"{model}.generator")
        return self.generators[model]

    def classify(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities of a batch (N, 28, 28, 1) in [0, 1]: float32 (N, 10).

        Raises:
            AbsentModelError: the set has no classifier.
        """
        if self.classifier is None:
            raise self._absent("classifier")
        return self.classifier.run_batch(batch)[0]

    def embed(self, model: str, batch: np.ndarray) -> np.ndarray:
        """The embedding of a batch (N, 28, 28, 1) by `model`'s encoder: float32 (N, 2)."""
        return self._encoder(model).run_batch(batch)[0]

    def decode(self, model: str, z: np.ndarray) -> np.ndarray:
        """Decode latent points (N, 2) with `model`'s generator: float32 (N, 28, 28) in [0, 1].

        Raises:
            InputError: points of the wrong shape, NaN or Inf (the SDK's checks).
            AbsentModelError: the set has no such generator.
        """
        return self._generator(model).decode(z)

    def grid(self, model: str, n: int, lo: float, hi: float) -> np.ndarray:
        """`model`'s latent manifold (`Generator.grid`): float32 (28 n, 28 n) in [0, 1]."""
        return self._generator(model).grid(n, lo, hi)

    def sample(
        self, model: str, count: int, seed: int | None, digit: int | None = None
    ) -> np.ndarray:
        """`count` digits from `model`'s prior, or of `digit` from its region
        (`Generator.sample`): float32 (count, 28, 28).

        Raises:
            NoClassRegionsError: a digit asked of a set without class regions.
        """
        return self._generator(model).sample(count, seed, digit=digit)

    def sample_latent(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        """The shipped sample's embeddings by `model` and its labels: float32 (N, 2), uint8 (N,).

        Computed once per model, for the web page's latent plane.
        """
        model = check_model(model)
        if model not in self._sample_latent:
            images, labels = self.artifacts.sample()
            self._sample_latent[model] = (self._encoder(model).embed(images), labels)
        return self._sample_latent[model]

    def describe(self) -> dict[str, Any]:
        """What each loaded submodel is, from the manifest, and where it really runs.

        Returns:
            The manifest's schema version, creation time and producer versions, and under
            "models", for each loaded submodel key: its file, sha256, size, tensors, export parity,
            test metrics, the device its session runs on and the providers it got; and under
            "absent", the submodels it would load that the set lacks.
        """
        manifest = self.artifacts.manifest
        loaded: list[Classifier | Encoder | Generator] = [*self.encoders.values()]
        loaded += self.generators.values()
        if self.classifier is not None:
            loaded.insert(0, self.classifier)
        described = {}
        for submodel in loaded:
            key = submodel.entry.spec.key
            entry = manifest.models[key]
            described[key] = {
                "file": entry.file,
                "sha256": entry.sha256,
                "bytes": entry.bytes,
                "inputs": [tensor.to_json() for tensor in entry.spec.inputs],
                "outputs": [tensor.to_json() for tensor in entry.spec.outputs],
                "parity": entry.parity.to_json() if entry.parity else None,
                "metrics": entry.metrics,
                "device": submodel.device,
                "providers": submodel.providers,
            }
        return {
            "schema_version": manifest.schema_version,
            "created": manifest.created,
            "producer": manifest.producer,
            "models": described,
            "absent": self.absent,
        }


class LocalBackend:
    """The service's models in this process; the blocking calls run on Starlette's thread pool.

    Args:
        models: the loaded models.
    """

    host = "uvicorn"

    def __init__(self, models: Models) -> None:
        self.models = models

    async def classify(self, batch: np.ndarray) -> np.ndarray:
        return await run_in_threadpool(self.models.classify, batch)

    async def embed(self, model: str, batch: np.ndarray) -> np.ndarray:
        return await run_in_threadpool(self.models.embed, model, batch)

    async def decode(self, model: str, z: np.ndarray) -> np.ndarray:
        return await run_in_threadpool(self.models.decode, model, z)

    async def grid(self, model: str, n: int, lo: float, hi: float) -> np.ndarray:
        return await run_in_threadpool(self.models.grid, model, n, lo, hi)

    async def sample(
        self, model: str, count: int, seed: int | None, digit: int | None = None
    ) -> np.ndarray:
        return await run_in_threadpool(self.models.sample, model, count, seed, digit)

    async def sample_latent(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        return await run_in_threadpool(self.models.sample_latent, model)

    async def describe(self) -> dict[str, Any]:
        return {"host": self.host, **await run_in_threadpool(self.models.describe)}

    async def ready(self) -> str | None:
        return None  # loaded before the app was made
