"""Fixtures of the service tests: real servers on loopback, started through the CLI.

One uvicorn server and one Ray Serve deployment (on one small local Ray cluster) are shared by the
whole session; `server` parametrises a test over both hosts.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import numpy as np
import onnxdigits
import pytest

TOKEN = "test-token-5f1c"
MAX_IMAGES = 256
MAX_BODY = 1 << 20
LIMITS = ("--max-images", str(MAX_IMAGES), "--max-body", str(MAX_BODY))
READY_S = 180  # a Ray deployment on two busy cores can take a while to come up
_URL = re.compile(r"onnxdigits serve: (http://\S+)")


@dataclass
class Server:
    """A server started by `onnxdigits serve` in a subprocess, and what it printed."""

    host: str
    url: str
    process: subprocess.Popen[bytes]
    log: list[str] = field(default_factory=list)

    def client(self, token: str | None = TOKEN, **options: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **options)  # type: ignore[arg-type]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send `sig`, wait for the process to end, and return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"{self.host} server ignored signal {sig}:\n{self.logs()}"
            ) from None

    def logs(self) -> str:
        return "\n".join(self.log[-60:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(host: str, *args: str, env: dict[str, str] | None = None) -> Server:
    """Run `onnxdigits serve ARGS` and wait until it prints its URL and /readyz answers 200.

    Raises:
        AssertionError: the process ended, or did not become ready within READY_S seconds.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxdigits.cli", "serve", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    server = Server(host, "", process)
    found = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip()
            server.log.append(line)
            match = _URL.search(line)
            if match and not server.url:
                server.url = match[1]
                found.set()

    threading.Thread(target=read_stderr, daemon=True).start()
    deadline = time.monotonic() + READY_S
    while not found.wait(0.2):
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop(signal.SIGKILL)
            raise AssertionError(
                f"`onnxdigits serve {' '.join(args)}` did not start:\n{server.logs()}"
            )
    while True:
        try:
            if httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            server.stop(signal.SIGKILL)
            raise AssertionError(f"{host} server never became ready:\n{server.logs()}")
        time.sleep(0.25)


@pytest.fixture(scope="session")
def uvicorn_server() -> Iterator[Server]:
    """The plain host; its token comes from $ONNXDIGITS_TOKEN, its port is picked by the OS."""
    server = start_server(
        "uvicorn", "--port", "0", "--device", "cpu", *LIMITS, env={"ONNXDIGITS_TOKEN": TOKEN}
    )
    yield server
    status = server.stop(signal.SIGTERM)
    assert status == 0, f"uvicorn server exited {status} on SIGTERM:\n{server.logs()}"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A local Ray cluster on two logical CPUs with a small object store: its GCS address."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        object_store_memory=100 * 2**20,
        include_dashboard=False,
        log_to_driver=False,
        namespace="onnxdigits-tests",
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def ray_server(ray_cluster: str) -> Iterator[Server]:
    """The Ray Serve host with two replicas per model deployment, deployed by the CLI."""
    server = start_server(
        "ray",
        "--ray",
        "--address",
        ray_cluster,
        "--port",
        str(free_port()),
        "--replicas",
        "2",
        "--token",
        TOKEN,
        "--device",
        "cpu",
        *LIMITS,
    )
    yield server
    status = server.stop(signal.SIGTERM)
    assert status == 0, f"Ray host exited {status} on SIGTERM:\n{server.logs()}"


@pytest.fixture(scope="session", params=["uvicorn", "ray"])
def server(request: pytest.FixtureRequest) -> Server:
    """Each host in turn: the service tests run against both."""
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture(scope="session")
def pngs(sample: tuple[np.ndarray, np.ndarray]) -> list[bytes]:
    """The first 200 sample digits as 28x28 PNG files' bytes."""
    images, _ = sample
    out = []
    for image in images[:200]:
        buffer = io.BytesIO()
        onnxdigits.to_image(image).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def png_pixels(data: bytes) -> np.ndarray:
    """A PNG's pixels as uint8 (H, W), after checking it is one."""
    from PIL import Image

    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:40]
    image = Image.open(io.BytesIO(data))
    image.load()
    return np.asarray(image)
