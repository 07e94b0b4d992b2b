"""The service's benchmark: servers started as `onnxdigits serve` runs them, a bounded load client.

`ServerProcess` starts `onnxdigits serve ...` in a subprocess and waits until it is ready (the
tests start theirs the same way). `drive` loads a server with a number of concurrent clients for
a fixed time, each client sending its next request as soon as the last is answered, and stops by
itself. `run` runs every host, workload and client count in turn, beside the SDK's
in-process rate on the same PNG bytes, and counts the CPU each process of the server spent.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from . import machine, tables
from .process import cpu_by_name

_URL = re.compile(r"onnxdigits serve: (http://\S+)")


@dataclass
class ServerProcess:
    """A server run by `onnxdigits serve` in a subprocess, and the lines it wrote on stderr."""

    process: subprocess.Popen[bytes]
    url: str = ""
    log: list[str] = field(default_factory=list)

    @classmethod
    def start(
        cls, args: Sequence[str], env: dict[str, str] | None = None, ready_s: float = 300
    ) -> ServerProcess:
        """Run `onnxdigits serve ARGS`; return once it printed its URL and /readyz says 200.

        Raises:
            RuntimeError: the process ended or was not ready within `ready_s` (it is killed).
        """
        process = subprocess.Popen(
            [sys.executable, "-m", "onnxdigits.cli", "serve", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        server = cls(process)
        announced = threading.Event()

        def read_stderr() -> None:
            assert process.stderr is not None
            for raw in process.stderr:
                line = raw.decode(errors="replace").rstrip()
                server.log.append(line)
                match = _URL.search(line)
                if match and not server.url:
                    server.url = match[1]
                    announced.set()

        threading.Thread(target=read_stderr, daemon=True).start()
        deadline = time.monotonic() + ready_s
        while not announced.wait(0.2):
            server._give_up_if(time.monotonic() > deadline, args)
        while True:
            try:
                if httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            server._give_up_if(time.monotonic() > deadline, args)
            time.sleep(0.25)

    def _give_up_if(self, late: bool, args: Sequence[str]) -> None:
        if late or self.process.poll() is not None:
            self.stop(signal.SIGKILL)
            raise RuntimeError(f"`onnxdigits serve {' '.join(args)}` did not start:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 150) -> int:
        """Send `sig` and return the exit status; kill the process if it outlives `timeout_s`.

        Raises:
            RuntimeError: it had to be killed.
        """
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"the server ignored signal {sig}:\n{self.logs()}") from None

    def logs(self, lines: int = 60) -> str:
        return "\n".join(self.log[-lines:])


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the load ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What `drive` measured over its window."""

    clients: int
    requests: int  # answered with 200 within the window
    errors: int  # answered otherwise, or failed, within the window
    seconds: float
    latencies: list[float]  # of the requests answered with 200, seconds

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")


Send = Callable[[httpx.AsyncClient], Any]  # returns the awaitable of one request's response


async def _drive(
    url: str, send: Send, clients: int, warmup_s: float, seconds: float, most_s: float
) -> Load:
    start = time.monotonic()
    answered: set[int] = set()  # the clients that have had an answer
    begin: float | None = None  # when the window opened
    window_end: float | None = None  # when it closed
    latencies: list[float] = []
    errors = 0

    async def client(index: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            while window_end is None:
                await one(index, http)

    async def one(index: int, http: httpx.AsyncClient) -> None:
        nonlocal begin, window_end, errors
        sent = time.monotonic()
        try:
            ok = (await send(http)).status_code == 200
        except httpx.HTTPError:
            ok = False
        done = time.monotonic()
        answered.add(index)
        if window_end is not None:
            return
        if begin is None:
            # The warm-up lasts until every client has had an answer: then the requests are in
            # their steady rhythm, even when each takes longer than the warm-up.
            if done - start >= warmup_s and len(answered) == clients:
                begin = done
            return
        if ok:
            latencies.append(done - sent)
        else:
            errors += 1
        # The window lasts `seconds` and two answers per client, so that requests slower than
        # `seconds` are measured over whole rounds; `most_s` bounds the run.
        counted = len(latencies) + errors
        if (done - begin >= seconds and counted >= 2 * clients) or done - start >= most_s:
            window_end = done

    # One connection per client, as separate clients have: one pool of 32 connections costs
    # httpx several times the CPU per request of 32 pools of one.
    await asyncio.gather(*(client(i) for i in range(clients)))
    assert begin is not None and window_end is not None
    return Load(clients, len(latencies), errors, window_end - begin, latencies)


def drive(
    url: str,
    send: Send,
    clients: int,
    warmup_s: float = 1.0,
    seconds: float = 5.0,
    most_s: float = 180.0,
) -> Load:
    """Load `url` with `clients` concurrent clients, each sending a request, waiting for the
    answer and sending the next, and measure the answers within a window.

    The window opens after `warmup_s` once every client has had an answer, and closes once it
    has lasted `seconds` and counted two answers per client (or `most_s` after the start).
    Every request has a 60 s timeout, so the run ends by itself.

    Returns:
        The requests answered within the window, their latencies, and the errors.
    """
    return asyncio.run(_drive(url, send, clients, warmup_s, seconds, most_s))


@dataclass(frozen=True)
class Workload:
    """Classify `images` of the same PNG bytes per request: one raw body, or multipart files."""

    name: str
    images: int

    def sender(self, png: bytes) -> Send:
        if self.images == 1:
            headers = {"Content-Type": "image/png"}
            return lambda http: http.post("/v1/classify", content=png, headers=headers)
        files = [("images", (f"{i}.png", png, "image/png")) for i in range(self.images)]
        return lambda http: http.post("/v1/classify", files=files)


def workload(images: int) -> Workload:
    """Classify `images` copies of one PNG per request."""
    return Workload(f"{images} image{'s' if images > 1 else ''}", images)


# Each host: the arguments of `onnxdigits serve` besides the port.
HOSTS: dict[str, tuple[str, ...]] = {
    "uvicorn": (),
    "ray-1": ("--ray", "--replicas", "1"),
    "ray-2": ("--ray", "--replicas", "2"),
    "ray-1-nobatch": ("--ray", "--replicas", "1", "--max-batch", "1"),
    "ray-2-nobatch": ("--ray", "--replicas", "2", "--max-batch", "1"),
}


def sdk_rate(png: bytes, images: int, seconds: float, classifier: Any) -> float:
    """Requests per second of one caller decoding and classifying `images` copies of `png`
    in this process with the SDK, over at least `seconds` after a warm-up."""
    sources = [png] * images
    classifier.predict_proba(sources)
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or count < 3:
        classifier.predict_proba(sources)
        count += 1
    return count / elapsed


# --- the benchmark -------------------------------------------------------------------------------


@dataclass
class Cell:
    """One measurement: a host, a workload, a number of clients, and where its CPU went."""

    host: str
    workload: str
    images: int
    load: Load
    cpu_ms: dict[str, float]  # CPU milliseconds per answered request, by process


def _png(sample_image: np.ndarray) -> bytes:
    from onnxdigits import to_image

    out = io.BytesIO()
    to_image(sample_image).save(out, format="PNG")
    return out.getvalue()


def run(
    hosts: Sequence[str],
    images: Sequence[int],
    clients: Sequence[int],
    seconds: float,
    warmup_s: float,
    device: str | None,
    artifacts: Path | None,
    progress: Callable[[str], None],
    address: str | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Measure every host in `hosts` (keys of HOSTS) classifying each count of `images` per
    request, at each count of `clients`; the Ray hosts on the cluster at `address` (else a
    local cluster each), where the CPU counted is only that of the command's own processes.

    Returns:
        {"sdk": {workload name: requests/s}, "cells": [Cell, ...], "png_bytes": size,
        "machine": `machine.describe()` with the load average before and after ("load",
        "load_after") and `command` (the command line, for the table)}.
    """
    from onnxdigits import Artifacts, Classifier

    load_before = machine.load_average()

    store = Artifacts(artifacts)
    png = _png(store.sample()[0][0])
    common = ["--device", device] if device else []
    if artifacts:
        common += ["--artifacts", str(artifacts)]
    classifier = Classifier(artifacts=store, device=device)
    sdk = {}
    workloads = [workload(count) for count in images]
    for work in workloads:
        sdk[work.name] = sdk_rate(png, work.images, seconds, classifier)
        progress(f"SDK in-process, {work.name}: {sdk[work.name]:.1f} requests/s")
    cells = []
    cluster_port = free_port()
    for host in hosts:
        progress(f"starting {host} ...")
        on = ["--address", address] if address and "--ray" in HOSTS[host] else []
        # Serve on a cluster outlives each command, its proxies on the port it first got.
        port = cluster_port if on else free_port()
        server = ServerProcess.start(
            [*HOSTS[host], *on, "--port", str(port), "--max-images", "256", *common]
        )
        try:
            for work in workloads:
                send = work.sender(png)
                for count in clients:
                    before, client_before = cpu_by_name(server.process.pid), time.process_time()
                    load = drive(server.url, send, count, warmup_s, seconds)
                    after, client_after = cpu_by_name(server.process.pid), time.process_time()
                    per = max(load.requests, 1)
                    # The window's share of the CPU: the warm-up's is counted too, a little.
                    share = seconds / (seconds + warmup_s)
                    cpu_ms = {
                        name: (after[name] - before.get(name, 0.0)) * share * 1000 / per
                        for name in after
                        if after[name] - before.get(name, 0.0) > 0
                    }
                    cpu_ms["client"] = (client_after - client_before) * share * 1000 / per
                    cells.append(Cell(host, work.name, work.images, load, cpu_ms))
                    progress(
                        f"{host:>14} {work.name:>10} x{count:<3} {load.rate:8.1f} req/s  "
                        f"p50 {load.percentile_ms(50):7.1f} ms  p99 {load.percentile_ms(99):7.1f}"
                        f" ms  errors {load.errors}"
                    )
        finally:
            status = server.stop()
            if status != 0:
                progress(f"{host} exited {status}:\n{server.logs(20)}")
    about = {**machine.describe(), "load": load_before, "load_after": machine.load_average()}
    about["command"] = command
    return {"sdk": sdk, "cells": cells, "png_bytes": len(png), "machine": about}


def figures(report: dict[str, Any]) -> dict[str, Any]:
    """The report of `run` as JSON: the machine, the SDK's rates and every cell's figures."""
    cells = [
        {
            "host": cell.host,
            "workload": cell.workload,
            "clients": cell.load.clients,
            "requests_per_s": cell.load.rate,
            "p50_ms": cell.load.percentile_ms(50),
            "p99_ms": cell.load.percentile_ms(99),
            "errors": cell.load.errors,
            "cpu_ms_per_request": cell.cpu_ms,
        }
        for cell in report["cells"]
    ]
    return {"machine": report["machine"], "sdk_requests_per_s": report["sdk"], "cells": cells}


# The ratios of single-image requests/s at the most clients that the table ends with.
RATIOS = (
    ("ray-2", "ray-1", "2 replicas over 1"),
    ("ray-1", "ray-1-nobatch", "@serve.batch on over off, 1 replica"),
    ("ray-2", "ray-2-nobatch", "@serve.batch on over off, 2 replicas"),
    ("uvicorn", "ray-2", "uvicorn over Ray Serve with 2 replicas"),
)
# The processes whose CPU the last table shows, each in a column; the rest are "other".
CPU_GROUPS = ("client", "server", "ray::ProxyActor", "ingress", "classifier")


def table(report: dict[str, Any]) -> list[str]:
    """The report of `run` as Markdown: the machine, the table, the ratios, and where the CPU
    went."""
    about, sdk, cells = report["machine"], report["sdk"], report["cells"]
    versions = machine.versions("onnxruntime-gpu", "fastapi", "uvicorn", "ray", "httpx")
    lines = [
        f"{machine.headline(about)}, {versions}; load average {about['load']} before, "
        f"{about['load_after']} after",
        "",
        f"`{about['command']}`",
        "",
    ]
    header = ["host", "workload", "clients", "requests/s", "images/s", "p50 ms", "p99 ms"]
    header += ["errors", "of the SDK's rate"]
    rows = [
        ["SDK in-process, 1 caller", name, "-", f"{rate:,.1f}"]
        + [f"{rate * int(name.split()[0]):,.0f}", f"{1000 / rate:.2f}", "-", "-", "1.00x"]
        for name, rate in sdk.items()
    ]
    for cell in cells:
        load = cell.load
        rows.append(
            [cell.host, cell.workload, str(load.clients), f"{load.rate:,.1f}"]
            + [f"{load.rate * cell.images:,.0f}", f"{load.percentile_ms(50):.1f}"]
            + [f"{load.percentile_ms(99):.1f}", str(load.errors)]
            + [tables.ratio(load.rate, sdk[cell.workload])]
        )
    lines += tables.markdown(header, rows, left=2)
    top = max(cell.load.clients for cell in cells)
    rate = {(c.host, c.workload, c.load.clients): c.load.rate for c in cells}
    ratios = [
        f"- {what}: {tables.ratio(rate[a, '1 image', top], rate[b, '1 image', top])}"
        for a, b, what in RATIOS
        if (a, "1 image", top) in rate and (b, "1 image", top) in rate
    ]
    if ratios:
        lines += ["", f"Single-image requests/s at {top} clients:", *ratios]
    lines += ["", f"CPU milliseconds per request, 1 image at {top} clients:", ""]
    rows = []
    for cell in cells:
        if cell.workload != "1 image" or cell.load.clients != top:
            continue
        spent = dict(cell.cpu_ms)
        row = []
        for group in CPU_GROUPS:
            keys = [k for k in spent if k == group or k.endswith(f":{group}")]
            row.append(sum(spent.pop(k) for k in keys))
        row += [sum(spent.values())]
        row += [sum(row)]
        rows.append([cell.host, *(f"{v:.2f}" for v in row)])
    lines += tables.markdown(["host", *CPU_GROUPS, "other", "total"], rows)
    return lines
