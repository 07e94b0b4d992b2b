"""The documentation runs as written: every `>>>` line of the README and of the pages in docs/
prints what it says, the site builds with `mkdocs build --strict`, the README's links lead to
files that exist, and its first command installs the package into a fresh environment and writes
a digit grid."""

from __future__ import annotations

import doctest
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxdigits
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# Every page with `>>>` examples, and how many examples each holds: a page that loses examples
# fails its doctest test, and a page that gains its first without being listed here fails
# test_the_pages_with_examples_are_the_ones_listed.
EXAMPLES = {
    "README.md": 9,
    "docs/getting-started.md": 14,
    "docs/sdk.md": 14,
    "docs/security.md": 3,
}


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def test_the_pages_with_examples_are_the_ones_listed() -> None:
    found = {
        page.relative_to(ROOT).as_posix()
        for page in _pages()
        if re.search(r"^\s*>>> ", page.read_text(encoding="utf-8"), flags=re.M)
    }
    assert found == set(EXAMPLES)


@pytest.mark.parametrize("page", sorted(EXAMPLES))
def test_every_python_line_of_the_page_prints_what_it_says(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sample
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ONNXDIGITS_DEVICE", "cpu")
    # "my_digit.png": a test digit (a 0) as a user would have it, dark on a light page, larger
    image = Image.fromarray(255 - sample[0][3]).resize((112, 112), Image.Resampling.BICUBIC)
    image.save("my_digit.png")
    result = doctest.testfile(
        str(ROOT / page),
        module_relative=False,
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
        raise_on_error=False,
        verbose=False,
    )
    assert result.attempted == EXAMPLES[page], f"{page} has other >>> examples than listed"
    assert result.failed == 0, f"{result.failed} example(s) of {page} failed; see above"
    if "save_png(grid" in (ROOT / page).read_text(encoding="utf-8"):
        assert Image.open("grid.png").size == (420, 420)


def test_the_readme_links_to_files_that_exist() -> None:
    """The README is read on GitHub and PyPI, outside the site: its relative links must hold."""
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    relative = [link for link in links if "://" not in link]
    assert len(relative) >= 10, relative
    missing = [link for link in relative if not (ROOT / link).exists()]
    assert not missing, missing


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None,
    reason="mkdocs is not installed (the docs extra, which the test extra includes)",
)
def test_the_site_builds_strictly_with_the_api_reference(tmp_path: Path) -> None:
    """`mkdocs build --strict` fails on any warning: a broken link or anchor, a page left out of
    the navigation, an object mkdocstrings cannot find, a docstring it cannot parse."""
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    reference = (site / "reference" / "sdk" / "index.html").read_text(encoding="utf-8")
    for name in onnxdigits.__all__:
        assert f'id="onnxdigits.{name}"' in reference, name
    for page, name in [
        ("export", "onnxdigits.export.export"),
        ("serve", "onnxdigits.serve.app.create_app"),
        ("score", "onnxdigits.score.score"),
    ]:
        html = (site / "reference" / page / "index.html").read_text(encoding="utf-8")
        assert f'id="{name}"' in html, name
    # every page is built, and none fetches a font or a script from elsewhere
    for page in sorted(DOCS.rglob("*.md")):
        built = site / page.relative_to(DOCS).with_suffix("") / "index.html"
        if page.name == "index.md":
            built = site / page.relative_to(DOCS).parent / "index.html"
        html = built.read_text(encoding="utf-8")
        assert "fonts.googleapis" not in html and "fonts.gstatic" not in html, page


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
