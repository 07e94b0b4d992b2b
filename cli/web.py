"""The command for browsers: `export-web`, a static site that runs the set's models in the
visitor's browser with onnxruntime-web."""

from __future__ import annotations

from pathlib import Path

import click

from .main import artifacts_option


@click.command("export-web", short_help="Write a static site that runs the models in a browser.")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The site's folder: new, empty, or a site written before, which is replaced once the "
    "new one is complete.",
)
@click.option(
    "--ort",
    type=click.Path(path_type=Path),
    default=None,
    help="A folder with onnxruntime-web's ort.wasm.min.js, ort-wasm-simd-threaded.mjs and "
    ".wasm (or its dist/, or a node_modules holding it). Defaults to fetching the pinned "
    "version with `npm pack`.",
)
@artifacts_option
def export_web_command(out: Path, ort: Path | None, artifacts: Path | None) -> None:
    """Write a static site: the page of `onnxdigits serve` (draw a digit, the latent plane, the
    15x15 grid) run in the browser by onnxruntime-web's WebAssembly build, with the set's ONNX
    files (each checked against its sha256) and nothing loaded from elsewhere.

    Prints the site's folder and its size; stderr shows how to serve it locally.
    """
    from onnxdigits.serve.web import ORT_VERSION, site_size, write_site

    site = write_site(out, artifacts=artifacts, ort=ort)
    sizes = site_size(site)
    click.echo(str(site))
    click.echo(
        f"{sum(sizes.values()) / 1e6:.1f} MB: models {sizes['models'] / 1e6:.1f} MB, "
        f"onnxruntime-web {ORT_VERSION} {sizes['ort'] / 1e6:.1f} MB, page "
        f"{sizes['page'] / 1e6:.2f} MB; serve it with: python -m http.server -d {site} 8000",
        err=True,
    )
