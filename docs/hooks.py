"""MkDocs hook: mkdocstrings reads the package from a tree of links laid out as it installs.

The folders are mapped onto `onnxdigits.*` by pyproject's package-dir (`sdk/` is `onnxdigits`,
`export/` is `onnxdigits.export`, ...), which griffe's static loader cannot follow; and run as
the `mkdocs` script, it would find the `onnxdigits` console script beside it first. So, as
`.ci/lint` does for mypy, a temporary tree of links gives it the package as installed, and that
tree comes first on the Python handler's search path. Nothing is imported: the docstrings are
read from the source, so the site builds without TensorFlow, FastAPI or Ray.
"""

from __future__ import annotations

import shutil
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority

_trees: list[Path] = []


@event_priority(100)  # before mkdocstrings reads its handlers' settings
def on_config(config: Any) -> Any:
    """Lay out the package's tree of links and put it first on the handler's `paths`."""
    root = Path(config.config_file_path).resolve().parent
    tree = Path(tempfile.mkdtemp(prefix="onnxdigits-docs-"))
    _trees.append(tree)
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    for package, folder in sorted(pyproject["tool"]["setuptools"]["package-dir"].items()):
        target = tree.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for item in (root / folder).iterdir():
            if item.suffix == ".py" and not (target / item.name).exists():
                (target / item.name).symlink_to(item.resolve())
    handlers = config.plugins["mkdocstrings"].config.handlers
    handlers.setdefault("python", {}).setdefault("paths", []).insert(0, str(tree))
    return config


def on_shutdown() -> None:
    """Remove the trees of links."""
    while _trees:
        shutil.rmtree(_trees.pop(), ignore_errors=True)
