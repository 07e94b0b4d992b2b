"""The errors that the service and the static site raise on purpose."""

from onnxdigits.errors import InputError, OnnxDigitsError

__all__ = ["AbsentModelError", "OrtError", "ServeError"]


class ServeError(OnnxDigitsError):
    """Base class of what `onnxdigits.serve` raises on purpose."""


class AbsentModelError(ServeError, InputError):
    """The artifacts set in use has no such model (a set made by `train --models`): 404."""


class OrtError(ServeError):
    """onnxruntime-web's files cannot be had: no npm and no folder, or a folder without them."""
