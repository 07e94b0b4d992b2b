"""The normaliser's cost per image, on one core, beside another version of it.

`python -m tests.sdk.cost --images OLD.py` times `load_image` (decode included) and its part
from the decoded grey image onward (`_digit`), in CPU time (time.process_time) per image, for
four kinds of input: MNIST digits as 28x28 PNGs, 280x280 RGBA canvases as the web page sends
them, and 1000x800 and 3000x2000 JPEG photos of a digit on a page. Each figure is the median
over `--rounds` fresh processes, pinned to one core with one thread each for numpy's BLAS and
OpenMP, that take turns (installed, --images, installed, ...), each process reporting the median
over its images after a warm-up image. Nothing here is asserted: speed is measured, not tested.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

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


def _child(module_path: str, files: list[str]) -> None:
    """In a fresh process: the median CPU ms per image of load_image and of _digit."""
    if module_path:
        import importlib.util

        spec = importlib.util.spec_from_file_location("onnxdigits._images_timed", module_path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        from onnxdigits import images as module  # type: ignore[no-redef]
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
    command = [sys.executable, "-m", "tests.sdk.cost", "--child", module_path]
    command += [str(f) for f in files]
    if hasattr(os, "sched_setaffinity"):
        command = ["taskset", "-c", str(core), *command]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Print the table of CPU ms per image, installed normaliser beside --images'."""
    parser = argparse.ArgumentParser(prog="python -m tests.sdk.cost", description=__doc__)
    parser.add_argument("--images", type=Path, help="another sdk/images.py to time beside")
    parser.add_argument("--rounds", type=int, default=7, help="fresh processes per version")
    parser.add_argument("--count", type=int, default=40, help="28x28 and canvas files each")
    parser.add_argument("--core", type=int, default=0, help="the core each process is pinned to")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], args.child[1:])
        return
    from tests.sdk.realistic import _machine

    versions = [("installed", "")] + ([("--images", str(args.images))] if args.images else [])
    print(_machine())
    print(f"CPU ms per image, median of {args.rounds} fresh processes each, one core, one thread")
    heads = " | ".join(f"{name} total | {name} from grey" for name, _ in versions)
    print(f"| input | {heads} |" + (" total ratio | from-grey ratio |" if args.images else ""))
    print("|---|" + "---:|" * (2 * len(versions) + (2 if args.images else 0)))
    with tempfile.TemporaryDirectory() as folder:
        inputs = make_inputs(Path(folder), args.count)
        for kind in KINDS:
            runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in versions}
            for _ in range(args.rounds):
                for name, path in versions:
                    runs[name].append(_run(path, inputs[kind], args.core))
            cells, medians = [], []
            for name, _ in versions:
                total = statistics.median(r["total"] for r in runs[name]) * 1000
                part = statistics.median(r["digit"] for r in runs[name]) * 1000
                medians.append((total, part))
                cells += [f"{total:.3f}", f"{part:.3f}"]
            if args.images:
                cells += [f"{medians[0][0] / medians[1][0]:.2f}x"]
                cells += [f"{medians[0][1] / medians[1][1]:.2f}x"]
            print(f"| {kind} | " + " | ".join(cells) + " |", flush=True)
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
