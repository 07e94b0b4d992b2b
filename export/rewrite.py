"""Exact rewrites of a converted ONNX graph, so that onnxruntime's fastest CPU kernels apply.

onnxruntime's CPU provider runs a convolution fastest in its blocked layout (NCHWc: channels in
blocks of 8 with AVX2, 16 with AVX-512). It pads a convolution's output channels to whole blocks
itself, but pools blocked only over whole blocks and reorders tensors between layouts around
anything else; a convolution whose input channels are neither fewer than a block nor whole
blocks is fed through a padding reorder or, in onnxruntime 1.31 on AVX2 for 10 inputs, left to
a slower unblocked kernel; and a transposed convolution is never blocked. Each rewrite below
computes the same function as the graph it replaces, up to the order of float32 sums; the export
checks every rewritten file against Keras as it checks a plain one.

- `flatten-permuted-dense`: tf2onnx's flatten of an NCHW tensor in Keras' NHWC order (a
  Transpose, and a Shape/Gather/Cast/Slice/Concat chain computing the Reshape's target) becomes
  one `Flatten`, the following dense layer's rows permuted to match.
- `deconv-as-conv`: a transposed convolution of stride 1 (which onnxruntime never blocks)
  becomes the convolution it equals: the kernel flipped, its channel axes swapped, padded by
  k - 1 - p.
- `pad-conv-channels:W1,W2,...`: a convolution whose output feeds only convolutions (or one dense
  layer after a flatten) through ReLU and max pooling gets zero filters and zero biases up to
  W output channels, and its readers get zero input slices (or zero rows). The padded channels
  hold exact zeros, since ReLU(0) = 0 and max pooling of zeros gives 0, and zero slices add
  nothing (for finite activations). W is the next multiple of 16 where that adds at most an
  eighth, else of 8: whole blocks for both vector widths where that is cheap, for AVX2 where not.

A graph without the expected pattern is left as it is: each rewrite applies only where its whole
pattern is found with constant weights, and `rewrite` names only the rewrites that applied.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import numpy_helper

FLATTEN = "flatten-permuted-dense"
DECONV = "deconv-as-conv"
PAD_CONV = "pad-conv-channels"
BLOCKS = (8, 16)  # onnxruntime's NCHWc block on x86-64: AVX2, AVX-512
MIN_PADDED = 8  # fewer channels are read directly (below any block): padding only adds work
_NCHW_TO_NHWC = [0, 2, 3, 1]
# Per-channel operators that keep a channel of zeros at zero, through which padding may pass.
_ZERO_PRESERVING = ("Relu", "MaxPool")


def rewrite(model: onnx.ModelProto) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """Apply every rewrite that the graph allows, in a fixed order.

    Args:
        model: a converted model; it is not changed.

    Returns:
        The rewritten model (checked with `onnx.checker.check_model(full_check=True)`) and
        the names of the rewrites applied, in order; the names are empty and the model an
        unchanged copy when none applied.

    Raises:
        onnx.checker.ValidationError: the rewritten model is not valid ONNX (a bug).
    """
    result = onnx.ModelProto()
    result.CopyFrom(model)
    applied: list[str] = []
    # Flatten first: padding then reaches through the new Flatten to the dense rows.
    if flatten_permuted_dense(result):
        applied.append(FLATTEN)
    if deconv_as_conv(result):
        applied.append(DECONV)
    widths = pad_conv_channels(result)
    if widths:
        applied.append(f"{PAD_CONV}:{','.join(str(w) for w in widths)}")
    if applied:
        del result.graph.value_info[:]  # optional, and stale where channels were padded
        onnx.checker.check_model(result, full_check=True)
    return result, tuple(applied)


def padded_width(channels: int) -> int:
    """The width `pad-conv-channels` gives a convolution of `channels` outputs (see above)."""
    if channels < MIN_PADDED:
        return channels
    small, large = (-(-channels // block) * block for block in BLOCKS)
    return large if (large - channels) * 8 <= channels else small


class _Graph:
    """A graph with the lookups that the rewrites need; edits keep its node order topological."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.initializers = {tensor.name: tensor for tensor in graph.initializer}
        self.outputs = {value.name for value in graph.output}

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        return [node for node in self.graph.node if name in node.input]

    def sole_consumer(self, name: str) -> onnx.NodeProto | None:
        """The one node that reads `name`, if exactly one does and `name` is no graph output."""
        users = self.consumers(name)
        if len(users) != 1 or name in self.outputs:
            return None
        return users[0]

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a float32 initializer; None for anything else."""
        tensor = self.initializers.get(name)
        if tensor is None or tensor.data_type != onnx.TensorProto.FLOAT:
            return None
        return numpy_helper.to_array(tensor)

    def set_constant(self, node: onnx.NodeProto, index: int, value: np.ndarray) -> None:
        """Give `node` a new float32 constant as input `index`; a shared one is left to the rest."""
        old = node.input[index]
        if len(self.consumers(old)) > 1 or list(node.input).count(old) > 1:
            node.input[index] = self.add_constant(f"{old}_rewritten", value)
            return
        tensor = numpy_helper.from_array(np.ascontiguousarray(value, dtype=np.float32), old)
        self.initializers[old].CopyFrom(tensor)

    def add_constant(self, stem: str, value: np.ndarray) -> str:
        """Add an initializer under a fresh name made from `stem`; return the name."""
        name = self.fresh(stem)
        self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        self.initializers[name] = self.graph.initializer[-1]
        return name

    def fresh(self, stem: str) -> str:
        """A tensor or node name that the graph does not use yet."""
        taken = {
            *self.initializers,
            *(name for node in self.graph.node for name in (*node.input, *node.output)),
            *(node.name for node in self.graph.node),
        }
        name, i = stem, 0
        while name in taken:
            i += 1
            name = f"{stem}_{i}"
        return name

    def replace(self, old: onnx.NodeProto, new: onnx.NodeProto) -> None:
        """Put `new` where `old` was."""
        nodes = list(self.graph.node)
        nodes[nodes.index(old)] = new
        del self.graph.node[:]
        self.graph.node.extend(nodes)

    def prune(self) -> None:
        """Drop the nodes whose outputs nothing reads, then the initializers nothing reads."""
        needed = set(self.outputs)
        kept: list[onnx.NodeProto] = []
        for node in reversed(self.graph.node):
            if any(name in needed for name in node.output):
                kept.append(node)
                needed.update(name for name in node.input if name)
        if len(kept) != len(self.graph.node):
            del self.graph.node[:]
            self.graph.node.extend(reversed(kept))
        for tensor in [t for t in self.graph.initializer if t.name not in needed]:
            self.graph.initializer.remove(tensor)
            del self.initializers[tensor.name]


def _ints(node: onnx.NodeProto, name: str, default: list[int]) -> list[int]:
    """An integer or integer-list attribute as a list; `default` when absent."""
    for attribute in node.attribute:
        if attribute.name == name:
            value = onnx.helper.get_attribute_value(attribute)
            return [int(v) for v in value] if isinstance(value, list) else [int(value)]
    return default


def _shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Every tensor's inferred shape (None for a dimension that is not a known number); empty
    if inference fails, so that nothing depending on a shape is rewritten."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError):
        return {}
    shapes: dict[str, list[int | None]] = {}
    for value in (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output):
        if value.type.tensor_type.HasField("shape"):
            shapes[value.name] = [
                dim.dim_value if dim.HasField("dim_value") else None
                for dim in value.type.tensor_type.shape.dim
            ]
    return shapes


def flatten_permuted_dense(model: onnx.ModelProto) -> bool:
    """Turn each NHWC flatten that feeds a dense layer into `Flatten`, permuting the dense rows.

    The pattern: x (N, C, H, W) -> Transpose(perm 0,2,3,1) -> Reshape to (N, C*H*W) -> MatMul
    with a constant (C*H*W, units), each the only reader of the one before. The Reshape's
    target may be computed at run time (tf2onnx's Shape chain, pruned once unused); shape
    inference must show that it is (N, C*H*W).

    Returns:
        Whether any flatten was rewritten (the model is changed in place).
    """
    graph = _Graph(model.graph)
    shapes = _shapes(model)
    changed = False
    for transpose in list(graph.graph.node):
        if transpose.op_type != "Transpose" or _ints(transpose, "perm", []) != _NCHW_TO_NHWC:
            continue
        dims = shapes.get(transpose.input[0], [])
        if len(dims) != 4 or None in dims[1:]:
            continue
        channels, height, width = (int(d or 0) for d in dims[1:])
        size = channels * height * width
        reshape = graph.sole_consumer(transpose.output[0])
        if (
            reshape is None
            or reshape.op_type != "Reshape"
            or reshape.input[0] != transpose.output[0]
        ):
            continue
        flat = shapes.get(reshape.output[0], [])
        if len(flat) != 2 or flat[1] != size:
            continue
        dense = graph.sole_consumer(reshape.output[0])
        if dense is None or dense.op_type != "MatMul" or dense.input[0] != reshape.output[0]:
            continue
        weights = graph.constant(dense.input[1])
        if weights is None or weights.shape[:1] != (size,) or weights.ndim != 2:
            continue
        # Row (h, w, c) of the NHWC order becomes row (c, h, w).
        rows = weights.reshape(height, width, channels, -1).transpose(2, 0, 1, 3)
        graph.set_constant(dense, 1, rows.reshape(size, -1))
        flatten = onnx.helper.make_node(
            "Flatten",
            [transpose.input[0]],
            [reshape.output[0]],
            name=graph.fresh(f"{reshape.name or 'flatten'}_nchw"),
            axis=1,
        )
        graph.replace(reshape, flatten)
        changed = True
    if changed:
        graph.prune()
    return changed


def _plain_deconv(graph: _Graph, node: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray | None]:
    """The weights and bias of a stride-1 2-D ConvTranspose that is a convolution; else raise
    LookupError."""
    weights = graph.constant(node.input[1]) if node.op_type == "ConvTranspose" else None
    if weights is None or weights.ndim != 4:
        raise LookupError("no 2-D ConvTranspose with constant weights")
    kernel = list(weights.shape[2:])
    known = {"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad", "output_padding"}
    if any(attribute.name not in known for attribute in node.attribute):
        raise LookupError("an output_shape, or an attribute of a later opset")
    auto_pad = [a.s for a in node.attribute if a.name == "auto_pad"]
    pads = _ints(node, "pads", [0, 0, 0, 0])
    if (
        auto_pad not in ([], [b"NOTSET"])
        or _ints(node, "group", [1]) != [1]
        or _ints(node, "strides", [1, 1]) != [1, 1]
        or _ints(node, "dilations", [1, 1]) != [1, 1]
        or _ints(node, "output_padding", [0, 0]) != [0, 0]
        or _ints(node, "kernel_shape", kernel) != kernel
        or len(pads) != 4
        or any(not 0 <= p < k for p, k in zip(pads, kernel + kernel))
    ):
        raise LookupError("not a plain stride-1 transposed convolution")
    if len(node.input) < 3 or not node.input[2]:
        return weights, None
    bias = graph.constant(node.input[2])
    if bias is None or bias.shape != (weights.shape[1],):
        raise LookupError("a bias that is not a constant of one value per output channel")
    return weights, bias


def deconv_as_conv(model: onnx.ModelProto) -> int:
    """Replace each stride-1 2-D transposed convolution by the convolution it equals.

    Transposed, y[o, i, j] = sum x[c, i - a + p, j - b + p] w[c, o, a, b]; with the kernel
    flipped and its channel axes swapped, w'[o, c, a, b] = w[c, o, k-1-a, k-1-b], that is a
    convolution padded by k - 1 - p, which onnxruntime runs blocked and fuses with a ReLU.

    Returns:
        How many were replaced (the model is changed in place).
    """
    graph = _Graph(model.graph)
    count = 0
    for node in list(graph.graph.node):
        try:
            weights, bias = _plain_deconv(graph, node)
        except LookupError:
            continue
        kernel = list(weights.shape[2:])
        pads = _ints(node, "pads", [0, 0, 0, 0])
        stem = node.name or "deconv"
        inputs = [
            node.input[0],
            graph.add_constant(
                f"{stem}_as_conv_W", weights[:, :, ::-1, ::-1].transpose(1, 0, 2, 3)
            ),
        ]
        if bias is not None:
            inputs.append(graph.add_constant(f"{stem}_as_conv_B", bias))
        conv = onnx.helper.make_node(
            "Conv",
            inputs,
            list(node.output),
            name=graph.fresh(f"{stem}_as_conv"),
            kernel_shape=kernel,
            pads=[k - 1 - p for p, k in zip(pads, kernel + kernel)],
        )
        graph.replace(node, conv)
        count += 1
    if count:
        graph.prune()
    return count


def _padding_readers(
    graph: _Graph, conv: onnx.NodeProto, channels: int
) -> list[tuple[onnx.NodeProto, int]] | None:
    """Where zero inputs must go if `conv` gets zero filters; None if some reader cannot take
    them.

    Returns:
        (node, axis) pairs: a convolution whose weights get zero input channels (axis 1), or a
        dense layer after `Flatten` whose weights get zero rows (axis 0).
    """
    name = conv.output[0]
    users = graph.consumers(name)
    while len(users) == 1 and users[0].op_type in _ZERO_PRESERVING and name not in graph.outputs:
        if len([output for output in users[0].output if output]) != 1:  # MaxPool's Indices
            return None
        name = users[0].output[0]
        users = graph.consumers(name)
    if not users or name in graph.outputs:
        return None
    readers: list[tuple[onnx.NodeProto, int]] = []
    for user in users:
        if list(user.input).count(name) != 1 or user.input[0] != name:
            return None
        if user.op_type == "Conv":
            weights = graph.constant(user.input[1])
            if _ints(user, "group", [1]) != [1] or weights is None:
                return None
            if weights.ndim != 4 or weights.shape[1] != channels:
                return None
            readers.append((user, 1))
        elif user.op_type == "Flatten" and _ints(user, "axis", [1]) == [1]:
            dense = graph.sole_consumer(user.output[0])
            if dense is None or dense.op_type != "MatMul" or dense.input[0] != user.output[0]:
                return None
            weights = graph.constant(dense.input[1])
            if weights is None or weights.ndim != 2 or weights.shape[0] % channels:
                return None
            readers.append((dense, 0))
        else:
            return None
    return readers


def _pad_conv(graph: _Graph, conv: onnx.NodeProto, width: int) -> bool:
    """Pad one convolution to `width` output channels, and its readers with zero inputs.

    Returns:
        Whether it was padded: False when it has `width` channels or more, or the pattern does
        not hold.
    """
    weights = graph.constant(conv.input[1])
    if weights is None or weights.ndim != 4 or _ints(conv, "group", [1]) != [1]:
        return False
    channels = weights.shape[0]
    if channels >= width:
        return False
    has_bias = len(conv.input) > 2 and bool(conv.input[2])
    bias = graph.constant(conv.input[2]) if has_bias else None
    if has_bias and (bias is None or bias.shape != (channels,)):
        return False  # a bias computed at run time cannot be padded
    readers = _padding_readers(graph, conv, channels)
    if readers is None:
        return False
    extra = width - channels
    graph.set_constant(conv, 1, np.pad(weights, ((0, extra), (0, 0), (0, 0), (0, 0))))
    if bias is not None:
        graph.set_constant(conv, 2, np.pad(bias, (0, extra)))
    for reader, axis in readers:
        inner = graph.constant(reader.input[1])
        assert inner is not None  # _padding_readers checked it
        if axis == 1:
            padded = np.pad(inner, ((0, 0), (0, extra), (0, 0), (0, 0)))
        else:  # rows in C, H, W order: each channel's H*W rows, then zero rows for new channels
            per_channel = inner.reshape(channels, -1, inner.shape[1])
            padded = np.pad(per_channel, ((0, extra), (0, 0), (0, 0))).reshape(-1, inner.shape[1])
        graph.set_constant(reader, 1, padded)
    return True


def pad_conv_channels(
    model: onnx.ModelProto, widths: Sequence[int | None] | None = None
) -> list[int]:
    """Pad convolutions with zero filters, and their readers with zero inputs (see above).

    Args:
        model: changed in place.
        widths: the new width of each convolution in graph order (None leaves one as it is);
            None gives each the width of `padded_width`.

    Returns:
        The widths of the convolutions padded, in graph order; empty if none was.
    """
    graph = _Graph(model.graph)
    convs = [node for node in graph.graph.node if node.op_type == "Conv"]
    padded: list[int] = []
    for i, conv in enumerate(convs):
        if widths is not None:
            width = widths[i] if i < len(widths) else None
        else:
            weights = graph.constant(conv.input[1])
            width = padded_width(weights.shape[0]) if weights is not None else None
        if width is not None and _pad_conv(graph, conv, width):
            padded.append(width)
    if padded:
        graph.prune()
    return padded
