"""`serve --ray` on loopback without a token answers only its loopback names, as uvicorn does
(tests/serve/test_hostile_http.py), on the session's two-node Ray cluster.

Both this deployment and the service tests' (tests/serve/conftest.py, kept for the whole of
tests/serve) are the application `onnxdigits`, and one replaces the other: so this one lives
outside tests/serve and comes after it (pytest takes tests/ in name order), on the same HTTP
port (`RayCluster.serve_port`).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from .ray_cluster import RayCluster
from .serve.conftest import Server, start_server

pytest.importorskip("ray.serve")


@pytest.fixture(scope="module")
def open_ray_server(ray_cluster: RayCluster) -> Iterator[Server]:
    """Ray Serve on the session's cluster, on loopback without a token."""
    server = start_server(
        "ray",
        "--ray",
        "--address",
        ray_cluster.address,
        "--port",
        str(ray_cluster.serve_port),
        "--replicas",
        "1",
        "--device",
        "cpu",
        env={"ONNXDIGITS_TOKEN": ""},
    )
    yield server
    assert server.stop() == 0, server.logs()


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("attacker.example", 400),
        ("attacker.example:8000", 400),
        ("localhost", 200),
        ("127.0.0.1:1234", 200),
        ("[::1]:8000", 200),
    ],
)
def test_without_a_token_only_loopback_host_names_are_answered_on_ray(
    open_ray_server: Server, host: str, status: int
) -> None:
    response = httpx.get(f"{open_ray_server.url}/v1/models", headers={"Host": host}, timeout=30)
    assert response.status_code == status, response.text
    if status == 400:
        assert "is not a name of this service" in response.json()["error"]
