"""`onnxdigits bench sdk`'s table and machine line; its figures themselves are never asserted."""

from __future__ import annotations

from onnxdigits.bench import sdk


def _report(baseline: str | None) -> dict:
    return {
        "machine": {
            "date": "2026-11-28",
            "cpu": "Some CPU",
            "cores": 2,
            "vector": "AVX2",
            "gpu": None,
            "onnxruntime": "1.31.1",
        },
        "device": "cpu",
        "ran_on": "cpu",
        "repeats": 5,
        "baseline": baseline,
        "rows": [
            {
                "workload": "classify 10k",
                "count": 10_000,
                "sdk": 0.300,
                "bare": 0.330,
                "baseline": 0.480,
                "keras": None,
            }
        ],
    }


def test_the_table_names_the_vector_width_and_shows_the_baseline_beside() -> None:
    lines = sdk.table(_report("/tmp/plain")).splitlines()
    assert lines[0].startswith("2026-11-28, Some CPU (2 cores, AVX2), onnxruntime 1.31.1")
    assert lines[1] == "baseline: bare sessions on the files of /tmp/plain"
    header = [cell.strip() for cell in lines[3].strip("|").split("|")]
    row = [cell.strip() for cell in lines[5].strip("|").split("|")]
    assert len(lines[4].strip("|").split("|")) == len(header) == len(row)
    cells = dict(zip(header, row))
    assert cells["SDK ms"] == "300.0" and cells["baseline ms"] == "480.0"
    assert cells["baseline / SDK"] == "1.60x"  # the SDK is 1.6 times faster than the baseline
    assert cells["SDK / bare"] == "0.91x"


def test_without_a_baseline_the_table_has_no_such_column() -> None:
    table = sdk.table(_report(None))
    assert "baseline" not in table
    header = table.splitlines()[2]
    assert header.count("|") == table.splitlines()[3].count("|")


def test_the_cli_states_the_count_the_benchmark_times() -> None:
    from onnxdigits.cli import bench as command

    assert command.COUNT == sdk.COUNT
