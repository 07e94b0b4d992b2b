"""The commands that write a set out for other runtimes: `export-web` (a static site that runs the
set's models in the visitor's browser with onnxruntime-web) and `export-triton` (a Triton
Inference Server model repository)."""

from __future__ import annotations

from pathlib import Path

import click
from onnxdigits.errors import unknown_model
from onnxdigits.models import CHUNK
from onnxdigits.specs import MODELS, SUBMODELS

from .main import artifacts_option

TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:<yy.mm>-py3"  # any release since 22.12 (opset 17)


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


def _model_names(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[str]:
    """--models, repeated or comma-separated: each a model or a submodel."""
    names = [name.strip() for item in value for name in item.split(",") if name.strip()]
    known = set(MODELS) | set(SUBMODELS)
    for name in names:
        if name not in known:
            raise click.BadParameter(unknown_model(name, [*MODELS, *SUBMODELS]))
    return names


@click.command("export-triton", short_help="Write a Triton Inference Server model repository.")
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="The repository's directory. Created if absent; in one that exists, only the models "
    "written are replaced.",
)
@click.option(
    "--models",
    multiple=True,
    callback=_model_names,
    help="Models (classifier, ae, vae, cvae) or submodels (vae.encoder, ...) to write, "
    "repeated or comma-separated. Defaults to every submodel of the set.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1, CHUNK["cuda"]),
    default=CHUNK["cuda"],
    show_default=True,
    help="The largest batch Triton forms or accepts: at most the SDK's CUDA chunk.",
)
@click.option(
    "--gpu",
    is_flag=True,
    help="GPU instance groups, exact float32 (TF32 off). By default CPU instance groups.",
)
@artifacts_option
def export_triton_command(
    out: Path, models: list[str], max_batch: int, gpu: bool, artifacts: Path | None
) -> None:
    """Write a Triton model repository: for each submodel, NAME/config.pbtxt and
    NAME/1/model.onnx (the set's file, checked against its sha256), the name without dots.

    The configuration gives platform onnxruntime_onnx, the manifest's inputs and outputs,
    dynamic batching up to --max-batch and one instance on the CPU (or on each GPU with --gpu).
    Prints each model's directory; stderr shows how to serve the repository with Triton's
    container.
    """
    from onnxdigits.export.triton import write_repository

    written = write_repository(
        out, artifacts=artifacts, models=models or None, max_batch_size=max_batch, gpu=gpu
    )
    for path in written:
        click.echo(str(path))
    gpus = "--gpus all " if gpu else ""
    click.echo(
        f"serve it with: docker run --rm {gpus}-p 8000:8000 -p 8001:8001 -p 8002:8002 "
        f'-v "{out.resolve()}:/models:ro" {TRITON_IMAGE} tritonserver --model-repository=/models',
        err=True,
    )
