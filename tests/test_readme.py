"""The README's snippets run as written: its `>>>` lines print what it says, and its first command
installs the package into a fresh environment and writes a digit grid."""

from __future__ import annotations

import doctest
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_every_python_line_of_the_readme_prints_what_it_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ONNXDIGITS_DEVICE", "cpu")
    # "my_digit.png": a test digit as a user would have it, dark on a light page, larger
    image = Image.fromarray(255 - sample[0][3]).resize((112, 112), Image.Resampling.BICUBIC)
    image.save("my_digit.png")
    result = doctest.testfile(
        str(README),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        raise_on_error=False,
        verbose=False,
    )
    assert result.attempted >= 10, "the README lost its >>> examples"
    assert result.failed == 0, f"{result.failed} README example(s) failed; see above"
    assert Image.open("grid.png").size == (420, 420)


def _first_command() -> str:
    """The README's one command for a digit grid from a fresh clone."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Two commands") :]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    command = blocks[0].strip()
    assert "pip install ." in command and "onnxdigits grid" in command, command
    return command


def test_the_first_command_makes_a_grid_from_a_fresh_copy(tmp_path: Path) -> None:
    """A copy of the project's files, as a clone has them, and the README's command run as is."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    clone = tmp_path / "onnxdigits"
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            target = clone / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    command = _first_command().replace("python3 ", f"{sys.executable} ", 1)
    result = subprocess.run(
        command, shell=True, cwd=clone, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    grid = np.asarray(Image.open(clone / "grid.png"))
    assert grid.shape == (420, 420) and grid.max() > grid.min()
    # the copy installed as a plain package, with the shipped set as its package data
    site = subprocess.run(
        [str(clone / ".venv/bin/python"), "-c", "import onnxdigits; print(onnxdigits.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "site-packages" in site
