"""The normaliser's cost per image, on one core, beside another version of it.

`onnxdigits bench normaliser --images OLD.py` times `load_image` (decode included) and its part
from the decoded grey image onward (`_digit`), in CPU time (time.process_time) per image, for
four kinds of input: MNIST digits as 28x28 PNGs, 280x280 RGBA canvases as the web page sends
them, and 1000x800 and 3000x2000 JPEG photos of a digit on a page. Each figure is the median
over `--rounds` fresh processes, pinned to one core with one thread each for numpy's BLAS and
OpenMP, that take turns (installed, --images, installed, ...), each process reporting the median
over its images after a warm-up image. Nothing here is asserted: speed is measured, not tested.
`load_normaliser` loads such another version (`bench damage --images` reads with one too).
"""

from __future__ import annotations

import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from . import machine, tables

KINDS = ("28x28 PNG", "280x280 RGBA canvas PNG", "1000x800 JPEG", "3000x2000 JPEG")
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def _canvas(digit: np.ndarray) -> bytes:
    big = np.asarray(Image.fromarray(digit).resize((280, 280), Image.Resampling.BICUBIC))
    rgba = np.zeros((280, 280, 4), np.uint8)
    rgba[..., 3] = big  # black ink where the canvas is opaque, transparent elsewhere
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def _photo(digit: np.ndarray, size: tuple[int, int], seed: int) -> bytes:
    """A dark digit a third of the page's height on a page lit unevenly, with sensor noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    side = height // 3
    ink = np.asarray(Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC))
    page = np.full((height, width), 215.0) + 40 * np.linspace(-0.5, 0.5, width)[None, :]
    top, left = rng.integers(0, height - side), rng.integers(0, width - side)
    page[top : top + side, left : left + side] -= ink * 0.75
    page += rng.normal(0, 5, page.shape)
    rgb = np.clip(page, 0, 255).astype(np.uint8)[..., None] * np.array([1.0, 0.97, 0.9])
    buffer = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def make_inputs(folder: Path, count: int) -> dict[str, list[Path]]:
    """Write `count` files of each kind (the last kinds fewer: they are large) into folder."""
    import onnxdigits

    digits = onnxdigits.Artifacts().sample()[0]
    makers = {
        KINDS[0]: lambda i: _encode_png(digits[i]),
        KINDS[1]: lambda i: _canvas(digits[i]),
        KINDS[2]: lambda i: _photo(digits[i], (1000, 800), i),
        KINDS[3]: lambda i: _photo(digits[i], (3000, 2000), i),
    }
    counts = {KINDS[0]: count, KINDS[1]: count, KINDS[2]: max(4, count // 8)}
    counts[KINDS[3]] = max(3, count // 20)
    paths: dict[str, list[Path]] = {}
    for number, (kind, make) in enumerate(makers.items()):
        paths[kind] = []
        for index in range(counts[kind] + 1):  # one more: the warm-up
            path = folder / f"{number}-{index:03d}.{'jpg' if 'JPEG' in kind else 'png'}"
            path.write_bytes(make(index))
            paths[kind].append(path)
    return paths


def _encode_png(digit: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(digit).save(buffer, format="PNG")
    return buffer.getvalue()


def load_normaliser(path: Path) -> ModuleType:
    """Another version of sdk/images.py (such as git HEAD's), loaded beside the installed one.

    Raises:
        FileNotFoundError: there is no file at `path`.
        ImportError: it is not a Python module.
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location("onnxdigits._images_under_test", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(module_path: str, files: list[str]) -> None:
    """In a fresh process: the median CPU ms per image of load_image and of _digit."""
    if module_path:
        module = load_normaliser(Path(module_path))
    else:
        from onnxdigits import images as module
    datas = [Path(f).read_bytes() for f in files]
    greys = [module._grey(module._open(data, "x")) for data in datas]
    module.load_image(datas[0])  # warm-up: caches, lazy imports, first allocations
    totals, parts = [], []
    for data, grey in zip(datas[1:], greys[1:]):
        start = time.process_time()
        module.load_image(data)
        totals.append(time.process_time() - start)
        start = time.process_time()
        module._digit(grey.copy())
        parts.append(time.process_time() - start)
    print(json.dumps({"total": statistics.median(totals), "digit": statistics.median(parts)}))


def _run(module_path: str, files: list[Path], core: int) -> dict[str, float]:
    env = {**os.environ, **{name: "1" for name in THREADS}}
    command = [sys.executable, "-m", "onnxdigits.bench.normaliser", "--child", module_path]
    command += [str(f) for f in files]
    if hasattr(os, "sched_setaffinity"):
        command = ["taskset", "-c", str(core), *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def cost_lines(
    images: Path | None = None, rounds: int = 7, count: int = 40, core: int = 0
) -> Iterator[str]:
    """The table of CPU ms per image, the installed normaliser beside the one in the copy of
    sdk/images.py at `images` when given: Markdown lines, each row as it is measured.

    Args:
        rounds: fresh processes per version; the median of theirs is shown.
        count: 28x28 and canvas files each (the photos fewer).
        core: the core each process is pinned to.
    """
    versions = [("installed", "")] + ([("--images", str(images))] if images else [])
    yield f"{machine.headline(machine.describe())}; load average {machine.load_average()}"
    yield f"CPU ms per image, median of {rounds} fresh processes each, one core, one thread"
    header = ["input"] + [
        f"{name} {what}" for name, _ in versions for what in ("total", "from grey")
    ]
    header += ["total ratio", "from-grey ratio"] if images else []
    yield from tables.markdown(header, [])
    with tempfile.TemporaryDirectory() as folder:
        inputs = make_inputs(Path(folder), count)
        for kind in KINDS:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in versions}
            for _ in range(rounds):
                for name, path in versions:
                    runs[name].append(_run(path, inputs[kind], core))
            cells, medians = [], []
            for name, _ in versions:
                total = statistics.median(r["total"] for r in runs[name]) * 1000
                part = statistics.median(r["digit"] for r in runs[name]) * 1000
                medians.append((total, part))
                cells += [f"{total:.3f}", f"{part:.3f}"]
            if images:
                cells += [tables.ratio(medians[0][0], medians[1][0])]
                cells += [tables.ratio(medians[0][1], medians[1][1])]
            yield tables.row_line([kind, *cells])
    yield f"load average at the end: {machine.load_average()}"


def main(argv: list[str] | None = None) -> None:
    """A child's entry point (`--child MODULE FILE...`); users run `onnxdigits bench normaliser`."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2 or argv[0] != "--child":
        sys.exit("run the benchmark as: onnxdigits bench normaliser")
    _child(argv[1], argv[2:])


if __name__ == "__main__":
    main()
