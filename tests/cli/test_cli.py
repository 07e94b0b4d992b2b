"""The `onnxdigits` command on the shipped artifacts, through click's CliRunner."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
import onnxdigits
import pytest
from click.testing import CliRunner, Result
from onnxdigits.cli import TRAIN_EXTRA, main
from PIL import Image

from tests.conftest import flip_byte

LATENT = ("ae", "vae", "cvae")
CPU = ("--device", "cpu")  # no CPU-fallback warning on machines without CUDA
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args: str, input: bytes | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def png(data: bytes) -> Image.Image:
    assert data.startswith(PNG_MAGIC)
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def assert_one_line_error(result: Result) -> str:
    """An expected failure: exit 1 and one line on stderr that starts with "Error:"."""
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def confident(classifier, sample) -> list[tuple[np.ndarray, int]]:
    """Sample digits the shipped classifier labels correctly with probability >= 0.9.

    Chosen at run time, not hard-coded, so the tests hold for whichever set is shipped or
    exported: distinct labels first, then more, up to five digits.
    """
    images, labels = sample
    probs = classifier.predict_proba(images)
    good = np.flatnonzero((probs.argmax(axis=1) == labels) & (probs.max(axis=1) >= 0.9))
    assert len(good) >= 3, "the shipped classifier is confident on too few sample digits"
    firsts = [good[labels[good] == label][0] for label in np.unique(labels[good])]
    chosen = (firsts + [i for i in good if i not in firsts])[:5]
    return [(images[i], int(labels[i])) for i in chosen]


# --- help and version ----------------------------------------------------------------------------


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for name in main.commands:
        assert name in result.stdout
    assert run("-h").stdout == result.stdout


def test_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert onnxdigits.__version__ in result.stdout


def _commands() -> list[object]:
    """Every command as pytest params of its words on the command line and itself; a group's
    commands (`bench sdk`, ...) in place of the group."""
    found = []
    for name, command in sorted(main.commands.items()):
        subcommands = command.commands if isinstance(command, click.Group) else {"": command}
        for sub, leaf in sorted(subcommands.items()):
            words = f"{name} {sub}".strip()
            found.append(pytest.param(words, leaf, id=words))
    return found


@pytest.mark.parametrize(("name", "command"), _commands())
def test_every_option_has_help_text(name: str, command: click.Command) -> None:
    result = run(*name.split(), "--help")
    assert result.exit_code == 0, result.output
    squeezed = "".join(result.stdout.split())  # help is wrapped, sometimes at hyphens
    options = [p for p in command.params if isinstance(p, click.Option)]
    assert options
    for option in options:
        assert option.help and option.help.strip(), f"{name} {option.opts[0]} has no help"
        assert option.opts[0] in result.stdout
        assert "".join(option.help.split()) in squeezed, f"{name} {option.opts[0]}"
    assert command.help and command.help.strip()


def test_the_cli_imports_no_tensorflow(tmp_path: Path) -> None:
    env_python = [sys.executable, "-X", "importtime", "-m", "onnxdigits.cli", "--version"]
    result = subprocess.run(env_python, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert onnxdigits.__version__ in result.stdout
    assert not re.search(r"\|\s+(tensorflow|keras|tf2onnx)\b", result.stderr)
    # A command that really runs a model: still no training stack in sys.modules afterwards.
    script = textwrap.dedent(f"""
        import sys
        from onnxdigits.cli import main
        code = main(["grid", "--n", "2", "--device", "cpu", "--out", {str(tmp_path / "g.png")!r}],
                    standalone_mode=False)
        training = ("tensorflow", "keras", "tf2onnx")
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in training)
        assert not heavy, heavy
    """)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert png((tmp_path / "g.png").read_bytes()).size == (56, 56)


# --- grid and sample -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", LATENT)
def test_grid_writes_a_png_of_28n_square(model: str, tmp_path: Path) -> None:
    out = tmp_path / f"{model}.png"
    result = run("grid", "--model", model, "--n", "3", "--out", str(out), *CPU)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    image = png(out.read_bytes())
    assert image.size == (84, 84) and image.mode == "L"
    pixels = np.asarray(image)
    assert pixels.max() > pixels.min()  # not a blank canvas


def test_grid_invert_is_the_pixelwise_inverse(tmp_path: Path) -> None:
    plain, inverted = tmp_path / "plain.png", tmp_path / "inverted.png"
    assert run("grid", "--n", "3", "--out", str(plain), *CPU).exit_code == 0
    assert run("grid", "--n", "3", "--invert", "--out", str(inverted), *CPU).exit_code == 0
    a = np.asarray(png(plain.read_bytes()), dtype=np.int16)
    b = np.asarray(png(inverted.read_bytes()), dtype=np.int16)
    np.testing.assert_array_equal(b, 255 - a)


def test_grid_to_stdout(tmp_path: Path) -> None:
    result = run("grid", "--n", "3", "--out", "-", *CPU)
    assert result.exit_code == 0, result.stderr
    image = png(result.stdout_bytes)
    assert image.size == (84, 84) and image.mode == "L"
    run("grid", "--n", "3", "--out", str(tmp_path / "g.png"), *CPU)
    on_disk = png((tmp_path / "g.png").read_bytes())
    np.testing.assert_array_equal(np.asarray(image), np.asarray(on_disk))


def test_sample_layout_and_seed(tmp_path: Path) -> None:
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    args = ("sample", "--count", "10", "--seed", "0", "--columns", "5", *CPU)
    assert run(*args, "--out", str(first)).exit_code == 0
    assert run(*args, "--out", str(second)).exit_code == 0
    image = png(first.read_bytes())
    assert image.size == (140, 56) and image.mode == "L"
    assert first.read_bytes() == second.read_bytes()


# --- classify and embed --------------------------------------------------------------------------


def test_classify_labels_files(confident, classifier, tmp_path: Path) -> None:
    paths, expected = [], []
    for i, (image, label) in enumerate(confident):
        paths.append(str(onnxdigits.save_png(image, tmp_path / f"digit{i}.png")))
        expected.append(label)
    # One drawn the other way round and larger: dark on light, 84x84. It goes through the
    # SDK's crop-and-centre, so pick (at run time) a confident digit that survives it.
    for i, (image, label) in enumerate(confident):
        path = tmp_path / f"inverted{i}.png"
        Image.fromarray(255 - image).resize((84, 84), Image.Resampling.BICUBIC).save(path)
        probs = classifier.predict_proba(str(path))[0]
        if probs.argmax() == label and probs.max() >= 0.9:
            paths.append(str(path))
            expected.append(label)
            break
    else:
        pytest.fail("no confident digit keeps its label once inverted and resized to 84x84")

    result = run("classify", *paths, *CPU)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(paths)
    for line, path, label in zip(lines, paths, expected):
        name, got, prob = line.split("\t")
        assert name == path and int(got) == label
        assert 0.9 <= float(prob) <= 1.0

    result = run("classify", "--json", *paths, *CPU)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["file"] for row in rows] == paths
    assert [row["label"] for row in rows] == expected
    for row in rows:
        assert len(row["probabilities"]) == 10
        assert abs(sum(row["probabilities"]) - 1) < 1e-4
        assert row["probability"] == pytest.approx(max(row["probabilities"]), abs=1e-6)


def test_classify_reads_stdin(confident, tmp_path: Path) -> None:
    image, label = confident[0]
    data = onnxdigits.save_png(image, tmp_path / "d.png").read_bytes()
    result = run("classify", "-", *CPU, input=data)
    assert result.exit_code == 0, result.output
    name, got, prob = result.stdout.strip().split("\t")
    assert name == "-" and int(got) == label and float(prob) >= 0.9


def test_embed_matches_the_sdk(sample, tmp_path: Path) -> None:
    images = sample[0][:4]
    paths = [
        str(onnxdigits.save_png(image, tmp_path / f"d{i}.png")) for i, image in enumerate(images)
    ]
    result = run("embed", *paths, *CPU)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(paths)
    expected = onnxdigits.Encoder("vae", device="cpu").embed(paths)
    for line, path, z in zip(lines, paths, expected):
        name, *values = line.split("\t")
        assert name == path and len(values) == 2
        np.testing.assert_allclose([float(v) for v in values], z, atol=1e-5)

    result = run("embed", "--json", "--model", "ae", paths[0], *CPU)
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)
    assert row["file"] == paths[0] and row["model"] == "ae"
    np.testing.assert_allclose(
        row["z"], onnxdigits.Encoder("ae", device="cpu").embed(paths[0])[0], atol=1e-5
    )


def test_scatter_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "latent.png"
    result = run("scatter", "--out", str(out), *CPU)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out)
    assert png(out.read_bytes()).size[0] > 100


# --- info and verify -----------------------------------------------------------------------------


def test_info(artifacts) -> None:
    result = run("info", *CPU)
    assert result.exit_code == 0, result.output
    assert str(artifacts.root) in result.stdout
    assert "checksums   ok" in result.stdout
    session = [line for line in result.stdout.splitlines() if line.startswith("session")]
    assert len(session) == 1 and "CPUExecutionProvider" in session[0]
    # the CUDA diagnosis, in words
    for field in ("provider", "driver", "gpu"):
        assert any(line.startswith(f"{field} ") for line in result.stdout.splitlines()), field


def test_info_fails_on_a_tampered_set(artifacts_copy: Path) -> None:
    flip_byte(artifacts_copy / "vae.generator.onnx")
    result = run("info", "--artifacts", str(artifacts_copy), *CPU)
    assert result.exit_code == 1
    assert "checksums   1 FAILED" in result.stdout and "vae.generator.onnx" in result.stdout
    assert "check(s) failed" in result.stderr


def test_info_fails_when_the_device_asked_for_cannot_be_had() -> None:
    import onnxruntime

    result = run("info", "--device", "cuda")
    if result.exit_code == 0 and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA came up here")
    assert result.exit_code == 1
    session = [line for line in result.stdout.splitlines() if line.startswith("session")]
    assert session and "device=cuda -> none" in session[0] and "onnxdigits info" in session[0]


# --- output formats and the edges of classify ---------------------------------------------------

MAGIC = {".png": PNG_MAGIC, ".jpg": b"\xff\xd8\xff", ".jpeg": b"\xff\xd8\xff", ".webp": b"RIFF"}


@pytest.mark.parametrize("suffix", sorted(MAGIC))
def test_the_format_follows_the_suffix(suffix: str, tmp_path: Path) -> None:
    out = tmp_path / f"grid{suffix}"
    result = run("grid", "--n", "3", "--out", str(out), *CPU)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data.startswith(MAGIC[suffix])
    image = Image.open(out)
    assert image.size == (84, 84)
    assert image.format == {".jpg": "JPEG", ".jpeg": "JPEG"}.get(suffix, suffix[1:].upper())
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no partial file left behind


def test_scatter_writes_png_to_stdout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    result = run("scatter", "--out", "-", *CPU)
    assert result.exit_code == 0, result.stderr
    assert png(result.stdout_bytes).size[0] > 100
    assert list(tmp_path.iterdir()) == []  # no file named "-" or "-.png"


def test_an_image_into_a_missing_directory_is_refused(tmp_path: Path) -> None:
    result = run("grid", "--n", "2", "--out", str(tmp_path / "nope" / "g.png"), *CPU)
    assert "there is no directory" in assert_one_line_error(result)


def test_sample_clamps_the_columns_to_the_count(tmp_path: Path) -> None:
    out = tmp_path / "s.png"
    result = run(
        "sample", "--count", "3", "--columns", "10", "--seed", "1", "--out", str(out), *CPU
    )
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == (84, 28)


def test_the_bounds_are_stated_in_the_help() -> None:
    assert "at most 100" in " ".join(run("grid", "--help").stdout.split())
    assert "at most 10,000" in " ".join(run("sample", "--help").stdout.split())


def test_empty_stdin_is_named() -> None:
    result = run("classify", "-", *CPU, input=b"")
    assert "stdin was empty" in assert_one_line_error(result)


@pytest.mark.parametrize("command", ["classify", "embed"])
def test_one_bad_file_does_not_stop_the_others(command: str, confident, tmp_path: Path) -> None:
    good = [
        str(onnxdigits.save_png(image, tmp_path / f"g{i}.png"))
        for i, (image, _) in enumerate(confident[:2])
    ]
    missing, text = str(tmp_path / "missing.png"), tmp_path / "text.png"
    text.write_text("not an image")
    paths = [good[0], missing, good[1], str(text)]
    result = run(command, *paths, *CPU)
    assert result.exit_code == 1
    assert [line.split("\t")[0] for line in result.stdout.splitlines()] == good
    errors = result.stderr.splitlines()
    assert errors[-1] == "Error: 2 of 4 images could not be read"
    assert missing in errors[0] and str(text) in errors[1]
    if command == "classify":
        expected = [label for _, label in confident[:2]]
        assert [int(line.split("\t")[1]) for line in result.stdout.splitlines()] == expected

    result = run(command, "--json", *paths, *CPU)
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["file"] for row in rows] == paths
    assert ["error" in row for row in rows] == [False, True, False, True]
    assert "no such image file" in rows[1]["error"]


def test_json_rounds_every_probability_alike(confident, tmp_path: Path) -> None:
    path = onnxdigits.save_png(confident[0][0], tmp_path / "d.png")
    row = json.loads(run("classify", "--json", str(path), *CPU).stdout)
    assert row["probability"] == max(row["probabilities"])
    assert row["probability"] == round(row["probability"], 6)


def test_verify_passes_on_the_shipped_set() -> None:
    result = run("verify", *CPU)
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.stdout
    assert result.stderr.startswith("ok:")


def test_verify_fails_on_a_flipped_byte(artifacts_copy: Path) -> None:
    flip_byte(artifacts_copy / "classifier.onnx")
    result = run("verify", "--artifacts", str(artifacts_copy), *CPU)
    error = assert_one_line_error(result)
    assert "checksum" in error
    fails = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1 and "classifier.onnx" in fails[0] and "checksum" in fails[0]


# --- errors --------------------------------------------------------------------------------------


@pytest.fixture
def error_paths(tmp_path: Path) -> dict[str, str]:
    text = tmp_path / "notes.png"
    text.write_text("not an image\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    return {"MISSING": str(tmp_path / "missing.png"), "TEXT": str(text), "EMPTY": str(empty)}


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["classify", "MISSING"], 1, "no such image file"),
        (["embed", "MISSING"], 1, "no such image file"),
        (["classify", "TEXT"], 1, "not a readable image"),
        (["grid", "--model", "foo"], 2, "foo"),
        (["embed", "--model", "foo", "TEXT"], 2, "foo"),
        (["grid", "--n", "0"], 2, "--n"),
        (["grid", "--lo", "0.9", "--hi", "0.1"], 2, "--lo"),
        (["info", "--device", "gpu"], 2, "unknown device"),
        (["info", "--artifacts", "EMPTY"], 1, "manifest.json"),
        (["info", "--artifacts", "MISSING"], 1, "does not exist"),
        (["sample", "--seed", "-1"], 2, "--seed"),
        (["grid", "--n", "500"], 2, "--n"),
        (["sample", "--count", "20000"], 2, "--count"),
        (["grid", "--out", "grid.gif"], 2, ".gif"),
        (["scatter", "--out", "latent"], 2, "no suffix"),
        (["grid", "--artifacts", "EMPTY", "--out", "-"], 1, "manifest.json"),
        (["classify"], 2, "IMAGES"),
    ],
    ids=[
        "missing-file",
        "embed-missing-file",
        "text-as-png",
        "unknown-model",
        "embed-unknown-model",
        "grid-n-0",
        "lo-above-hi",
        "unknown-device",
        "empty-artifacts",
        "missing-artifacts",
        "negative-seed",
        "grid-n-500",
        "sample-count-20000",
        "gif",
        "no-suffix",
        "grid-empty-artifacts",
        "classify-no-args",
    ],
)
def test_errors(args: list[str], code: int, fragment: str, error_paths: dict[str, str]) -> None:
    args = [error_paths.get(arg, arg) for arg in args]
    if "--device" not in args:
        args += CPU
    result = run(*args)
    assert result.exit_code == code, result.output
    assert fragment in result.stderr
    assert "Traceback" not in result.output
    if code == 1:
        assert_one_line_error(result)
        assert result.stdout == ""
    else:
        assert "Usage:" in result.stderr


# --- the training extra --------------------------------------------------------------------------


@pytest.fixture
def no_training_extra(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make TensorFlow and Keras unimportable, and forget any export module already imported.

    Afterwards the export modules imported meanwhile are dropped again and monkeypatch puts
    back the ones (and the `onnxdigits.export` attribute) that were there before.
    """

    def is_export(name: str) -> bool:
        return name == "onnxdigits.export" or name.startswith("onnxdigits.export.")

    had_export = hasattr(onnxdigits, "export")
    for name in [name for name in sys.modules if is_export(name)]:
        monkeypatch.delitem(sys.modules, name)
    if had_export:
        monkeypatch.delattr(onnxdigits, "export")
    for name in ("tensorflow", "keras", "tf2onnx"):
        monkeypatch.setitem(sys.modules, name, None)
    yield
    for name in [name for name in sys.modules if is_export(name)]:
        del sys.modules[name]
    if not had_export and hasattr(onnxdigits, "export"):
        delattr(onnxdigits, "export")


@pytest.mark.parametrize("command", ["train", "export"])
def test_training_commands_say_how_to_install_the_extra(
    command: str, no_training_extra: None, tmp_path: Path
) -> None:
    result = run(command, "--out", str(tmp_path / "set"))
    error = assert_one_line_error(result)
    assert TRAIN_EXTRA in error and f"{command} needs the train extra" in error
    assert "pip install 'onnxdigits[train]'" in result.output


# --- the group's help and error boundary ---------------------------------------------------------


def test_the_group_help_lists_every_command_whole() -> None:
    lines = run("--help").stdout.splitlines()
    for name, command in main.commands.items():
        row = next(line for line in lines if line.split()[:1] == [name])
        assert command.short_help and command.short_help in row, row
        assert "..." not in row and "…" not in row, row


@pytest.mark.parametrize(("name", "command"), _commands())
def test_every_default_is_stated_once(name: str, command: click.Command) -> None:
    for option in command.params:
        if isinstance(option, click.Option) and option.show_default:
            assert "Defaults to" not in (option.help or ""), f"{name} {option.opts[0]}"


def test_a_report_keeps_its_items_on_their_own_lines() -> None:
    from onnxdigits.cli.main import Group

    group = Group()

    @group.command()
    def fail() -> None:
        raise onnxdigits.OnnxDigitsError(
            "classifier differs from Keras:\n- probs (batch 1): max diff = 2.0e-03 (atol 1e-05)"
            "\n- probs (batch 256): max diff = 3.0e-03\n  (atol 1e-05)"
        )

    result = CliRunner().invoke(group, ["fail"])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: classifier differs from Keras:",
        "- probs (batch 1): max diff = 2.0e-03 (atol 1e-05)",
        "- probs (batch 256): max diff = 3.0e-03 (atol 1e-05)",
    ]
