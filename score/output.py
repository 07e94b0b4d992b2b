"""Where a scoring job writes: the output path's checks, and writing it all or nothing.

Output is written under a temporary name beside the target (`.STEM.tmp-XXXXXXXX.SUFFIX`) and renamed
into place only when complete (`onnxdigits.files.write_beside` and `fill_beside`), so a failed or
interrupted job leaves what was there before.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from onnxdigits.files import new_file, staging_name

from .errors import OutputError
from .inputs import PARQUET_SUFFIXES

PARQUET_SUFFIX = ".parquet"


def check_output(
    out: str | os.PathLike[str],
    *,
    directory: bool = False,
    inputs: Sequence[str | os.PathLike[str]] = (),
) -> Path:
    """Check, before any input is read, that `out` can be written.

    Args:
        out: the Parquet file to write (named .parquet or .pq), or with `directory` the
            directory of Parquet files.
        directory: the output is a directory (Ray's `write_parquet`). An existing directory is
            replaced only if it holds nothing but Parquet files, as an earlier job left it.
        inputs: the job's inputs, none of which the output may replace.

    Returns:
        `out` as a Path.

    Raises:
        OutputError: its folder is missing or cannot be written into, a file's name does not
            end in .parquet or .pq, it is one of the inputs (or with `directory` holds one), or
            something else is in the way.
    """
    out = Path(out)
    for item in inputs:
        if _replaces(out, Path(item), directory):
            raise OutputError(
                f"{out} would replace the input {os.fspath(item)}; name another output"
            )
    parent = out.parent
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise OutputError(f"cannot write {out}: the folder {parent} {what}; create it first")
    if out.is_dir() and not out.is_symlink():
        if not directory:
            raise OutputError(
                f"{out} is a directory; name the Parquet file to write, "
                f"such as {out / ('scores' + PARQUET_SUFFIX)}"
            )
        others = sorted(
            p.name for p in out.iterdir() if not (p.is_file() and p.suffix == PARQUET_SUFFIX)
        )
        if others:
            raise OutputError(
                f"{out} holds more than Parquet files ({', '.join(others[:3])}); "
                "name a new directory or remove it"
            )
    elif out.exists() and not out.is_file():
        raise OutputError(f"{out} is neither a file nor a directory; name another output")
    if not directory and out.suffix.lower() not in PARQUET_SUFFIXES:
        raise OutputError(
            f"score writes Parquet, not {out.suffix or 'a file without a suffix'}: name the "
            f"output {out.with_suffix(PARQUET_SUFFIX).name} (or another .parquet or .pq file)"
        )
    try:
        new_file(staging_name(out)).unlink()
    except OSError as exc:
        raise OutputError(f"cannot write into {parent}: {exc.strerror or exc}") from None
    return out


def _replaces(out: Path, item: Path, directory: bool) -> bool:
    """Whether writing `out` would replace the input `item`: the same file (through links or
    another spelling), or with `directory` the output directory or a file inside it."""
    try:
        if out.exists() and item.exists() and os.path.samefile(out, item):
            return True
    except OSError:
        return False
    return directory and out.resolve() in item.resolve().parents
