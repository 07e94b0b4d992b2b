"""The errors that onnxdigits raises: one base class and three kinds."""


class OnnxDigitsError(Exception):
    """Base class of every error that onnxdigits raises on purpose."""


class InputError(OnnxDigitsError, ValueError):
    """Images or latent points that the models cannot take."""


class ArtifactError(OnnxDigitsError):
    """A missing, unreadable, unknown or tampered artifacts set."""


class DeviceError(OnnxDigitsError):
    """A device that was asked for and cannot be had."""
