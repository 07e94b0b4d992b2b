"""The exact graph rewrites: each one's outputs on real digits, where it applies and where it must
not, the manifest's record of them, and the set rewriter's all-or-nothing writes."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxdigits
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper
from onnxdigits.cli import main
from onnxdigits.errors import ArtifactError
from onnxdigits.export import artifacts as writer
from onnxdigits.export.artifacts import rewrite_set
from onnxdigits.export.convert import to_onnx
from onnxdigits.export.errors import AtolError, ExportError, LabelError
from onnxdigits.export.rewrite import (
    DECONV,
    FLATTEN,
    deconv_as_conv,
    flatten_permuted_dense,
    pad_conv_channels,
    padded_width,
    rewrite,
)
from onnxdigits.export.validate import compare
from onnxdigits.specs import SUBMODELS
from onnxdigits.verify import check_parity

from tests.conftest import flip_byte

CLASSIFIER_REWRITES = (FLATTEN, "pad-conv-channels:16,24,128")
EXPECTED = {  # what `rewrite` applies to each submodel of the contract's architectures
    "classifier": CLASSIFIER_REWRITES,
    "ae.encoder": (),
    "ae.generator": (),
    "vae.encoder": (),
    "vae.generator": (),
    "cvae.encoder": (FLATTEN,),
    "cvae.generator": (DECONV,),
}


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _run(model: onnx.ModelProto | bytes, feed: np.ndarray) -> list[np.ndarray]:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: feed})


def _inputs(key: str, images: np.ndarray) -> np.ndarray:
    """Real digits for an encoder or the classifier; the 15x15 grid and prior draws otherwise."""
    if SUBMODELS[key].input_names[0] == "image":
        return onnxdigits.to_batch(images)
    prior = np.random.default_rng(0).standard_normal((256, 2), dtype=np.float32)
    return np.concatenate([onnxdigits.grid_points(15), prior])


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    """A model of opset 17 in an IR version that onnxruntime reads (onnx's default may be newer)."""
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _op_types(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


def _conv_widths(model: onnx.ModelProto) -> list[tuple[int, int]]:
    """(output channels, input channels) of each Conv, in graph order."""
    weights = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return [weights[n.input[1]][:2] for n in model.graph.node if n.op_type == "Conv"]


@pytest.fixture(scope="module")
def plain_set(trained, digits, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny trained models exported as plain tf2onnx conversions, without any rewrite."""
    _, submodels = trained
    out = tmp_path_factory.mktemp("plain") / "set"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(writer, "rewrite", lambda model: (model, ()))
        writer.export(submodels, out, digits["x_test"], digits["y_test"])
    return out


def _plain(plain_set: Path, key: str) -> onnx.ModelProto:
    return onnx.load(plain_set / SUBMODELS[key].file)


# --- each rewrite against the stored Keras outputs and the plain graph, on real digits ---------


@pytest.mark.parametrize("key", list(EXPECTED))
def test_each_rewrite_is_exact_on_real_digits(key: str, plain_set: Path, digits) -> None:
    plain = _plain(plain_set, key)
    rewritten, names = rewrite(plain)
    assert names == EXPECTED[key]
    spec = SUBMODELS[key]
    reference = onnxdigits.Artifacts(plain_set).reference(key)
    for batch in (1, len(reference[spec.input_names[0]])):
        outputs = _run(rewritten, reference[spec.input_names[0]][:batch])
        for name, got in zip(spec.output_names, outputs):
            diff = np.max(np.abs(got - reference[name][:batch]))
            assert diff <= spec.atol, f"{key} {name} vs Keras at batch {batch}"
    feed = _inputs(key, digits["x_test"])
    for name, got, before in zip(spec.output_names, _run(rewritten, feed), _run(plain, feed)):
        assert np.max(np.abs(got - before)) <= spec.atol, f"{key} {name} vs the plain graph"
        if name == "probs":
            assert (got.argmax(1) == before.argmax(1)).all()
    if not names:
        assert rewritten.SerializeToString() == plain.SerializeToString()


def test_the_shipped_set_holds_what_its_manifest_says_was_rewritten(artifacts) -> None:
    for key in artifacts.keys:
        recorded = artifacts.entry(key).rewrites
        _, names = rewrite(onnx.load_from_string(artifacts.model_bytes(key)))
        # What was applied applies no more; the rest of what a fresh export does still would.
        assert tuple(sorted(recorded + names)) == tuple(sorted(EXPECTED[key])), key
    if "pad-conv-channels:16,24,128" in artifacts.entry("classifier").rewrites:
        model = onnx.load_from_string(artifacts.model_bytes("classifier"))
        assert _conv_widths(model) == [(16, 1), (24, 16), (128, 24)]


def test_the_classifier_flattens_once_and_pads_to_whole_blocks(plain_set: Path) -> None:
    plain = _plain(plain_set, "classifier")
    rewritten, _ = rewrite(plain)
    assert _conv_widths(plain) == [(10, 1), (20, 10), (120, 20)]
    assert _conv_widths(rewritten) == [(16, 1), (24, 16), (128, 24)]
    ops = _op_types(rewritten)
    assert "Transpose" not in ops and "Shape" not in ops and ops.count("Flatten") == 1
    assert len(ops) == len(_op_types(plain)) - 7  # Transpose, Shape, Gather, Cast, Slice, ...
    dense = {t.name: t for t in rewritten.graph.initializer}
    first = next(n for n in rewritten.graph.node if n.op_type == "MatMul")
    rows = numpy_helper.to_array(dense[first.input[1]])
    assert rows.shape == (128 * 3 * 3, 200)
    assert not rows.reshape(128, 9, 200)[120:].any()  # the padded channels' rows are zeros


def test_the_cvae_generator_keeps_only_its_strided_deconvolution(plain_set: Path) -> None:
    plain = _plain(plain_set, "cvae.generator")
    rewritten, _ = rewrite(plain)
    assert _op_types(plain).count("ConvTranspose") == 3
    assert _op_types(rewritten).count("ConvTranspose") == 1  # the stride-2 one stays
    assert _op_types(rewritten).count("Conv") == 3


def test_the_padding_widths() -> None:
    widths = {1: 1, 7: 7, 8: 8, 10: 16, 16: 16, 20: 24, 24: 24, 64: 64, 100: 112, 120: 128}
    assert {channels: padded_width(channels) for channels in widths} == widths


def test_rewriting_again_changes_nothing(plain_set: Path) -> None:
    once, _ = rewrite(_plain(plain_set, "classifier"))
    twice, names = rewrite(once)
    assert names == () and twice.SerializeToString() == once.SerializeToString()


# --- graphs that do not have the expected shape are left as they are ----------------------------


def _conv_chain(between: str, padded_reader: str = "Conv") -> onnx.ModelProto:
    """x (N, 1, 8, 8) -> Conv 10 -> `between` -> `padded_reader` 4 -> y, random weights."""
    rng = np.random.default_rng(1)
    w1 = rng.normal(0, 0.3, (10, 1, 3, 3)).astype(np.float32)  # a trained network's scale
    w2 = rng.normal(0, 0.1, (4, 10, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node(between, ["c1"], ["a1"]),
        helper.make_node(padded_reader, ["a1", "w2"], ["y"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 8, 8])],
        [
            numpy_helper.from_array(w1, "w1"),
            numpy_helper.from_array(np.full(10, 0.5, np.float32), "b1"),
            numpy_helper.from_array(w2, "w2"),
        ],
    )
    return _model(graph)


def test_padding_passes_through_relu_and_is_exact() -> None:
    model = _conv_chain("Relu")
    rewritten, names = rewrite(model)
    assert names == ("pad-conv-channels:16",)
    x = np.random.default_rng(2).standard_normal((3, 1, 8, 8)).astype(np.float32)
    assert np.max(np.abs(_run(rewritten, x)[0] - _run(model, x)[0])) <= 1e-5


@pytest.mark.parametrize("between", ["Sigmoid", "Exp", "Neg"])
def test_padding_stops_where_zeros_would_not_stay_zeros(between: str) -> None:
    model = _conv_chain(between)  # sigmoid(0) = 0.5, exp(0) = 1: padded channels would count
    rewritten, names = rewrite(model)
    assert names == ()
    assert _conv_widths(rewritten) == [(10, 1), (4, 10)]


def test_padding_needs_a_reader_that_takes_zero_inputs() -> None:
    model = _conv_chain("Relu", padded_reader="ConvTranspose")
    assert pad_conv_channels(model) == []


def test_a_flatten_whose_transpose_is_read_twice_is_left(plain_set: Path) -> None:
    model = _plain(plain_set, "classifier")
    transpose = next(n for n in model.graph.node if n.op_type == "Transpose")
    model.graph.output.append(helper.make_tensor_value_info(transpose.output[0], 1, None))
    before = model.SerializeToString()
    assert not flatten_permuted_dense(model)
    assert model.SerializeToString() == before


def test_a_flatten_into_something_other_than_a_dense_layer_is_left(plain_set: Path) -> None:
    model = _plain(plain_set, "classifier")
    dense = next(n for n in model.graph.node if n.op_type == "MatMul")
    dense.op_type = "Mul"  # not a contraction: its rows cannot be permuted
    assert not flatten_permuted_dense(model)


@pytest.mark.parametrize(
    "attribute",
    [
        helper.make_attribute("strides", [2, 2]),
        helper.make_attribute("output_padding", [1, 1]),
        helper.make_attribute("output_shape", [16, 16]),
        helper.make_attribute("dilations", [2, 2]),
    ],
    ids=lambda a: a.name,
)
def test_only_plain_stride_1_deconvolutions_become_convolutions(attribute) -> None:
    w = np.random.default_rng(3).normal(0, 0.2, (2, 3, 3, 3)).astype(np.float32)
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [node],
        "deconv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [numpy_helper.from_array(w, "w")],
    )
    plain = _model(graph)
    assert deconv_as_conv(plain) == 1  # as built: stride 1, and exact (checked below)
    x = np.random.default_rng(4).standard_normal((2, 2, 8, 8)).astype(np.float32)
    reference = _model(graph)
    assert np.max(np.abs(_run(plain, x)[0] - _run(reference, x)[0])) <= 1e-5
    graph.node[0].attribute.append(attribute)
    odd = _model(graph)
    assert deconv_as_conv(odd) == 0
    assert _op_types(odd) == ["ConvTranspose"]


# --- the export: rewritten files, validated, and recorded in the manifest -----------------------


def test_the_export_records_what_it_rewrote(exported) -> None:
    run, manifest = exported
    for key, entry in manifest["models"].items():
        assert tuple(entry.get("rewrites", ())) == EXPECTED[key], key
        assert onnxdigits.Artifacts(run).entry(key).rewrites == EXPECTED[key]
    model = onnx.load(run / "classifier.onnx")
    assert _conv_widths(model) == [(16, 1), (24, 16), (128, 24)]


def test_the_exported_rewrites_are_exact_on_real_digits(trained, exported, digits) -> None:
    run, submodels = trained
    for key in ("classifier", "cvae.encoder", "cvae.generator"):
        spec = SUBMODELS[key]
        plain = to_onnx(submodels[key], spec)
        feed = _inputs(key, digits["x_test"])
        written = (run / spec.file).read_bytes()
        expected = submodels[key](feed, training=False)
        expected = expected if isinstance(expected, (list, tuple)) else [expected]
        for name, got, before, keras_out in zip(
            spec.output_names, _run(written, feed), _run(plain, feed), expected
        ):
            assert np.max(np.abs(got - np.asarray(keras_out))) <= spec.atol, f"{key} {name}"
            assert np.max(np.abs(got - before)) <= spec.atol, f"{key} {name}"
            if name == "probs":
                assert (got.argmax(1) == np.asarray(keras_out).argmax(1)).all()


def test_validation_refuses_other_labels_within_the_tolerance() -> None:
    spec = SUBMODELS["classifier"]  # a graph that gives every digit 0.1 for every class
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["image", "flat"], ["pixels"]),
            helper.make_node("MatMul", ["pixels", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probs"]),
        ],
        "uniform",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 28, 28, 1])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        [
            numpy_helper.from_array(np.array([-1, 784], np.int64), "flat"),
            numpy_helper.from_array(np.zeros((784, 10), np.float32), "w"),
        ],
    )
    data = _model(graph).SerializeToString()
    images = np.zeros((4, 28, 28, 1), np.float32)

    def nudged(feed: np.ndarray) -> dict[str, np.ndarray]:
        probs = np.full((len(feed), 10), 0.1, np.float32)
        probs[:, 7] += 1e-6  # well within 1e-5, but label 7 where the graph's argmax says 0
        return {"probs": probs}

    with pytest.raises(LabelError, match=r"- probs \(batch 4\): the label differs on 4 of 4"):
        compare(data, spec, images, (4,), nudged, "the test")
    assert compare(data, spec, images, (4,), lambda f: {"probs": np.full((len(f), 10), 0.1)}, "t")


# --- the set rewriter: checked, all or nothing ---------------------------------------------------


@pytest.fixture
def rewritable(plain_set: Path, tmp_path: Path) -> Path:
    """A private copy of the plain set, free to rewrite and damage."""
    target = tmp_path / "set"
    shutil.copytree(plain_set, target)
    return target


def test_the_set_rewriter_rewrites_checks_and_records(rewritable: Path, digits) -> None:
    before = _digest(rewritable)
    old = json.loads((rewritable / "manifest.json").read_text())
    entries = rewrite_set(rewritable, digits["x_test"], ["classifier", "cvae.generator"])
    assert {key: e.rewrites for key, e in entries.items()} == {
        "classifier": CLASSIFIER_REWRITES,
        "cvae.generator": (DECONV,),
    }
    after = _digest(rewritable)
    changed = {name for name in after if after[name] != before.get(name)}
    assert changed == {"manifest.json", "classifier.onnx", "cvae.generator.onnx"}
    assert set(after) == set(before)  # references, sample and the rest carried over
    new = json.loads((rewritable / "manifest.json").read_text())
    for key, entry in new["models"].items():
        data = (rewritable / entry["file"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
        if key not in entries:
            assert entry == old["models"][key]
    assert new["models"]["classifier"]["rewrites"] == list(CLASSIFIER_REWRITES)
    assert {k: v for k, v in new.items() if k != "models"} == {
        k: v for k, v in old.items() if k != "models"
    }
    assert all(result.ok for result in check_parity(rewritable, "cpu"))
    assert [p.name for p in rewritable.parent.iterdir()] == [rewritable.name]  # no staging left
    assert rewrite_set(rewritable, digits["x_test"]) == {
        "cvae.encoder": onnxdigits.Artifacts(rewritable).entry("cvae.encoder")
    }  # the rest: only the cvae encoder's flatten was left to do


def test_a_failing_check_leaves_the_set_unchanged(rewritable: Path, digits, monkeypatch) -> None:
    before = _digest(rewritable)
    real = writer.rewrite

    def drifting(model: onnx.ModelProto) -> tuple[onnx.ModelProto, tuple[str, ...]]:
        result, names = real(model)
        if "ConvTranspose" in _op_types(model):  # the second model of the two: one bias off
            conv = next(n for n in result.graph.node if n.op_type == "Conv")
            bias = next(t for t in result.graph.initializer if t.name == conv.input[2])
            bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 0.01, bias.name))
        return result, names

    monkeypatch.setattr(writer, "rewrite", drifting)
    with pytest.raises(AtolError, match="cvae.generator differs from the stored Keras outputs"):
        rewrite_set(rewritable, digits["x_test"], ["classifier", "cvae.generator"])
    assert _digest(rewritable) == before
    assert [p.name for p in rewritable.parent.iterdir()] == [rewritable.name]


def test_a_failing_write_leaves_the_set_unchanged(rewritable: Path, digits, monkeypatch) -> None:
    before = _digest(rewritable)

    def full(root: Path, manifest: object) -> None:
        raise OSError(28, "No space left on device", str(root))

    monkeypatch.setattr(writer, "_write_manifest", full)
    with pytest.raises(OSError, match="No space"):
        rewrite_set(rewritable, digits["x_test"], ["classifier"])
    assert _digest(rewritable) == before
    assert [p.name for p in rewritable.parent.iterdir()] == [rewritable.name]


@pytest.mark.parametrize(
    "damaged", ["classifier.onnx", "references/classifier.npz", "vae.encoder.onnx"]
)
def test_a_tampered_set_is_refused(rewritable: Path, digits, damaged: str) -> None:
    flip_byte(rewritable / damaged)
    before = _digest(rewritable)
    with pytest.raises(ArtifactError, match="fails its checksum"):
        rewrite_set(rewritable, digits["x_test"], ["classifier"])
    assert _digest(rewritable) == before


def test_unknown_models_are_refused(rewritable: Path, digits) -> None:
    with pytest.raises(ExportError, match="has no classifer"):
        rewrite_set(rewritable, digits["x_test"], ["classifer"])


def test_the_rewrite_command(rewritable: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        main, ["rewrite", "--artifacts", str(rewritable), "--models", "classifier"]
    )
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    assert line.startswith(f"{rewritable / 'classifier.onnx'}\t{', '.join(CLASSIFIER_REWRITES)}")
    again = runner.invoke(
        main, ["rewrite", "--artifacts", str(rewritable), "--models", "classifier"]
    )
    assert again.exit_code == 0 and again.stdout == ""
    assert "nothing to rewrite" in again.stderr
    copy = tmp_path / "tampered"
    shutil.copytree(rewritable, copy)
    flip_byte(copy / "references" / "cvae.generator.npz")
    failed = runner.invoke(main, ["rewrite", "--artifacts", str(copy)])
    assert failed.exit_code == 1
    assert failed.stderr.startswith("Error: ") and "fails its checksum" in failed.stderr
