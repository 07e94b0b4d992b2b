"""`onnxdigits bench score` in one process, briefly: it measures; the figures are never
asserted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from onnxdigits.cli import main

TRAIN, TEST = 40, 24  # the npz's x_train and x_test, taken from the sample in this order


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory, sample) -> Path:
    images, labels = sample[0][: TRAIN + TEST], sample[1][: TRAIN + TEST]
    path = tmp_path_factory.mktemp("score-inputs") / "digits.npz"
    np.savez_compressed(
        path,
        x_train=images[:TRAIN],
        y_train=labels[:TRAIN],
        x_test=images[TRAIN:],
        y_test=labels[TRAIN:],
    )
    return path


def test_bench_score_measures_each_run_on_every_image(npz: Path, tmp_path: Path) -> None:
    """A short run in one process: every row, every image scored, the JSON agrees with the
    table. (What the figures are is the benchmark's business; here only that it measures.)"""
    out = tmp_path / "bench.json"
    args = ("--data", str(npz), "--pngs", "7", "--repeats", "1", "--no-ray")
    result = CliRunner().invoke(
        main, ["bench", "score", *args, "--json", str(out)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    first, _, *table = result.stdout.splitlines()
    assert "cores" in first and "median of 1" in first
    figures = json.loads(out.read_text())
    runs = {(row["data"], row["how"]): row for row in figures["rows"]}
    whole, pngs = f"MNIST npz ({TRAIN + TEST:,})", "PNG files (7)"
    assert set(runs) == {
        (d, h) for d in (whole, pngs) for h in ("SDK in process", "score, one process")
    }
    for (data, how), row in runs.items():
        (only,) = row["runs"]
        assert only["rows"] == (TRAIN + TEST if data == whole else 7)
        assert 0 < only["seconds"] < only["wall"] and only["peak_rss"] > 0
        assert any(line.startswith(f"| {data} | {how} | {only['rows']:,} |") for line in table)
