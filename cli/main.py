"""The `onnxdigits` group, its error boundary and the options that several commands share.

Data goes to stdout; progress and warnings go to stderr. Expected failures print what to do and
exit 1; usage errors exit 2.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from onnxdigits import __version__
from onnxdigits.errors import DeviceError, OnnxDigitsError
from onnxdigits.files import write_beside
from onnxdigits.specs import LATENT_MODELS

if TYPE_CHECKING:
    from PIL import Image

# What an image command writes, by the suffix of --out; "-" writes PNG to stdout.
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def install_command(extra: str) -> str:
    """How to install one of the package's extras: "pip install 'onnxdigits[EXTRA]'"."""
    return f"pip install 'onnxdigits[{extra}]'"


RAY_EXTRA = install_command("ray")


def missing_extra(command: str, extra: str, exc: ModuleNotFoundError) -> click.ClickException:
    """The one message for a command whose extra is not installed: "serve needs the serve extra
    (fastapi is not installed): pip install 'onnxdigits[serve]'"; raise it `from None`."""
    return click.ClickException(
        f"{command} needs the {extra} extra ({exc.name} is not installed): "
        + install_command(extra)
    )


def error_message(exc: BaseException) -> str:
    """One line for a message, except that a report's items ("- ...") keep their own lines."""
    lines: list[str] = []
    for line in str(exc).splitlines():
        words = " ".join(line.split())
        if not words:
            continue
        if lines and not words.startswith("- "):
            lines[-1] += " " + words
        else:
            lines.append(words)
    return "\n".join(lines)


class Group(click.Group):
    """Turns the package's own errors into click errors at the boundary."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OnnxDigitsError as exc:
            raise click.ClickException(error_message(exc)) from None
        except OSError as exc:
            raise click.ClickException(
                f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
            ) from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onnxdigits")
def main() -> None:
    """Digits from Keras MNIST models exported to ONNX: grids, samples, labels, embeddings."""
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"


def _device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from onnxdigits.session import Device

    if value is None:
        return None
    try:
        Device.parse(value)
    except DeviceError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def model_option(default: str = "vae") -> Any:
    """--model: one of the latent models."""
    return click.option(
        "--model",
        type=click.Choice(LATENT_MODELS),
        default=default,
        show_default=True,
        help="Which latent model to use.",
    )


artifacts_option = click.option(
    "--artifacts",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory of an exported set. Defaults to $ONNXDIGITS_ARTIFACTS, else the shipped set.",
)
device_option = click.option(
    "--device",
    default=None,
    callback=_device,
    help='Where to run: "auto" (CUDA if it comes up, else the CPU), "cpu", "cuda" or "cuda:N". '
    "Defaults to $ONNXDIGITS_DEVICE, else auto.",
)
invert_option = click.option(
    "--invert", is_flag=True, help="Dark digits on white. By default white on black, as in MNIST."
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object per line."
)
data_option = click.option(
    "--data",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="An mnist.npz in Keras' layout. Defaults to $ONNXDIGITS_MNIST, else Keras' cache.",
)


def _image_out(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if value != "-" and Path(value).suffix.lower() not in IMAGE_FORMATS:
        suffix = Path(value).suffix or "no suffix"
        raise click.BadParameter(
            f"cannot write an image to {value!r} ({suffix}); name a .png, .jpg, .jpeg or .webp "
            "file, or - for PNG on stdout"
        )
    return value


def out_option(default: str, what: str = "The image") -> Any:
    """--out: an image file whose suffix picks the format, or - for stdout."""
    return click.option(
        "--out",
        default=default,
        show_default=True,
        callback=_image_out,
        help=f"{what} to write: a .png, .jpg, .jpeg or .webp file, or - for PNG on stdout.",
    )


def write_image(image: Image.Image, out: str) -> None:
    """Write an image to `out` in the format its suffix names, or as PNG to stdout for "-".

    A file is written whole or not at all: into a temporary file beside it, then renamed.
    """
    if out == "-":
        image.save(sys.stdout.buffer, format="PNG")
        sys.stdout.buffer.flush()
        return
    path = Path(out)
    if not path.parent.is_dir():
        raise click.ClickException(f"cannot write {out}: there is no directory {path.parent}")
    kind = IMAGE_FORMATS[path.suffix.lower()]
    if kind == "JPEG" and image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    with write_beside(path) as staging, staging.open("wb") as file:
        image.save(file, format=kind)
    click.echo(out)
