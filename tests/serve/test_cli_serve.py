"""`onnxdigits serve` as a command: what it refuses before it listens, and how it stops."""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxdigits
import pytest
from click.testing import CliRunner, Result
from onnxdigits.bench.serve import free_port
from onnxdigits.cli import main
from onnxdigits.cli.serve import answered_hosts
from onnxdigits.serve.app import LOOPBACK_HOSTS

from .conftest import start_server


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["serve", *args], catch_exceptions=False)


def assert_one_line_error(result: Result, code: int, words: str) -> None:
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Error:") and words in lines[-1], result.stderr
    if code == 1:
        assert len(lines) == 1, result.stderr


def test_help_names_every_option() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--token",
        "--insecure",
        "--max-body",
        "--max-images",
        "--ray",
        "--address",
        "--replicas",
        "--max-batch",
        "--artifacts",
        "--device",
    ):
        assert option in result.stdout
    assert "serve" in CliRunner().invoke(main, ["--help"]).stdout


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_refuses_a_reachable_host_without_a_token(host: str, monkeypatch) -> None:
    monkeypatch.delenv("ONNXDIGITS_TOKEN", raising=False)
    assert_one_line_error(run("--host", host), 2, "--token")


def test_refuses_an_empty_token() -> None:
    assert_one_line_error(run("--token", " "), 2, "must not be empty")


def test_refuses_a_host_that_does_not_resolve() -> None:
    assert_one_line_error(run("--host", "no-such-host.invalid"), 2, "cannot resolve")


def test_a_missing_artifacts_set_exits_1_before_listening(tmp_path: Path) -> None:
    assert_one_line_error(
        run("--artifacts", str(tmp_path / "none"), "--port", "0"), 1, "does not exist"
    )


def test_a_taken_port_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("--port", str(port), "--device", "cpu")
    assert_one_line_error(result, 1, f"cannot listen on 127.0.0.1:{port}")


@pytest.fixture
def half_sent() -> Iterator[tuple[threading.Event, threading.Event]]:
    """(sent, resume): a body generator sets `sent` after its first half and waits for `resume`."""
    sent, resume = threading.Event(), threading.Event()
    yield sent, resume
    resume.set()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_lets_the_request_in_flight_finish_then_exits_0(
    sig: int, pngs: list[bytes], classifier: onnxdigits.Classifier, half_sent
) -> None:
    server = start_server("uvicorn", "--port", "0", "--device", "cpu")
    sent, resume = half_sent
    png = pngs[7]

    def body() -> Iterator[bytes]:
        yield png[: len(png) // 2]
        sent.set()
        resume.wait(30)
        yield png[len(png) // 2 :]

    answer: dict[str, httpx.Response] = {}

    def post() -> None:
        answer["response"] = httpx.post(
            f"{server.url}/v1/classify",
            content=body(),
            headers={"Content-Type": "image/png"},
            timeout=60,
        )

    poster = threading.Thread(target=post)
    poster.start()
    try:
        assert sent.wait(30)
        time.sleep(1.0)  # the server has the request's head and half its body
        server.process.send_signal(sig)
        # Draining: no new connections soon after the signal, the process still up for the
        # request in flight.
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(f"{server.url}/healthz", timeout=5)
            except httpx.TransportError:
                break
            assert time.monotonic() < deadline, "new connections still taken 10 s after the signal"
            time.sleep(0.1)
        assert server.process.poll() is None
        resume.set()
        poster.join(60)
        response = answer["response"]
        assert response.status_code == 200, response.text
        expected = classifier.predict_proba(png)
        assert response.json()["labels"] == expected.argmax(axis=1).tolist()
        np.testing.assert_allclose(response.json()["probabilities"], expected, atol=1e-6, rtol=0)
        assert server.process.wait(30) == 0, server.logs()
    finally:
        resume.set()
        if server.process.poll() is None:
            server.stop(signal.SIGKILL)


def test_without_a_token_the_api_is_open_on_the_port_given() -> None:
    port = free_port()
    server = start_server("uvicorn", "--port", str(port), "--device", "cpu")
    try:
        assert server.url == f"http://127.0.0.1:{port}"
        assert httpx.get(f"{server.url}/v1/models", timeout=30).status_code == 200  # no token
    finally:
        assert server.stop() == 0


@pytest.mark.parametrize(
    ("host", "token", "extra"),
    [
        ("127.0.0.1", None, "127.0.0.1"),
        ("127.0.0.2", None, "127.0.0.2"),
        ("::1", None, "[::1]"),
        ("localhost", None, "localhost"),
        ("LOCALHOST", None, "localhost"),
    ],
)
def test_a_loopback_server_without_a_token_answers_its_names(
    host: str, token: str | None, extra: str
) -> None:
    hosts = answered_hosts(host, token)
    assert hosts is not None
    assert set(LOOPBACK_HOSTS) | {extra} == set(hosts)


@pytest.mark.parametrize(("host", "token"), [("127.0.0.1", "t"), ("0.0.0.0", None)])
def test_with_a_token_or_off_loopback_any_host_name_is_answered(
    host: str, token: str | None
) -> None:
    assert answered_hosts(host, token) is None
