"""`score` against inputs that lie or hang: forged npz headers, huge Parquet cells, FIFOs, an
output that is an input or not Parquet, and SIGTERM part way."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from onnxdigits.score import OutputError, score
from onnxdigits.score.inputs import MAX_CELL_BYTES, Failed, NpzArray, plan

from .conftest import Inputs, leftovers, png_bytes, read_rows

CPU = {"device": "cpu", "progress": False}


def forged_npz(path: Path, shape: tuple[int, ...], data: bytes) -> Path:
    """An npz whose x_test header declares `shape` over `data`, whatever `data` holds."""
    stream = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(stream, header)
    stream.write(data)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_test.npy", stream.getvalue())
    return path


def score_cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onnxdigits.cli", "score", *args, "-q", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# --- npz headers that lie ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "data", "says"),
    [
        # Read whole before (read(-784) reads to the end), then no row at all.
        ((-1, 28, 28), bytes(4 * 2**20), "cannot be negative"),
        # 231 bytes that promised 10^15 rows: error rows without end before.
        ((10**15, 28, 28), b"", "header lies"),
        # 20 rows declared over 5 rows' bytes.
        ((20, 28, 28), bytes(5 * 784), "truncated"),
    ],
)
def test_an_npz_header_that_lies_is_one_error_row(
    inputs: Inputs, tmp_path: Path, shape: tuple[int, ...], data: bytes, says: str
) -> None:
    path = forged_npz(tmp_path / "forged.npz", shape, data)
    pieces = list(plan([path]))
    assert len(pieces) == 1 and isinstance(pieces[0], Failed), pieces
    out = tmp_path / "out.parquet"
    summary = score([path, inputs.npz], out, **CPU)
    rows = [row for row in read_rows(out) if row["file"] == str(path)]
    assert len(rows) == 1 and says in rows[0]["error"], rows
    assert summary.failed == 1 and summary.scored > 0


def test_a_member_claiming_more_than_deflate_can_give_is_refused(tmp_path: Path) -> None:
    # A sound array whose zip entry then claims 2,000 times the bytes its compressed data holds.
    path = tmp_path / "claims.npz"
    np.savez_compressed(path, x_test=np.zeros((4, 28, 28), np.uint8))
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("x_test.npy")
    raw = bytearray(path.read_bytes())
    for offset in (info.header_offset + 22, raw.rfind(b"PK\x01\x02") + 24):
        raw[offset : offset + 4] = (info.compress_size * 2000).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    (piece,) = plan([path])
    assert isinstance(piece, Failed) and "more than its compression can give" in piece.error


def test_an_honest_npz_is_still_planned_whole(inputs: Inputs) -> None:
    pieces = list(plan([inputs.npz]))
    assert [type(p) for p in pieces] == [NpzArray, NpzArray]


# --- Parquet cells too large to be images -----------------------------------------------------


def test_parquet_cells_over_the_limit_are_refused_before_decoding(
    inputs: Inputs, tmp_path: Path
) -> None:
    huge = bytes(MAX_CELL_BYTES + 1)  # zeros: a few KB once compressed
    table = pa.table({"image": pa.array([huge, huge, huge], pa.binary())})
    plain = tmp_path / "plain.parquet"
    pq.write_table(table, plain, compression="zstd", use_dictionary=False)
    assert plain.stat().st_size < 100_000
    # The metadata says how many bytes the row group's images hold: refused unread.
    (piece,) = plan([plain])
    assert (
        isinstance(piece, Failed) and "over the limit" in piece.error and "not read" in piece.error
    )
    # Dictionary-encoded, the one value is held once and each cell is refused by its size.
    encoded = tmp_path / "encoded.parquet"
    pq.write_table(table, encoded, compression="zstd", dictionary_pagesize_limit=2**30)
    out = tmp_path / "out.parquet"
    summary = score([encoded, inputs.npz], out, **CPU)
    rows = [row for row in read_rows(out) if row["file"] == str(encoded)]
    assert [row["index"] for row in rows] == [0, 1, 2] and summary.failed == 3
    assert all(f"{MAX_CELL_BYTES + 1:,} bytes, over the limit" in row["error"] for row in rows)

    # One huge cell among small ones: that cell alone fails, named by its size.
    mixed = tmp_path / "mixed.parquet"
    cells = [png_bytes(image) for image in inputs.images[:30]] + [huge]
    pq.write_table(pa.table({"image": pa.array(cells, pa.binary())}), mixed)
    out = tmp_path / "out.parquet"
    summary = score([mixed], out, **CPU)
    rows = read_rows(out)
    assert summary.scored == 30 and summary.failed == 1
    assert f"{MAX_CELL_BYTES + 1:,} bytes, over the limit" in rows[30]["error"]


# --- non-regular files ------------------------------------------------------------------------


def test_a_fifo_is_skipped_with_an_error_row_not_opened(inputs: Inputs, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.png").write_bytes(png_bytes(inputs.images[0]))
    os.mkfifo(folder / "pipe.png")
    os.mkfifo(tmp_path / "named.png")
    out = tmp_path / "out.parquet"
    # Before, opening the FIFO blocked for ever: the timeout is the test's failure.
    result = score_cli(str(folder), str(tmp_path / "named.png"), "--out", str(out), timeout=120)
    assert result.returncode == 0, result.stderr
    rows = read_rows(out)
    assert [Path(row["file"]).name for row in rows] == ["a.png", "pipe.png", "named.png"]
    assert rows[0]["error"] is None
    assert all("is a FIFO, not a regular file; skipped" in row["error"] for row in rows[1:])


# --- the output --------------------------------------------------------------------------------


def test_an_output_that_is_an_input_is_refused(inputs: Inputs, tmp_path: Path) -> None:
    data = tmp_path / "data.parquet"
    data.write_bytes(inputs.parquet.read_bytes())
    before = data.read_bytes()
    spelled = tmp_path / "sub" / ".." / "data.parquet"
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.parquet").symlink_to(data)
    for out in (data, spelled, tmp_path / "link.parquet"):
        with pytest.raises(OutputError, match="would replace the input"):
            score([data], out, **CPU)
    png = tmp_path / "in.png"
    png.write_bytes(png_bytes(inputs.images[0]))
    for out, given in ((data, data), (png, png), (inputs.npz, inputs.npz)):
        result = score_cli(str(given), "--out", str(out))
        assert result.returncode == 1 and "Error:" in result.stderr, result.stderr
    assert data.read_bytes() == before and png.read_bytes() == png_bytes(inputs.images[0])


@pytest.mark.parametrize("name", ["results.csv", "results", "results.png"])
def test_an_output_not_named_parquet_is_refused(inputs: Inputs, tmp_path: Path, name: str) -> None:
    with pytest.raises(OutputError, match="score writes Parquet"):
        score([inputs.npz], tmp_path / name, **CPU)
    assert not (tmp_path / name).exists()


def test_sigterm_removes_the_staging_file(inputs: Inputs, tmp_path: Path) -> None:
    # Enough rows that the job is still running when SIGTERM comes.
    big = tmp_path / "big.npz"
    np.savez(big, x_test=np.tile(inputs.images, (3000, 1, 1)))
    out = tmp_path / "out.parquet"
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxdigits.cli", "score", str(big), "--out", str(out), "-q"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not leftovers(tmp_path):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the job never started writing"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        status = process.wait(60)
    finally:
        process.kill()
    assert status == 128 + signal.SIGTERM
    assert leftovers(tmp_path) == [] and not out.exists()


def test_an_output_directory_holding_an_input_is_refused(inputs: Inputs, tmp_path: Path) -> None:
    # With --ray the output is a directory, replaced whole: an input inside it would go too.
    from onnxdigits.score.output import check_output

    folder = tmp_path / "results"
    folder.mkdir()
    data = folder / "part.parquet"
    data.write_bytes(inputs.parquet.read_bytes())
    for given in (data, folder):
        with pytest.raises(OutputError, match="would replace the input"):
            check_output(folder, directory=True, inputs=[given])
    assert check_output(tmp_path / "elsewhere", directory=True, inputs=[data])
