"""Opening files that a caller or a manifest names: regular files only, never blocking; and
writing a file or a directory whole or not at all.

Every package writes through `write_beside` and `fill_beside`: the new file or directory is made
under a temporary name beside its target (`.STEM.tmp-XXXXXXXX.SUFFIX`), filled, flushed to disk, and
renamed into place only when complete, so a failure or a kill leaves what was there before. A
directory that replaces another sets the old one aside first (`.NAME.old-XXXXXXXX/NAME`) and
removes it after; `put_back` restores one that a kill between the two renames left aside.

One permission policy: what a plain `open()` or `mkdir()` would give (0o666 or 0o777 less the
umask), so that a file written whole is the same file a direct write makes, and a user's
stricter umask is honoured rather than overridden.
"""

from __future__ import annotations

import errno
import glob
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "fill_beside",
    "new_file",
    "open_regular",
    "put_back",
    "read_regular",
    "staging_name",
    "swap_in",
    "write_beside",
]

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


def staging_name(target: str | os.PathLike[str]) -> Path:
    """A fresh temporary name beside `target`: `.STEM.tmp-XXXXXXXX.SUFFIX` in its folder, the
    suffix kept last for the writers that choose a format by it (Pillow, Keras)."""
    target = Path(target)
    return target.parent / f".{target.stem}.tmp-{secrets.token_hex(4)}{target.suffix}"


def new_file(path: str | os.PathLike[str]) -> Path:
    """Create an empty file that must not exist yet, with the mode a plain `open()` gives (0o666
    less the umask); return its path.

    Raises:
        OSError: it exists (FileExistsError), or cannot be created there.
    """
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return Path(path)


@contextmanager
def write_beside(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A new empty file beside `target` to write; it replaces `target` when the block completes.

    The file is created exclusively with the mode a plain `open()` gives (0o666 less the umask).
    On leaving the block it is flushed to disk and renamed over `target`; if the block raises
    (or a KeyboardInterrupt or SystemExit comes) it is removed and `target` is left as it was.

    Yields:
        The new file's path, to write to by name.

    Raises:
        OSError: the file cannot be created beside `target`, or the rename fails.
    """
    target = Path(target)
    staging = new_file(staging_name(target))
    try:
        yield staging
        _sync(staging)
        os.replace(staging, target)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    _sync_folder(target.parent)


@contextmanager
def fill_beside(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A new empty directory beside `target` to fill; it replaces `target` whole when the block
    completes.

    The directory is made with the mode a plain `mkdir()` gives (0o777 less the umask). On
    leaving the block every file in it is flushed to disk, then it is swapped in for `target`
    (see `swap_in`); if the block raises it is removed and `target` is left as it was.

    Yields:
        The new directory's path.

    Raises:
        OSError: the directory cannot be made beside `target`, or the swap fails.
    """
    staging = staging_name(target)
    staging.mkdir()
    try:
        yield staging
        swap_in(staging, Path(target))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def swap_in(new: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Put the file or directory `new` where `target` is, flushed to disk: a file over a file
    in one rename; otherwise in two, what `target` held being set aside first
    (`.NAME.old-XXXXXXXX/NAME`, which `put_back` restores after a kill between the renames) and
    removed once `new` is in place.

    Raises:
        OSError: a rename fails; `target` is then put back as it was.
    """
    new, target = Path(new), Path(target)
    _sync(new)
    if not new.is_dir() and not target.is_dir():  # a file replaces a file in one rename
        os.replace(new, target)
        _sync_folder(target.parent)
        return
    aside = None
    if target.exists() or target.is_symlink():
        aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, aside / target.name)
    try:
        os.replace(new, target)
    except BaseException:
        if aside is not None:
            os.replace(aside / target.name, target)
            shutil.rmtree(aside, ignore_errors=True)
        raise
    _sync_folder(target.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def put_back(target: str | os.PathLike[str]) -> bool:
    """Restore `target` from where `swap_in` set it aside, if a kill between its two renames
    left it missing; return whether it did."""
    target = Path(target)
    if target.exists() or target.is_symlink():
        return False
    name = glob.escape(target.name)
    for aside in sorted(target.parent.glob(f".{name}.old-*/{name}")):
        os.replace(aside, target)
        shutil.rmtree(aside.parent, ignore_errors=True)
        return True
    return False


def _sync(path: Path) -> None:
    """Flush a file, or every file and folder under a directory, to disk."""
    if path.is_dir() and not path.is_symlink():
        for folder, _, names in os.walk(path):
            for name in names:
                _sync(Path(folder, name))
            _sync_folder(Path(folder))
    elif path.is_file() and not path.is_symlink():
        with open(path, "r+b" if os.name == "nt" else "rb") as file:  # Windows flushes no reader
            os.fsync(file.fileno())


def _sync_folder(folder: Path) -> None:
    """Flush a folder's entries (a rename into it) to disk, where the platform can."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # Windows opens no directory this way; its renames need no flush
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse to fsync a directory; the rename stands
    finally:
        os.close(descriptor)
