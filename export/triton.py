"""A Triton Inference Server model repository from an artifacts set.

Each submodel becomes `REPO/<name>/config.pbtxt` and `REPO/<name>/1/model.onnx`: the name is the
submodel's key without dots ("vae.encoder" -> "vae_encoder"), the platform `onnxruntime_onnx`,
the inputs and outputs those of the manifest, the model file the set's own bytes after their
sha256 is checked. Triton batches requests itself (dynamic batching), up to `max_batch_size`,
which stays within the SDK's CUDA chunk: onnxruntime's CUDA provider fails inside cuDNN MaxPool
on a run of 65,536 images, and the SDK never gives it more than `CHUNK["cuda"]` at once.

Serving it (Triton's container; NVIDIA's GPU container toolkit for `--gpus`):

    docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 \\
        -v "$PWD/REPO:/models:ro" nvcr.io/nvidia/tritonserver:<yy.mm>-py3 \\
        tritonserver --model-repository=/models
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from onnxdigits import __version__
from onnxdigits.errors import InputError, check_count, unknown_model
from onnxdigits.files import staging_name, swap_in
from onnxdigits.manifest import Artifacts, ArtifactsLike, Entry
from onnxdigits.models import CHUNK
from onnxdigits.specs import MODELS, TensorSpec

PLATFORM = "onnxruntime_onnx"
MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.pbtxt"
VERSION = "1"
MAX_BATCH_SIZE = CHUNK["cuda"]
# How long Triton may hold a request to batch it with others: long enough for concurrent
# requests of single images to meet, short beside a model run.
QUEUE_DELAY_US = 100
# Triton's names of the manifest's dtypes.
DATA_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64"}


def triton_name(key: str) -> str:
    """The model's name in the repository: the submodel's key without dots."""
    return key.replace(".", "_")


def select(artifacts: Artifacts, models: Sequence[str] | None) -> list[str]:
    """The submodel keys to write, in the set's order.

    Args:
        artifacts: the set.
        models: submodel keys ("vae.encoder") or model names ("vae": its encoder and
            generator); None or empty for every submodel of the set.

    Raises:
        InputError: a name that is neither, or one that the set lacks.
    """
    keys = artifacts.keys
    if not models:
        return keys
    chosen: set[str] = set()
    for name in models:
        matches = [k for k in keys if k == name or (name in MODELS and k.split(".")[0] == name)]
        if not matches:
            models_in_set = sorted({k.split(".")[0] for k in keys})
            choices = unknown_model(name, models_in_set + keys)
            raise InputError(f"{choices} (those of the set at {artifacts.root})")
        chosen.update(matches)
    return [key for key in keys if key in chosen]


def _tensor(tensor: TensorSpec) -> str:
    try:
        data_type = DATA_TYPES[tensor.dtype]
    except KeyError:
        raise InputError(
            f"tensor {tensor.name!r} has dtype {tensor.dtype}, which Triton's "
            "configuration here does not map"
        ) from None
    dims = ", ".join(str(d) for d in tensor.shape)  # the batch axis is Triton's own
    return (
        f'  {{\n    name: "{tensor.name}"\n    data_type: {data_type}\n    dims: [ {dims} ]\n  }}'
    )


def model_config(entry: Entry, *, max_batch_size: int = MAX_BATCH_SIZE, gpu: bool = False) -> str:
    """The `config.pbtxt` of one submodel, in protobuf text format (Triton's `ModelConfig`).

    Args:
        entry: the submodel's manifest entry: its tensors come from `entry.spec`.
        max_batch_size: the largest batch Triton forms or accepts, 1..`MAX_BATCH_SIZE`.
        gpu: one instance on each GPU, with TF32 off (exact float32, as the SDK runs by
            default); else one instance on the CPU.

    Raises:
        InputError: a max_batch_size out of range.
    """
    max_batch_size = check_count("max_batch_size", max_batch_size)
    if max_batch_size > MAX_BATCH_SIZE:
        raise InputError(
            f"max_batch_size {max_batch_size} is above {MAX_BATCH_SIZE:,}, the most the SDK "
            "runs at once on CUDA (cuDNN MaxPool fails on 65,536 images)"
        )
    spec = entry.spec
    inputs = ",\n".join(_tensor(t) for t in spec.inputs)
    outputs = ",\n".join(_tensor(t) for t in spec.outputs)
    kind = "KIND_GPU" if gpu else "KIND_CPU"
    lines = [
        f"# {triton_name(spec.key)}: {spec.key} of an onnxdigits {__version__} set, "
        f"{entry.file} (sha256 {entry.sha256})",
        f'name: "{triton_name(spec.key)}"',
        f'platform: "{PLATFORM}"',
        f"max_batch_size: {max_batch_size}",
        f"input [\n{inputs}\n]",
        f"output [\n{outputs}\n]",
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {QUEUE_DELAY_US}\n}}",
        f"instance_group [\n  {{\n    count: 1\n    kind: {kind}\n  }}\n]",
    ]
    if gpu:
        # onnxruntime's CUDA provider allows TF32 by default; the SDK's outputs (within 1e-4 of
        # Keras) are exact float32.
        lines.append(
            "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n"
            '      {\n        name: "cuda"\n        parameters { key: "use_tf32" value: "0" }\n'
            "      }\n    ]\n  }\n}"
        )
    return "\n".join(lines) + "\n"


def write_repository(
    out: str | os.PathLike[str],
    *,
    artifacts: ArtifactsLike = None,
    models: Sequence[str] | None = None,
    max_batch_size: int = MAX_BATCH_SIZE,
    gpu: bool = False,
) -> list[Path]:
    """Write a Triton model repository for the submodels of a set.

    Everything is written into a directory beside `out` first. If `out` does not exist, that
    directory becomes it; if it does, each model's directory in it is swapped for the new one
    by renames, and the repository's other models stay as they are.

    Args:
        out: the repository's directory; its parent must exist.
        artifacts: an `Artifacts` set or its directory; None for the default set.
        models: see `select`; None for every submodel.
        max_batch_size, gpu: see `model_config`.

    Returns:
        The models' directories in `out`, in the set's order.

    Raises:
        InputError: an unknown model, a max_batch_size out of range, or an `out` that is a
            file or whose parent is missing.
        ArtifactError: a missing or tampered set (a model file failing its sha256 included);
            nothing is written then.
    """
    store = Artifacts.of(artifacts)
    keys = select(store, models)
    configs = {
        key: model_config(store.entry(key), max_batch_size=max_batch_size, gpu=gpu) for key in keys
    }
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: the folder {out.parent} does not exist")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; name a directory for the model repository")
    staging = staging_name(out)
    staging.mkdir()
    try:
        for key in keys:
            model = staging / triton_name(key)
            (model / VERSION).mkdir(parents=True)
            (model / VERSION / MODEL_FILE).write_bytes(store.model_bytes(key))  # sha256 checked
            (model / CONFIG_FILE).write_text(configs[key], encoding="utf-8")
        if not out.exists():
            swap_in(staging, out)  # a new repository goes in whole
        else:  # in an existing one, each model is replaced and the others are kept
            for key in keys:
                swap_in(staging / triton_name(key), out / triton_name(key))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / triton_name(key) for key in keys]
