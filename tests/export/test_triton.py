"""The Triton model repository: every config.pbtxt parsed with Triton's own ModelConfig protobuf
and checked against the real ONNX file beside it, byte identity with the set, atomic writes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxdigits
import onnxruntime as ort
import pytest
from click.testing import CliRunner, Result
from google.protobuf import text_format
from onnxdigits.cli import main
from onnxdigits.export.triton import MAX_BATCH_SIZE, write_repository
from onnxdigits.models import CHUNK
from onnxdigits.specs import SUBMODELS
from tritonclient.grpc import model_config_pb2 as mc

from tests.conftest import flip_byte

# The ONNX element types these models use, and Triton's names of them; with numpy's.
ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: mc.TYPE_FP32}
TRITON_TO_NUMPY = {mc.TYPE_FP32: np.float32}


def parse(path: Path) -> mc.ModelConfig:
    """Parse a config.pbtxt as Triton does; an unknown field or a wrong type raises."""
    return text_format.Parse(path.read_text(encoding="utf-8"), mc.ModelConfig())


def graph_tensors(values: list[onnx.ValueInfoProto]) -> list[tuple[str, int, list]]:
    """Name, element type and dims (an int, or the name of a symbolic axis) of graph tensors."""
    return [
        (
            value.name,
            value.type.tensor_type.elem_type,
            [
                d.dim_value if d.HasField("dim_value") else d.dim_param
                for d in value.type.tensor_type.shape.dim
            ],
        )
        for value in values
    ]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, artifacts: onnxdigits.Artifacts) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    write_repository(out, artifacts=artifacts)
    return out


def test_a_model_per_submodel_named_without_dots(repo: Path, artifacts) -> None:
    assert sorted(p.name for p in repo.iterdir()) == sorted(
        key.replace(".", "_") for key in artifacts.keys
    )
    for model in repo.iterdir():
        assert "." not in model.name
        files = sorted(str(p.relative_to(model)) for p in model.rglob("*") if p.is_file())
        assert files == ["1/model.onnx", "config.pbtxt"]
    assert not [p for p in repo.parent.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("key", sorted(SUBMODELS))
def test_each_config_matches_its_onnx_file(key: str, repo: Path, artifacts) -> None:
    name = key.replace(".", "_")
    config = parse(repo / name / "config.pbtxt")
    assert config.name == name
    assert config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == CHUNK["cuda"] == MAX_BATCH_SIZE == 16384
    assert config.HasField("dynamic_batching")
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (mc.ModelInstanceGroup.KIND_CPU, 1)
    ]

    graph = onnx.load(repo / name / "1" / "model.onnx").graph
    initializers = {init.name for init in graph.initializer}
    real = {
        "input": graph_tensors([v for v in graph.input if v.name not in initializers]),
        "output": graph_tensors(list(graph.output)),
    }
    for side, tensors in (("input", config.input), ("output", config.output)):
        assert [t.name for t in tensors] == [name for name, _, _ in real[side]], side
        for tensor, (_, elem_type, dims) in zip(tensors, real[side]):
            assert tensor.data_type == ONNX_TO_TRITON[elem_type]
            # With max_batch_size > 0, Triton's dims leave out the batch axis, which must be
            # symbolic in the file for Triton to batch.
            assert isinstance(dims[0], str) and dims[0]
            assert list(tensor.dims) == dims[1:]
    entry = artifacts.entry(key)
    assert [(t.name, tuple(t.dims)) for t in config.input] == [
        (t.name, t.shape) for t in entry.spec.inputs
    ]
    assert [(t.name, tuple(t.dims)) for t in config.output] == [
        (t.name, t.shape) for t in entry.spec.outputs
    ]


@pytest.mark.parametrize("key", sorted(SUBMODELS))
def test_each_model_file_is_the_sets_own(key: str, repo: Path, artifacts) -> None:
    entry = artifacts.entry(key)
    data = (repo / key.replace(".", "_") / "1" / "model.onnx").read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry.sha256
    assert data == (artifacts.root / entry.file).read_bytes()


@pytest.mark.parametrize("key", sorted(SUBMODELS))
def test_a_batch_at_the_configured_dims_runs(key: str, repo: Path) -> None:
    """The file, run as Triton's onnxruntime backend would: a batch of 3 at the config's dims."""
    model = repo / key.replace(".", "_")
    config = parse(model / "config.pbtxt")
    session = ort.InferenceSession(
        (model / "1" / "model.onnx").read_bytes(), providers=["CPUExecutionProvider"]
    )
    rng = np.random.default_rng(0)
    feed = {
        t.name: rng.random((3, *t.dims)).astype(TRITON_TO_NUMPY[t.data_type]) for t in config.input
    }
    outputs = session.run([t.name for t in config.output], feed)
    for tensor, value in zip(config.output, outputs):
        assert value.shape == (3, *tensor.dims) and value.dtype == TRITON_TO_NUMPY[tensor.data_type]


def test_gpu_instances_keep_float32_exact(tmp_path: Path, artifacts) -> None:
    out = tmp_path / "repo"
    write_repository(out, artifacts=artifacts, models=["classifier"], gpu=True, max_batch_size=64)
    config = parse(out / "classifier" / "config.pbtxt")
    assert config.max_batch_size == 64
    assert [g.kind for g in config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "cuda" and dict(accelerator.parameters) == {"use_tf32": "0"}


@pytest.mark.parametrize(
    "models, names",
    [
        (["vae"], ["vae_encoder", "vae_generator"]),
        (["classifier", "cvae.generator"], ["classifier", "cvae_generator"]),
    ],
)
def test_models_are_chosen_by_model_or_submodel(
    models: list[str], names: list[str], tmp_path: Path, artifacts
) -> None:
    written = write_repository(tmp_path / "repo", artifacts=artifacts, models=models)
    assert [p.name for p in written] == names
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == names


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"models": ["gan"]}, "unknown model 'gan'; choose one of "),
        ({"max_batch_size": 0}, "positive integer"),
        ({"max_batch_size": 16385}, "above 16,384"),
    ],
)
def test_bad_arguments_write_nothing(kwargs: dict, match: str, tmp_path: Path, artifacts) -> None:
    with pytest.raises(onnxdigits.InputError, match=match):
        write_repository(tmp_path / "repo", artifacts=artifacts, **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_repository_keeps_its_other_models(tmp_path: Path, artifacts) -> None:
    out = tmp_path / "repo"
    (out / "other" / "1").mkdir(parents=True)
    (out / "other" / "config.pbtxt").write_text('name: "other"\n')
    (out / "classifier" / "1").mkdir(parents=True)
    (out / "classifier" / "1" / "stale.onnx").write_bytes(b"old")
    write_repository(out, artifacts=artifacts, models=["classifier"])
    assert sorted(p.name for p in out.iterdir()) == ["classifier", "other"]
    assert (out / "other" / "config.pbtxt").read_text() == 'name: "other"\n'
    assert not (out / "classifier" / "1" / "stale.onnx").exists()
    assert parse(out / "classifier" / "config.pbtxt").name == "classifier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # nothing left beside it


def test_a_tampered_set_writes_nothing(artifacts_copy: Path, tmp_path: Path) -> None:
    flip_byte(artifacts_copy / "vae.generator.onnx")
    out = tmp_path / "out" / "repo"
    out.parent.mkdir()
    with pytest.raises(onnxdigits.ArtifactError, match="fails its checksum"):
        write_repository(out, artifacts=artifacts_copy)
    assert list(out.parent.iterdir()) == []


def test_out_must_be_a_directory_in_an_existing_folder(tmp_path: Path, artifacts) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(onnxdigits.InputError, match="is a file"):
        write_repository(tmp_path / "file", artifacts=artifacts)
    with pytest.raises(onnxdigits.InputError, match="does not exist"):
        write_repository(tmp_path / "missing" / "repo", artifacts=artifacts)


# --- the command ----------------------------------------------------------------------------


def test_export_triton_command(tmp_path: Path) -> None:
    out = tmp_path / "repo"
    result = run(
        "export-triton",
        "--out",
        str(out),
        "--models",
        "vae,classifier",
        "--max-batch",
        "256",
        "--gpu",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        str(out / "classifier"),
        str(out / "vae_encoder"),
        str(out / "vae_generator"),
    ]
    assert "docker run --rm --gpus all" in result.stderr and "tritonserver" in result.stderr
    assert parse(out / "vae_encoder" / "config.pbtxt").max_batch_size == 256


@pytest.mark.parametrize(
    "args, message",
    [
        (("--max-batch", "16385"), "Invalid value for '--max-batch'"),
        (("--models", "gan"), "unknown model 'gan'; choose one of "),
        ((), "Missing option '--out'"),
    ],
)
def test_export_triton_usage_errors(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    out = () if not args else ("--out", str(tmp_path / "repo"))
    result = run("export-triton", *out, *args)
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "repo").exists()


def test_export_triton_on_a_tampered_set_exits_1(artifacts_copy: Path, tmp_path: Path) -> None:
    flip_byte(artifacts_copy / "classifier.onnx")
    result = run(
        "export-triton", "--out", str(tmp_path / "repo"), "--artifacts", str(artifacts_copy)
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and "fails its checksum" in result.stderr
    assert not (tmp_path / "repo").exists()
