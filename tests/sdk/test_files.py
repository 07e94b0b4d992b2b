"""Writing whole or not at all (`onnxdigits.files`): the target after a completed write, after a
failure midway, and what is left beside it; the mode a plain open() or mkdir() would give."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from onnxdigits.files import fill_beside, put_back, staging_name, swap_in, write_beside


class Midway(Exception):
    """A failure after part of the new content is written."""


def _write_file(target: Path, fail: bool) -> None:
    with write_beside(target) as staging:
        staging.write_bytes(b"new, first half")
        if fail:
            raise Midway
        staging.write_bytes(b"new, whole")


def _fill_directory(target: Path, fail: bool) -> None:
    with fill_beside(target) as staging:
        (staging / "a").write_bytes(b"new, whole")
        if fail:
            raise Midway
        (staging / "b").mkdir()


def _read(target: Path) -> object:
    if target.is_dir():
        return {
            p.relative_to(target).as_posix(): p.is_dir() or p.read_bytes()
            for p in target.rglob("*")
        }
    return target.read_bytes()


def _make_old(target: Path, kind: str) -> None:
    if kind == "file":
        target.write_bytes(b"old")
    elif kind == "directory":
        target.mkdir()
        (target / "old").write_bytes(b"old")


WRITERS: dict[str, Callable[[Path, bool], None]] = {
    "file": _write_file,
    "directory": _fill_directory,
}
NEW = {"file": b"new, whole", "directory": {"a": b"new, whole", "b": True}}


@pytest.mark.parametrize("old", ["none", "file", "directory"])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_completed_write_replaces_the_target_and_leaves_nothing_beside(
    writer: str, old: str, tmp_path: Path
) -> None:
    target = tmp_path / "out.bin"
    _make_old(target, old)
    if writer == "file" and old == "directory":  # a file never replaces a directory
        with pytest.raises(IsADirectoryError):
            WRITERS[writer](target, False)
        assert _read(target) == {"old": b"old"}
    else:
        WRITERS[writer](target, False)
        assert _read(target) == NEW[writer]
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("old", ["none", "file", "directory"])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_write_failing_midway_leaves_the_target_as_it_was(
    writer: str, old: str, tmp_path: Path
) -> None:
    target = tmp_path / "out.bin"
    _make_old(target, old)
    before = _read(target) if old != "none" else None
    with pytest.raises(Midway):
        WRITERS[writer](target, True)
    assert (_read(target) if target.exists() else None) == before
    assert [p.name for p in tmp_path.iterdir()] == ([] if old == "none" else ["out.bin"])


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_the_mode_is_what_a_plain_open_or_mkdir_gives(
    writer: str, umask: int, tmp_path: Path
) -> None:
    previous = os.umask(umask)
    try:
        WRITERS[writer](tmp_path / "out", False)
        (tmp_path / "plain-file").write_bytes(b"")
        (tmp_path / "plain-dir").mkdir()
    finally:
        os.umask(previous)
    plain = tmp_path / ("plain-file" if writer == "file" else "plain-dir")
    assert (tmp_path / "out").stat().st_mode == plain.stat().st_mode
    assert (tmp_path / "out").stat().st_mode & 0o777 == (
        0o666 if writer == "file" else 0o777
    ) & ~umask


def test_the_staging_name_is_hidden_beside_the_target_with_its_suffix() -> None:
    first, second = staging_name("runs/scores.parquet"), staging_name("runs/scores.parquet")
    assert first != second
    for name in (first, second):
        assert name.parent == Path("runs") and name.suffix == ".parquet"
        assert name.name.startswith(".scores.tmp-")


@pytest.mark.parametrize("name", ["set", "set[1]*"])
def test_a_set_left_aside_between_the_renames_is_put_back(name: str, tmp_path: Path) -> None:
    target = tmp_path / name
    target.mkdir()
    (target / "old").write_bytes(b"old")
    aside = tmp_path / f".{name}.old-x1y2"
    aside.mkdir()
    shutil.move(target, aside / name)  # as `swap_in` leaves it when killed between its renames
    assert put_back(target)
    assert _read(target) == {"old": b"old"} and not aside.exists()
    assert not put_back(target)  # nothing is missing now


@pytest.mark.parametrize("old", ["file", "directory"])
def test_a_failed_rename_puts_the_target_back(old: str, tmp_path: Path) -> None:
    target = tmp_path / "out"
    _make_old(target, old)
    before = _read(target)
    with pytest.raises(FileNotFoundError):
        swap_in(tmp_path / "missing", target)
    assert _read(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
