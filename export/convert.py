"""Keras submodels to ONNX with tf2onnx, with the contract's tensor names and a batch axis."""

from __future__ import annotations

import keras
import onnx
from onnxdigits.specs import BATCH, SubmodelSpec

OPSET = 17


def to_onnx(model: keras.Model, spec: SubmodelSpec, opset: int = OPSET) -> onnx.ModelProto:
    """Convert a Keras submodel to ONNX.

    Args:
        model: the Keras model, taking and giving what `spec` describes, in that order.
        spec: the submodel's contract: input and output names and shapes.
        opset: the ONNX opset to target.

    Returns:
        The model, checked with `onnx.checker.check_model(full_check=True)`.
    """
    import tensorflow as tf
    import tf2onnx

    signature = [
        tf.TensorSpec((None, *tensor.shape), tf.float32, name=tensor.name) for tensor in spec.inputs
    ]

    def forward(*inputs):  # type: ignore[no-untyped-def]
        outputs = model(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
        return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]

    proto, _ = tf2onnx.convert.from_function(
        tf.function(forward, input_signature=signature), input_signature=signature, opset=opset
    )
    _name_io(proto.graph, spec)
    proto.producer_name = "onnxdigits"
    proto.doc_string = f"onnxdigits {spec.key}"
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _name_io(graph: onnx.GraphProto, spec: SubmodelSpec) -> None:
    """Give the graph's inputs and outputs the contract's names and a "batch" first axis."""
    renames = {
        value.name: tensor.name
        for values, tensors in ((graph.input, spec.inputs), (graph.output, spec.outputs))
        for value, tensor in zip(values, tensors, strict=True)
    }
    for node in graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for value in (*graph.input, *graph.output):
        value.name = renames.get(value.name, value.name)
        value.type.tensor_type.shape.dim[0].dim_param = BATCH
