"""A scoring job in one process: inputs streamed in chunks through one SDK model into Parquet."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from onnxdigits.files import write_beside
from onnxdigits.manifest import ArtifactsLike
from tqdm import tqdm

from .errors import NothingScoredError
from .inputs import CHUNK_ROWS, input_list, plan
from .output import check_output
from .scorer import Scorer

EXAMPLES = 3  # failed rows quoted in a summary


@dataclass
class Summary:
    """What a job did: rows written, how many failed (with a few examples), and its time."""

    out: Path
    rows: int = 0
    failed: int = 0
    seconds: float = 0.0
    examples: list[str] = field(default_factory=list)

    @property
    def scored(self) -> int:
        return self.rows - self.failed

    @property
    def rate(self) -> float:
        """Rows per second."""
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def add(self, table: pa.Table) -> None:
        """Count a chunk of output rows and keep the first failures as examples."""
        self.rows += table.num_rows
        errors = table.column("error")
        failed = table.num_rows - errors.null_count
        if failed and len(self.examples) < EXAMPLES:
            picked = table.filter(pc.is_valid(errors)).slice(0, EXAMPLES - len(self.examples))
            self.examples += [failure_text(row) for row in picked.to_pylist()]
        self.failed += failed

    def check(self) -> None:
        """Raise NothingScoredError if no row could be scored."""
        if self.scored == 0:
            what = "the input was empty" if self.rows == 0 else f"all {self.rows:,} rows failed"
            raise NothingScoredError(
                f"nothing to write: {what}; "
                + "; ".join(self.examples[:EXAMPLES] or ["no input gave an image"])
            )

    def __str__(self) -> str:
        text = (
            f"scored {self.scored:,} of {self.rows:,} images in {self.seconds:.1f} s "
            f"({self.rate:,.0f} images/s) into {self.out}"
        )
        if self.failed:
            text += f"; {self.failed:,} could not be read, such as:"
            text += "".join(f"\n  - {example}" for example in self.examples)
        return text


def failure_text(row: dict[str, object]) -> str:
    """A failed output row in one line: where it came from, and why it failed."""
    error = str(row["error"])
    if row.get("index") is None and str(row["file"]) in error:
        return error  # the message names its file already
    where = str(row["file"])
    if row.get("array") is not None:
        where += f" {row['array']}"
    if row.get("index") is not None:
        where += f"[{row['index']}]"
    return f"{where}: {error}"


def score(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    model: str = "classifier",
    artifacts: ArtifactsLike = None,
    device: str | None = None,
    column: str | None = None,
    rows: int = CHUNK_ROWS,
    progress: bool = True,
) -> Summary:
    """Score images into a Parquet file, in one process, with memory flat however many there are.

    Inputs are read in chunks of `rows`, decoded by the SDK's normaliser and scored by one SDK
    model, which cuts each chunk into its own batches; each chunk's rows are appended to the
    output as they come, under a temporary name that replaces `out` only at the end.

    Args:
        inputs: image files, folders, npz files and Parquet files (see `inputs.plan`).
        out: the Parquet file to write; its rows follow `scorer.output_schema(model)`, in the
            inputs' order.
        model: "classifier" (label and probabilities) or "ae", "vae", "cvae" (embedding z).
        artifacts: an `Artifacts` set or its directory; None for the default set.
        device: as for `onnxdigits.Classifier`.
        column: the Parquet inputs' column of encoded images; None to find it.
        rows: rows read and scored at once.
        progress: show a progress bar with images/s on stderr.

    Returns:
        The job's `Summary`. A row that cannot be read carries its error and the job goes on.

    Raises:
        OutputError: `out` cannot be written (checked before any input is read).
        NothingScoredError: no row could be scored; nothing is written.
        InputError: no inputs, or an unknown model.
        ArtifactError, DeviceError: as the SDK's models raise them.
    """
    inputs = input_list(inputs)
    target = check_output(out, inputs=inputs)
    scorer = Scorer(model, artifacts=artifacts, device=device)
    total = sum(piece.rows for piece in plan(inputs, files=rows, column=column))
    summary = Summary(target)
    start = time.perf_counter()
    with (
        write_beside(target) as staging,
        pq.ParquetWriter(staging, scorer.schema) as writer,
        tqdm(
            total=total,
            unit=" images",
            unit_scale=total >= 1000,  # 70.0k rather than 70000, but 5 rather than 5.00
            file=sys.stderr,
            disable=not progress,
            desc="score",
        ) as bar,
    ):
        for piece in plan(inputs, files=rows, column=column):
            for raw in piece.read(rows):
                table = scorer(raw)
                writer.write_table(table)
                summary.add(table)
                bar.update(table.num_rows)
        summary.seconds = time.perf_counter() - start
        summary.check()
    return summary
