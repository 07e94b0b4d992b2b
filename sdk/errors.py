"""The errors that onnxdigits raises: one base class and three kinds; and the count check."""

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "ArtifactError",
    "DeviceError",
    "ImageTooLargeError",
    "InputError",
    "NoClassRegionsError",
    "OnnxDigitsError",
    "check_count",
    "unknown_model",
]


class OnnxDigitsError(Exception):
    """Base class of every error that onnxdigits raises on purpose."""


class InputError(OnnxDigitsError, ValueError):
    """Images or latent points that the models cannot take."""


class ImageTooLargeError(InputError):
    """An image that would decode to more pixels than it may (`onnxdigits.images.MAX_PIXELS`,
    or Pillow's own refusal): HTTP's 413 where the service meets it."""


class NoClassRegionsError(InputError):
    """A digit asked of a set whose manifest has no class regions for that model."""


class ArtifactError(OnnxDigitsError):
    """A missing, unreadable, unknown or tampered artifacts set."""


class DeviceError(OnnxDigitsError):
    """A device that was asked for and cannot be had."""


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """Return `value` as an int if it is an integer of at least `minimum`; else raise InputError.

    Booleans are refused: True is no count.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        least = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer of at least {minimum}"
        )
        raise InputError(f"{name} must be {least}; got {value!r}")
    return int(value)


def unknown_model(names: str | Sequence[str], known: Iterable[str]) -> str:
    """The one message for model names that are none of `known`, whichever error carries it:
    "unknown model 'gan'; choose one of ae, vae, cvae"."""
    names = [names] if isinstance(names, str) else list(names)
    listed = ", ".join(repr(name) for name in names)
    choices = ", ".join(dict.fromkeys(known))
    return f"unknown model{'s' if len(names) > 1 else ''} {listed}; choose one of {choices}"
