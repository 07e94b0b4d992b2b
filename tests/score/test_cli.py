"""`onnxdigits score` through click's CliRunner: output, progress, exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from onnxdigits.cli import main

from .conftest import TEST, TRAIN, Inputs, leftovers, read_rows

CPU = ("--device", "cpu")


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    # The progress bar (carriage returns, then a newline when it closes) comes first.
    lines = [line for line in result.stderr.splitlines() if line and "images/s]" not in line]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_score_writes_parquet_and_reports(inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    result = run("score", str(inputs.npz), str(inputs.folder), "--out", str(out), *CPU)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n"  # data to stdout: the file written
    assert "images/s" in result.stderr  # the progress bar and the summary
    total = TRAIN + TEST + len(inputs.pngs)
    assert f"scored {total - 1:,} of {total:,} images" in result.stderr
    assert "broken.png" in result.stderr  # the failed row, quoted
    rows = read_rows(out)
    assert len(rows) == total and sum(r["error"] is not None for r in rows) == 1


def test_quiet_and_an_encoder(inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "z.parquet"
    result = run("score", str(inputs.npz), "--out", str(out), "--model", "ae", "-q", *CPU)
    assert result.exit_code == 0, result.output
    assert "%|" not in result.stderr  # no bar, only the summary
    assert len(read_rows(out)[0]["z"]) == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (("--model", "gan"), "Invalid value for '--model'"),
        (("--address", "ray://x:10001"), "--address needs --ray"),
        (("--actors", "2"), "--actors needs --ray"),
        (("--actors", "0", "--ray"), "Invalid value for '--actors'"),
    ],
)
def test_usage_errors_exit_2(args: tuple[str, ...], message: str, inputs: Inputs, tmp_path) -> None:
    result = run("score", str(inputs.npz), "--out", str(tmp_path / "o.parquet"), *args)
    assert result.exit_code == 2 and message in result.stderr
    assert not (tmp_path / "o.parquet").exists()


def test_no_out_is_a_usage_error(inputs: Inputs) -> None:
    result = run("score", str(inputs.npz))
    assert result.exit_code == 2 and "--out" in result.stderr


def test_a_bad_output_path_exits_1(inputs: Inputs, tmp_path: Path) -> None:
    line = one_line_error(run("score", str(inputs.npz), "--out", str(tmp_path / "no/o.parquet")))
    assert "does not exist; create it first" in line


def test_all_inputs_failing_exits_1_and_writes_nothing(inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    result = run("score", str(inputs.broken_png), str(tmp_path / "none.png"), "--out", str(out))
    line = one_line_error(result)
    assert "all 2 rows failed" in line and "broken.png" in line
    assert not out.exists() and leftovers(tmp_path) == []
