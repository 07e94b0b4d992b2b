"""`onnxdigits bench serve` on uvicorn, briefly: it measures; the figures are never asserted."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from onnxdigits.cli import main


def test_bench_serve_measures_a_host_beside_the_sdk(tmp_path: Path) -> None:
    """A short run on uvicorn: every row present, no errors, the JSON agrees with the table.
    (What the figures are is the benchmark's business; here only that it measures.)"""
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        main,
        [
            "bench",
            "serve",
            "--hosts",
            "uvicorn",
            "--images",
            "1,4",
            "--clients",
            "1,2",
            "--seconds",
            "0.5",
            "--warmup",
            "0.2",
            "--device",
            "cpu",
            "--json",
            str(out),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    table = result.stdout
    assert "AVX" in table.splitlines()[0] or "cores" in table.splitlines()[0]
    assert "| SDK in-process, 1 caller | 1 image |" in table
    assert "| SDK in-process, 1 caller | 4 images |" in table
    figures = json.loads(out.read_text())
    cells = {(c["workload"], c["clients"]): c for c in figures["cells"]}
    assert set(cells) == {(w, n) for w in ("1 image", "4 images") for n in (1, 2)}
    for (workload, clients), cell in cells.items():
        assert cell["errors"] == 0 and cell["requests_per_s"] > 0, cell
        assert f"| uvicorn | {workload} | {clients} | {cell['requests_per_s']:,.1f} |" in table
        assert cell["p50_ms"] <= cell["p99_ms"]
