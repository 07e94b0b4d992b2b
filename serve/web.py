"""A static web site from an artifacts set: the served page's tools, run in the visitor's browser.

`write_site` lays out a folder that any static server can host (GitHub Pages, nginx,
`python -m http.server`):

    index.html, app.js, web.css   the page (serve/site/), its own script and its few extra rules
    style.css, page.js            the served page's stylesheet and the module of the parts both
                                  pages share (serve/static/), as they are
    site.json                     the models' files and tensors, the labels, the grid's points,
                                  each latent model's plane (the shipped sample's embeddings) and
                                  its per-class regions when the manifest has them
    models/<key>.onnx             the set's own ONNX files, each checked against its sha256
    ort/                          onnxruntime-web's WebAssembly build (`ORT_VERSION`)

The page runs the ONNX files with onnxruntime-web's WebAssembly backend, on one thread unless
the site is served cross-origin isolated. onnxruntime-web comes from npm when the site is
written (`npm pack`), or from a folder the caller names; nothing is loaded from a CDN.

This module imports numpy and the SDK only: writing a site needs no training code, as writing a
Triton repository (`onnxdigits.export.triton`) needs none.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from onnxdigits import __version__
from onnxdigits.errors import ArtifactError, InputError
from onnxdigits.files import fill_beside
from onnxdigits.manifest import Artifacts, ArtifactsLike, sha256_of
from onnxdigits.models import Encoder, grid_points
from onnxdigits.specs import LATENT_MODELS

from .errors import OrtError

# The same release as the onnxruntime the SDK is tested with, so that both run the same kernels.
ORT_VERSION = "1.31.1"
ORT_PACKAGE = "onnxruntime-web"
# The WebAssembly-only build: its script, its loader module and its binary (SIMD, threads when
# the page is cross-origin isolated). package.json goes along: it names the version and license.
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
# Their digests in that release: files from npm or from --ort are checked against them as they
# are copied, as the set's ONNX files are against the manifest.
ORT_SHA256 = {
    "ort.wasm.min.js": "b8a78c408c40da65fdc8ba0846f7b2948e92a4c6d6b23cc8e4165e428ad95443",
    "ort-wasm-simd-threaded.mjs": (
        "30ed0b5cd1182ede931fea448afb567d4dc705ec957af09f108a2be5f770dac3"
    ),
    "ort-wasm-simd-threaded.wasm": (
        "4b884c203b0fa48d057be3332c65513ff85aa3c5bddd6946acc0fab7ecda001d"
    ),
}
SITE_JSON = "site.json"
PAGE_FILES = ("index.html", "app.js", "web.css")  # from serve/site/
SHARED_FILES = ("style.css", "page.js")  # from serve/static/, shared with the served page
GRID = {"n": 15, "lo": 0.05, "hi": 0.95}  # the served page's grid
NPM_TIMEOUT_S = 300


def _ort_dir_files(folder: Path) -> Path:
    """The folder among `folder`, its dist/ and node_modules/onnxruntime-web/dist that holds
    every file of `ORT_FILES`."""
    if not folder.is_dir():
        what = "is not a directory" if folder.exists() else "does not exist"
        raise OrtError(
            f"--ort {folder} {what}; name a folder with onnxruntime-web's {', '.join(ORT_FILES)} "
            f"(its dist/, or an unpacked `npm pack {ORT_PACKAGE}@{ORT_VERSION}`), or leave --ort "
            "out to take them from npm"
        )
    candidates = [folder, folder / "dist", folder / "package" / "dist"]
    candidates.append(folder / "node_modules" / ORT_PACKAGE / "dist")
    for candidate in candidates:
        if all((candidate / name).is_file() for name in ORT_FILES):
            return candidate
    raise OrtError(
        f"--ort {folder} lacks onnxruntime-web's {', '.join(ORT_FILES)} (looked in it, its "
        f"dist/ and node_modules/{ORT_PACKAGE}/dist); name the folder that holds them"
    )


def _npm_pack(work: Path) -> Path:
    """Fetch onnxruntime-web `ORT_VERSION` with `npm pack` into `work`, unpack the files that the
    site needs, and return their folder."""
    npm = shutil.which("npm")
    if npm is None:
        raise OrtError(
            f"onnxruntime-web is needed and npm is not on PATH; install Node.js's npm (Debian: "
            f"apt-get install npm), or pass --ort DIR with {', '.join(ORT_FILES)} from "
            f"`npm pack {ORT_PACKAGE}@{ORT_VERSION}`"
        )
    spec = f"{ORT_PACKAGE}@{ORT_VERSION}"
    try:
        done = subprocess.run(
            [npm, "pack", spec, "--pack-destination", str(work), "--silent"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise OrtError(f"`npm pack {spec}` took over {NPM_TIMEOUT_S} s; try --ort DIR") from None
    tarballs = sorted(work.glob("*.tgz"))
    if done.returncode != 0 or len(tarballs) != 1:
        problem = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise OrtError(
            f"`npm pack {spec}` failed (exit {done.returncode}): {' '.join(problem)}; check npm's "
            "registry can be reached, or pass --ort DIR"
        )
    # Only these regular files are read out of the tarball, each to its own path.
    wanted = {f"package/dist/{name}" for name in ORT_FILES} | {"package/package.json"}
    dist = work / "package" / "dist"
    dist.mkdir(parents=True)
    with tarfile.open(tarballs[0]) as archive:
        for member in archive.getmembers():
            source = archive.extractfile(member) if member.name in wanted else None
            if source is not None:
                (work / member.name).write_bytes(source.read())
    missing = [name for name in ORT_FILES if not (dist / name).is_file()]
    if missing:
        raise OrtError(f"{spec} from npm lacks {', '.join(missing)}; pass --ort DIR")
    return dist


def _latent_classes(raw: Any, key: str) -> dict[str, Any] | None:
    """The per-digit regions of `key`'s latent space, as the manifest gives them, after checking
    what the page relies on: ten digits, each a mixture of 2-D Gaussians with non-negative
    weights and symmetric positive semi-definite covariances. None when the manifest has none.

    Raises:
        ArtifactError: regions of another form.
    """
    if raw is None:
        return None
    try:
        digits = sorted(raw["digits"], key=lambda region: region["digit"])
        if [region["digit"] for region in digits] != list(range(10)):
            raise ValueError("not one region for each digit 0..9")
        for region in digits:
            components = region["components"]
            weights = np.array([c["weight"] for c in components], np.float64)
            means = np.array([c["mean"] for c in components], np.float64)
            covs = np.array([c["cov"] for c in components], np.float64)
            if not len(components) or (weights < 0).any() or weights.sum() <= 0:
                raise ValueError(f"digit {region['digit']}: weights {weights.tolist()}")
            if means.shape != (len(components), 2) or covs.shape != (len(components), 2, 2):
                raise ValueError(f"digit {region['digit']}: means or covariances not 2-D")
            symmetric = np.allclose(covs, covs.transpose(0, 2, 1))
            if not symmetric or (np.linalg.eigvalsh(covs) < -1e-9).any():
                raise ValueError(f"digit {region['digit']}: a covariance is not symmetric PSD")
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(
            f"the latent_classes of {key!r} in the manifest are malformed: {exc}"
        ) from None
    return {"method": raw.get("method"), "digits": digits}


def _package_json(path: Path) -> dict[str, Any]:
    """An npm package.json's contents; empty when there is none or it is no JSON object."""
    try:
        about = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return about if isinstance(about, dict) else {}


def _site_json(store: Artifacts, models: dict[str, str]) -> dict[str, Any]:
    """What the page reads: files and tensors, labels, grid points, planes, class regions."""
    images, labels = store.sample()
    latent: dict[str, Any] = {}
    for model in LATENT_MODELS:
        encoder = Encoder(model, artifacts=store, device="cpu")
        z = encoder.embed(images)
        key = f"{model}.generator"
        latent[model] = {
            # float32 as a decimal of 9 digits, which reads back as the same float32
            "plane": {"z": [[float(f"{v:.9g}") for v in p] for p in z], "labels": labels.tolist()},
            "latent_classes": _latent_classes(store.json["models"][key].get("latent_classes"), key),
        }
    entries = {key: store.entry(key) for key in models}
    return {
        "onnxdigits": __version__,
        "onnxruntime_web": ORT_VERSION,
        "manifest_created": store.json.get("created"),
        "labels": [str(digit) for digit in range(10)],
        "models": {
            key: {
                "file": models[key],
                "sha256": entry.sha256,
                "bytes": entry.bytes,
                "inputs": entry.spec.input_names,
                "outputs": entry.spec.output_names,
            }
            for key, entry in entries.items()
        },
        "latent": latent,
        "grid": {
            **GRID,
            "points": grid_points(GRID["n"], GRID["lo"], GRID["hi"]).tolist(),  # type: ignore[arg-type]
        },
    }


def write_site(
    out: str | os.PathLike[str],
    *,
    artifacts: ArtifactsLike = None,
    ort: str | os.PathLike[str] | None = None,
) -> Path:
    """Write the static site of a set (see the module's docstring) and return its folder.

    Everything is written into a folder beside `out` first, which then replaces `out` by
    renames: `out` is either complete and new or as it was.

    Args:
        out: the site's folder: new, empty, or a site written before (it is replaced); its
            parent must exist.
        artifacts: an `Artifacts` set or its directory; None for the default set.
        ort: a folder with onnxruntime-web's `ORT_FILES` (or its dist/, or a node_modules
            holding it); None to fetch `ORT_VERSION` with npm.

    Raises:
        ArtifactError: a missing or tampered set (an ONNX file failing its sha256 included).
        OrtError: `ort` lacks the files, or npm is missing or fails.
        InputError: `out` is a file, a folder holding something other than a site, or its
            parent is missing.
    """
    store = Artifacts.of(artifacts)
    out = Path(out)
    if not out.parent.is_dir():
        raise InputError(f"cannot write {out}: the folder {out.parent} does not exist")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file; name a folder for the site")
    if out.is_dir() and any(out.iterdir()) and not (out / SITE_JSON).is_file():
        raise InputError(
            f"{out} holds files and no {SITE_JSON}: it is no site written before, and writing "
            "would replace it; name a new or empty folder"
        )
    with tempfile.TemporaryDirectory(prefix="onnxdigits-ort-") as scratch:
        ort_dist = _ort_dir_files(Path(ort)) if ort is not None else _npm_pack(Path(scratch))
        with fill_beside(out) as staging:
            _fill(staging, store, ort_dist)
    return out


def _fill(site: Path, store: Artifacts, ort_dist: Path) -> None:
    """Write the whole site into the empty folder `site`."""
    (site / "models").mkdir()
    files: dict[str, str] = {}
    for key in store.keys:
        relpath = f"models/{key}.onnx"
        (site / relpath).write_bytes(store.model_bytes(key))  # its sha256 checked as read
        files[key] = relpath
    page = resources.files("onnxdigits.serve")
    for name in PAGE_FILES:
        (site / name).write_bytes((page / "site" / name).read_bytes())
    for name in SHARED_FILES:
        (site / name).write_bytes((page / "static" / name).read_bytes())
    (site / "ort").mkdir()
    for name in ORT_FILES:
        data = (ort_dist / name).read_bytes()
        digest = sha256_of(data)
        if digest != ORT_SHA256[name]:
            raise OrtError(
                f"{ort_dist / name} is not {ORT_PACKAGE} {ORT_VERSION}'s (sha256 {digest[:12]}…, "
                f"expected {ORT_SHA256[name][:12]}…): the page is written for that release; "
                f"give its files (`npm pack {ORT_PACKAGE}@{ORT_VERSION}`), or leave --ort out"
            )
        (site / "ort" / name).write_bytes(data)
    for package in (ort_dist / "package.json", ort_dist.parent / "package.json"):
        # in a site's ort/, or beside an npm package's dist/: it names the version and license
        if _package_json(package).get("name") == ORT_PACKAGE:
            shutil.copyfile(package, site / "ort" / "package.json")
            break
    described = json.dumps(_site_json(store, files), separators=(",", ":"))
    (site / SITE_JSON).write_text(described, encoding="utf-8")
    # Unlike what onnxdigits.files writes (the umask's mode), a site is for publishing: it must
    # be readable by a web server's user whatever this user's umask.
    for path in site.rglob("*"):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    os.chmod(site, 0o755)


def site_size(site: str | os.PathLike[str]) -> dict[str, int]:
    """Bytes of a written site by part: models/, ort/, and the rest (page and site.json)."""
    sizes = {"models": 0, "ort": 0, "page": 0}
    root = Path(site)
    for path in root.rglob("*"):
        if path.is_file():
            part = path.relative_to(root).parts[0]
            sizes[part if part in sizes else "page"] += path.stat().st_size
    return sizes
