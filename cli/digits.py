"""The digit commands: grids, samples, labels, embeddings, the latent scatter, info and verify."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
from onnxdigits import __version__

from .main import (
    artifacts_option,
    device_option,
    invert_option,
    json_option,
    missing_extra,
    model_option,
    out_option,
    write_image,
)

MAX_GRID = 100  # cells a side: a 2,800-pixel square, which classify still reads
MAX_SAMPLE = MAX_GRID * MAX_GRID
PROBABILITY_PLACES = 6  # --json rounds every probability to this many places


def write_digits(array: Any, out: str, invert: bool) -> None:
    """Write a 2-D array of digits (floats in [0, 1] or uint8) as an image (see write_image).

    Raises:
        click.UsageError: `out` is "-" and stdout is a terminal, where PNG bytes are garbage.
    """
    from onnxdigits import to_image

    if out == "-" and sys.stdout.isatty():
        raise click.UsageError(
            "stdout is a terminal: PNG bytes are not for reading there; redirect it "
            "(--out - > grid.png, or | display) or name a file with --out"
        )

    write_image(to_image(array, invert=invert), out)


@click.command("grid", short_help="Write the latent manifold of a model as an image grid.")
@model_option()
@click.option(
    "--n",
    type=click.IntRange(1, MAX_GRID),
    default=15,
    show_default=True,
    help=f"Cells per side of the grid, at most {MAX_GRID}.",
)
@click.option(
    "--lo",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.05,
    show_default=True,
    help="Lowest normal quantile of the grid.",
)
@click.option(
    "--hi",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Highest normal quantile of the grid.",
)
@out_option("grid.png", "The grid")
@invert_option
@artifacts_option
@device_option
def grid_command(
    model: str,
    n: int,
    lo: float,
    hi: float,
    out: str,
    invert: bool,
    artifacts: Path | None,
    device: str | None,
) -> None:
    """Write the latent manifold: an n x n grid of digits decoded from normal quantiles."""
    from onnxdigits import Generator

    if lo >= hi:
        raise click.BadParameter(f"--lo {lo} must be below --hi {hi}", param_hint="--lo")
    write_digits(Generator(model, artifacts=artifacts, device=device).grid(n, lo, hi), out, invert)


@click.command("sample", short_help="Write digits drawn from a model's prior, or of one digit.")
@model_option()
@click.option(
    "--count",
    type=click.IntRange(1, MAX_SAMPLE),
    default=64,
    show_default=True,
    help=f"How many digits to draw, at most {MAX_SAMPLE:,}.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=None,
    help="Random seed, a non-negative integer. Defaults to a fresh draw.",
)
@click.option(
    "--digit",
    type=click.IntRange(0, 9),
    default=None,
    help="Draw this digit (0-9) from its region of the latent space; the set needs class "
    "regions (`onnxdigits fit-classes`). Defaults to drawing from the prior.",
)
@click.option(
    "--columns",
    type=click.IntRange(min=1),
    default=None,
    help="Digits per row (at most --count). Defaults to a square-ish grid.",
)
@out_option("samples.png", "The digits")
@invert_option
@artifacts_option
@device_option
def sample_command(
    model: str,
    count: int,
    seed: int | None,
    digit: int | None,
    columns: int | None,
    out: str,
    invert: bool,
    artifacts: Path | None,
    device: str | None,
) -> None:
    """Write digits decoded from points drawn from the prior N(0, I), tiled; with --digit, from
    that digit's region of the latent space."""
    from onnxdigits import Generator, tile

    generator = Generator(model, artifacts=artifacts, device=device)
    digits = generator.sample(count, seed, digit=digit)
    write_digits(tile(digits, min(columns, count) if columns else None), out, invert)


def _read_each(paths: tuple[str, ...]) -> list[np.ndarray | str]:
    """Read every image file (- is stdin) into MNIST form, going on past those that fail.

    Returns:
        For each path in order, its image (uint8 (28, 28)) or the error message, which names
        the path.
    """
    from onnxdigits import InputError, load_image

    # As score.scorer._load does per file, but the CLI cannot import score (its own extra), and
    # here "-" is stdin and each message names its path.
    results: list[np.ndarray | str] = []
    for path in paths:
        try:
            if path == "-":
                data = sys.stdin.buffer.read()
                if not data:
                    raise InputError("stdin was empty; pipe a PNG or JPEG file into it")
                results.append(load_image(data))
            else:
                results.append(load_image(path))
        except InputError as exc:
            results.append(str(exc) if path in str(exc) else f"{path}: {exc}")
    return results


def _for_each_image(paths: tuple[str, ...], run: Any, line: Any, as_json: bool) -> None:
    """Run a model over every readable file in one batch and print one line per file in order.

    `run` maps uint8 images (N, 28, 28) to one output row per image; `line(path, row)` gives
    the row's text or JSON object. An unreadable file gets, with --json, an "error" object in
    its place; each is reported on stderr, and the command then exits 1.
    """
    results = _read_each(paths)
    good = [r for r in results if not isinstance(r, str)]
    rows = iter(run(np.stack(good)) if good else [])
    for path, result in zip(paths, results):
        if isinstance(result, str):
            if as_json:
                click.echo(json.dumps({"file": path, "error": result}))
            continue
        shown = line(path, next(rows))
        click.echo(json.dumps(shown) if as_json else shown)
    errors = [result for result in results if isinstance(result, str)]
    if len(errors) == 1:
        raise click.ClickException(errors[0])
    if errors:
        for error in errors:
            click.echo(f"error: {error}", err=True)
        raise click.ClickException(f"{len(errors)} of {len(paths)} images could not be read")


@click.command("classify", short_help="Print the label of each image file.")
@click.argument("images", nargs=-1, required=True)
@json_option
@artifacts_option
@device_option
def classify_command(
    images: tuple[str, ...], as_json: bool, artifacts: Path | None, device: str | None
) -> None:
    """Print the label of each image file and its probability, one line each (- reads stdin).

    A file that cannot be read is reported on stderr (and, with --json, by an "error" object in
    its place); the others are still classified, and the command then exits 1.
    """
    from onnxdigits import Classifier

    classifier = Classifier(artifacts=artifacts, device=device)

    def line(path: str, row: np.ndarray) -> Any:
        label = int(row.argmax())
        probability = round(float(row[label]), PROBABILITY_PLACES)
        if not as_json:
            return f"{path}\t{label}\t{probability:.4f}"
        return {
            "file": path,
            "label": label,
            "probability": probability,
            "probabilities": [round(float(p), PROBABILITY_PLACES) for p in row],
        }

    _for_each_image(images, classifier.predict_proba, line, as_json)


@click.command("embed", short_help="Print the 2-D embedding of each image file.")
@click.argument("images", nargs=-1, required=True)
@model_option()
@json_option
@artifacts_option
@device_option
def embed_command(
    images: tuple[str, ...], model: str, as_json: bool, artifacts: Path | None, device: str | None
) -> None:
    """Print the 2-D embedding of each image file (z, or z_mean for the VAEs), one line each.

    Unreadable files are handled as by classify.
    """
    from onnxdigits import Encoder

    encoder = Encoder(model, artifacts=artifacts, device=device)

    def line(path: str, z: np.ndarray) -> Any:
        if as_json:
            return {"file": path, "model": model, "z": [float(v) for v in z]}
        return f"{path}\t" + "\t".join(f"{v:.6f}" for v in z)

    _for_each_image(images, encoder.embed, line, as_json)


@click.command("scatter", short_help="Plot the sample's latent space by label (matplotlib).")
@model_option()
@out_option("latent.png", "The plot")
@artifacts_option
@device_option
def scatter_command(model: str, out: str, artifacts: Path | None, device: str | None) -> None:
    """Plot the latent space of the shipped test sample, coloured by label (needs matplotlib)."""
    from onnxdigits import Artifacts, Encoder
    from PIL import Image

    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt
    except ModuleNotFoundError as exc:
        raise missing_extra("scatter", "plot", exc) from None
    store = Artifacts(artifacts)
    images, labels = store.sample()
    z = Encoder(model, artifacts=store, device=device).embed(images)
    figure, axes = plt.subplots(figsize=(7, 6), dpi=100)
    points = axes.scatter(z[:, 0], z[:, 1], c=labels, cmap="tab10", s=6, vmin=-0.5, vmax=9.5)
    axes.legend(
        *points.legend_elements(),
        title="digit",
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        frameon=False,
    )
    axes.set(
        title=f"{model}: latent space of {len(images)} test digits", xlabel="z[0]", ylabel="z[1]"
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    write_image(Image.open(buffer).convert("RGB"), out)


@click.command("info", short_help="Show the set in use, versions and what CUDA needs here.")
@artifacts_option
@device_option
@click.option(
    "--metadata",
    "full_metadata",
    is_flag=True,
    help="Show every metadata property of each ONNX file whole. By default each file's producer "
    "and property names.",
)
def info_command(artifacts: Path | None, device: str | None, full_metadata: bool) -> None:
    """Show the set in use and its checksums, each ONNX file's metadata, the versions, what CUDA
    has and lacks on this machine, and where a session really runs; exit 1 if any check
    fails."""
    import numpy
    import PIL
    from onnxdigits import Artifacts, Classifier, DeviceError
    from onnxdigits.cuda import diagnose
    from onnxdigits.session import Device

    store = Artifacts(artifacts)
    problems = {path: problem for path, problem in store.verify().items() if problem}
    click.echo(f"artifacts   {store.root}")
    click.echo(f"models      {', '.join(store.keys)}")
    click.echo(f"checksums   {'ok' if not problems else f'{len(problems)} FAILED'}")
    for path, problem in problems.items():
        click.echo(f"  {path}: {problem}")
    if not problems:
        _show_metadata(store, full_metadata)
    click.echo(f"onnxdigits  {__version__}")
    click.echo(f"numpy       {numpy.__version__}")
    click.echo(f"pillow      {PIL.__version__}")
    for line in diagnose().lines():
        click.echo(line)
    request = str(Device.parse(device))
    failed = len(problems)
    if not problems:
        try:
            classifier = Classifier(artifacts=store, device=device)
            providers = ", ".join(classifier.providers)
            click.echo(f"session     device={request} -> {classifier.device} ({providers})")
        except DeviceError as exc:
            click.echo(f"session     device={request} -> none: {exc}")
            failed += 1
    if failed:
        raise click.ClickException(
            f"{failed} check(s) failed; see above"
            + ("; `onnxdigits verify` says more" if problems else "")
        )


def _show_metadata(store: Any, full: bool) -> None:
    """Each ONNX file's metadata_props, as onnxruntime reads them (`get_modelmeta`)."""
    from onnxdigits.session import create_session

    for key in store.keys:
        entry = store.entry(key)
        props = create_session(store.model_bytes(key), "cpu").get_modelmeta().custom_metadata_map
        if not props:
            click.echo(f"metadata    {entry.file}: none (`onnxdigits write-metadata` writes it)")
            continue
        producer = f"{props.get('producer', '?')} {props.get('producer_version', '')}".strip()
        if not full:
            click.echo(f"metadata    {entry.file}: {producer}; {', '.join(sorted(props))}")
            continue
        click.echo(f"metadata    {entry.file}")
        for name, value in sorted(props.items()):
            click.echo(f"  {name:<16} {value}")


@click.command("verify", short_help="Check a set's checksums and parity with Keras.")
@artifacts_option
@device_option
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Also check the set's signature (model.sig, from `export --sign-key`) with this "
    "elliptic-curve public key, a PEM file (sign extra). By default no signature is checked.",
)
def verify_command(artifacts: Path | None, device: str | None, public_key: Path | None) -> None:
    """Check the signature when a public key is given, every file's checksum, then parity with
    the stored Keras outputs; exit 1 on failure."""
    from onnxdigits import Artifacts
    from onnxdigits.signing import SIGNATURE
    from onnxdigits.verify import check_parity

    store = Artifacts(artifacts, public_key=public_key)
    if public_key is not None:
        click.echo(f"ok   signature {store.root / SIGNATURE} holds with {public_key}")
    checksums = store.verify()
    problems = {path: problem for path, problem in checksums.items() if problem}
    for path, problem in problems.items():
        click.echo(f"FAIL {path}: {problem}")
    if problems:
        raise click.ClickException(
            f"{len(problems)} file(s) of {store.root} fail their checksum; "
            "export the set again or restore it"
        )
    results = check_parity(store, device)
    for result in results:
        click.echo(str(result))
    failed = [r for r in results if not r.ok]
    if failed:
        raise click.ClickException(f"{len(failed)} output(s) differ from Keras beyond tolerance")
    click.echo(
        f"ok: {len(checksums)} checksums and {len(results)} outputs of {store.root}", err=True
    )


def _pairs(originals: np.ndarray, reconstructions: np.ndarray, columns: int) -> np.ndarray:
    """Lay out rows of originals, each with their reconstructions in the row below.

    Returns:
        float32 (2 * rows * columns, 28, 28) for `tile(..., columns)`; cells past the images
        stay black.
    """
    count = len(originals)
    rows = -(-count // columns)
    cells = np.zeros((2, rows * columns, 28, 28), np.float32)
    cells[0, :count] = originals.reshape(count, 28, 28) / np.float32(255)
    cells[1, :count] = reconstructions.reshape(count, 28, 28)
    return cells.reshape(2, rows, columns, 28, 28).transpose(1, 0, 2, 3, 4).reshape(-1, 28, 28)


def _readable(paths: tuple[str, ...]) -> np.ndarray:
    """Read image files (- is stdin) as classify does, or fail naming every one unreadable."""
    results = _read_each(paths)
    errors = [result for result in results if isinstance(result, str)]
    if len(errors) == 1:
        raise click.ClickException(errors[0])
    if errors:
        for error in errors:
            click.echo(f"error: {error}", err=True)
        raise click.ClickException(f"{len(errors)} of {len(paths)} images could not be read")
    return np.stack([result for result in results if not isinstance(result, str)])


@click.command("reconstruct", short_help="Write images above their reconstructions.")
@click.argument("images", nargs=-1)
@model_option()
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    help="Reconstruct the first N digits of the set's sample instead of image files.",
)
@click.option(
    "--columns",
    type=click.IntRange(1, MAX_GRID),
    default=10,
    show_default=True,
    help=f"Images per row, at most {MAX_GRID}; each row's reconstructions lie in the row below.",
)
@out_option("recon.png", "The figure")
@invert_option
@artifacts_option
@device_option
def reconstruct_command(
    images: tuple[str, ...],
    model: str,
    sample: int | None,
    columns: int,
    out: str,
    invert: bool,
    artifacts: Path | None,
    device: str | None,
) -> None:
    """Write the notes' figure: images in MNIST form, each above its reconstruction.

    Each image file (- reads stdin) is encoded to z (z_mean for the VAEs) and decoded again.
    An unreadable file is reported on stderr and nothing is written.
    """
    from onnxdigits import Artifacts, reconstruct, tile

    if bool(images) == (sample is not None):
        raise click.UsageError("give image files or --sample N, not both and not neither")
    store = Artifacts(artifacts)
    if sample is not None:
        digits, _ = store.sample()
        if sample > len(digits):
            raise click.BadParameter(
                f"the set's sample holds {len(digits)} digits; got {sample}", param_hint="--sample"
            )
        originals = digits[:sample]
    else:
        if images.count("-") > 1:
            raise click.BadParameter("stdin (-) can be read once", param_hint="IMAGES")
        originals = _readable(images)
    restored = reconstruct(originals, model, artifacts=store, device=device)
    columns = min(columns, len(originals))
    write_digits(tile(_pairs(originals, restored, columns), columns), out, invert)


def _point_or_image(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    """A latent point "x,y" as float32 (1, d), or else an image path (str) to encode."""
    try:
        point = np.array([[float(part) for part in value.split(",")]], np.float32)
    except ValueError:
        return value
    if not np.isfinite(point).all():
        raise click.BadParameter(f"the latent point {value!r} is not finite")
    return point


def _latent(end: Any, name: str, encoder: Any, generator: Any) -> np.ndarray:
    """One end of the line as a latent point: as given, or the embedding of an image file."""
    if isinstance(end, str):
        return encoder.embed(_readable((end,)))
    if end.shape[1] != generator.latent_dim:
        raise click.BadParameter(
            f'a latent point has {generator.latent_dim} coordinates ("x,y"); '
            f"got {end.shape[1]}: {','.join(f'{v:g}' for v in end[0])}",
            param_hint=name,
        )
    return end


@click.command("interpolate", short_help="Write digits decoded along a latent line.")
@model_option()
@click.option(
    "--from",
    "start",
    required=True,
    callback=_point_or_image,
    help='Where the line starts: a latent point "x,y", or an image file (- reads stdin) whose '
    "embedding is the point. Required.",
)
@click.option(
    "--to",
    "end",
    required=True,
    callback=_point_or_image,
    help="Where the line ends, as --from. Required.",
)
@click.option(
    "--steps",
    type=click.IntRange(2, MAX_GRID),
    default=10,
    show_default=True,
    help=f"Digits along the line, both ends included, at most {MAX_GRID}.",
)
@out_option("path.png", "The row of digits")
@invert_option
@artifacts_option
@device_option
def interpolate_command(
    model: str,
    start: Any,
    end: Any,
    steps: int,
    out: str,
    invert: bool,
    artifacts: Path | None,
    device: str | None,
) -> None:
    """Write one row of digits decoded from evenly spaced points on the line from --from to --to.

    An image end is encoded first (to z, or z_mean for the VAEs); a point such as -1.5,0.5 is
    used as it is. A value that reads as numbers is a point: name a file called so ./1,2.
    """
    from onnxdigits import Encoder, Generator, tile

    if isinstance(start, str) and isinstance(end, str) and start == end == "-":
        raise click.BadParameter("stdin (-) can be read once", param_hint="--to")
    generator = Generator(model, artifacts=artifacts, device=device)
    encoder = None
    if isinstance(start, str) or isinstance(end, str):
        encoder = Encoder(model, artifacts=generator.artifacts, device=device)
    line = generator.interpolate(
        _latent(start, "--from", encoder, generator),
        _latent(end, "--to", encoder, generator),
        steps,
    )
    write_digits(tile(line, steps), out, invert)
