"""A scoring job as a Ray Data pipeline: read, `map_batches` over a pool of model actors,
`write_parquet` (`pip install 'onnxdigits[ray]'`).

The pipeline reads the same pieces as the one-process job (`inputs.plan`), one read task per
piece, and scores them with the same `Scorer`, one per actor, so it writes the same rows, in the
same order. The pool is sized from the resources the cluster has free, not the ones it has:
actors that each ask for a whole CPU never start while other actors (Serve replicas, another
job) hold the cores, and Ray would wait for them forever. Here each actor asks for a share of
what is free, the read tasks keep a share of their own, and a pool that still cannot start fails
after `start_timeout` seconds with a `PoolError`.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
import ray.util
from onnxdigits import OnnxDigitsError
from onnxdigits.manifest import Artifacts, ArtifactsLike
from onnxdigits.session import Device
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from .errors import PoolError, ScoreError
from .inputs import PIXELS, RAW, Piece, plan
from .job import Summary, _inputs
from .output import PARQUET_SUFFIX, check_output, staged_directory
from .scorer import Scorer

ROWS = 1024  # rows per read block and per batch given to an actor
START_TIMEOUT_S = 60  # how long the actor pool may take to start
READ_SHARE = 0.25  # of the free CPUs, kept for the read tasks
LEAST_CPUS = 0.05  # the smallest share of a CPU an actor may ask for
_ROW_BYTES = PIXELS * 4  # an npz row's pixels, the largest thing a row holds in memory


@dataclass(frozen=True)
class Pool:
    """The actor pool: how many actors, what each asks of Ray, and what each read task asks.

    `device` is what each actor's model runs on: "cpu", or "cuda" (the GPU that Ray gave it).
    """

    actors: int
    num_cpus: float
    num_gpus: float
    read_cpus: float
    device: str

    def __str__(self) -> str:
        gpus = f" and {self.num_gpus:g} GPU" if self.num_gpus else ""
        return f"{self.actors} actor(s) of {self.num_cpus:g} CPU{gpus} each"


def _share(amount: float) -> float:
    """Round a share of a resource down to hundredths, as Ray's accounting keeps them exact."""
    return math.floor(amount * 100) / 100


def size_pool(
    free: Mapping[str, float],
    device: str | None,
    actors: int | None,
    total: Mapping[str, float] | None = None,
    blocks: int | None = None,
) -> Pool:
    """Size the actor pool from the resources that a Ray cluster has free.

    Args:
        free: `ray.available_resources()`.
        device: "auto" (the GPUs when the cluster has any free, else the CPUs), "cpu", "cuda"
            or "cuda:N"; None for `$ONNXDIGITS_DEVICE`, else "auto". On Ray an actor's GPU is
            the one Ray gives it, so "cuda:N" means "cuda".
        actors: the pool's size; None for one actor per free CPU, or per free GPU on CUDA.
        total: `ray.cluster_resources()`, for the messages.
        blocks: how many blocks the job has: no more actors than that are started.

    Returns:
        A pool whose actors and read tasks fit together in what is free. A quarter of the free
        CPUs (at most one) is kept for the read tasks; the actors share the rest, at most one
        CPU each.

    Raises:
        PoolError: no free CPU, no free GPU for "cuda", or more actors than the free CPUs can
            give a twentieth of one each.
        DeviceError: an unknown device.
    """
    cpus, gpus = float(free.get("CPU", 0.0)), float(free.get("GPU", 0.0))
    kind = Device.parse(device).kind
    if kind == "cuda" and gpus <= 0:
        raise PoolError(
            f"the Ray cluster has no GPU free ({_resources(free, total)}); use --device cpu, or "
            "free a GPU that other Ray work holds"
        )
    if cpus < 2 * LEAST_CPUS:
        raise PoolError(
            f"the Ray cluster has too little CPU free for an actor pool ({_resources(free, total)})"
            ": other Ray work (Serve replicas, another job) holds the rest; stop it, or give the "
            "cluster more CPUs"
        )
    on_gpu = kind == "cuda" or (kind == "auto" and gpus > 0)
    read_cpus = _share(min(1.0, READ_SHARE * cpus))
    count = actors if actors is not None else max(1, int(gpus if on_gpu else cpus))
    count = min(count, blocks) if blocks else count
    num_cpus = _share(min(1.0, (cpus - read_cpus) / count))
    if num_cpus < LEAST_CPUS:
        raise PoolError(
            f"{count} actors cannot share the {cpus - read_cpus:g} CPU left free for them "
            f"({_resources(free, total)}); ask for at most {int((cpus - read_cpus) / LEAST_CPUS)}"
        )
    num_gpus = _share(min(1.0, gpus / count)) if on_gpu else 0.0
    if on_gpu and num_gpus <= 0:
        raise PoolError(f"{count} actors cannot share the {gpus:g} GPU free; ask for fewer")
    return Pool(count, num_cpus, num_gpus, read_cpus, "cuda" if on_gpu else "cpu")


def _resources(free: Mapping[str, float], total: Mapping[str, float] | None = None) -> str:
    """Say what is free: "0.5 of 2 CPU, 0 of 0 GPU free"."""
    total = total or {}
    return (
        ", ".join(
            f"{free.get(name, 0.0):g}"
            + (f" of {total[name]:g}" if name in total else "")
            + f" {name}"
            for name in ("CPU", "GPU")
        )
        + " free"
    )


class _Pieces(Datasource):
    """The planned pieces as a Ray datasource: one read task per piece."""

    def __init__(self, pieces: Sequence[Piece], rows: int) -> None:
        super().__init__()
        self._pieces = list(pieces)
        self._rows = rows

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(piece.rows for piece in self._pieces) * _ROW_BYTES

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: object = None
    ) -> list[ReadTask]:
        # A piece is already a sensible task (a run of files, an array streamed in blocks, a
        # row group), so `parallelism` is not followed.
        return [
            ReadTask(
                partial(_read, piece, self._rows),
                BlockMetadata(
                    num_rows=piece.rows,
                    size_bytes=piece.rows * _ROW_BYTES,
                    exec_stats=None,
                    input_files=None,
                ),
                schema=RAW,
                per_task_row_limit=per_task_row_limit,
            )
            for piece in self._pieces
        ]


def _read(piece: Piece, rows: int) -> Iterable[pa.Table]:
    return piece.read(rows)


class _ScoreActor:
    """A pool actor: one SDK model, scoring batches of raw rows into output rows."""

    def __init__(self, model: str, artifacts: str | None, device: str) -> None:
        self.scorer = Scorer(model, artifacts=artifacts, device=device)

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.scorer(batch)


def score_on_ray(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    model: str = "classifier",
    artifacts: ArtifactsLike = None,
    device: str | None = None,
    column: str | None = None,
    address: str | None = None,
    actors: int | None = None,
    rows: int = ROWS,
    start_timeout: float = START_TIMEOUT_S,
    progress: bool = True,
) -> Summary:
    """Score images into a directory of Parquet files with a Ray Data pipeline.

    Reads the inputs' pieces in Ray tasks, scores them in a pool of actors that each hold one
    SDK model (`map_batches`), and writes them with `write_parquet` into a directory beside
    `out` that replaces it once complete. The rows, and their order, are those of `score`.

    Args:
        inputs, model, column, progress: as for `onnxdigits.score.score`.
        out: the directory to write (read it with `pyarrow.parquet.read_table(out)` or pandas).
            On a cluster of several machines, every one of them must see it, as they must see
            the inputs, at the same path.
        artifacts: the set's directory, as the workers see it; None for the default set.
        device: see `size_pool`.
        address: the cluster to run on; None for `$RAY_ADDRESS`, else a local cluster started
            for the job and stopped after it. When this process is already connected to Ray,
            that connection is used.
        actors: the pool's size; None to size it from what the cluster has free.
        rows: rows per block and per actor batch.
        start_timeout: seconds the pool may take to start before `PoolError`.

    Returns:
        The job's `Summary`.

    Raises:
        OutputError: `out` cannot be written (checked before anything starts).
        PoolError: the pool cannot start (see `size_pool`), checked before the pipeline runs,
            or it did not start within `start_timeout`.
        NothingScoredError: no row could be scored; nothing is written.
        ScoreError: the cluster cannot be reached, or the pipeline failed.
        InputError, ArtifactError, DeviceError: bad arguments, a bad set, an unknown device.
    """
    inputs = _inputs(inputs)
    target = check_output(out, directory=True, inputs=inputs)
    if isinstance(artifacts, Artifacts):
        artifacts = artifacts.root
    root = os.fspath(Artifacts(artifacts).root) if artifacts is not None else None
    Scorer(model, artifacts=root, device="cpu")  # a bad model or set fails here, not on a worker
    pieces = list(plan(inputs, files=rows, column=column))
    started = _connect(address)
    try:
        blocks = sum(math.ceil(piece.rows / rows) for piece in pieces)
        pool = size_pool(ray.available_resources(), device, actors, ray.cluster_resources(), blocks)
        return _run(pieces, target, pool, model, root, rows, start_timeout, progress)
    finally:
        if started:
            ray.shutdown()


def _connect(address: str | None) -> bool:
    """Connect to Ray unless connected already; return whether this started the connection."""
    if ray.is_initialized():
        return False
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = address or os.environ.get("RAY_ADDRESS") or "a local cluster"
        raise ScoreError(f"cannot start Ray on {where}: {exc}") from None
    return True


def _run(
    pieces: list[Piece],
    target: Path,
    pool: Pool,
    model: str,
    artifacts: str | None,
    rows: int,
    start_timeout: float,
    progress: bool,
) -> Summary:
    summary = Summary(target)
    start = time.perf_counter()
    _reserve(pool, start_timeout)
    with _settings(start_timeout, progress), staged_directory(target) as staging:
        # One block per read task as planned: left to itself, Ray would split each task's
        # output into many small blocks, only for map_batches to gather them again.
        dataset = ray.data.read_datasource(
            _Pieces(pieces, rows), num_cpus=pool.read_cpus, override_num_blocks=len(pieces)
        ).map_batches(
            _ScoreActor,
            fn_constructor_kwargs={"model": model, "artifacts": artifacts, "device": pool.device},
            compute=ray.data.ActorPoolStrategy(size=pool.actors),
            num_cpus=pool.num_cpus,
            num_gpus=pool.num_gpus or None,
            batch_size=rows,
            batch_format="pyarrow",
            zero_copy_batch=True,
        )
        failure: OnnxDigitsError | None = None
        try:
            dataset.write_parquet(os.fspath(staging.resolve()))  # workers may start elsewhere
        except ray.exceptions.GetTimeoutError:  # other work took the resources meanwhile
            failure = _not_started(pool, start_timeout)
        except ray.exceptions.RayError as exc:
            failure = _reason(exc)
        if failure is not None:
            # A pool that failed to start is left to Ray's reference counting: its actors wait
            # for CPUs, and would take them once free, until the last handle to them goes. The
            # handles sit in cycles of frames through Ray's traceback; collect them now, and
            # raise outside the except clause so that the error does not keep them.
            del dataset
            gc.collect()
            raise failure
        summary.seconds = time.perf_counter() - start
        for file in sorted(staging.glob(f"*{PARQUET_SUFFIX}")):
            columns = ["file", "array", "index", "error"]
            for batch in pq.ParquetFile(file).iter_batches(columns=columns):
                summary.add(pa.Table.from_batches([batch]))
        summary.check()
    return summary


def _reserve(pool: Pool, timeout: float) -> None:
    """Check that the pool's actors and a read task fit in the cluster now, by reserving them as
    a placement group and releasing it at once.

    A placement group that cannot be placed is removed cleanly, where an actor pool that cannot
    start leaves its actors waiting: they would take the resources whenever they came free.

    Raises:
        PoolError: the group could not be placed within `timeout` seconds.
    """
    actor = {"CPU": pool.num_cpus, **({"GPU": pool.num_gpus} if pool.num_gpus else {})}
    group = ray.util.placement_group(
        [actor] * pool.actors + [{"CPU": pool.read_cpus}], strategy="SPREAD"
    )
    try:
        ready = group.wait(timeout_seconds=max(1, math.ceil(timeout)))
    finally:
        ray.util.remove_placement_group(group)
    if not ready:
        raise _not_started(pool, timeout)


def _not_started(pool: Pool, timeout: float) -> PoolError:
    free = _resources(ray.available_resources(), ray.cluster_resources())
    return PoolError(
        f"the pool of {pool} could not start within {timeout:g} s ({free} now): other Ray "
        "work holds what it needs; free it, or pass fewer --actors"
    )


class _PoolTimeoutFilter(logging.Filter):
    """Ray Data logs a pool that did not start as an internal error, stack trace and all; the
    job reports it as a PoolError instead. Ray logs it while handling the exception."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not isinstance(sys.exc_info()[1], ray.exceptions.GetTimeoutError)


@contextmanager
def _settings(start_timeout: float, progress: bool) -> Iterator[None]:
    """Ray Data's settings for one job, put back after it."""
    context = ray.data.DataContext.get_current()
    options = context.execution_options
    saved = (
        context.wait_for_min_actors_s,
        context.enable_progress_bars,
        context.print_on_execution_start,
        options.preserve_order,
    )
    context.wait_for_min_actors_s = max(1, math.ceil(start_timeout))
    context.enable_progress_bars = progress
    context.print_on_execution_start = False
    options.preserve_order = True  # the rows in the order of the one-process job
    quiet = _PoolTimeoutFilter()
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    logging.getLogger("ray.data.exceptions").addFilter(quiet)
    if not progress:
        data_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        (
            context.wait_for_min_actors_s,
            context.enable_progress_bars,
            context.print_on_execution_start,
            options.preserve_order,
        ) = saved
        logging.getLogger("ray.data.exceptions").removeFilter(quiet)
        data_log.setLevel(level)


def _reason(exc: BaseException) -> OnnxDigitsError:
    """The package's own error behind a failure in Ray, else a ScoreError with Ray's first line."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OnnxDigitsError):
            return cause
        cause = getattr(cause, "cause", None) or cause.__cause__
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return ScoreError(f"the Ray pipeline failed: {lines[-1] if lines else type(exc).__name__}")
