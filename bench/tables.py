"""Markdown tables, as the documentation shows the figures."""

from __future__ import annotations

from collections.abc import Sequence


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> list[str]:
    """The lines of a Markdown table: its first `left` columns aligned left, the rest (the
    figures) right."""
    lines = [row_line(header), "|" + "---|" * left + "---:|" * (len(header) - left)]
    return lines + [row_line(row) for row in rows]


def row_line(cells: Sequence[str]) -> str:
    """One row of a Markdown table (for rows printed as they are measured)."""
    return "| " + " | ".join(cells) + " |"


def ratio(top: float | None, bottom: float | None) -> str:
    """top / bottom as "1.60x"; "-" where either is missing."""
    return "-" if top is None or bottom is None else f"{top / bottom:.2f}x"
