"""The service against hostile requests, on real uvicorn servers started as the CLI runs them:
image bombs under Pillow's limit, a rebinding Host, a partial artifacts set, and /docs without
internet in a real browser."""

from __future__ import annotations

import io
import json
import math
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import onnxdigits
import pytest
from onnxdigits.bench.process import cpu_by_name
from onnxdigits.serve.app import MAX_IMAGE_PIXELS, MAX_PIXELS
from PIL import Image

from .conftest import TOKEN, Server, start_server

RAW_PNG = {"Content-Type": "image/png"}
# "Refused fast" is judged by the server's CPU time, which load on a shared machine does not
# inflate as it does wall time: decoding one bomb costs seconds of it. Wall time bounds only hangs.
REFUSAL_CPU_S = 1.0
HANG_S = 30


@pytest.fixture(scope="module")
def open_server() -> Iterator[Server]:
    """uvicorn on loopback without a token, with the default limits."""
    server = start_server("uvicorn", "--port", "0", "--device", "cpu", env={"ONNXDIGITS_TOKEN": ""})
    yield server
    assert server.stop() == 0, server.logs()


def rss_bytes(pid: int) -> int:
    """The resident set size of process `pid`, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def server_cpu_s(server: Server) -> float:
    """CPU seconds the server's process (and any child) has used so far."""
    return sum(cpu_by_name(server.process.pid).values())


def png_of(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=image.mode == "1")
    return out.getvalue()


@pytest.fixture(scope="module")
def rgba_bomb() -> bytes:
    """A 9459x9459 RGBA PNG, just under Pillow's pixel limit: about 350 KB that decode to 358 MB
    of pixels (and gigabytes more as the normaliser's floats)."""
    return png_of(Image.new("RGBA", (9459, 9459)))


def test_image_bombs_at_once_are_refused_fast_at_flat_memory(
    open_server: Server, rgba_bomb: bytes, pngs: list[bytes]
) -> None:
    assert len(rgba_bomb) < 400_000
    pid = open_server.process.pid
    with open_server.client(token=None) as client:
        assert client.post("/v1/classify", content=pngs[0], headers=RAW_PNG).status_code == 200
    before = rss_bytes(pid)
    peak = before
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes(pid))
            time.sleep(0.005)

    def send(_: int) -> tuple[httpx.Response, float]:
        with httpx.Client(base_url=open_server.url, timeout=60) as client:
            start = time.perf_counter()
            response = client.post("/v1/classify", content=rgba_bomb, headers=RAW_PNG)
            return response, time.perf_counter() - start

    watcher = threading.Thread(target=watch)
    cpu_before = server_cpu_s(open_server)
    watcher.start()
    try:
        with ThreadPoolExecutor(3) as pool:
            answers = list(pool.map(send, range(3)))
    finally:
        done.set()
        watcher.join()
    cpu = server_cpu_s(open_server) - cpu_before
    assert cpu < REFUSAL_CPU_S, f"the server spent {cpu:.2f} s of CPU on three bombs"
    for response, seconds in answers:
        assert response.status_code == 413, response.text
        assert "declares 89,472,681 pixels" in response.json()["error"]
        assert f"limit of {MAX_IMAGE_PIXELS:,} per image" in response.json()["error"]
        assert seconds < HANG_S, seconds
    assert peak - before <= 300 * 2**20, f"RSS rose by {(peak - before) / 2**20:.0f} MB"


def test_a_request_of_many_one_bit_bombs_is_refused_fast(
    open_server: Server, pngs: list[bytes]
) -> None:
    bomb = png_of(Image.new("1", (9459, 9459)))
    bombs = [("images", (f"{i}.png", bomb, "image/png")) for i in range(64)]
    with open_server.client(token=None) as client:
        cpu_before = server_cpu_s(open_server)
        start = time.perf_counter()
        response = client.post("/v1/classify", files=bombs)
        seconds = time.perf_counter() - start
        cpu = server_cpu_s(open_server) - cpu_before
        assert response.status_code == 413 and "images[0] declares 89,472,681" in response.text
        assert cpu < REFUSAL_CPU_S, f"the server spent {cpu:.2f} s of CPU on 64 bombs"
        assert seconds < HANG_S, seconds
        # Each file under the limit, but together over the request's budget: refused unread.
        side = math.isqrt(MAX_IMAGE_PIXELS)
        big = png_of(Image.new("L", (side, side)))
        over = MAX_PIXELS // (side * side) + 1
        files = [("images", (f"{i}.png", big, "image/png")) for i in range(over)]
        response = client.post("/v1/classify", files=files)
        assert response.status_code == 413, response.text
        assert f"more than {MAX_PIXELS:,} pixels in all" in response.json()["error"]
        # The next request is served.
        assert client.post("/v1/classify", content=pngs[0], headers=RAW_PNG).status_code == 200


# --- Host names without a token ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "status"),
    [
        ("attacker.example", 400),
        ("attacker.example:8000", 400),
        ("127.0.0.1.nip.io", 400),
        ("localhost", 200),
        ("localhost:8000", 200),
        ("127.0.0.1:1234", 200),
        ("[::1]:8000", 200),
    ],
)
def test_without_a_token_only_loopback_host_names_are_answered(
    open_server: Server, host: str, status: int
) -> None:
    response = httpx.get(f"{open_server.url}/v1/models", headers={"Host": host}, timeout=30)
    assert response.status_code == status, response.text
    if status == 400:
        assert "is not a name of this service" in response.json()["error"]


def test_without_a_token_the_name_it_listens_on_is_answered() -> None:
    """Served on another loopback address, the address itself is one of its names."""
    server = start_server(
        "uvicorn",
        "--host",
        "127.0.0.2",
        "--port",
        "0",
        "--device",
        "cpu",
        env={"ONNXDIGITS_TOKEN": ""},
    )
    try:
        assert server.url.startswith("http://127.0.0.2:"), server.url
        assert httpx.get(f"{server.url}/v1/models", timeout=30).status_code == 200
        other = httpx.get(f"{server.url}/v1/models", headers={"Host": "127.0.0.3"}, timeout=30)
        assert other.status_code == 400, other.text
    finally:
        assert server.stop() == 0, server.logs()


def test_with_a_token_any_host_name_is_answered(uvicorn_server: Server) -> None:
    response = httpx.get(
        f"{uvicorn_server.url}/v1/models",
        headers={"Host": "digits.example", "Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text


# --- words -------------------------------------------------------------------------------------


def test_a_count_below_one_speaks_of_count(open_server: Server) -> None:
    response = httpx.get(f"{open_server.url}/v1/sample?count=-3", timeout=30)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error.startswith("count:") and "greater than or equal to 1" in error, error


def test_a_wrong_token_is_told_apart_from_a_missing_one(uvicorn_server: Server) -> None:
    def error(headers: dict[str, str]) -> str:
        response = httpx.get(f"{uvicorn_server.url}/v1/models", headers=headers, timeout=30)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
        return response.json()["error"]

    missing = error({})
    wrong = error({"Authorization": "Bearer nope"})
    scheme = error({"Authorization": f"Basic {TOKEN}"})
    assert "needs a token" in missing
    assert "the token is wrong" in wrong and "needs a token" not in wrong
    assert "scheme 'Basic'" in scheme
    assert len({missing, wrong, scheme}) == 3


# --- a partial set -----------------------------------------------------------------------------


def test_a_partial_set_is_served_with_what_it_has(
    artifacts: onnxdigits.Artifacts, tmp_path: Path, pngs: list[bytes]
) -> None:
    target = tmp_path / "partial"
    shutil.copytree(
        artifacts.root, target, ignore=shutil.ignore_patterns("__pycache__", "*.py", "keras")
    )
    manifest = json.loads((target / "manifest.json").read_text())
    for key in ("classifier", "ae.generator"):
        del manifest["models"][key]
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
    server = start_server(
        "uvicorn", "--port", "0", "--device", "cpu", "--artifacts", str(target),
        env={"ONNXDIGITS_TOKEN": ""},
    )  # fmt: skip
    try:
        assert "the set lacks classifier, ae.generator" in server.logs()
        with server.client(token=None) as client:
            described = client.get("/v1/models").json()
            assert described["absent"] == ["classifier", "ae.generator"]
            assert "classifier" not in described["models"] and "ae.encoder" in described["models"]
            for response in (
                client.post("/v1/classify", content=pngs[0], headers=RAW_PNG),
                client.get("/v1/grid?model=ae&n=2"),
            ):
                assert response.status_code == 404, response.text
                assert "has no " in response.json()["error"]
            embedded = client.post("/v1/embed?model=ae", content=pngs[0], headers=RAW_PNG)
            assert embedded.status_code == 200, embedded.text
            assert client.get("/v1/grid?model=vae&n=2").status_code == 200
    finally:
        assert server.stop() == 0, server.logs()


# --- /docs without internet ----------------------------------------------------------------------


def test_docs_render_from_the_service_alone(open_server: Server, browser: Any) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    requests: list[str] = []
    problems: list[str] = []
    page = browser.new_page()
    try:
        page.on("request", lambda request: requests.append(request.url))
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on(
            "console",
            lambda message: problems.append(message.text) if message.type == "error" else None,
        )
        response: Any = page.goto(f"{open_server.url}/docs")
        assert "script-src 'self' 'sha256-" in response.headers["content-security-policy"]
        operations = page.locator(".opblock-summary-path")
        playwright_api.expect(operations.first).to_be_visible(timeout=30_000)
        paths = set(operations.all_inner_texts())
    finally:
        page.close()
    assert {"/v1/classify", "/v1/decode", "/v1/models"} <= {p.strip() for p in paths}, paths
    elsewhere = [url for url in requests if not url.startswith(open_server.url)]
    assert elsewhere == [] and problems == [], (elsewhere, problems)
