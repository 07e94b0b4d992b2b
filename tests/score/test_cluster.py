"""`score_on_ray`: the Ray Data pipeline writes the one-process job's rows; its pool is sized
from what the cluster has free, and one that cannot start fails with a PoolError, never hangs.

One local Ray cluster serves the module: two logical CPUs, as CI has.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
from click.testing import CliRunner
from onnxdigits.cli import main
from onnxdigits.score import NothingScoredError, OutputError, PoolError, score
from onnxdigits.score import cluster as cluster_module
from onnxdigits.score.cluster import Pool, score_on_ray, size_pool

from .conftest import Inputs, leftovers

CPUS = 2


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local cluster of two CPUs for this module, or the one this process is connected to."""
    if ray.is_initialized():
        yield
        return
    ray.init(
        num_cpus=CPUS,
        object_store_memory=200 * 2**20,
        include_dashboard=False,
        namespace="onnxdigits-score-tests",
    )
    try:
        yield
    finally:
        ray.shutdown()


@ray.remote(num_cpus=0)
class Holder:
    """Another job's actor, holding CPUs (as Serve replicas do)."""

    def ready(self) -> bool:
        return True


def hold(cpus: float) -> ray.actor.ActorHandle:
    holder = Holder.options(num_cpus=cpus).remote()
    ray.get(holder.ready.remote(), timeout=120)
    return holder


def release(holder: ray.actor.ActorHandle) -> None:
    """Kill the holder and wait until the cluster has its CPUs back."""
    total = ray.cluster_resources().get("CPU", 0)
    ray.kill(holder)
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < total and time.monotonic() < deadline:
        time.sleep(0.2)


def rows_of(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def assert_same_rows(one: list[dict], other: list[dict], result: str) -> None:
    """The same rows in the same order: sources, labels and errors equal, results within 1e-6
    (the SDK's batches differ in size between the two runs)."""
    keys = [k for k in one[0] if k != result]
    assert [[r[k] for k in keys] for r in one] == [[r[k] for k in keys] for r in other]
    assert [r[result] is None for r in one] == [r[result] is None for r in other]
    good = [i for i, r in enumerate(one) if r[result] is not None]
    np.testing.assert_allclose(
        np.array([other[i][result] for i in good]),
        np.array([one[i][result] for i in good]),
        atol=1e-6,
    )


def everything(inputs: Inputs, tmp_path: Path) -> list[Path]:
    return [inputs.npz, inputs.folder, inputs.parquet, inputs.hf_parquet, tmp_path / "absent.png"]


def test_ray_writes_the_rows_of_the_one_process_job(
    cluster: None, inputs: Inputs, tmp_path: Path
) -> None:
    local, distributed = tmp_path / "local.parquet", tmp_path / "ray"
    expected = score(everything(inputs, tmp_path), local, device="cpu", progress=False)
    summary = score_on_ray(
        everything(inputs, tmp_path), distributed, device="cpu", rows=16, progress=False
    )
    assert distributed.is_dir() and sorted(distributed.glob("*.parquet"))
    assert (
        (summary.rows, summary.failed)
        == (expected.rows, expected.failed)
        == (
            64 + 6 + 20 + 6 + 1,
            4,
        )
    )
    assert_same_rows(rows_of(local), rows_of(distributed), "probs")
    assert pq.read_schema(local).equals(pq.read_table(distributed).schema)
    assert leftovers(tmp_path) == []


def test_ray_with_one_actor_through_the_command(
    cluster: None, inputs: Inputs, tmp_path: Path
) -> None:
    local, distributed = tmp_path / "local.parquet", tmp_path / "ray"
    distributed.mkdir()
    (distributed / "stale.parquet").write_bytes(b"an earlier run's file")
    score([inputs.npz, inputs.folder], local, model="vae", device="cpu", progress=False)
    args = [str(inputs.npz), str(inputs.folder), "--model", "vae", "--device", "cpu"]
    result = CliRunner().invoke(
        main,
        ["score", *args, "--out", str(distributed), "--ray", "--actors", "1", "-q"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{distributed}\n" and "images/s" in result.stderr
    assert not (distributed / "stale.parquet").exists()  # replaced whole
    assert_same_rows(rows_of(local), rows_of(distributed), "z")


def test_a_full_cluster_fails_at_once(cluster: None, inputs: Inputs, tmp_path: Path) -> None:
    holder = hold(CPUS)
    try:
        start = time.monotonic()
        with pytest.raises(PoolError, match=r"too little CPU free .*0 of 2 CPU.*Serve replicas"):
            score_on_ray([inputs.npz], tmp_path / "out", device="cpu", progress=False)
        assert time.monotonic() - start < 30  # checked before anything starts
    finally:
        release(holder)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_a_pool_that_cannot_start_times_out(
    cluster: None, inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another job takes the CPUs between the check of what is free and the pool's start: the
    # check sees two free CPUs, the pool finds none.
    holder = hold(CPUS)
    monkeypatch.setattr(cluster_module.ray, "available_resources", lambda: {"CPU": 2.0})
    try:
        with pytest.raises(PoolError, match="could not start within 3 s"):
            score_on_ray(
                [inputs.npz], tmp_path / "out", device="cpu", start_timeout=3, progress=False
            )
    finally:
        monkeypatch.undo()
        release(holder)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_every_input_failing_on_ray_writes_nothing(
    cluster: None, inputs: Inputs, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(NothingScoredError, match="all 2 rows failed"):
        score_on_ray(
            [inputs.broken_png, tmp_path / "absent.npz"], out, device="cpu", progress=False
        )
    assert not out.exists() and leftovers(tmp_path) == []


def test_an_output_directory_of_other_files_is_refused(inputs: Inputs, tmp_path: Path) -> None:
    # Checked before Ray is touched: no cluster needed.
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="holds more than Parquet files"):
        score_on_ray([inputs.npz], out, device="cpu", progress=False)
    assert (out / "notes.txt").read_text() == "mine"


# --- sizing the pool from what is free --------------------------------------------------------


@pytest.mark.parametrize(
    "free, device, actors, pool",
    [
        ({"CPU": 2.0}, "cpu", None, Pool(2, 0.75, 0.0, 0.5, "cpu")),
        ({"CPU": 2.0}, "cpu", 1, Pool(1, 1.0, 0.0, 0.5, "cpu")),
        ({"CPU": 0.5}, "cpu", None, Pool(1, 0.38, 0.0, 0.12, "cpu")),  # replicas hold the rest
        ({"CPU": 16.0}, "auto", None, Pool(16, 0.93, 0.0, 1.0, "cpu")),
        ({"CPU": 8.0, "GPU": 2.0}, "auto", None, Pool(2, 1.0, 1.0, 1.0, "cuda")),
        ({"CPU": 8.0, "GPU": 1.0}, "cuda", 2, Pool(2, 1.0, 0.5, 1.0, "cuda")),
        ({"CPU": 8.0, "GPU": 2.0}, "cpu", None, Pool(8, 0.87, 0.0, 1.0, "cpu")),
    ],
)
def test_pool_sizes(free: dict, device: str, actors: int | None, pool: Pool) -> None:
    assert size_pool(free, device, actors) == pool


def test_no_more_actors_than_blocks() -> None:
    assert size_pool({"CPU": 2.0}, "cpu", None, blocks=1) == Pool(1, 1.0, 0.0, 0.5, "cpu")
    assert size_pool({"CPU": 2.0}, "cpu", 2, blocks=5) == Pool(2, 0.75, 0.0, 0.5, "cpu")


@pytest.mark.parametrize(
    "free, device, actors, match",
    [
        ({"CPU": 0.0}, "cpu", None, "too little CPU free"),
        ({"CPU": 0.05, "GPU": 1.0}, "auto", None, "too little CPU free"),
        ({"CPU": 2.0}, "cuda", None, "no GPU free"),
        ({"CPU": 1.0}, "cpu", 50, "50 actors cannot share"),
    ],
)
def test_pools_that_cannot_be(free: dict, device: str, actors: int | None, match: str) -> None:
    with pytest.raises(PoolError, match=match):
        size_pool(free, device, actors)
