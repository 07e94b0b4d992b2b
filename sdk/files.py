"""Opening files that a caller or a manifest names: regular files only, never blocking."""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

__all__ = ["open_regular", "read_regular"]

# Opening a FIFO for reading blocks until a writer comes; with O_NONBLOCK it returns at once, and
# the descriptor's fstat says what it is. On a regular file the flag changes nothing.
_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind_of(mode: int) -> str:
    """What a file of this `st_mode` is, in words: "a regular file", "a FIFO (named pipe)", ..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a regular file for reading in binary mode, refusing anything else without blocking.

    Args:
        path: the file's path.

    Returns:
        A binary file object, positioned at the start; the caller closes it.

    Raises:
        OSError: the file cannot be opened (FileNotFoundError, PermissionError, ...), or it is
            not a regular file (errno EINVAL, its `strerror` saying what it is: a directory, a
            FIFO, a device or a socket).
    """
    try:
        descriptor = os.open(path, _FLAGS)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO that POSIX refuses to open this way
            raise OSError(errno.EINVAL, "it is not a regular file", os.fspath(path)) from None
        raise
    try:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            what = _kind_of(mode)
            raise OSError(
                errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL,
                f"it is {what}, not a regular file",
                os.fspath(path),
            )
        if _FLAGS & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_regular(path: str | os.PathLike[str], limit: int | None = None) -> bytes:
    """Read a regular file whole (see `open_regular`), refusing one larger than `limit` bytes
    before reading any of it.

    Raises:
        OSError: as `open_regular`; or errno EFBIG when the file holds more than `limit` bytes.
    """
    with open_regular(path) as file:
        size = os.fstat(file.fileno()).st_size
        if limit is not None and size > limit:
            raise OSError(
                errno.EFBIG, f"it is {size:,} bytes, more than the {limit:,} allowed", str(path)
            )
        data = file.read() if limit is None else file.read(limit + 1)
    if limit is not None and len(data) > limit:  # it grew while being read
        raise OSError(errno.EFBIG, f"it holds more than the {limit:,} bytes allowed", str(path))
    return data
