"""`score_on_ray`: the Ray Data pipeline writes the one-process job's rows, with its actors
spread over the nodes of a real two-node cluster; its pool is sized and placed from what each
node has free, and one that cannot start fails with a PoolError, never hangs.

The cluster is the session's (`tests/ray_cluster.py`): two nodes of one CPU each.
"""

from __future__ import annotations

import os
import subprocess
import sys
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

from ..ray_cluster import RayCluster
from .conftest import Inputs, leftovers

CPUS = 2
WORKER = "MapWorker(MapBatches(_ScoreActor))"


@pytest.fixture
def cluster(ray_cluster: RayCluster) -> Iterator[RayCluster]:
    """The session's cluster, with both nodes' CPUs free before and after each test."""
    wait_until_free()
    yield ray_cluster
    wait_until_free()


def wait_until_free(timeout_s: float = 60) -> None:
    """Wait until the cluster has its CPUs back (a job's actors and groups go asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while ray.available_resources().get("CPU", 0) < CPUS and time.monotonic() < deadline:
        time.sleep(0.2)


def pool_nodes() -> dict[str, str]:
    """Every pool actor the cluster has known, and the node it ran on, by actor id."""
    return {
        actor_id: actor["Address"]["NodeID"]
        for actor_id, actor in ray._private.state.actors().items()
        if actor["ActorClassName"] == WORKER
    }


@ray.remote(num_cpus=0)
class Holder:
    """Another job's actor, holding CPUs (as Serve replicas do)."""

    def ready(self) -> bool:
        return True


def hold(cpus: float) -> list[ray.actor.ActorHandle]:
    """Hold `cpus` of each node's CPU."""
    holders = []
    for node in {n["NodeID"] for n in ray.nodes() if n["Alive"]}:
        strategy = ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(node, soft=False)
        holders.append(Holder.options(num_cpus=cpus, scheduling_strategy=strategy).remote())
    ray.get([holder.ready.remote() for holder in holders], timeout=120)
    return holders


def release(holders: list[ray.actor.ActorHandle]) -> None:
    for holder in holders:
        ray.kill(holder)
    wait_until_free()


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


def test_ray_writes_the_rows_of_the_one_process_job_on_both_nodes(
    cluster: RayCluster, inputs: Inputs, tmp_path: Path
) -> None:
    local, distributed = tmp_path / "local.parquet", tmp_path / "ray"
    expected = score(everything(inputs, tmp_path), local, device="cpu", progress=False)
    before = pool_nodes()
    summary = score_on_ray(
        everything(inputs, tmp_path), distributed, device="cpu", rows=16, progress=False
    )
    ran_on = {node for actor, node in pool_nodes().items() if actor not in before}
    assert ran_on == cluster.ids()  # one actor on each node: neither has room for two
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
    cluster: RayCluster, inputs: Inputs, tmp_path: Path
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


# Ray's own chatter that a clean run must not show (issue 20, item 14).
NOISE = (
    "Token authentication",  # the warning that token auth is on, or off
    "core_worker.cc",  # Ray's core logging on stderr
    "graceful_shutdown",
    "\x1b[",  # colour codes in a redirected stream
    "Warning",  # Python warnings raised inside Ray (deprecations)
    "WARNING",  # Ray Data's warnings that do not apply (no CPU free: the job's group holds them)
)


def test_score_ray_address_on_the_cluster_is_quiet(
    cluster: RayCluster, inputs: Inputs, tmp_path: Path
) -> None:
    """The command as a user runs it, in a process of its own, against the cluster's address:
    the one-process job's rows, actors on both nodes, and nothing on stderr but its own."""
    sources = [str(inputs.npz), str(inputs.folder), str(inputs.parquet)]
    local, distributed = tmp_path / "local.parquet", tmp_path / "ray"
    score(sources, local, device="cpu", progress=False)
    before = pool_nodes()
    done = subprocess.run(
        [sys.executable, "-m", "onnxdigits.cli", "score", *sources, "--device", "cpu"]
        + ["--out", str(distributed), "--ray", "--address", cluster.address, "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "RAY_ADDRESS": ""},  # the address given is the one used
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{distributed}\n"
    assert_same_rows(rows_of(local), rows_of(distributed), "probs")
    assert {node for actor, node in pool_nodes().items() if actor not in before} == cluster.ids()
    lines = done.stderr.splitlines()
    assert [line for line in lines if any(noise in line for noise in NOISE)] == [], done.stderr
    # Its own lines only: the summary and the rows that could not be read.
    assert [line for line in lines if not line.startswith(("scored ", "  - "))] == [], lines
    assert sum(line.startswith("scored ") for line in lines) == 1


def test_a_cluster_that_asks_for_a_token_says_so(
    cluster: RayCluster, inputs: Inputs, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    done = subprocess.run(
        [sys.executable, "-m", "onnxdigits.cli", "score", str(inputs.npz), "--device", "cpu"]
        + ["--out", str(tmp_path / "out"), "--ray", "--address", cluster.address, "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 1
    assert f"the Ray cluster at {cluster.address} asks for a token" in done.stderr
    assert "RAY_AUTH_MODE=token" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_full_cluster_fails_at_once(cluster: RayCluster, inputs: Inputs, tmp_path: Path) -> None:
    holders = hold(0.97)  # what is left on each node is too little for an actor
    try:
        start = time.monotonic()
        with pytest.raises(PoolError, match=r"too little CPU free .*of 2 CPU.*Serve replicas"):
            score_on_ray([inputs.npz], tmp_path / "out", device="cpu", progress=False)
        assert time.monotonic() - start < 30  # checked before anything starts
    finally:
        release(holders)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_a_pool_that_cannot_start_times_out(
    cluster: RayCluster, inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another job takes the CPUs between the check of what is free and the pool's start: the
    # check sees each node's CPU free, the pool finds none.
    free = cluster_module._free()
    holders = hold(1)
    monkeypatch.setattr(cluster_module, "_free", lambda: free)
    try:
        with pytest.raises(PoolError, match="could not start within 3 s"):
            score_on_ray(
                [inputs.npz], tmp_path / "out", device="cpu", start_timeout=3, progress=False
            )
    finally:
        monkeypatch.undo()
        release(holders)
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_every_input_failing_on_ray_writes_nothing(
    cluster: RayCluster, inputs: Inputs, tmp_path: Path
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


# --- sizing and placing the pool from what each node has free ---------------------------------


def one(**resources: float) -> dict[str, dict[str, float]]:
    return {"n": resources}


@pytest.mark.parametrize(
    "free, device, actors, pool",
    [
        (one(CPU=2.0), "cpu", None, Pool(2, 0.75, 0.0, 0.25, "cpu", (("n", 2),))),
        (one(CPU=2.0), "cpu", 1, Pool(1, 1.0, 0.0, 0.25, "cpu", (("n", 1),))),
        (one(CPU=0.5), "cpu", None, Pool(1, 0.38, 0.0, 0.06, "cpu", (("n", 1),))),  # replicas
        (one(CPU=16.0), "auto", None, Pool(16, 0.93, 0.0, 0.46, "cpu", (("n", 16),))),
        (one(CPU=8.0, GPU=2.0), "auto", None, Pool(2, 1.0, 1.0, 0.49, "cuda", (("n", 2),))),
        (one(CPU=8.0, GPU=1.0), "cuda", 2, Pool(2, 1.0, 0.5, 0.49, "cuda", (("n", 2),))),
        (one(CPU=8.0, GPU=2.0), "cpu", None, Pool(8, 0.87, 0.0, 0.43, "cpu", (("n", 8),))),
        # Two small nodes: an actor on each, its reads and writes beside it (issue 23).
        (
            {"a": {"CPU": 1.0}, "b": {"CPU": 1.0}},
            "cpu",
            None,
            Pool(2, 0.75, 0.0, 0.12, "cpu", (("a", 1), ("b", 1))),
        ),
        (
            {"a": {"CPU": 1.0}, "b": {"CPU": 4.0}},
            "cpu",
            None,
            Pool(5, 0.75, 0.0, 0.12, "cpu", (("b", 4), ("a", 1))),
        ),
        (
            {"a": {"CPU": 1.0}, "b": {"CPU": 1.0}},
            "cpu",
            3,
            Pool(3, 0.37, 0.0, 0.12, "cpu", (("a", 2), ("b", 1))),
        ),
        # A node with too little free is left out; so is one without a GPU on CUDA.
        (
            {"a": {"CPU": 1.0}, "b": {"CPU": 0.04}},
            "cpu",
            None,
            Pool(1, 0.75, 0.0, 0.12, "cpu", (("a", 1),)),
        ),
        (
            {"a": {"CPU": 4.0, "GPU": 1.0}, "b": {"CPU": 4.0}},
            "auto",
            None,
            Pool(1, 1.0, 1.0, 0.49, "cuda", (("a", 1),)),
        ),
    ],
)
def test_pool_sizes(free: dict, device: str, actors: int | None, pool: Pool) -> None:
    assert size_pool(free, device, actors) == pool


def test_no_more_actors_than_blocks() -> None:
    assert size_pool(one(CPU=2.0), "cpu", None, blocks=1) == Pool(
        1, 1.0, 0.0, 0.25, "cpu", (("n", 1),)
    )
    assert size_pool(one(CPU=2.0), "cpu", 2, blocks=5) == Pool(
        2, 0.75, 0.0, 0.25, "cpu", (("n", 2),)
    )


@pytest.mark.parametrize(
    "free, device, actors, match",
    [
        (one(CPU=0.0), "cpu", None, "too little CPU free"),
        ({"a": {"CPU": 0.04}, "b": {"CPU": 0.04}}, "cpu", None, "too little CPU free"),
        (one(CPU=0.05, GPU=1.0), "auto", None, "too little CPU free"),
        (one(CPU=2.0), "cuda", None, "no GPU free"),
        (one(CPU=1.0), "cpu", 50, "50 actors cannot share"),
    ],
)
def test_pools_that_cannot_be(free: dict, device: str, actors: int | None, match: str) -> None:
    with pytest.raises(PoolError, match=match):
        size_pool(free, device, actors)
