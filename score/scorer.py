"""Scoring chunks of rows: decode them with the SDK's normaliser, then run one SDK model."""

from __future__ import annotations

import json
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
from onnxdigits import Classifier, Encoder, InputError, __version__, load_image, to_batch
from onnxdigits.errors import unknown_model
from onnxdigits.manifest import ArtifactsLike
from onnxdigits.specs import IMAGE_SHAPE, LATENT_DIM, MODELS

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _decoders() -> ThreadPoolExecutor:
    """The threads that decode a chunk's images, one per core, made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            _pool = ThreadPoolExecutor(cores or os.cpu_count(), thread_name_prefix="decode")
        return _pool


def _forget_pool() -> None:
    """In a forked child the pool's threads are gone: make a new pool on first use there."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)

CLASSES = 10
# Lists name their items "element", as Parquet does, so that a schema survives a round trip.
PROBS = pa.list_(pa.field("element", pa.float32()), CLASSES)
Z = pa.list_(pa.field("element", pa.float32()), LATENT_DIM)
# Pillow names an image in memory by the address of its buffer; a message must read the same
# whichever process decoded the row, so the address goes.
_ADDRESS = re.compile(r"<_io\.BytesIO object at 0x[0-9a-fA-F]+>")


def output_schema(model: str) -> pa.Schema:
    """The schema of the Parquet output of `model`.

    A row's source (`file`, and `array` and `index` where the input has them), then for the
    classifier `label` and the ten class probabilities `probs`, for an encoder the embedding `z`
    (`z_mean` for the VAEs), then `true_label` where the input had one and `error` where the row
    could not be read (its results are then null).
    """
    results = [("label", pa.int64()), ("probs", PROBS)] if model == "classifier" else [("z", Z)]
    return pa.schema(
        [
            ("file", pa.string()),
            ("array", pa.string()),
            ("index", pa.int64()),
            *results,
            ("true_label", pa.int64()),
            ("error", pa.string()),
        ],
        metadata={"onnxdigits": json.dumps({"model": model, "version": __version__})},
    )


def read_pixels(raw: pa.Table) -> tuple[np.ndarray, list[str | None]]:
    """Bring a chunk of `inputs.RAW` rows to the models' input form.

    Pixels of npz rows are already in form; encoded images (Parquet cells, image files) go
    through `onnxdigits.load_image` and `onnxdigits.to_batch`.

    Returns:
        float32 (N, 28, 28, 1) in [0, 1], zero where a row failed, and each row's error or None.
    """
    count = raw.num_rows
    images = np.zeros((count, *IMAGE_SHAPE), np.float32)
    errors: list[str | None] = raw.column("error").to_pylist()
    pixels = raw.column("pixels").combine_chunks()
    has_pixels = pixels.is_valid().to_numpy(zero_copy_only=False)
    if has_pixels.any():
        images[has_pixels] = pixels.flatten().to_numpy().reshape(-1, *IMAGE_SHAPE)
    files = raw.column("file").to_pylist()
    data = raw.column("data").to_pylist()
    rows = [int(row) for row in np.flatnonzero(~has_pixels) if errors[row] is None]
    sources = [data[row] if data[row] is not None else files[row] for row in rows]
    # Decoding spends its time in Pillow and numpy, which release the GIL: one thread per core
    # decodes a chunk's images side by side.
    loaded = _decoders().map(_load, sources) if len(sources) > 1 else map(_load, sources)
    decoded_rows: list[int] = []
    decoded_images: list[np.ndarray] = []
    for row, image in zip(rows, loaded):
        if isinstance(image, str):
            errors[row] = image
        else:
            decoded_rows.append(row)
            decoded_images.append(image)
    if decoded_rows:
        images[decoded_rows] = to_batch(np.stack(decoded_images))
    return images, errors


def _load(source: str | bytes) -> np.ndarray | str:
    """One encoded image through `load_image`: its pixels, or why it cannot be read."""
    # Each file alone with no joint try first: Pillow decodes one file at a time anyway. The
    # CLI's _read_each does the same but cannot import this (score is an extra) and reads stdin.
    try:
        return load_image(source)
    except InputError as exc:
        return _ADDRESS.sub("the image bytes", str(exc))


class Scorer:
    """One SDK model, scoring chunks of `inputs.RAW` rows into rows of `output_schema(model)`.

    Args:
        model: "classifier", or the encoder of "ae", "vae" or "cvae".
        artifacts: an `Artifacts` set or its directory; None for the default set.
        device: as for `onnxdigits.Classifier`.

    Raises:
        InputError: an unknown model.
        ArtifactError, DeviceError: as the SDK's models raise them.
    """

    def __init__(
        self,
        model: str = "classifier",
        *,
        artifacts: ArtifactsLike = None,
        device: str | None = None,
    ) -> None:
        if model not in MODELS:
            raise InputError(unknown_model(model, MODELS))
        self.model = model
        self.runner: Classifier | Encoder = (
            Classifier(artifacts=artifacts, device=device)
            if model == "classifier"
            else Encoder(model, artifacts=artifacts, device=device)
        )
        self.schema = output_schema(model)

    def __call__(self, raw: pa.Table) -> pa.Table:
        """Score a chunk: decode its rows, run the model over those that decoded, and return
        one output row per input row, in order (results null where the row failed)."""
        images, errors = read_pixels(raw)
        failed = np.array([error is not None for error in errors], dtype=bool)
        mask = pa.array(failed)
        good = images[~failed]
        columns: list[pa.Array] = [
            raw.column("file").combine_chunks(),
            raw.column("array").combine_chunks(),
            raw.column("index").combine_chunks(),
        ]
        if isinstance(self.runner, Classifier):
            probs = np.zeros((len(images), CLASSES), np.float32)
            if len(good):
                probs[~failed] = self.runner.run_batch(good)[0]  # in form: normalised once
            columns += [
                pa.array(probs.argmax(axis=1).astype(np.int64), mask=failed),
                pa.FixedSizeListArray.from_arrays(
                    pa.array(probs.reshape(-1)), type=PROBS, mask=mask
                ),
            ]
        else:
            z = np.zeros((len(images), LATENT_DIM), np.float32)
            if len(good):
                z[~failed] = self.runner.run_batch(good)[0]
            columns.append(
                pa.FixedSizeListArray.from_arrays(pa.array(z.reshape(-1)), type=Z, mask=mask)
            )
        columns += [raw.column("true_label").combine_chunks(), pa.array(errors, pa.string())]
        return pa.Table.from_arrays(columns, schema=self.schema)
