"""The SDK's stable names are the ones its modules list in `__all__`: every name that the other
packages (export, cli, serve, score, and any other folder pyproject maps) take from an SDK module
is listed there, so the surface cannot grow without saying so; and each package's errors derive
from its base and are exported."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import subprocess
import sys
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
    "package-dir"
]
SDK = ROOT / PACKAGE_DIRS["onnxdigits"]
SDK_MODULES = sorted(p.stem for p in SDK.glob("*.py") if p.stem != "__init__")
# The SDK's siblings: every other package that pyproject maps, whatever its folder.
SIBLINGS = sorted(folder for name, folder in PACKAGE_DIRS.items() if name != "onnxdigits")


def sdk_module(dotted: str) -> str | None:
    """ "onnxdigits" -> "onnxdigits", "onnxdigits.images" -> "onnxdigits.images"; else None."""
    parts = dotted.split(".")
    if parts == ["onnxdigits"] or (
        len(parts) == 2 and parts[0] == "onnxdigits" and parts[1] in SDK_MODULES
    ):
        return dotted
    return None


def names_taken(source: str) -> list[tuple[str, str, int]]:
    """(SDK module, name, line) for each name a file imports from an SDK module or reads as an
    attribute of one it imported (`from onnxdigits import images` ... `images.MAX_PIXELS`)."""
    tree = ast.parse(source)
    taken: list[tuple[str, str, int]] = []
    aliases: dict[str, str] = {}  # a local name -> the SDK module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            module = sdk_module(node.module)
            if module is None:
                continue
            for alias in node.names:
                submodule = sdk_module(f"{module}.{alias.name}")
                if module == "onnxdigits" and submodule is not None:
                    aliases[alias.asname or alias.name] = submodule
                else:
                    taken.append((module, alias.name, node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                module = sdk_module(alias.name)
                if module is not None and alias.asname:
                    aliases[alias.asname] = module
                elif module == "onnxdigits":
                    aliases["onnxdigits"] = module
    _attributes(tree, aliases, set(), taken)
    return taken


def _attributes(
    node: ast.AST, aliases: dict[str, str], shadowed: set[str], taken: list[tuple[str, str, int]]
) -> None:
    """Collect `alias.name` reads, except inside functions where a local shadows the alias."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        local = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
        local |= {
            n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
        }
        shadowed = shadowed | local
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in aliases
        and node.value.id not in shadowed
    ):
        module = aliases[node.value.id]
        if sdk_module(f"{module}.{node.attr}") is None:
            taken.append((module, node.attr, node.lineno))
    for child in ast.iter_child_nodes(node):
        _attributes(child, aliases, shadowed, taken)


def scan(sources: list[str]) -> list[list[tuple[str, str, int]]]:
    """`names_taken` of each source, run in a child interpreter. The suite's process has threads
    of its own (Ray's, servers') that may format a traceback at any moment, which parses source,
    and on CPython 3.11 two threads turning source into AST at once can fail with "AST
    constructor recursion depth mismatch" (cpython#106905)."""
    child = subprocess.run(
        [sys.executable, __file__],
        input=json.dumps(sources),
        capture_output=True,
        text=True,
        timeout=120,
    )
    if child.returncode != 0:
        pytest.fail(f"the scan failed:\n{child.stderr}")
    return [[(m, n, line) for m, n, line in found] for found in json.loads(child.stdout)]


def all_taken() -> dict[str, dict[str, list[str]]]:
    """Each SDK module's names taken by the siblings, and where."""
    paths = [path for folder in SIBLINGS for path in sorted((ROOT / folder).rglob("*.py"))]
    sources = [path.read_text(encoding="utf-8") for path in paths]
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path, taken in zip(paths, scan(sources), strict=True):
        for module, name, line in taken:
            found[module][name].append(f"{path.relative_to(ROOT)}:{line}")
    return found


def test_the_scan_sees_every_way_of_taking_a_name() -> None:
    source = (
        "import onnxdigits\nimport onnxdigits.models as m\nfrom onnxdigits import images, tile\n"
        "from onnxdigits.specs import MODELS\nfrom onnxdigits.export import train\n"
        "onnxdigits.Classifier; m.CHUNK; images.MAX_PIXELS\n"
        "def f(images): return images.tolist()\n"
    )
    assert sorted((module, name) for module, name, _ in scan([source])[0]) == [
        ("onnxdigits", "Classifier"),
        ("onnxdigits", "tile"),
        ("onnxdigits.images", "MAX_PIXELS"),
        ("onnxdigits.models", "CHUNK"),
        ("onnxdigits.specs", "MODELS"),
    ]


@pytest.mark.parametrize("module", ["onnxdigits", *(f"onnxdigits.{m}" for m in SDK_MODULES)])
def test_each_sdk_module_lists_names_it_has(module: str) -> None:
    imported = importlib.import_module(module)
    listed = imported.__dict__.get("__all__")
    assert isinstance(listed, list) and listed, f"{module} has no __all__"
    assert len(set(listed)) == len(listed), f"{module}.__all__ lists a name twice"
    assert [name for name in listed if not hasattr(imported, name)] == []


def test_every_name_the_siblings_take_from_the_sdk_is_listed() -> None:
    assert {"cli", "export", "score", "serve"} <= set(SIBLINGS)
    unlisted = []
    for module, names in sorted(all_taken().items()):
        listed = set(importlib.import_module(module).__all__)
        for name, where in sorted(names.items()):
            if name not in listed and not (name.startswith("__") and name.endswith("__")):
                unlisted.append(f"{module}.{name} ({', '.join(where)})")
    assert unlisted == [], "add these to __all__, or stop importing them:\n" + "\n".join(unlisted)


@pytest.mark.parametrize(
    ("package", "base", "exported_by"),
    [
        ("onnxdigits", "OnnxDigitsError", "onnxdigits.errors"),
        ("onnxdigits.export", "ExportError", "onnxdigits.export"),
        ("onnxdigits.score", "ScoreError", "onnxdigits.score"),
        ("onnxdigits.serve", "ServeError", "onnxdigits.serve"),
    ],
)
def test_each_packages_errors_derive_from_its_base_and_are_exported(
    package: str, base: str, exported_by: str
) -> None:
    errors = importlib.import_module(f"{package}.errors")
    root = getattr(errors, base)
    defined = [
        value
        for value in vars(errors).values()
        if inspect.isclass(value)
        and issubclass(value, Exception)
        and value.__module__ == errors.__name__
    ]
    assert root in defined
    assert [e.__name__ for e in defined if not issubclass(e, root)] == []
    listed = set(importlib.import_module(exported_by).__all__)
    assert sorted(e.__name__ for e in defined if e.__name__ not in listed) == []


if __name__ == "__main__":  # the child of `scan`: sources in on stdin, JSON out
    print(json.dumps([names_taken(source) for source in json.load(sys.stdin)]))
