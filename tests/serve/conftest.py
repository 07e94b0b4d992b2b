"""Fixtures of the service tests: real servers on loopback, started through the CLI.

One uvicorn server and one Ray Serve deployment (on the session's two-node Ray cluster) are shared
by the service tests (the deployment goes after them, so that other tests find the cluster
free); `server` parametrises a test over both hosts.
"""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxdigits
import pytest
from onnxdigits.bench.serve import ServerProcess

from ..ray_cluster import RayCluster

TOKEN = "test-token-5f1c"
MAX_IMAGES = 256
MAX_BODY = 1 << 20
LIMITS = ("--max-images", str(MAX_IMAGES), "--max-body", str(MAX_BODY))
READY_S = 180  # a Ray deployment on two busy cores can take a while to come up


@dataclass
class Server:
    """A server started by `onnxdigits serve` in a subprocess: which host, and the process."""

    host: str
    running: ServerProcess

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.running.process

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Send `sig`, wait for the process to end, and return its exit status."""
        return self.running.stop(sig)

    def logs(self) -> str:
        return self.running.logs()


def start_server(host: str, *args: str, env: dict[str, str] | None = None) -> Server:
    """Run `onnxdigits serve ARGS` and wait until /readyz answers 200."""
    return Server(host, ServerProcess.start(args, env, READY_S))


@pytest.fixture(scope="session")
def uvicorn_server() -> Iterator[Server]:
    """The plain host; its token comes from $ONNXDIGITS_TOKEN, its port is picked by the OS."""
    server = start_server(
        "uvicorn", "--port", "0", "--device", "cpu", *LIMITS, env={"ONNXDIGITS_TOKEN": TOKEN}
    )
    yield server
    status = server.stop(signal.SIGTERM)
    assert status == 0, f"uvicorn server exited {status} on SIGTERM:\n{server.logs()}"


@pytest.fixture(scope="package")  # gone after the service tests: the cluster is the session's
def ray_server(ray_cluster: RayCluster) -> Iterator[Server]:
    """The Ray Serve host on the session's two-node cluster (`tests/ray_cluster.py`), with two
    replicas per model deployment, deployed by the CLI."""
    server = start_server(
        "ray",
        "--ray",
        "--address",
        ray_cluster.address,
        "--port",
        str(ray_cluster.serve_port),
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


@pytest.fixture(scope="package", params=["uvicorn", "ray"])
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


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright: the served page's and the static
    site's tests."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",  # these machines run as root
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()
