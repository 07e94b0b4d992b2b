"""The errors that a scoring job raises on purpose."""

from onnxdigits.errors import OnnxDigitsError


class ScoreError(OnnxDigitsError):
    """Base class of what a scoring job raises on purpose."""


class OutputError(ScoreError):
    """The output path cannot be written: a missing folder, a directory in the way, and so on."""


class NothingScoredError(ScoreError):
    """Every input failed: not one image could be read, so nothing was written."""


class PoolError(ScoreError):
    """The Ray actor pool cannot start: the cluster lacks the free CPUs or GPUs it needs."""
