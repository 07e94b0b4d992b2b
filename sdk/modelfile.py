"""What an ONNX file holds, read from its protobuf wire format without the onnx package: enough to
refuse one that is no model, or whose weights live in files outside it."""

from __future__ import annotations

from collections.abc import Iterator

from .errors import ArtifactError

__all__ = ["MAX_DEPTH", "check_model"]

# The messages of onnx.proto that can hold a tensor, and for each the fields that hold one of
# them: ModelProto's graph, training_info and functions; GraphProto's nodes, initializers and
# sparse initializers; a node's attributes; an attribute's tensors, sparse tensors and
# subgraphs; a sparse tensor's values and indices; a training step's graphs; a function's
# attributes and nodes. Every other field is skipped unread.
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "training": {1: "graph", 2: "graph"},
    "function": {7: "node", 11: "attribute"},
    "tensor": {},
}
_EXTERNAL_DATA = 13  # TensorProto.external_data: where the tensor's bytes are
_DATA_LOCATION = 14  # TensorProto.data_location: 1 is EXTERNAL
_GRAPH = 7  # ModelProto.graph
MAX_DEPTH = 64  # messages inside messages: far more than any model's subgraphs need


class _Malformed(Exception):
    pass


def check_model(data: bytes, where: str) -> None:
    """Check that `data` parses as an ONNX model with a graph, and that no tensor in it keeps its
    data outside the file.

    onnxruntime reads external data relative to the model's directory, or to the working
    directory when the model comes as bytes, as the SDK gives it: whatever file such a model
    names would be loaded as weights, past the manifest's checksums. An exported set never has
    any (its models are far below protobuf's 2 GB).

    Args:
        data: the file's bytes.
        where: the file's path, for messages.

    Raises:
        ArtifactError: the bytes are no protobuf message, have no graph, nest deeper than
            `MAX_DEPTH`, or a tensor has external data (its location is named).
    """
    try:
        has_graph = _walk(data, where)
    except _Malformed as exc:
        raise ArtifactError(
            f"{where} is not an ONNX model: {exc}; export the set again or restore it"
        ) from None
    if not has_graph:
        raise ArtifactError(
            f"{where} is not an ONNX model: it has no graph; export the set again or restore it"
        )


def _walk(data: bytes, where: str) -> bool:
    """Walk every message that can hold a tensor; return whether the model has a graph."""
    view = memoryview(data)
    stack = [("model", 0, len(view), 0)]
    has_graph = False
    while stack:
        kind, start, end, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _Malformed(f"its messages nest deeper than {MAX_DEPTH}")
        children = _CHILDREN[kind]
        for number, wire, value, (begin, finish) in _fields(view, start, end):
            if kind == "model" and number == _GRAPH and wire == 2:
                has_graph = True
            if kind == "tensor" and (
                (number == _DATA_LOCATION and wire == 0 and value == 1)
                or (number == _EXTERNAL_DATA and wire == 2)
            ):
                raise ArtifactError(
                    f"{where} keeps tensor data outside the file"
                    f"{_location(view, start, end)}; onnxdigits loads only self-contained "
                    "models: export the set again"
                )
            if wire == 2 and number in children:
                stack.append((children[number], begin, finish, depth + 1))
    return has_graph


def _fields(
    view: memoryview, start: int, end: int
) -> Iterator[tuple[int, int, int, tuple[int, int]]]:
    """Each field of the message in view[start:end]: its number, wire type, value (varints)
    and the span of its payload (length-delimited fields)."""
    position = start
    while position < end:
        key, position = _varint(view, position, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("a field numbered 0")
        value, span = 0, (position, position)
        if wire == 0:
            value, position = _varint(view, position, end)
        elif wire == 1:
            position += 8
        elif wire == 5:
            position += 4
        elif wire == 2:
            length, position = _varint(view, position, end)
            span = (position, position + length)
            position += length
        else:
            raise _Malformed(f"a field of wire type {wire}")
        if position > end:
            raise _Malformed("a field runs past the end of its message")
        yield number, wire, value, span


def _varint(view: memoryview, position: int, end: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if position >= end or shift > 63:
            raise _Malformed("a number runs past the end of its message")
        byte = view[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
        shift += 7


def _location(view: memoryview, start: int, end: int) -> str:
    """` (in "FILE")`: the external data's "location" entry, when the tensor gives one."""
    for number, wire, _, (begin, finish) in _fields(view, start, end):
        if number != _EXTERNAL_DATA or wire != 2:
            continue
        entry = {n: bytes(view[b:f]) for n, w, _, (b, f) in _fields(view, begin, finish) if w == 2}
        if entry.get(1) == b"location":  # StringStringEntryProto: key 1, value 2
            return f" (in {entry.get(2, b'').decode('utf-8', 'replace')!r})"
    return ""
