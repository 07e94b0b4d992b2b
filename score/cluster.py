"""A scoring job as a Ray Data pipeline: read, `map_batches` over a pool of model actors,
`write_parquet` (`pip install 'onnxdigits[ray]'`).

The pipeline reads the same pieces as the one-process job (`inputs.plan`), one read task per
piece, and scores them with the same `Scorer`, one per actor, so it writes the same rows, in the
same order. The pool is sized and placed from what each node has free, not from what the
cluster has: actors that each ask for a whole CPU never start while other actors (Serve
replicas, another job) hold the cores, and a pool sized from the cluster's totals may fit on no
node (two nodes of one CPU each hold no actor of 0.75 CPU beside a read task of 0.5). Here each
node keeps a share for the read and write tasks and holds as many actors as fit in the rest;
the whole pool is reserved as one placement group, bound node by node, and the job runs in it.
A pool that cannot be placed fails after `start_timeout` seconds with a `PoolError`.
"""

from __future__ import annotations

import gc
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray._private.state
import ray.data
import ray.util
from onnxdigits import OnnxDigitsError
from onnxdigits.files import fill_beside
from onnxdigits.manifest import Artifacts, ArtifactsLike
from onnxdigits.models import CHUNK
from onnxdigits.session import Device
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask
from ray.util.placement_group import PlacementGroup
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from .errors import PoolError, ScoreError
from .inputs import PIXELS, RAW, Piece, input_list, plan
from .job import Summary
from .output import PARQUET_SUFFIX, check_output
from .scorer import Scorer

# Rows per read block and per batch given to an actor: one SDK chunk on the CPU, so that each
# batch is one model run.
ROWS = CHUNK["cpu"]
START_TIMEOUT_S = 60  # how long the actor pool may take to start
IO_SHARE = 0.25  # of each node's free CPUs (at most one), kept for the read and write tasks
LEAST_CPUS = 0.05  # the smallest share of a CPU an actor may ask for
_ROW_BYTES = PIXELS * 4  # an npz row's pixels, the largest thing a row holds in memory
_NODE_LABEL = "ray.io/node-id"  # the label Ray gives every node: its id


@dataclass(frozen=True)
class Pool:
    """The actor pool: how many actors, what each asks of Ray, where they run, and what each
    read or write task asks.

    `device` is what each actor's model runs on: "cpu", or "cuda" (the GPU that Ray gave it).
    `nodes` holds (node id, actors) for each node the pool uses; each node also keeps `io_cpus`
    for each of two read or write tasks at a time beside its actors.
    """

    actors: int
    num_cpus: float
    num_gpus: float
    io_cpus: float
    device: str
    nodes: tuple[tuple[str, int], ...]

    def __str__(self) -> str:
        gpus = f" and {self.num_gpus:g} GPU" if self.num_gpus else ""
        return (
            f"{self.actors} actor(s) of {self.num_cpus:g} CPU{gpus} each on "
            f"{len(self.nodes)} node(s)"
        )


def _share(amount: float) -> float:
    """Round a share of a resource down to hundredths, as Ray's accounting keeps them exact."""
    return math.floor(amount * 100 + 1e-9) / 100


def _largest_share(amounts: Sequence[float], count: int) -> float:
    """The largest share (in hundredths, at most 1) of which the amounts hold `count` in all,
    each amount holding whole shares; 0 when there is none."""
    candidates = {1.0} | {
        _share(amount / parts) for amount in amounts for parts in range(1, count + 1)
    }
    for share in sorted((s for s in candidates if 0 < s <= 1), reverse=True):
        if sum(int(amount / share + 1e-9) for amount in amounts) >= count:
            return share
    return 0.0


def _spread(capacity: Mapping[str, int], count: int) -> dict[str, int]:
    """`count` actors over the nodes, one to each in turn (most capacity first), so that the
    pool uses as many nodes as it can."""
    placed = dict.fromkeys(capacity, 0)
    order = sorted(capacity, key=lambda node: -capacity[node])
    while sum(placed.values()) < count:
        for node in order:
            if placed[node] < capacity[node] and sum(placed.values()) < count:
                placed[node] += 1
    return {node: n for node, n in placed.items() if n}


def size_pool(
    free: Mapping[str, Mapping[str, float]],
    device: str | None,
    actors: int | None,
    total: Mapping[str, float] | None = None,
    blocks: int | None = None,
) -> Pool:
    """Size the actor pool, and place it over the nodes, from what each node has free.

    Args:
        free: each node's free resources by node id (`available_resources_per_node`).
        device: "auto" (the GPUs when a node has any free, else the CPUs), "cpu", "cuda"
            or "cuda:N"; None for `$ONNXDIGITS_DEVICE`, else "auto". On Ray an actor's GPU is
            the one Ray gives it, so "cuda:N" means "cuda".
        actors: the pool's size; None for one actor per free CPU of each node (at least one
            on each node with room), or per free GPU on CUDA.
        total: the cluster's resources (`ray.cluster_resources()`), for the messages.
        blocks: how many blocks the job has: no more actors than that are started.

    Returns:
        A pool whose actors and read and write tasks fit in what each node has free. Each node
        keeps a quarter of its free CPUs (at most one) for the read and write tasks; its
        actors share the rest. Every actor asks the same: at most one CPU, the largest share
        at which each node used holds its actors.

    Raises:
        PoolError: no node has a CPU share free for an actor, no GPU is free for "cuda", or
            more actors than the free CPUs can give a twentieth of one each.
        DeviceError: an unknown device.
    """
    kind = Device.parse(device).kind
    gpus = {node: float(res.get("GPU", 0.0)) for node, res in free.items()}
    if kind == "cuda" and not any(g > 0 for g in gpus.values()):
        raise PoolError(
            f"the Ray cluster has no GPU free ({_resources(free, total)}); use --device cpu, or "
            "free a GPU that other Ray work holds"
        )
    on_gpu = kind == "cuda" or (kind == "auto" and any(g > 0 for g in gpus.values()))
    io, room, wanted = {}, {}, {}
    for node, resources in free.items():
        cpus = float(resources.get("CPU", 0.0))
        keep = _share(min(1.0, IO_SHARE * cpus))
        if cpus - keep >= LEAST_CPUS and (gpus[node] > 0 or not on_gpu):
            io[node], room[node] = keep, cpus - keep
            wanted[node] = max(1, int(gpus[node] if on_gpu else cpus))
    if not room:
        raise PoolError(
            f"the Ray cluster has too little CPU free for an actor pool ({_resources(free, total)})"
            ": other Ray work (Serve replicas, another job) holds the rest; stop it, or give the "
            "cluster more CPUs"
        )
    # What decides how many actors a node holds: its GPUs on CUDA, else its CPUs.
    amount = {node: gpus[node] if on_gpu else room[node] for node in room}
    count = actors if actors is not None else sum(wanted.values())
    count = min(count, blocks) if blocks else count
    if actors is None and count == sum(wanted.values()):
        share = _share(min(1.0, *(amount[node] / wanted[node] for node in room)))
        placed = dict(wanted)
    else:
        share = _largest_share(list(amount.values()), count)
        placed = (
            _spread({n: int(a / share + 1e-9) for n, a in amount.items()}, count) if share else {}
        )
    left = sum(room.values())
    if not on_gpu and share < LEAST_CPUS:
        raise PoolError(
            f"{count} actors cannot share the {left:g} CPU left free for them "
            f"({_resources(free, total)}); ask for at most {int(left / LEAST_CPUS)}"
        )
    if on_gpu and share <= 0:
        raise PoolError(
            f"{count} actors cannot share the {sum(gpus.values()):g} GPU free; ask for fewer"
        )
    num_cpus = share if not on_gpu else _share(min(1.0, *(room[n] / k for n, k in placed.items())))
    if num_cpus < LEAST_CPUS:
        raise PoolError(
            f"{count} actors cannot share the {left:g} CPU left free beside the GPUs "
            f"({_resources(free, total)}); ask for fewer"
        )
    nodes = tuple(sorted(placed.items(), key=lambda item: (-item[1], item[0])))
    return Pool(
        actors=count,
        num_cpus=num_cpus,
        num_gpus=share if on_gpu else 0.0,
        # Two read or write tasks to a node's bundle, which is smaller than an actor.
        io_cpus=max(0.01, _share(min(*(io[node] for node in placed), num_cpus - 0.01) / 2)),
        device="cuda" if on_gpu else "cpu",
        nodes=nodes,
    )


def _resources(
    free: Mapping[str, Mapping[str, float]], total: Mapping[str, float] | None = None
) -> str:
    """Say what is free: "0.5 of 2 CPU, 0 of 0 GPU free on 2 node(s)"."""
    total = total or {}
    summed = {
        name: sum(float(res.get(name, 0.0)) for res in free.values()) for name in ("CPU", "GPU")
    }
    return (
        ", ".join(
            f"{summed[name]:g}" + (f" of {total[name]:g}" if name in total else "") + f" {name}"
            for name in ("CPU", "GPU")
        )
        + f" free on {len(free)} node(s)"
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
    inputs = input_list(inputs)
    target = check_output(out, directory=True, inputs=inputs)
    if isinstance(artifacts, Artifacts):
        artifacts = artifacts.root
    root = os.fspath(Artifacts(artifacts).root) if artifacts is not None else None
    Scorer(model, artifacts=root, device="cpu")  # a bad model or set fails here, not on a worker
    pieces = list(plan(inputs, files=rows, column=column))
    started = connect(address)
    try:
        blocks = sum(math.ceil(piece.rows / rows) for piece in pieces)
        pool = size_pool(_free(), device, actors, ray.cluster_resources(), blocks)
        if progress:
            print(f"onnxdigits score: {pool} ({_resources(_free())} before)", file=sys.stderr)
        return _run(pieces, target, pool, model, root, rows, start_timeout, progress)
    finally:
        if started:
            ray.shutdown()


def _free() -> dict[str, dict[str, float]]:
    """What each live node has free, by node id."""
    live = ray._private.state.total_resources_per_node()
    free = ray._private.state.available_resources_per_node()
    return {node: dict(free.get(node, {})) for node in live}


def connect(address: str | None, error: type[OnnxDigitsError] = ScoreError, **local: Any) -> bool:
    """Connect this process to Ray unless it is connected already, with Ray's own chatter
    quieted (see `quiet`).

    Args:
        address: the cluster's address (its GCS, "host:port"); None for `$RAY_ADDRESS`, else a
            local cluster started for this process and stopped with it.
        error: what to raise when Ray cannot be reached.
        local: more `ray.init` options, for a local cluster only.

    Returns:
        Whether this call connected (and the caller should `ray.shutdown()` after).

    Raises:
        error: the cluster cannot be reached, or refused this process (with what to do about
            a cluster that asks for a token).
    """
    if ray.is_initialized():
        return False
    quiet()
    where = address or os.environ.get("RAY_ADDRESS")
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            configure_logging=True,
            # Actors' own output stays in their log files unless RAY_LOG_TO_DRIVER says so;
            # their errors reach this process as exceptions.
            log_to_driver=True if os.environ.get("RAY_LOG_TO_DRIVER") == "1" else False,
            **({} if where else local),
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if _refused(exc):
            raise error(
                f"the Ray cluster at {where} asks for a token: set RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to the token of its head node "
                "(`ray get-auth-token` there prints it)"
            ) from None
        raise error(f"cannot start Ray on {where or 'a local cluster'}: {exc}") from None
    return True


def _refused(exc: BaseException) -> bool:
    """Whether the cluster refused the connection for want of the right token."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, ray.exceptions.AuthenticationError) or "InvalidAuthToken" in str(
            cause
        ):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def quiet() -> None:
    """Quiet Ray's own chatter in this process, where the user has not chosen otherwise: the
    warning that token authentication is on or off, and colour codes when stderr is not a
    terminal (`RAY_COLOR_PREFIX`). (Setting `RAY_BACKEND_LOG_LEVEL` would quiet Ray's core
    too, but makes it log a line of its own to say so.)"""
    if not sys.stderr.isatty():
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
        logging.ERROR
    )


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
    with _placed(pool, start_timeout) as group, _settings(group, start_timeout, progress):
        with fill_beside(target) as staging:
            # One block per read task as planned: left to itself, Ray would split each task's
            # output into many small blocks, only for map_batches to gather them again.
            dataset = _quietly(ray.data.read_datasource)(
                _Pieces(pieces, rows), num_cpus=pool.io_cpus, override_num_blocks=len(pieces)
            )
            dataset = _quietly(dataset.map_batches)(
                _ScoreActor,
                fn_constructor_kwargs={
                    "model": model,
                    "artifacts": artifacts,
                    "device": pool.device,
                },
                compute=ray.data.ActorPoolStrategy(size=pool.actors),
                num_cpus=pool.num_cpus,
                num_gpus=pool.num_gpus or None,
                batch_size=rows,
                batch_format="pyarrow",
                zero_copy_batch=True,
                # An actor is not restarted: its bundle is bound to a node, and one whose node
                # went would wait for it forever; the job fails instead.
                max_restarts=0,
            )
            failure: OnnxDigitsError | None = None
            try:
                _quietly(dataset.write_parquet)(
                    os.fspath(staging.resolve()),  # workers may start elsewhere
                    ray_remote_args={"num_cpus": pool.io_cpus},
                )
            except ray.exceptions.GetTimeoutError:  # an actor did not start in its bundle
                failure = _not_started(pool, start_timeout)
            except ray.exceptions.RayError as exc:
                failure = _reason(exc)
            if failure is not None:
                # A pool that failed to start is left to Ray's reference counting: its actors
                # wait for CPUs, and would take them once free, until the last handle to them
                # goes. The handles sit in cycles of frames through Ray's traceback; collect
                # them now, and raise outside the except clause so that the error does not
                # keep them.
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


@contextmanager
def _placed(pool: Pool, timeout: float) -> Iterator[PlacementGroup]:
    """Reserve the pool's place on each node for the job, as one placement group: a bundle
    per actor and one per node for two read or write tasks at a time, each bound to its node;
    remove it after the job (which ends any actor left in it). (Object store memory in a bundle
    makes Ray 2.60's raylet fail a check when the group goes: the group holds CPUs and GPUs.)

    The job runs in the group (Ray Data's scheduling strategy, see `_settings`): each actor
    takes a bundle of its own, as the read and write bundles are smaller than an actor, so
    each node gets the actors planned for it, and other Ray work cannot take the read and
    write tasks' share while the job runs. A group that cannot be placed is removed cleanly,
    where an actor pool that cannot start would leave its actors waiting to take the
    resources whenever they came free.

    Raises:
        PoolError: the group could not be placed within `timeout` seconds.
    """
    actor = {"CPU": pool.num_cpus, **({"GPU": pool.num_gpus} if pool.num_gpus else {})}
    bundles: list[dict[str, float]] = []
    labels: list[dict[str, str]] = []
    for node, count in pool.nodes:
        bundles += [actor] * count + [{"CPU": 2 * pool.io_cpus}]
        labels += [{_NODE_LABEL: node}] * (count + 1)
    group = ray.util.placement_group(bundles, strategy="SPREAD", bundle_label_selector=labels)
    try:
        if not group.wait(timeout_seconds=max(1, math.ceil(timeout))):
            raise _not_started(pool, timeout)
        yield group
    finally:
        ray.util.remove_placement_group(group)


def _not_started(pool: Pool, timeout: float) -> PoolError:
    free = _resources(_free(), ray.cluster_resources())
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
def _settings(group: PlacementGroup, start_timeout: float, progress: bool) -> Iterator[None]:
    """Ray Data's settings for one job, put back after it: every task and actor in `group`.

    Ray Data sizes its budget from the placement group when its scheduling strategy is one
    (else from what its own resource reservations get, which the group holds already)."""
    context = ray.data.DataContext.get_current()
    options = context.execution_options
    saved = (
        context.scheduling_strategy,
        context.scheduling_strategy_large_args,
        context.wait_for_min_actors_s,
        context.enable_progress_bars,
        context.print_on_execution_start,
        options.preserve_order,
    )
    with warnings.catch_warnings():
        # Deprecated for users who pick a strategy for their own reasons; Ray Data's budget
        # still follows a placement group given here, and nothing else yet.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.scheduling_strategy = PlacementGroupSchedulingStrategy(group)
        context.scheduling_strategy_large_args = PlacementGroupSchedulingStrategy(group)
    context.wait_for_min_actors_s = max(1, math.ceil(start_timeout))
    context.enable_progress_bars = progress
    context.print_on_execution_start = False
    options.preserve_order = True  # the rows in the order of the one-process job
    quiet, chatter = _PoolTimeoutFilter(), _Chatter()
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    logging.getLogger("ray.data.exceptions").addFilter(quiet)
    chatty = [
        logging.getLogger(name) for name in ("ray.data.dataset", "ray.data._internal.progress")
    ]
    for logger in chatty:
        logger.addFilter(chatter)
    if not progress:
        data_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.scheduling_strategy, context.scheduling_strategy_large_args = saved[:2]
        (
            context.wait_for_min_actors_s,
            context.enable_progress_bars,
            context.print_on_execution_start,
            options.preserve_order,
        ) = saved[2:]
        logging.getLogger("ray.data.exceptions").removeFilter(quiet)
        for logger in chatty:
            logger.removeFilter(chatter)
        data_log.setLevel(level)


class _Chatter(logging.Filter):
    """Ray Data's warnings that do not apply to a job in its own placement group: that the
    cluster has no CPU free (the group holds them), and that progress bars are off (-q)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "does not have any available CPUs" not in message and (
            "Progress bars disabled" not in message
        )


def _quietly(call: Callable[..., Any]) -> Callable[..., Any]:
    """`call`, with the Python warnings that Ray Data raises in it left out: the deprecation
    of `ray_remote_args`, and that the pool is larger than the blocks it got at once."""

    def quiet_call(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            warnings.filterwarnings("ignore", message="The minimum number of concurrent actors")
            return call(*args, **kwargs)

    return quiet_call


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
