"""`onnxdigits.score.score`: each kind of input, per-row errors, failures, atomic output."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import onnxdigits
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from onnxdigits.score import NothingScoredError, OutputError, output_schema, score
from onnxdigits.score.inputs import CHUNK_ROWS, plan

from .conftest import TEST, TRAIN, Inputs, leftovers, png_bytes, read_rows

CPU = {"device": "cpu", "progress": False}


def probs_of(rows: list[dict]) -> np.ndarray:
    return np.array([row["probs"] for row in rows], dtype=np.float32)


def test_npz_every_x_array_with_its_labels(inputs: Inputs, classifier, tmp_path: Path) -> None:
    out = tmp_path / "npz.parquet"
    summary = score([inputs.npz], out, **CPU)
    rows = read_rows(out)
    assert (summary.rows, summary.failed, len(rows)) == (TRAIN + TEST, 0, TRAIN + TEST)
    assert [(r["array"], r["index"]) for r in rows] == [("x_train", i) for i in range(TRAIN)] + [
        ("x_test", i) for i in range(TEST)
    ]
    assert {r["file"] for r in rows} == {str(inputs.npz)}
    assert [r["true_label"] for r in rows] == inputs.labels.tolist()
    assert all(r["error"] is None for r in rows)
    expected = classifier.predict_proba(inputs.images)
    np.testing.assert_allclose(probs_of(rows), expected, atol=1e-6)
    assert [r["label"] for r in rows] == expected.argmax(axis=1).tolist()
    assert pq.read_schema(out).equals(output_schema("classifier"), check_metadata=True)


def test_a_folder_is_read_recursively_in_order_and_a_broken_file_only_fails_itself(
    inputs: Inputs, classifier, tmp_path: Path
) -> None:
    out = tmp_path / "folder.parquet"
    summary = score([inputs.folder], out, **CPU)
    rows = read_rows(out)
    # The text file and the hidden files are not images of the folder; the broken PNG is.
    assert [r["file"] for r in rows] == [str(p) for p in inputs.pngs]
    assert (summary.rows, summary.failed) == (6, 1)
    broken = rows[inputs.pngs.index(inputs.broken_png)]
    assert "broken.png is not a readable image" in broken["error"]
    assert broken["label"] is None and broken["probs"] is None
    good = [r for r in rows if r["error"] is None]
    assert all(r["array"] is None and r["index"] is None and r["true_label"] is None for r in rows)
    files = [p for p in inputs.pngs if p != inputs.broken_png]
    expected = classifier.predict_proba([str(p) for p in files])
    np.testing.assert_allclose(probs_of(good), expected, atol=1e-6)


def test_image_files_one_missing(inputs: Inputs, classifier, tmp_path: Path) -> None:
    files = [str(inputs.pngs[0]), str(tmp_path / "absent.png"), str(inputs.pngs[1])]
    out = tmp_path / "files.parquet"
    summary = score(files, out, **CPU)
    rows = read_rows(out)
    assert [r["file"] for r in rows] == files
    assert summary.failed == 1 and rows[1]["error"] == f"no such image file: {files[1]}"
    np.testing.assert_allclose(
        probs_of([rows[0], rows[2]]), classifier.predict_proba([files[0], files[2]]), atol=1e-6
    )


def test_parquet_bytes_column_with_labels_and_bad_cells(
    inputs: Inputs, classifier, tmp_path: Path
) -> None:
    out = tmp_path / "pq.parquet"
    summary = score([inputs.parquet], out, **CPU)
    rows = read_rows(out)
    assert [r["index"] for r in rows] == list(range(20))  # across its three row groups
    assert [r["true_label"] for r in rows] == inputs.parquet_labels
    assert summary.failed == 2
    assert rows[3]["error"] == "no image bytes in column 'image'"
    assert "is not a readable image" in rows[11]["error"]
    assert "0x" not in rows[11]["error"]  # no memory address: the same text in every process
    good = [i for i, cell in enumerate(inputs.parquet_images) if i not in (3, 11)]
    expected = classifier.predict_proba([inputs.parquet_images[i] for i in good])
    np.testing.assert_allclose(probs_of([rows[i] for i in good]), expected, atol=1e-6)


def test_parquet_in_hugging_face_layout(inputs: Inputs, classifier, tmp_path: Path) -> None:
    out = tmp_path / "hf.parquet"
    score([inputs.hf_parquet], out, **CPU)
    rows = read_rows(out)
    assert [r["true_label"] for r in rows] == inputs.labels[:6].tolist()
    # Encoded images go through the SDK's load_image, as the SDK's own calls take them.
    cells = [png_bytes(image) for image in inputs.images[:6]]
    np.testing.assert_allclose(probs_of(rows), classifier.predict_proba(cells), atol=1e-6)


def test_parquet_column_by_name_and_files_without_one(inputs: Inputs, tmp_path: Path) -> None:
    two = tmp_path / "two.parquet"
    image = png_bytes(inputs.images[0])
    pq.write_table(pa.table({"front": [image], "back": [image]}), two)
    none = tmp_path / "none.parquet"
    pq.write_table(pa.table({"label": [1, 2]}), none)
    out = tmp_path / "out.parquet"
    score([two, none, inputs.npz], out, **CPU)
    rows = read_rows(out)
    assert "2 columns of image bytes" in rows[0]["error"] and "--column" in rows[0]["error"]
    assert "no column of image bytes" in rows[1]["error"]
    assert len(rows) == 2 + TRAIN + TEST
    score([two], out, column="back", **CPU)
    assert read_rows(out)[0]["error"] is None
    score([two, inputs.npz], out, column="side", **CPU)
    assert "has no column 'side'" in read_rows(out)[0]["error"]


def test_the_encoder_writes_z(inputs: Inputs, vae_encoder, tmp_path: Path) -> None:
    out = tmp_path / "z.parquet"
    score([inputs.npz], out, model="vae", **CPU)
    table = pq.read_table(out)
    assert table.schema.equals(output_schema("vae"))
    assert "probs" not in table.column_names and "label" not in table.column_names
    assert json.loads(table.schema.metadata[b"onnxdigits"])["model"] == "vae"
    z = np.array(table.column("z").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(z, vae_encoder.embed(inputs.images), atol=1e-6)


def test_small_chunks_give_the_same_rows(inputs: Inputs, tmp_path: Path) -> None:
    whole, chunked = tmp_path / "whole.parquet", tmp_path / "chunked.parquet"
    everything = [inputs.npz, inputs.folder, inputs.parquet]
    score(everything, whole, **CPU)
    score(everything, chunked, rows=7, **CPU)
    a, b = read_rows(whole), read_rows(chunked)
    assert [r["file"] for r in a] == [r["file"] for r in b]
    np.testing.assert_allclose(
        probs_of([r for r in a if r["error"] is None]),
        probs_of([r for r in b if r["error"] is None]),
        atol=1e-6,
    )
    assert [r["error"] for r in a] == [r["error"] for r in b]
    # Seven rows at a time really is seven: pieces of image files and chunks of arrays.
    pieces = list(plan(everything, files=7))
    assert max(len(t) for p in pieces for t in p.read(7)) == 7
    assert CHUNK_ROWS > 7


# --- npz files that are not quite Keras' layout ----------------------------------------------


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_arrays_that_cannot_be_scored_fail_alone(inputs: Inputs, tmp_path: Path) -> None:
    images = inputs.images[:4]
    bad = _npz(
        tmp_path / "bad.npz",
        x_shape=np.zeros((3, 27, 28), np.uint8),
        x_labels=images,
        y_labels=np.arange(3),  # three labels for four images
        x_empty=np.zeros((0, 28, 28), np.uint8),
        x_good=images.reshape(4, 784),  # flat rows are images too
    )
    unlaid = _npz(tmp_path / "plain.npz", images=images)
    out = tmp_path / "out.parquet"
    summary = score([bad, unlaid], out, **CPU)
    rows = read_rows(out)
    by_array = {r["array"]: r for r in rows if r["error"] is not None}
    assert "shape (3, 27, 28)" in by_array["x_shape"]["error"]
    assert (
        "y_labels" in by_array["x_labels"]["error"] and "4 images" in by_array["x_labels"]["error"]
    )
    assert "holds no images" in by_array["x_empty"]["error"]
    assert [r["index"] for r in rows if r["array"] == "x_good"] == [0, 1, 2, 3]
    assert "no x_* array (it holds images)" in rows[-1]["error"]
    assert summary.failed == 4 and summary.scored == 4


def test_float_rows_out_of_range_fail_one_by_one(
    inputs: Inputs, classifier, tmp_path: Path
) -> None:
    x = inputs.images[:5].astype(np.float32) / 255
    x[1, 0, 0] = np.nan
    x[3, 5, 5] = 2.0
    path = _npz(tmp_path / "floats.npz", x_test=x, y_test=inputs.labels[:5])
    out = tmp_path / "out.parquet"
    summary = score([path], out, **CPU)
    rows = read_rows(out)
    assert summary.failed == 2
    assert "NaN" in rows[1]["error"] and "[0, 1]" in rows[3]["error"]
    np.testing.assert_allclose(
        probs_of([rows[i] for i in (0, 2, 4)]), classifier.predict_proba(x[[0, 2, 4]]), atol=1e-6
    )


def test_an_npz_of_python_objects_is_refused_unread(tmp_path: Path) -> None:
    # A pickled object array: reading it would mean unpickling, which onnxdigits never does.
    path = tmp_path / "objects.npz"
    np.savez(path, x_test=np.array([None, {"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(NothingScoredError, match="Python objects"):
        score([path], tmp_path / "out.parquet", **CPU)


def test_a_truncated_npz_is_one_error_row_unread(inputs: Inputs, tmp_path: Path) -> None:
    # A sound archive whose array says 20 rows and holds 5: its size gives it away before a row
    # is read (tests/score/test_hostile_inputs.py has the other lies).
    stream = io.BytesIO()
    header = {"descr": "|u1", "fortran_order": False, "shape": (20, 28, 28)}
    np.lib.format.write_array_header_1_0(stream, header)
    stream.write(inputs.images[:5].tobytes())
    path = tmp_path / "cut.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_test.npy", stream.getvalue())
    with pytest.raises(NothingScoredError, match="holds 3,920 bytes; the file is truncated"):
        score([path], tmp_path / "out.parquet", rows=4, **CPU)


# --- failures of the whole job ---------------------------------------------------------------


def test_every_input_failing_writes_nothing(inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    out.write_bytes(b"earlier results")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NothingScoredError, match="all 3 rows failed") as caught:
        score([inputs.broken_png, tmp_path / "absent.npz", empty], out, **CPU)
    assert "no image files under" in str(caught.value) or "no such file" in str(caught.value)
    assert out.read_bytes() == b"earlier results"
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    "where, match",
    [
        ("missing/out.parquet", "does not exist"),
        ("a-file/out.parquet", "is not a folder"),
        ("a-dir", "is a directory"),
    ],
)
def test_a_bad_output_path_fails_before_reading(
    where: str, match: str, inputs: Inputs, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("x")
    (tmp_path / "a-dir").mkdir()
    with pytest.raises(OutputError, match=match):
        score([inputs.npz], tmp_path / where, **CPU)
    assert leftovers(tmp_path) == []


def test_no_inputs_and_unknown_models_are_refused(inputs: Inputs, tmp_path: Path) -> None:
    with pytest.raises(onnxdigits.InputError, match="no inputs"):
        score([], tmp_path / "out.parquet", **CPU)
    with pytest.raises(onnxdigits.InputError, match="unknown model"):
        score([inputs.npz], tmp_path / "out.parquet", model="gan", **CPU)


def test_an_earlier_output_is_replaced_whole(inputs: Inputs, tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    score([inputs.npz], out, **CPU)
    score([inputs.parquet], out, **CPU)
    assert len(read_rows(out)) == 20
    assert leftovers(tmp_path) == []
    assert out.stat().st_mode & 0o044  # an ordinary file: readable by others as the umask says
