"""The errors of training and export, in optimum's manner."""

from onnxdigits.errors import OnnxDigitsError


class ExportError(OnnxDigitsError):
    """Base class of what training and export raise on purpose."""


class DataError(ExportError):
    """MNIST could not be found or read."""


class ValidationError(ExportError, ValueError):
    """An exported file disagrees with its Keras model; the message lists every failure."""


class OutputMatchError(ValidationError):
    """The ONNX outputs are not the ones the contract names."""


class ShapeError(ValidationError):
    """An ONNX output's shape differs from Keras'."""


class AtolError(ValidationError):
    """An ONNX output differs from Keras' by more than the tolerance."""


class LabelError(ValidationError):
    """An ONNX classifier gives some input another label than the reference does."""
