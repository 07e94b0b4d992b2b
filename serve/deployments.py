"""The service on Ray Serve: the same FastAPI app as the ingress, the models as batched deployments.

Three deployments make one Serve application, "onnxdigits":

- "ingress": the HTTP app of `app.create_app`, which parses requests and normalises images, then
  calls the model deployments through their handles (`RayBackend`);
- "classifier" and "latent": the SDK's classifier, and the encoders and generators of ae, vae and
  cvae, each in N replicas. Concurrent requests to a replica are gathered by `@serve.batch` into
  one session run per model (`max_batch` requests at most, waiting at most `batch_wait_s`); the
  ingress gathers concurrent classify and embed requests the same way into one replica call.

Every actor reserves a fraction of a CPU (`replica_cpus`), so that the ingress, the replicas and
Serve's proxy and controller (which reserve none) share two cores. Arrays pass between the actors
through Ray's object serialisation; nothing a client sends is unpickled.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import math
import os
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import ray
from fastapi import FastAPI
from onnxdigits.errors import InputError, OnnxDigitsError
from onnxdigits.manifest import ARTIFACTS_ENV
from onnxdigits.score.cluster import connect
from onnxdigits.session import DEVICE_ENV
from ray import serve
from ray._private import ray_constants
from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException

from .app import Limits, create_app
from .backend import Models
from .errors import ServeError

APP = "onnxdigits"
CALL_TIMEOUT_S = 60  # a model call that takes longer is answered 503, not left hanging
RETRIES = 4  # more tries of a call whose replica was lost, RETRY_WAIT_S apart, doubling
RETRY_WAIT_S = 0.25
_NODE_LABEL = "ray.io/node-id"  # the label Ray gives every node: its id
STOP_TIMEOUT_S = 120  # for the replicas to drain and the application to go
LOCAL_OBJECT_STORE = 256 * 2**20  # the arrays passed are small; Ray's default is 30% of memory


class Batched:
    """One request at a time into `many`, an async function over lists of requests: through
    `@serve.batch`, which gathers concurrent requests, when `max_batch` > 1, else directly.

    `many` may return an exception object for a request it refuses, which is raised for that
    request alone. `requests` and `runs` count the calls and the lists they made, for `stats`.
    """

    def __init__(
        self, many: Callable[[list[Any]], Awaitable[list[Any]]], max_batch: int, wait_s: float
    ):
        self.max_batch = max_batch
        self.requests = 0
        self.runs = 0

        async def counted(requests: list[Any]) -> list[Any]:
            self.runs += 1
            return await many(requests)

        self._many = counted
        self._batch = serve.batch(max_batch_size=max_batch, batch_wait_timeout_s=wait_s)(counted)

    async def __call__(self, request: Any) -> Any:
        self.requests += 1
        if self.max_batch > 1:
            result = await self._batch(request)
        else:
            result = (await self._many([request]))[0]
        if isinstance(result, Exception):
            raise result
        return result

    def stats(self) -> dict[str, Any]:
        """The batch limit, the calls and the runs so far, and which replica counted them."""
        replica = serve.get_replica_context().replica_id.unique_id
        return {
            "max_batch": self.max_batch,
            "requests": self.requests,
            "runs": self.runs,
            "replica": replica,
        }


def _on_thread(
    run: Callable[[list[Any]], list[Any]],
) -> Callable[[list[Any]], Awaitable[list[Any]]]:
    """`run` on a thread, so that the replica keeps accepting requests while it runs."""

    async def many(requests: list[Any]) -> list[Any]:
        return await asyncio.to_thread(run, requests)

    return many


def _split(output: np.ndarray, parts: list[np.ndarray]) -> list[np.ndarray]:
    """Split the output of a run over `parts` joined back into one output per part."""
    return np.split(output, np.cumsum([len(part) for part in parts])[:-1])


def _joined(run: Callable[[np.ndarray], np.ndarray], parts: list[np.ndarray]) -> list[Any]:
    """Run `run` once over `parts` joined, and split its output back; when the joint run is
    refused, run each part alone so that one bad request fails by itself."""
    # Not shared with score.inputs._pixels, which keeps its rows as one array and errors as
    # strings: here each request needs its own output, or its own exception to raise.
    try:
        return _split(run(np.concatenate(parts)), parts)
    except (InputError, ValueError):
        pass
    results: list[Any] = []
    for part in parts:
        try:
            results.append(run(part))
        except InputError as exc:
            results.append(exc)
    return results


def _by_model(
    run: Callable[[str, np.ndarray], np.ndarray], requests: list[tuple[str, np.ndarray]]
) -> list[Any]:
    """One joint run per model over (model, array) requests, answers in the requests' order."""
    results: list[Any] = [None] * len(requests)
    for model in {model for model, _ in requests}:
        indices = [i for i, (m, _) in enumerate(requests) if m == model]
        answers = _joined(partial(run, model), [requests[i][1] for i in indices])
        for i, answer in zip(indices, answers):
            results[i] = answer
    return results


class ClassifierReplica:
    """The SDK's classifier; concurrent requests are classified in one run."""

    def __init__(
        self, artifacts: str | None, device: str | None, max_batch: int, wait_s: float
    ) -> None:
        self.models = Models(artifacts, device, latent=False)
        self._classify = Batched(
            _on_thread(partial(_joined, self.models.classify)), max_batch, wait_s
        )

    async def classify(self, batch: np.ndarray) -> np.ndarray:
        return await self._classify(batch)

    def describe(self) -> dict[str, Any]:
        return {**self.models.describe(), "batching": {"classify": self._classify.stats()}}

    def ready(self) -> bool:
        return True


class LatentReplica:
    """The encoders and generators of ae, vae and cvae; concurrent requests to one model are
    embedded or decoded in one run."""

    def __init__(
        self, artifacts: str | None, device: str | None, max_batch: int, wait_s: float
    ) -> None:
        self.models = Models(artifacts, device, classifier=False)
        self._embed = Batched(_on_thread(partial(_by_model, self.models.embed)), max_batch, wait_s)
        self._decode = Batched(
            _on_thread(partial(_by_model, self.models.decode)), max_batch, wait_s
        )

    async def embed(self, model: str, batch: np.ndarray) -> np.ndarray:
        return await self._embed((model, batch))

    async def decode(self, model: str, z: np.ndarray) -> np.ndarray:
        return await self._decode((model, z))

    async def grid(self, model: str, n: int, lo: float, hi: float) -> np.ndarray:
        return await asyncio.to_thread(self.models.grid, model, n, lo, hi)

    async def sample(
        self, model: str, count: int, seed: int | None, digit: int | None = None
    ) -> np.ndarray:
        return await asyncio.to_thread(self.models.sample, model, count, seed, digit)

    async def sample_latent(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        return await asyncio.to_thread(self.models.sample_latent, model)

    def describe(self) -> dict[str, Any]:
        batching = {"embed": self._embed.stats(), "decode": self._decode.stats()}
        return {**self.models.describe(), "batching": batching}

    def ready(self) -> bool:
        return True


ClassifierDeployment = serve.deployment(name="classifier")(ClassifierReplica)
LatentDeployment = serve.deployment(name="latent")(LatentReplica)


class RayBackend:
    """The app's backend on Ray Serve: calls the model deployments through their handles.

    Concurrent classify and embed requests are gathered here too (`@serve.batch`, when
    `max_batch` > 1) into one call per batch: each call to a replica costs far more than the
    session run it asks for, so the ingress makes as few as it can. (Their images were checked
    here already; latent points are checked in the replica, so decode requests go one by one.)

    A call to a replica that dies, or whose node goes, is tried again up to RETRIES times, a
    little later each time (the models are pure functions, and Serve routes the retry to a live
    replica); one that fails every time, or takes past `CALL_TIMEOUT_S` in all, is answered
    503 with the reason. The SDK's errors raised in a replica reach the app as themselves.
    """

    host = "ray"

    def __init__(
        self,
        classifier: DeploymentHandle,
        latent: DeploymentHandle,
        replicas: int,
        max_batch: int = 1,
        wait_s: float = 0.0,
    ):
        self.classifier = classifier
        self.latent = latent
        self.replicas = replicas
        self._classify = Batched(self._classify_many, max_batch, wait_s)
        self._embed = Batched(self._embed_many, max_batch, wait_s)

    async def _classify_many(self, batches: list[np.ndarray]) -> list[np.ndarray]:
        probs = await self._call(self.classifier.classify.remote, np.concatenate(batches))
        return _split(probs, batches)

    async def _embed_many(self, requests: list[tuple[str, np.ndarray]]) -> list[np.ndarray]:
        results: list[np.ndarray] = [np.empty(0)] * len(requests)
        for model in {model for model, _ in requests}:
            indices = [i for i, (m, _) in enumerate(requests) if m == model]
            parts = [requests[i][1] for i in indices]
            z = await self._call(self.latent.embed.remote, model, np.concatenate(parts))
            for i, part in zip(indices, _split(z, parts)):
                results[i] = part
        return results

    async def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        clock = asyncio.get_running_loop().time
        deadline = clock() + CALL_TIMEOUT_S
        lost, attempt = "", 0
        for attempt in range(RETRIES + 1):
            response = method(*args)
            try:
                return await asyncio.wait_for(_result(response), max(deadline - clock(), 0.1))
            except RayTaskError as exc:
                if isinstance(exc.cause, OnnxDigitsError):
                    raise exc.cause from None
                raise
            except (RayActorError, ActorUnavailableError) as exc:
                # The replica died, or its node went: Serve drops it from its routing (or
                # probes it first) once told, so a retry a moment later reaches a live one.
                lost = type(exc).__name__
                if attempt == RETRIES or deadline - clock() < 1:
                    break
                await asyncio.sleep(RETRY_WAIT_S * 2**attempt)
            except TimeoutError:
                response.cancel()
                raise HTTPException(
                    503, f"the models did not answer within {CALL_TIMEOUT_S} s; retry later"
                ) from None
        raise HTTPException(
            503, f"the model replicas were lost ({lost}, {attempt + 1} tries); retry later"
        )

    async def classify(self, batch: np.ndarray) -> np.ndarray:
        return await self._classify(batch)

    async def embed(self, model: str, batch: np.ndarray) -> np.ndarray:
        return await self._embed((model, batch))

    async def decode(self, model: str, z: np.ndarray) -> np.ndarray:
        return await self._call(self.latent.decode.remote, model, z)

    async def grid(self, model: str, n: int, lo: float, hi: float) -> np.ndarray:
        return await self._call(self.latent.grid.remote, model, n, lo, hi)

    async def sample(
        self, model: str, count: int, seed: int | None, digit: int | None = None
    ) -> np.ndarray:
        return await self._call(self.latent.sample.remote, model, count, seed, digit)

    async def sample_latent(self, model: str) -> tuple[np.ndarray, np.ndarray]:
        z, labels = await self._call(self.latent.sample_latent.remote, model)
        return z, labels

    async def describe(self) -> dict[str, Any]:
        classifier = await self._call(self.classifier.describe.remote)
        latent = await self._call(self.latent.describe.remote)
        models = {**classifier.pop("models"), **latent.pop("models")}
        # Each replica counts its own requests and runs: these are one replica's of each.
        batching = {**classifier.pop("batching"), **latent.pop("batching")}
        return {
            "host": self.host,
            **classifier,
            "models": models,
            "replicas": self.replicas,
            "batching": batching,
        }

    async def ready(self) -> str | None:
        for name, handle in (("classifier", self.classifier), ("latent", self.latent)):
            try:
                await asyncio.wait_for(_result(handle.ready.remote()), 10)
            except Exception as exc:  # any failure to answer means not ready, whatever its kind
                return f"the {name} deployment does not answer: {type(exc).__name__}"
        return None


async def _result(response: Any) -> Any:
    """A handle call's result (a DeploymentResponse is awaitable, not a coroutine)."""
    return await response


def application(
    *,
    token: str | None,
    limits: Limits,
    hosts: Sequence[str] | None = None,
    replicas: int,
    max_batch: int,
    batch_wait_s: float,
    replica_cpus: float,
    artifacts: str | None,
    device: str | None,
    ingress_node: str | None = None,
    nodes: int = 1,
) -> Any:
    """The Serve application: the ingress bound to the two model deployments.

    Args:
        token, limits, hosts: as for `create_app`.
        replicas: replicas of each model deployment.
        max_batch: the most requests a replica runs as one batch; 1 turns batching off.
        batch_wait_s: how long a replica waits for a batch to fill.
        replica_cpus: the logical CPUs each actor reserves.
        artifacts: the set's directory as every node sees it; None for the default set.
        device: the device each replica asks for; None for each node's default.
        ingress_node: the node the ingress should run on, where it has room (else anywhere);
            None for anywhere.
        nodes: the cluster's nodes with CPUs: each deployment's replicas are spread over them,
            at most replicas/nodes (rounded up) on one, so that losing a node loses few.

    Returns:
        A bound Serve application for `serve.run`.
    """
    options: dict[str, Any] = {
        "num_replicas": replicas,
        "ray_actor_options": {"num_cpus": replica_cpus},
        "max_replicas_per_node": math.ceil(replicas / max(1, nodes)),
        # Room for a batch to form while the previous one runs.
        "max_ongoing_requests": max(2 * max_batch, 32),
    }
    model_args = (artifacts, device, max_batch, batch_wait_s)
    classifier = ClassifierDeployment.options(**options).bind(*model_args)
    latent = LatentDeployment.options(**options).bind(*model_args)

    def build_app() -> FastAPI:
        backend = RayBackend(
            serve.get_deployment_handle("classifier", app_name=APP),
            serve.get_deployment_handle("latent", app_name=APP),
            replicas,
            max_batch,
            batch_wait_s,
        )
        return create_app(backend, token=token, limits=limits, hosts=hosts)

    ingress_options: dict[str, Any] = {"num_cpus": replica_cpus}
    if ingress_node is not None:
        ingress_options["label_selector"] = {_NODE_LABEL: ingress_node}
        ingress_options["fallback_strategy"] = [{"label_selector": {}}]
    ingress = serve.deployment(
        name="ingress",
        ray_actor_options=ingress_options,
        max_ongoing_requests=1024,
    )(serve.ingress(build_app)())
    # The model deployments are bound as arguments so that Serve deploys them with the ingress.
    return ingress.bind(classifier, latent)


def serve_on_ray(
    *,
    host: str,
    port: int,
    token: str | None,
    limits: Limits,
    address: str | None,
    hosts: Sequence[str] | None = None,
    replicas: int,
    max_batch: int,
    batch_wait_s: float,
    replica_cpus: float,
    artifacts: Path | None,
    device: str | None,
    announce: Callable[[str], None],
) -> None:
    """Deploy the service on Ray Serve and keep it up until SIGINT or SIGTERM.

    Args:
        host, port: where Serve's HTTP proxy listens.
        address: the Ray cluster to join; None starts a local one, stopped on exit.
        announce: told one line with the URL once the application is running.
        Others: as for `application`.

    Raises:
        ServeError: the cluster has too few CPUs for the replicas asked for.
    """
    if port == 0:
        raise ServeError("Ray Serve needs a fixed port: give --port")
    # Replicas may run on other nodes: the set by absolute path, the device as chosen here.
    where = artifacts or os.environ.get(ARTIFACTS_ENV)
    where = str(Path(where).resolve()) if where else None
    device = device or os.environ.get(DEVICE_ENV) or None
    local = address is None and not os.environ.get("RAY_ADDRESS")
    # This command ends on SIGTERM: Ray's handler of fatal signals would print a stack dump for
    # it. Python's own handler still reports a real crash.
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    faulthandler.enable()
    connect(address, ServeError, object_store_memory=LOCAL_OBJECT_STORE)
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # "Started Serve", and so on
    try:
        need = (2 * replicas + 1) * replica_cpus
        have = ray.cluster_resources().get("CPU", 0)
        if need > have:
            raise ServeError(
                f"{replicas} replicas of two deployments and an ingress at {replica_cpus} CPU "
                f"each need {need:g} CPUs; the cluster has {have:g}: lower --replicas or "
                "--replica-cpus"
            )
        serve.start(http_options={"host": host, "port": port})
        app = application(
            token=token,
            limits=limits,
            hosts=hosts,
            replicas=replicas,
            max_batch=max_batch,
            batch_wait_s=batch_wait_s,
            replica_cpus=replica_cpus,
            artifacts=where,
            device=device,
            # Beside the proxy of the URL announced (this node's), so that requests through it
            # reach the ingress whichever other node goes.
            ingress_node=ray.get_runtime_context().get_node_id(),
            nodes=sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0),
        )
        serve.run(app, name=APP, route_prefix="/")
        shown = f"[{host}]" if ":" in host else host
        announce(
            f"onnxdigits serve: http://{shown}:{port} (Ray Serve, {replicas} replica(s) of each "
            "model; API docs at /docs)"
        )
        _wait_for_signal()
        _stop(local)
    finally:
        ray.shutdown()


def _stop(local: bool) -> None:
    """Delete the application, letting each replica finish what it holds, and on a local
    cluster stop Serve too.

    Raises:
        ServeError: the cluster did not answer within STOP_TIMEOUT_S (it was stopped
            under us, say); the application may be left deployed.
    """
    done = threading.Event()
    failure: list[BaseException] = []

    def stop() -> None:
        try:
            serve.delete(APP)
            if local:
                serve.shutdown()
        except Exception as exc:  # reported below, in the main thread
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=stop, daemon=True).start()
    if not done.wait(STOP_TIMEOUT_S) or failure:
        why = f": {failure[0]}" if failure else f" within {STOP_TIMEOUT_S} s"
        raise ServeError(
            f"Ray Serve did not delete the application{why}; is the cluster up? "
            "`serve status` shows what is left"
        )


def _wait_for_signal() -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.set())
    while not stop.wait(0.5):
        pass
    # While the application drains, a second signal ends the command at once.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
