"""Parity of an exported file with its Keras model, output by output, in optimum's manner."""

from __future__ import annotations

import logging
from collections.abc import Callable

import keras
import numpy as np
from onnxdigits.session import create_session
from onnxdigits.specs import SubmodelSpec
from onnxdigits.verify import max_abs_diff

from .errors import AtolError, LabelError, OutputMatchError, ShapeError

log = logging.getLogger(__name__)
# Outputs whose argmax is a label: besides the tolerance, every label must agree.
LABEL_OUTPUTS = ("probs",)


def keras_outputs(
    model: keras.Model, spec: SubmodelSpec, inputs: np.ndarray
) -> dict[str, np.ndarray]:
    """Run a Keras submodel in inference mode and name its outputs as the contract does."""
    outputs = model(inputs, training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {
        tensor.name: keras.ops.convert_to_numpy(value)
        for tensor, value in zip(spec.outputs, outputs)
    }


def validate(
    onnx_bytes: bytes,
    model: keras.Model,
    spec: SubmodelSpec,
    inputs: np.ndarray,
    batches: tuple[int, ...] = (1, 256),
) -> dict[str, float]:
    """Compare an ONNX file, run by onnxruntime on the CPU, with its Keras model.

    Output names are compared first, then for each batch size each output's shape and values,
    and the labels a classifier's probabilities give. Every failure is collected before raising.

    Args:
        onnx_bytes: the exported file.
        model: the Keras submodel it came from.
        spec: the submodel's contract, with its tolerance `atol`.
        inputs: real inputs (digits, or latent points), float32, at least max(batches) of them.
        batches: the batch sizes to run.

    Returns:
        The max abs diff of each output over all batches.

    Raises:
        OutputMatchError, ShapeError, AtolError, LabelError: the file disagrees with Keras.
    """
    return compare(
        onnx_bytes, spec, inputs, batches, lambda feed: keras_outputs(model, spec, feed), "Keras"
    )


def compare(
    onnx_bytes: bytes,
    spec: SubmodelSpec,
    inputs: np.ndarray,
    batches: tuple[int, ...],
    expected: Callable[[np.ndarray], dict[str, np.ndarray]],
    against: str,
) -> dict[str, float]:
    """Compare an ONNX file, run by onnxruntime on the CPU, with expected outputs.

    As `validate`, with `expected(feed)` giving the outputs the file must reproduce for the first
    rows of `inputs`, and `against` naming where they come from in the messages.
    """
    session = create_session(onnx_bytes, "cpu")
    names = [output.name for output in session.get_outputs()]
    problem = spec.mismatch([value.name for value in session.get_inputs()], names)
    if problem:
        raise OutputMatchError(f"the ONNX graph of {spec.key} {problem}")
    wanted = spec.output_names
    diffs = dict.fromkeys(wanted, 0.0)
    shape_failures: list[str] = []
    atol_failures: list[str] = []
    label_failures: list[str] = []
    for batch in batches:
        feed = inputs[:batch]
        reference = expected(feed)
        got = dict(zip(names, session.run(names, {spec.input_names[0]: feed})))
        for name in wanted:
            if got[name].shape != reference[name].shape:
                shapes = f"shape {got[name].shape}, {against} {reference[name].shape}"
                shape_failures.append(f"- {name} (batch {batch}): {shapes}")
                continue
            diff = max_abs_diff(got[name], reference[name])
            diffs[name] = max(diffs[name], diff)
            if not diff <= spec.atol:  # NaN fails too
                atol_failures.append(
                    f"- {name} (batch {batch}): max diff = {diff:.1e} (atol {spec.atol:.0e})"
                )
            if name in LABEL_OUTPUTS:
                differ = int(np.sum(got[name].argmax(-1) != reference[name].argmax(-1)))
                if differ:
                    label_failures.append(
                        f"- {name} (batch {batch}): the label differs on {differ} of {batch}"
                    )
    if shape_failures:
        raise ShapeError(
            f"{spec.key} has outputs of the wrong shape:\n" + "\n".join(shape_failures)
        )
    if atol_failures:
        raise AtolError(f"{spec.key} differs from {against}:\n" + "\n".join(atol_failures))
    if label_failures:
        raise LabelError(
            f"{spec.key} labels inputs otherwise than {against}:\n" + "\n".join(label_failures)
        )
    for name, diff in diffs.items():
        log.info("%s - %s: max diff = %.1e (atol %.0e)", spec.key, name, diff, spec.atol)
    return diffs
