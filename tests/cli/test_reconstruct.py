"""`onnxdigits reconstruct` and `onnxdigits interpolate` on the shipped set, against the SDK."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxdigits
import pytest

from tests.cli.test_cli import CPU, assert_one_line_error, png, run

LATENT = ("ae", "vae", "cvae")


def pixels(path: Path | bytes) -> np.ndarray:
    """An image file's (or PNG bytes') grey levels, uint8 (H, W)."""
    return np.asarray(png(path if isinstance(path, bytes) else path.read_bytes()))


def grey(images: np.ndarray) -> np.ndarray:
    """Digits in [0, 1] as the CLI writes them: uint8 grey levels."""
    return np.round(np.asarray(images) * 255).astype(np.uint8)


def cell(image: np.ndarray, row: int, column: int) -> np.ndarray:
    return image[28 * row : 28 * (row + 1), 28 * column : 28 * (column + 1)]


@pytest.fixture(scope="module")
def files(sample, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Five real test digits saved as PNG files."""
    root = tmp_path_factory.mktemp("digits")
    images, _ = sample
    return [onnxdigits.save_png(images[i], root / f"digit{i}.png") for i in range(5)]


# --- reconstruct ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", LATENT)
def test_reconstruct_puts_each_image_above_its_reconstruction(model, files, tmp_path) -> None:
    out = tmp_path / "recon.png"
    result = run("reconstruct", *map(str, files), "--model", model, "--out", str(out), *CPU)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    figure = pixels(out)
    assert figure.shape == (2 * 28, 5 * 28)
    originals = onnxdigits.to_batch(files)[..., 0]  # the files in MNIST form, as the model saw them
    restored = onnxdigits.reconstruct(files, model, device="cpu")
    for i in range(5):
        np.testing.assert_array_equal(cell(figure, 0, i), grey(originals[i]))
        np.testing.assert_array_equal(cell(figure, 1, i), grey(restored[i]))


def test_reconstructions_resemble_their_own_originals(sample, tmp_path) -> None:
    """Each reconstruction is nearer its own digit than the others on average (a real model,
    rows not shuffled)."""
    out = tmp_path / "recon.png"
    result = run("reconstruct", "--sample", "20", "--columns", "20", "--out", str(out), *CPU)
    assert result.exit_code == 0, result.output
    figure = pixels(out)
    originals = np.stack([cell(figure, 0, i) for i in range(20)])
    np.testing.assert_array_equal(originals, sample[0][:20])
    restored = np.stack([cell(figure, 1, i) for i in range(20)])
    originals, restored = (images.astype(np.float32) / 255 for images in (originals, restored))
    distances = ((originals[:, None] - restored[None]) ** 2).mean(axis=(2, 3))
    own, others = np.diag(distances), distances[~np.eye(20, dtype=bool)].reshape(20, 19)
    assert np.mean(own < others.mean(axis=1)) >= 0.9


def test_reconstruct_wraps_rows_in_pairs(tmp_path) -> None:
    out = tmp_path / "recon.png"
    result = run("reconstruct", "--sample", "7", "--columns", "3", "--out", str(out), *CPU)
    assert result.exit_code == 0, result.output
    figure = pixels(out)
    assert figure.shape == (3 * 2 * 28, 3 * 28)  # 3 rows of pairs, 3 columns
    images, _ = onnxdigits.Artifacts().sample()
    restored = onnxdigits.reconstruct(images[:7], "vae", device="cpu")
    for i in range(7):
        row, column = divmod(i, 3)
        np.testing.assert_array_equal(cell(figure, 2 * row, column), images[i])
        np.testing.assert_array_equal(cell(figure, 2 * row + 1, column), grey(restored[i]))
    assert not cell(figure, 4, 1).any() and not cell(figure, 5, 2).any()  # empty cells stay black


def test_reconstruct_to_stdout_and_from_stdin(files) -> None:
    result = run("reconstruct", "-", "--out", "-", *CPU, input=files[0].read_bytes())
    assert result.exit_code == 0, result.output
    figure = pixels(result.stdout_bytes)
    assert figure.shape == (56, 28)
    np.testing.assert_array_equal(
        cell(figure, 1, 0), grey(onnxdigits.reconstruct(files[:1], device="cpu")[0])
    )


def test_reconstruct_writes_nothing_when_a_file_cannot_be_read(files, tmp_path) -> None:
    out = tmp_path / "recon.png"
    args = [str(files[0]), str(tmp_path / "missing.png"), "--out", str(out), *CPU]
    result = run("reconstruct", *args)
    assert "missing.png" in assert_one_line_error(result)
    assert not out.exists()


# --- interpolate ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", LATENT)
def test_interpolate_between_points_decodes_the_line(model, tmp_path) -> None:
    out = tmp_path / "path.png"
    args = ["interpolate", "--model", model, "--from", "-1.5,0.5", "--to", "1,-0.25"]
    result = run(*args, "--steps", "6", "--out", str(out), *CPU)
    assert result.exit_code == 0, result.output
    figure = pixels(out)
    assert figure.shape == (28, 6 * 28)
    generator = onnxdigits.Generator(model, device="cpu")
    expected = generator.decode(np.linspace([-1.5, 0.5], [1.0, -0.25], 6).astype(np.float32))
    for i in range(6):
        np.testing.assert_array_equal(cell(figure, 0, i), grey(expected[i]))


def test_interpolate_from_an_image_starts_at_its_reconstruction(files, tmp_path) -> None:
    out = tmp_path / "path.png"
    result = run(
        "interpolate", "--from", str(files[0]), "--to", str(files[1]), "--out", str(out), *CPU
    )
    assert result.exit_code == 0, result.output
    figure = pixels(out)
    assert figure.shape == (28, 10 * 28)  # --steps defaults to 10
    restored = grey(onnxdigits.reconstruct(files[:2], "vae", device="cpu"))
    np.testing.assert_array_equal(cell(figure, 0, 0), restored[0])
    np.testing.assert_array_equal(cell(figure, 0, 9), restored[1])
    z = onnxdigits.Encoder("vae", device="cpu").embed(files[:2])
    middle = onnxdigits.Generator("vae", device="cpu").decode((z[:1] + z[1:]) / 2)
    ends = ["--from", str(files[0]), "--to", str(files[1])]
    line = run("interpolate", *ends, "--steps", "3", "--out", "-", *CPU)
    assert np.max(np.abs(cell(pixels(line.stdout_bytes), 0, 1).astype(int) - grey(middle[0]))) <= 1


def test_interpolate_mixes_an_image_read_from_stdin_and_a_point(files) -> None:
    args = ["interpolate", "--from", "-", "--to", "0,0", "--steps", "2", "--out", "-", *CPU]
    result = run(*args, input=files[2].read_bytes())
    assert result.exit_code == 0, result.output
    figure = pixels(result.stdout_bytes)
    generator = onnxdigits.Generator("vae", device="cpu")
    np.testing.assert_array_equal(cell(figure, 0, 1), grey(generator.decode(np.zeros((1, 2)))[0]))
    np.testing.assert_array_equal(
        cell(figure, 0, 0), grey(onnxdigits.reconstruct(files[2:3], device="cpu")[0])
    )


# --- usage errors and failures -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["reconstruct"], 2, "--sample"),
        (["reconstruct", "FILE", "--sample", "2"], 2, "not both"),
        (["reconstruct", "--sample", "0"], 2, "--sample"),
        (["reconstruct", "--sample", "1001"], 2, "sample holds 1000"),
        (["reconstruct", "-", "-"], 2, "once"),
        (["reconstruct", "FILE", "--columns", "0"], 2, "--columns"),
        (["reconstruct", "FILE", "--out", "recon.gif"], 2, ".gif"),
        (["reconstruct", "MISSING"], 1, "no such image file"),
        (["reconstruct", "FILE", "--model", "pca"], 2, "pca"),
        (["interpolate", "--to", "0,0"], 2, "--from"),
        (["interpolate", "--from", "0,0"], 2, "--to"),
        (["interpolate", "--from", "1,2,3", "--to", "0,0"], 2, "2 coordinates"),
        (["interpolate", "--from", "0,0", "--to", "7"], 2, "got 1"),
        (["interpolate", "--from", "nan,0", "--to", "0,0"], 2, "not finite"),
        (["interpolate", "--from", "0,0", "--to", "1e999,0"], 2, "not finite"),
        (["interpolate", "--from", "-", "--to", "-"], 2, "once"),
        (["interpolate", "--from", "0,0", "--to", "1,1", "--steps", "1"], 2, "--steps"),
        (["interpolate", "--from", "0,0", "--to", "1,1", "--steps", "101"], 2, "--steps"),
        (["interpolate", "--from", "MISSING", "--to", "0,0"], 1, "no such image file"),
        (["interpolate", "--from", "0,0", "--to", "TEXT"], 1, "not a readable image"),
    ],
    ids=[
        "reconstruct-nothing",
        "reconstruct-files-and-sample",
        "reconstruct-sample-0",
        "reconstruct-sample-too-large",
        "reconstruct-stdin-twice",
        "reconstruct-columns-0",
        "reconstruct-unknown-format",
        "reconstruct-missing-file",
        "reconstruct-unknown-model",
        "interpolate-no-from",
        "interpolate-no-to",
        "interpolate-3-d-point",
        "interpolate-1-d-point",
        "interpolate-nan",
        "interpolate-inf",
        "interpolate-stdin-twice",
        "interpolate-1-step",
        "interpolate-too-many-steps",
        "interpolate-missing-file",
        "interpolate-text-file",
    ],
)
def test_errors(args: list[str], code: int, fragment: str, files, tmp_path) -> None:
    text = tmp_path / "text.png"
    text.write_text("not an image\n")
    paths = {"FILE": str(files[0]), "MISSING": str(tmp_path / "missing.png"), "TEXT": str(text)}
    result = run(*[paths.get(arg, arg) for arg in args], *CPU, input=b"")
    assert result.exit_code == code, result.output
    assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.output
    if code == 1:
        assert_one_line_error(result)
        assert result.stdout == ""
    else:
        assert "Usage:" in result.stderr
