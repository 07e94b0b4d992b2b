"""Inputs of every kind, made once from the shipped real-digit sample; reading the output."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxdigits
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

TRAIN, TEST = 40, 24  # the npz's x_train and x_test, taken from the sample in this order


@dataclass(frozen=True)
class Inputs:
    """Paths to inputs of each kind and what they hold."""

    npz: Path  # x_train (TRAIN) and x_test (TEST) with labels, uint8
    folder: Path  # PNGs in nested folders, a broken PNG, a text file and a hidden file
    pngs: list[Path]  # the folder's images in the order a job reads them (broken one included)
    broken_png: Path
    parquet: Path  # "image" bytes and "label", row groups of 8, one empty and one broken cell
    parquet_images: list[bytes | None]
    parquet_labels: list[int]
    hf_parquet: Path  # Hugging Face's layout: image: struct<bytes, path>, label
    images: np.ndarray  # the sample digits used, uint8 (N, 28, 28)
    labels: np.ndarray


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory, sample) -> Inputs:
    root = tmp_path_factory.mktemp("inputs")
    images, labels = sample[0][: TRAIN + TEST], sample[1][: TRAIN + TEST]

    npz = root / "digits.npz"
    np.savez_compressed(
        npz,
        x_train=images[:TRAIN],
        y_train=labels[:TRAIN],
        x_test=images[TRAIN:],
        y_test=labels[TRAIN:],
    )

    folder = root / "folder"
    (folder / "b" / "deeper").mkdir(parents=True)
    (folder / "a").mkdir()
    (folder / ".hidden").mkdir()
    pngs = [
        folder / "a" / "0.png",
        folder / "a" / "1.png",
        folder / "b" / "2.png",
        folder / "b" / "deeper" / "3.png",
        folder / "top.png",
    ]
    for i, path in enumerate(pngs):
        path.write_bytes(png_bytes(images[i]))
    broken = folder / "b" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden" / "9.png").write_bytes(png_bytes(images[9]))
    (folder / "a" / ".5.png").write_bytes(png_bytes(images[5]))
    # A directory's own files in sorted order, then its subdirectories', in sorted order.
    order = [pngs[4], pngs[0], pngs[1], pngs[2], broken, pngs[3]]

    cells: list[bytes | None] = [png_bytes(image) for image in images[:20]]
    cells[3] = None
    cells[11] = b"GIF89a broken"
    parquet = root / "digits.parquet"
    pq.write_table(
        pa.table(
            {"label": pa.array(labels[:20].astype(np.int64)), "image": pa.array(cells, pa.binary())}
        ),
        parquet,
        row_group_size=8,
    )
    hf = root / "hf.parquet"
    structs = [
        {"bytes": png_bytes(image), "path": f"{i}.png"} for i, image in enumerate(images[:6])
    ]
    pq.write_table(pa.table({"image": structs, "label": pa.array(labels[:6].astype(np.int64))}), hf)
    return Inputs(
        npz=npz,
        folder=folder,
        pngs=order,
        broken_png=broken,
        parquet=parquet,
        parquet_images=cells,
        parquet_labels=[int(v) for v in labels[:20]],
        hf_parquet=hf,
        images=images,
        labels=labels,
    )


@pytest.fixture(scope="session")
def vae_encoder(artifacts: onnxdigits.Artifacts) -> onnxdigits.Encoder:
    return onnxdigits.Encoder("vae", artifacts=artifacts, device="cpu")


def read_rows(path: Path) -> list[dict]:
    """Every row of a Parquet file, or of a directory of them, as dicts."""
    return pq.read_table(path).to_pylist()


def leftovers(folder: Path) -> list[str]:
    """Temporary files a job left beside its output."""
    return sorted(p.name for p in folder.iterdir() if ".tmp-" in p.name or ".old-" in p.name)
