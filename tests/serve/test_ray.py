"""What Ray Serve adds: replicas, batching, and surviving a replica killed under load.

The service tests of `test_service.py` run on Ray Serve too; these are the Ray host's own.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import numpy as np
import onnxdigits
import pytest

from ..ray_cluster import RayCluster
from .conftest import TOKEN, Server

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")
# A model call past this is answered 503 by the server: the tests' clients wait longer, to see it.
CALL_TIMEOUT_S = pytest.importorskip("onnxdigits.serve.deployments").CALL_TIMEOUT_S
APP = "onnxdigits"


def replica_names(deployment: str) -> list[str]:
    """The named actors of the live replicas of one of the application's deployments."""
    return sorted(
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == "serve" and f"{APP}#{deployment}#" in actor["name"]
    )


def wait_for_replicas(deployment: str, count: int, timeout_s: float = 180) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        status = serve.status().applications[APP].deployments[deployment]
        running = status.replica_states.get("RUNNING", 0)
        if running == count and status.status == "HEALTHY":
            return replica_names(deployment)
        assert time.monotonic() < deadline, f"{deployment}: {status}"
        time.sleep(0.5)


def test_models_say_where_they_run_on_ray(ray_server: Server) -> None:
    with ray_server.client() as client:
        answer = client.get("/v1/models").json()
    assert answer["host"] == "ray" and answer["replicas"] == 2
    assert set(answer["batching"]) == {"classify", "embed", "decode"}
    assert all(stats["max_batch"] == 32 for stats in answer["batching"].values())


def classify_stats(handle: Any) -> dict[str, dict[str, Any]]:
    """Each classifier replica's batching counts, by replica id, asking until both answer."""
    stats: dict[str, dict[str, Any]] = {}
    for _ in range(20):
        # Several at once: the router may send one call after another to the same replica, but
        # spreads calls that overlap.
        for pending in [handle.describe.remote() for _ in range(8)]:
            answer = pending.result(timeout_s=60)["batching"]["classify"]
            stats[answer["replica"]] = answer
        if len(stats) == 2:
            break
    return stats


def test_concurrent_requests_are_batched_into_fewer_runs(
    ray_server: Server, sample: Any, classifier: onnxdigits.Classifier
) -> None:
    """64 classify calls at once through the deployment's handle: the replicas run them in
    fewer than half as many session runs, and every answer is the SDK's for its own images."""
    handle = serve.get_deployment_handle("classifier", app_name=APP)
    batches = [onnxdigits.to_batch(sample[0][i : i + 1 + i % 3]) for i in range(64)]
    before = classify_stats(handle)
    answers = [handle.classify.remote(batch) for batch in batches]
    for batch, answer in zip(batches, answers):
        np.testing.assert_allclose(
            answer.result(timeout_s=120), classifier.predict_proba(batch), atol=1e-6, rtol=0
        )
    after = classify_stats(handle)
    # (calls, runs) of each replica seen both times; describe() itself is not counted.
    counted = {
        replica: (
            after[replica]["requests"] - before[replica]["requests"],
            after[replica]["runs"] - before[replica]["runs"],
        )
        for replica in set(before) & set(after)
    }
    # Counted over the deployment, not per replica: the router may give one replica a few calls
    # spread out in time, which it runs nearly one by one (10 calls in 5 runs, on a quiet machine).
    calls = sum(done[0] for done in counted.values())
    runs = sum(done[1] for done in counted.values())
    assert calls >= 32, (before, after)
    assert runs < calls / 2, f"{calls} concurrent calls took {runs} session runs: {counted}"


def test_a_replica_killed_mid_load_loses_no_later_request(
    ray_server: Server, pngs: list[bytes], classifier: onnxdigits.Classifier, capsys: Any
) -> None:
    wait_for_replicas("classifier", 2)
    victim = replica_names("classifier")[0]
    expected = classifier.predict_proba(pngs)
    clients, each = 8, 60
    killed_at: list[float] = []

    async def one_client(index: int, http: httpx.AsyncClient) -> list[tuple[float, int, Any]]:
        results = []
        for step in range(each):
            which = (index * each + step) % len(pngs)
            started = time.monotonic()
            try:
                response = await http.post(
                    "/v1/classify", content=pngs[which], headers={"Content-Type": "image/png"}
                )
                outcome: Any = (response.status_code, response.json())
            except httpx.HTTPError as exc:
                outcome = (0, repr(exc))
            results.append((started, which, outcome))
        return results

    async def kill_later() -> None:
        await asyncio.sleep(1.5)
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        killed_at.append(time.monotonic())

    async def run() -> list[list[tuple[float, int, Any]]]:
        async with httpx.AsyncClient(
            base_url=ray_server.url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
            limits=httpx.Limits(max_connections=clients),
        ) as http:
            load = asyncio.gather(*(one_client(i, http) for i in range(clients)))
            _, results = await asyncio.wait_for(asyncio.gather(kill_later(), load), 300)
            return results

    results = [result for per_client in asyncio.run(run()) for result in per_client]
    assert killed_at, "the replica was not killed"
    assert len(results) == clients * each, "a request hung"
    failed = [(started, outcome) for started, _, outcome in results if outcome[0] != 200]
    # A request is in flight at the kill if it started before it; those may fail (a retry
    # usually saves them). Every request started after the kill is answered, and right.
    late = [f for f in failed if f[0] > killed_at[0]]
    assert not late, late[:3]
    assert len(failed) <= clients, failed[:3]
    for _, which, (status, answer) in results:
        if status == 200:
            np.testing.assert_allclose(
                answer["probabilities"], expected[which : which + 1], atol=1e-6, rtol=0
            )
    with capsys.disabled():
        print(
            f"\nreplica {victim} killed under load: {len(failed)} of {len(results)} requests "
            f"failed in flight, {sum(1 for r in results if r[0] > killed_at[0])} served after"
        )
    # Serve replaces the replica; the tests after this one see two again.
    assert victim not in wait_for_replicas("classifier", 2)


# --- on two nodes ------------------------------------------------------------------------------


def replica_nodes(deployment: str) -> set[str]:
    """The nodes that the live replicas of one of the application's deployments run on."""
    return {
        actor["Address"]["NodeID"]
        for actor in ray._private.state.actors().values()
        if actor["State"] == "ALIVE" and f"{APP}#{deployment}#" in (actor.get("Name") or "")
    }


def wait_for_nodes(deployment: str, expected: set[str], timeout_s: float = 60) -> None:
    """Wait until the deployment's live replicas run on `expected`'s nodes: Ray's actor table
    can lag behind Serve's status of a replica just started (one killed and replaced, say)."""
    deadline = time.monotonic() + timeout_s
    while (nodes := replica_nodes(deployment)) != expected:
        assert time.monotonic() < deadline, f"{deployment}: replicas on {nodes}, not {expected}"
        time.sleep(0.5)


def test_replicas_run_on_both_nodes(ray_server: Server, ray_cluster: RayCluster) -> None:
    for deployment in ("classifier", "latent"):
        wait_for_replicas(deployment, 2)
        wait_for_nodes(deployment, ray_cluster.ids())
    # The ingress runs beside the proxy of the URL that the command printed: the head's.
    assert replica_nodes("ingress") == {ray_cluster.node_ids[ray_cluster.head.ip]}


async def post_all(
    url: str,
    pngs: list[bytes],
    count: int,
    connections: int,
    timeout_s: float = CALL_TIMEOUT_S + 30,
) -> list[tuple[int, int, str]]:
    """`count` classify requests at once through a client of `connections` connections:
    (which PNG, status or 0 for a transport error, body or error) for each."""

    async def one(index: int, http: httpx.AsyncClient) -> tuple[int, int, str]:
        which = index % len(pngs)
        try:
            response = await http.post(
                "/v1/classify", content=pngs[which], headers={"Content-Type": "image/png"}
            )
        except httpx.HTTPError as exc:
            return which, 0, repr(exc)
        return which, response.status_code, response.text

    async with httpx.AsyncClient(
        base_url=url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        # Each request's send and answer within timeout_s; a wait for a free connection is
        # bounded by the whole run's bound below.
        timeout=httpx.Timeout(timeout_s, pool=None),
        limits=httpx.Limits(max_connections=connections),
    ) as http:
        # Bounded as a whole too: a request the pool never sends would otherwise wait forever.
        return await asyncio.wait_for(
            asyncio.gather(*(one(i, http) for i in range(count))), 10 * timeout_s
        )


def assert_right(results: list[tuple[int, int, str]], expected: np.ndarray) -> None:
    import json

    for which, status, body in results:
        if status == 200:
            np.testing.assert_allclose(
                json.loads(body)["probabilities"], expected[which : which + 1], atol=1e-6, rtol=0
            )


def test_a_thousand_concurrent_requests_are_all_answered(
    ray_server: Server, pngs: list[bytes], classifier: onnxdigits.Classifier
) -> None:
    results = asyncio.run(post_all(ray_server.url, pngs, 1000, connections=100))
    assert len(results) == 1000
    failed = [(status, body[:200]) for _, status, body in results if status != 200]
    assert not failed, failed[:3]
    assert_right(results, classifier.predict_proba(pngs))


def test_losing_a_node_under_load_answers_every_request_or_says_503(
    ray_server: Server,
    ray_cluster: RayCluster,
    pngs: list[bytes],
    classifier: onnxdigits.Classifier,
    capsys: Any,
) -> None:
    """The second node's every process killed while 600 requests are under way: each is
    answered right (retried on a live replica where its replica went) or refused with a 503
    that says why, none hangs; then the node comes back and Serve places replicas on it."""
    for deployment in ("classifier", "latent"):
        wait_for_replicas(deployment, 2)
        wait_for_nodes(deployment, ray_cluster.ids())

    async def load_and_kill() -> list[tuple[int, int, str]]:
        load = asyncio.ensure_future(post_all(ray_server.url, pngs, 600, connections=16))
        await asyncio.sleep(1.5)
        await asyncio.to_thread(ray_cluster.worker.kill)
        return await load

    try:
        results = asyncio.run(load_and_kill())
    finally:
        ray_cluster.restart_worker()
    assert len(results) == 600
    refused = [body for _, status, body in results if status == 503]
    other = [(status, body[:200]) for _, status, body in results if status not in (200, 503)]
    assert not other, other[:3]  # no transport error, no 500, no timeout
    assert all("retry" in body for body in refused), refused[:3]
    assert_right(results, classifier.predict_proba(pngs))
    with capsys.disabled():
        print(f"\na node lost under load: {len(refused)} of 600 requests refused with 503")
    # Serve puts the lost replicas back once the node is back.
    for deployment in ("classifier", "latent"):
        wait_for_replicas(deployment, 2)
