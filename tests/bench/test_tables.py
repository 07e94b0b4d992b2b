"""The one Markdown table formatter every benchmark prints with."""

from __future__ import annotations

from onnxdigits.bench.tables import markdown, ratio


def test_a_table_aligns_its_labels_left_and_its_figures_right() -> None:
    lines = markdown(["host", "workload", "requests/s"], [["uvicorn", "1 image", "812.5"]], left=2)
    assert lines == [
        "| host | workload | requests/s |",
        "|---|---|---:|",
        "| uvicorn | 1 image | 812.5 |",
    ]


def test_a_ratio_of_a_missing_figure_is_a_dash() -> None:
    assert ratio(0.48, 0.30) == "1.60x"
    assert ratio(None, 0.30) == ratio(0.30, None) == "-"
