"""The inputs of a scoring job: image files, folders of them, npz files and Parquet files.

`plan` turns the inputs into pieces: a run of image files, one `x_*` array of an npz file, one
row group of a Parquet file, or an input that could not be opened. Each piece reads its rows in
chunks of at most `rows` as Arrow tables of one schema, `RAW`: where the row came from, its true
label when the input had one, and what it holds. Rows of an npz array hold their pixels already in
the models' form (`onnxdigits.to_batch`); rows of a Parquet file hold the encoded image; rows of
an image file hold nothing but the file's path, which `Scorer` decodes. Nothing here keeps more
than one chunk in memory, so a job's memory stays flat however many images there are.
"""

from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from onnxdigits import InputError, to_batch
from onnxdigits.specs import IMAGE_SHAPE

CHUNK_ROWS = 4096  # rows read and scored at once: the SDK cuts these into its own chunks
PIXELS = math.prod(IMAGE_SHAPE)
RAW = pa.schema(
    [
        ("file", pa.string()),
        ("array", pa.string()),  # the npz array ("x_test"); null for other inputs
        ("index", pa.int64()),  # the row in that array or Parquet file; null for image files
        ("true_label", pa.int64()),
        ("data", pa.binary()),  # a Parquet row's encoded image
        ("pixels", pa.list_(pa.float32(), PIXELS)),  # an npz row, through to_batch
        ("error", pa.string()),
    ]
)
# What a folder is searched for. Pillow registers more suffixes than these, but some of them are
# stubs it cannot decode (HDF5, GRIB, MPEG) or need other programs (EPS), and folders hold such
# files beside their images.
IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".pbm",
    ".pgm",
    ".ppm",
    ".pnm",
)
NPZ_SUFFIXES = (".npz",)
PARQUET_SUFFIXES = (".parquet", ".pq")
LABEL_COLUMN = "label"
_IMAGE_SHAPES = ((28, 28), (28, 28, 1), (PIXELS,))  # per row, as `to_batch` takes them
_BROKEN_ARCHIVE = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)
# An image file larger than this is no digit (the service takes bodies of 16 MiB at most); a
# Parquet cell over it is refused before it is decoded.
MAX_CELL_BYTES = 16 * 2**20
_BATCH_BYTES = 64 * 2**20  # Parquet image bytes decoded at once, by the row group's metadata
# Deflate cannot expand data more than about 1032 times; a member claiming more is forged.
_DEFLATE_RATIO = 1032


def raw_table(
    count: int,
    file: Sequence[str] | str,
    *,
    array: str | None = None,
    first: int | None = None,
    true_label: np.ndarray | pa.Array | None = None,
    data: pa.Array | None = None,
    pixels: np.ndarray | None = None,
    error: Sequence[str | None] | None = None,
) -> pa.Table:
    """Build a chunk of `RAW` rows; absent columns are all null.

    Args:
        count: the number of rows.
        file: each row's file, or one file for all.
        array: the npz array the rows come from.
        first: the index of the first row; the others follow it.
        true_label: integer labels (count,).
        data: encoded images, binary (count,).
        pixels: float32 (count, 28, 28, 1), counted only where `error` is None.
        error: each row's error, or None.
    """
    errors = list(error) if error is not None else [None] * count
    columns: dict[str, pa.Array] = {
        "file": pa.array([file] * count if isinstance(file, str) else list(file), pa.string()),
        "array": pa.array([array] * count, pa.string()),
        "index": pa.nulls(count, pa.int64())
        if first is None
        else pa.array(np.arange(first, first + count, dtype=np.int64)),
        "true_label": pa.nulls(count, pa.int64())
        if true_label is None
        else pa.array(true_label).cast(pa.int64()),
        "data": data if data is not None else pa.nulls(count, pa.binary()),
        "pixels": pa.nulls(count, RAW.field("pixels").type),
        "error": pa.array(errors, pa.string()),
    }
    if pixels is not None:
        failed = pa.array(np.array([e is not None for e in errors], dtype=bool))
        columns["pixels"] = pa.FixedSizeListArray.from_arrays(
            pa.array(pixels.reshape(-1)), PIXELS, mask=failed
        )
    return pa.Table.from_pydict(columns, schema=RAW)


@dataclass(frozen=True)
class ImageFiles:
    """A run of image files, decoded later by the scorer (where the model runs)."""

    files: tuple[str, ...]

    @property
    def rows(self) -> int:
        return len(self.files)

    def read(self, rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
        """Yield the files' rows in chunks of at most `rows`."""
        for start in range(0, len(self.files), rows):
            part = self.files[start : start + rows]
            yield raw_table(len(part), part)


@dataclass(frozen=True)
class NpzArray:
    """An `x_*` array of an npz file in Keras' MNIST layout, with its `y_*` labels if any."""

    path: str
    array: str  # "x_test"
    labels: str | None  # "y_test"
    count: int

    @property
    def rows(self) -> int:
        return self.count

    def read(self, rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
        """Yield the array's rows in chunks of at most `rows`, pixels through `to_batch`.

        The array is streamed out of the archive, never loaded whole. A row whose pixels
        `to_batch` refuses carries its error; if the archive breaks part way, the rows left
        carry that.
        """
        done = 0
        try:
            with zipfile.ZipFile(self.path) as archive:
                images = _npy_rows(archive, self.array, rows)
                labels = _npy_rows(archive, self.labels, rows) if self.labels else None
                for chunk in images:
                    count = len(chunk)
                    truth = next(labels) if labels is not None else None
                    pixels, errors = _pixels(chunk)
                    yield raw_table(
                        count,
                        self.path,
                        array=self.array,
                        first=done,
                        true_label=truth,
                        pixels=pixels,
                        error=errors,
                    )
                    done += count
        except (*_BROKEN_ARCHIVE, InputError) as exc:
            problem = f"{self.path} broke at row {done} of {self.array}: {exc}"
            for start in range(done, self.count, rows):
                stop = min(start + rows, self.count)
                yield raw_table(
                    stop - start,
                    self.path,
                    array=self.array,
                    first=start,
                    error=[problem] * (stop - start),
                )


@dataclass(frozen=True)
class ParquetRows:
    """A row group of a Parquet file with a column of encoded images."""

    path: str
    column: str
    labels: str | None
    row_group: int
    start: int  # the index of the row group's first row in the file
    count: int
    batch: int = CHUNK_ROWS  # rows decoded at once: fewer where the cells are large

    @property
    def rows(self) -> int:
        return self.count

    def read(self, rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
        """Yield the row group's rows in chunks of at most `rows`; an empty cell, or one over
        `MAX_CELL_BYTES`, is an error."""
        columns = [self.column] + ([self.labels] if self.labels else [])
        done = self.start
        try:
            schema = pq.read_schema(self.path)
            struct = pa.types.is_struct(schema.field(self.column).type)
            # As a dictionary, a cell repeated a million times is held once: its size is known
            # before any cell is written out in full.
            parquet = pq.ParquetFile(
                self.path, read_dictionary=[f"{self.column}.bytes" if struct else self.column]
            )
            batches = parquet.iter_batches(
                batch_size=min(rows, self.batch), row_groups=[self.row_group], columns=columns
            )
            for batch in batches:
                cells = _image_cells(batch.column(self.column))
                sizes = _cell_sizes(cells)
                large = sizes > MAX_CELL_BYTES
                truth = batch.column(self.labels) if self.labels else None
                # Cells are written out in slices of at most _BATCH_BYTES, over-large ones never.
                kept = np.where(large, 0, sizes)
                for lo, hi in _slices(kept):
                    part = cells.slice(lo, hi - lo)
                    over = pa.array(large[lo:hi])
                    data = _decoded(pc.if_else(over, pa.scalar(None, part.type), part))
                    errors = [
                        f"the image in column {self.column!r} has {int(size):,} bytes, over "
                        f"the limit of {MAX_CELL_BYTES:,}"
                        if too_large
                        else None
                        if valid
                        else f"no image bytes in column {self.column!r}"
                        for size, too_large, valid in zip(
                            sizes[lo:hi], large[lo:hi], data.is_valid().to_pylist()
                        )
                    ]
                    yield raw_table(
                        hi - lo,
                        self.path,
                        first=done + lo,
                        true_label=truth.slice(lo, hi - lo) if truth is not None else None,
                        data=data,
                        error=errors,
                    )
                done += batch.num_rows
        except (OSError, pa.ArrowException) as exc:
            problem = f"{self.path} broke at row {done}: {exc}"
            end = self.start + self.count
            for start in range(done, end, rows):
                stop = min(start + rows, end)
                yield raw_table(
                    stop - start, self.path, first=start, error=[problem] * (stop - start)
                )


@dataclass(frozen=True)
class Failed:
    """An input that could not be opened: one row that carries the error."""

    path: str
    error: str
    array: str | None = None

    @property
    def rows(self) -> int:
        return 1

    def read(self, rows: int = CHUNK_ROWS) -> Iterator[pa.Table]:
        """Yield the one error row."""
        yield raw_table(1, self.path, array=self.array, error=[self.error])


Piece = ImageFiles | NpzArray | ParquetRows | Failed


def input_list(inputs: Iterable[str | os.PathLike[str]]) -> list[str | os.PathLike[str]]:
    """A job's inputs as a list: one path alone becomes a list of one.

    Raises:
        InputError: there are no inputs.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    items = list(inputs)
    if not items:
        raise InputError("no inputs; give image files, folders, npz or Parquet files")
    return items


def plan(
    inputs: Iterable[str | os.PathLike[str]],
    *,
    files: int = CHUNK_ROWS,
    column: str | None = None,
) -> Iterator[Piece]:
    """Turn inputs into pieces to read, in the inputs' order.

    Args:
        inputs: image files, folders (searched recursively, in sorted order, for files ending in
            one of `IMAGE_SUFFIXES`; names starting with "." are skipped), npz files in Keras'
            MNIST layout (`.npz`: every `x_*` array, labelled by its `y_*` array when present),
            or Parquet files (`.parquet`, `.pq`) with a column of encoded images.
        files: the most image files in one piece.
        column: the Parquet column of images; None for "image", else the only column of bytes.

    Yields:
        Pieces; an input that cannot be opened becomes a `Failed` piece, and the rest go on.
    """
    run: list[str] = []
    for item in inputs:
        path = Path(item)
        name = os.fspath(item)
        suffix = path.suffix.lower()
        if path.is_dir():
            found = False
            problems: list[OSError] = []
            for file in _walk(name, problems):
                found = True
                irregular = _irregular(file)
                if irregular:
                    if run:
                        yield ImageFiles(tuple(run))
                        run = []
                    yield Failed(file, irregular)
                    continue
                run.append(file)
                if len(run) == files:
                    yield ImageFiles(tuple(run))
                    run = []
            if problems or not found:
                if run:
                    yield ImageFiles(tuple(run))
                    run = []
            for problem in problems:
                where = problem.filename or name
                yield Failed(where, f"cannot list {where}: {problem.strerror or problem}")
            if not found and not problems:
                yield Failed(name, f"no image files under {name} (looked for {_suffixes()})")
            continue
        irregular = _irregular(name)
        if irregular:
            if run:
                yield ImageFiles(tuple(run))
                run = []
            yield Failed(name, irregular)
            continue
        if suffix in NPZ_SUFFIXES or suffix in PARQUET_SUFFIXES:
            if run:
                yield ImageFiles(tuple(run))
                run = []
            yield from _plan_npz(name) if suffix in NPZ_SUFFIXES else _plan_parquet(name, column)
            continue
        run.append(name)  # an image file; one that cannot be read fails when it is decoded
        if len(run) == files:
            yield ImageFiles(tuple(run))
            run = []
    if run:
        yield ImageFiles(tuple(run))


def _irregular(path: str) -> str | None:
    """Why `path` is not read, when it exists and is no regular file; else None.

    Opening a FIFO blocks until something writes into it, and a device may never end: only
    regular files are opened. (A missing file fails when it is read, as before.)
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kind = (
        "a FIFO"
        if stat.S_ISFIFO(mode)
        else "a socket"
        if stat.S_ISSOCK(mode)
        else "a device"
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "something other than a file"
    )
    return f"{path} is {kind}, not a regular file; skipped unread"


def _suffixes() -> str:
    return ", ".join(IMAGE_SUFFIXES)


def _walk(folder: str, problems: list[OSError]) -> Iterator[str]:
    """The image files under `folder` in sorted order, listing one directory at a time.

    Directories that cannot be listed are added to `problems`.
    """
    for root, dirs, names in os.walk(folder, onerror=problems.append):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield os.path.join(root, name)


def _plan_npz(path: str) -> Iterator[Piece]:
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = [name[:-4] for name in archive.namelist() if name.endswith(".npy")]
            images = [name for name in arrays if name.startswith("x_")]
            if not images:
                found = ", ".join(arrays) or "nothing"
                yield Failed(
                    path,
                    f"{path} has no x_* array (it holds {found}); Keras' MNIST layout is "
                    "x_train, y_train, x_test, y_test",
                )
                return
            pieces = [_npz_piece(archive, path, name, arrays) for name in images]
    except FileNotFoundError:
        yield Failed(path, f"no such file: {path}")
        return
    except IsADirectoryError:
        yield Failed(path, f"{path} is a directory, not an npz file")
        return
    except _BROKEN_ARCHIVE as exc:
        yield Failed(path, f"{path} is not a readable npz file: {exc}")
        return
    yield from pieces


def _npz_piece(archive: zipfile.ZipFile, path: str, name: str, arrays: list[str]) -> Piece:
    """The piece of array `name`, or a Failed piece saying why it cannot be scored."""
    try:
        shape, dtype = _npy_member(archive, name)
        if len(shape) < 2 or shape[1:] not in _IMAGE_SHAPES or dtype.kind not in "uif":
            raise InputError(
                f"{name} holds {dtype} of shape {shape}; expected images of shape "
                "(N, 28, 28), (N, 28, 28, 1) or (N, 784), uint8 in 0..255 or floating in 0..1"
            )
        if shape[0] == 0:
            raise InputError(f"{name} holds no images")
        labels = "y_" + name[2:]
        if labels not in arrays:
            return NpzArray(path, name, None, shape[0])
        label_shape, label_dtype = _npy_member(archive, labels)
        if label_shape != (shape[0],) or label_dtype.kind not in "iu":
            raise InputError(
                f"{labels} ({label_dtype}, shape {label_shape}) does not label the "
                f"{shape[0]} images of {name}: expected integers of shape ({shape[0]},)"
            )
        return NpzArray(path, name, labels, shape[0])
    except (*_BROKEN_ARCHIVE, InputError) as exc:
        return Failed(path, f"{path}: {exc}", array=name)


def _npy_member(archive: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """The shape and dtype of array `name`, checked against what its member really holds.

    A header may declare any shape: the rows it promises must be the bytes the member holds,
    and the member may not claim more bytes than its compressed data can give, so that a
    lying file is refused here, unread, rather than streamed without end.

    Raises:
        InputError: a negative dimension, or a shape that the member's size does not match.
    """
    info = archive.getinfo(f"{name}.npy")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise InputError(
            f"{name} is compressed by method {info.compress_type}; numpy writes "
            "stored or deflated members only"
        )
    ratio = 1 if info.compress_type == zipfile.ZIP_STORED else _DEFLATE_RATIO
    if info.file_size > info.compress_size * ratio:
        raise InputError(
            f"{name} claims {info.file_size:,} bytes from {info.compress_size:,} compressed "
            "ones, more than its compression can give; the file is damaged or forged"
        )
    with archive.open(info) as stream:
        shape, dtype = _npy_header(stream)
        header = stream.tell()
    if any(n < 0 for n in shape):
        raise InputError(f"{name} declares the shape {shape}: dimensions cannot be negative")
    data = info.file_size - header
    declared = dtype.itemsize * math.prod(shape)
    if declared != data:
        raise InputError(
            f"{name} declares {dtype} of shape {shape} ({declared:,} bytes) but holds "
            f"{data:,} bytes; the file is truncated or its header lies"
        )
    return shape, dtype


def _npy_header(stream: IO[bytes]) -> tuple[tuple[int, ...], np.dtype]:
    """Read an .npy header: the array's shape and dtype, the stream left at its first row.

    Raises:
        InputError: a format version other than 1.0 and 2.0, Python objects (which only
            unpickling could read), or Fortran order (whose rows are not contiguous).
        ValueError: not an .npy stream.
    """
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise InputError(f".npy format version {version[0]}.{version[1]} is not supported")
    if dtype.hasobject:
        raise InputError("the array holds Python objects, which onnxdigits never unpickles")
    if fortran and len(shape) > 1:
        raise InputError("the array is stored in Fortran order; save it C-contiguous")
    return tuple(int(n) for n in shape), dtype


def _npy_rows(archive: zipfile.ZipFile, name: str, rows: int) -> Iterator[np.ndarray]:
    """Stream the rows of array `name` out of the archive, at most `rows` at a time."""
    with archive.open(f"{name}.npy") as stream:
        shape, dtype = _npy_header(stream)
        width = dtype.itemsize * math.prod(shape[1:])
        left = shape[0]
        while left:
            count = min(rows, left)
            data = stream.read(count * width)
            if len(data) != count * width:
                raise EOFError(f"{name} ends after {shape[0] - left + len(data) // width} rows")
            yield np.frombuffer(data, dtype).reshape(count, *shape[1:])
            left -= count


def _pixels(chunk: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
    """Bring array rows to the models' form with `to_batch`; a row it refuses carries why."""
    # The joint-then-each loop of serve.deployments._joined, not shared: that one splits one
    # output per request, while here a chunk whose rows are all fine stays one array, uncopied.
    try:
        return to_batch(chunk), [None] * len(chunk)
    except InputError:
        pass
    pixels = np.zeros((len(chunk), *IMAGE_SHAPE), np.float32)
    errors: list[str | None] = [None] * len(chunk)
    for row, image in enumerate(chunk):
        try:
            pixels[row] = to_batch(image[None])[0]
        except InputError as exc:
            errors[row] = str(exc)
    return pixels, errors


def _image_column(schema: pa.Schema, column: str | None, path: str) -> str:
    """The column of encoded images: `column`, else "image", else the only column of bytes.

    Raises:
        InputError: no such column, or one that does not hold bytes.
    """

    def holds_bytes(name: str) -> bool:
        kind = schema.field(name).type
        if pa.types.is_struct(kind):  # Hugging Face's Image feature: {bytes, path}
            index = kind.get_field_index("bytes")
            return index >= 0 and _is_binary(kind.field(index).type)
        return _is_binary(kind)

    names = schema.names
    if column is not None:
        if column not in names:
            raise InputError(f"{path} has no column {column!r}; it has {', '.join(names)}")
        if not holds_bytes(column):
            raise InputError(
                f"column {column!r} of {path} holds {schema.field(column).type}, not image bytes"
            )
        return column
    if "image" in names and holds_bytes("image"):
        return "image"
    candidates = [name for name in names if holds_bytes(name)]
    if len(candidates) == 1:
        return candidates[0]
    which = "no column" if not candidates else f"{len(candidates)} columns"
    columns = ", ".join(f"{name}: {schema.field(name).type}" for name in names)
    raise InputError(
        f"{path} has {which} of image bytes ({columns}); name the column with --column"
    )


def _is_binary(kind: pa.DataType) -> bool:
    return pa.types.is_binary(kind) or pa.types.is_large_binary(kind)


def _image_cells(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The images of a Parquet column, from bytes or a {bytes, path} struct: binary, or a
    dictionary of binary values, nulls where there is no image."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_struct(column.type):
        field = column.field("bytes")
        if column.null_count:  # a null struct hides whatever its child holds
            field = pc.if_else(column.is_valid(), field, pa.scalar(None, field.type))
        column = field
    return column


def _cell_sizes(cells: pa.Array) -> np.ndarray:
    """Each cell's size in bytes, int64 (N,), 0 for nulls, without writing out a dictionary."""
    if isinstance(cells, pa.DictionaryArray):
        lengths = pc.binary_length(cells.dictionary).cast(pa.int64()).fill_null(0)
        sizes = pc.take(lengths, cells.indices)
    else:
        sizes = pc.binary_length(cells).cast(pa.int64())
    return sizes.fill_null(0).to_numpy(zero_copy_only=False)


def _slices(sizes: np.ndarray) -> Iterator[tuple[int, int]]:
    """Cut rows into runs [lo, hi) of at most `_BATCH_BYTES` (a larger cell is a run alone)."""
    lo, total = 0, 0
    for row, size in enumerate(sizes):
        if total + size > _BATCH_BYTES and row > lo:
            yield lo, row
            lo, total = row, 0
        total += int(size)
    if lo < len(sizes):
        yield lo, len(sizes)


def _decoded(cells: pa.Array) -> pa.Array:
    """Cells as a plain binary array."""
    if isinstance(cells, pa.DictionaryArray):
        cells = cells.dictionary_decode()
    return cells.cast(pa.binary())


def _row_group(
    path: str,
    image: str,
    labels: str | None,
    group: int,
    start: int,
    count: int,
    metadata: pq.RowGroupMetaData,
) -> Piece:
    """The piece of one row group, its batches sized by what its metadata says its image
    column holds; a group whose cells average over `MAX_CELL_BYTES` is refused unread."""
    size = sum(
        metadata.column(i).total_uncompressed_size
        for i in range(metadata.num_columns)
        if metadata.column(i).path_in_schema in (image, f"{image}.bytes")
    )
    if size > count * MAX_CELL_BYTES:
        return Failed(
            path,
            f"{path}: row group {group} (rows {start}..{start + count - 1}) holds {size:,} "
            f"bytes of images in {count:,} rows, over the limit of {MAX_CELL_BYTES:,} bytes per "
            "image; not read",
        )
    batch = max(1, min(CHUNK_ROWS, _BATCH_BYTES * count // max(size, 1)))
    return ParquetRows(path, image, labels, group, start, count, batch)


def _plan_parquet(path: str, column: str | None) -> Iterator[Piece]:
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        image = _image_column(schema, column, path)
    except FileNotFoundError:
        yield Failed(path, f"no such file: {path}")
        return
    except IsADirectoryError:
        yield Failed(path, f"{path} is a directory, not a Parquet file")
        return
    except (OSError, pa.ArrowException) as exc:
        yield Failed(path, f"{path} is not a readable Parquet file: {exc}")
        return
    except InputError as exc:
        yield Failed(path, str(exc))
        return
    labels = None
    if LABEL_COLUMN in schema.names and pa.types.is_integer(schema.field(LABEL_COLUMN).type):
        labels = LABEL_COLUMN
    start = 0
    for group in range(parquet.num_row_groups):
        metadata = parquet.metadata.row_group(group)
        count = metadata.num_rows
        if count:
            yield _row_group(path, image, labels, group, start, count, metadata)
        start += count
    if start == 0:
        yield Failed(path, f"{path} holds no rows")
