"""`onnxdigits serve`: the models as an HTTP service with a web page, on uvicorn or Ray Serve."""

from __future__ import annotations

import ipaddress
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import click
from onnxdigits.serve.limits import MAX_BODY, MAX_IMAGES, Limits

from .main import (
    RAY_EXTRA,
    artifacts_option,
    device_option,
    figures_option,
    install_command,
    missing_extra,
)

TOKEN_VAR = "ONNXDIGITS_TOKEN"
SERVE_EXTRA = install_command("serve")
DRAIN_S = 30  # on SIGINT or SIGTERM, how long in-flight requests may take to finish


def is_loopback(host: str) -> bool:
    """Whether every address `host` resolves to is a loopback address.

    Raises:
        click.BadParameter: the host does not resolve.
    """
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise click.BadParameter(f"cannot resolve {host!r}: {exc}", param_hint="--host") from None
    addresses = {str(info[4][0]).split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


@click.command("serve", short_help="Serve the models over HTTP, with a web page.")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Any but loopback needs --token, or --insecure.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port to listen on; 0 picks a free one (uvicorn only). The URL is printed on stderr.",
)
@click.option(
    "--token",
    envvar=TOKEN_VAR,
    default=None,
    help="Require the header Authorization: Bearer TOKEN on every /v1 request (else 401). "
    f"Defaults to ${TOKEN_VAR}, else no token.",
)
@click.option("--insecure", is_flag=True, help="Allow a host other than loopback without a token.")
@click.option(
    "--max-body",
    type=click.IntRange(min=1),
    default=MAX_BODY,
    show_default=True,
    help="The largest request body in bytes; a larger one gets 413 unread.",
)
@click.option(
    "--max-images",
    type=click.IntRange(min=1),
    default=MAX_IMAGES,
    show_default=True,
    help="The most images a request may send or ask for (files, points, grid cells, "
    "samples); more get 413.",
)
@click.option("--access-log", is_flag=True, help="Log every request on stderr (uvicorn only).")
@click.option(
    "--ray",
    "on_ray",
    is_flag=True,
    help=f"Deploy on Ray Serve instead of uvicorn ({RAY_EXTRA}).",
)
@click.option(
    "--address",
    default=None,
    help="With --ray: the Ray cluster to deploy on, as ray.init takes it. "
    "Defaults to a local cluster started for this command and stopped with it.",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="With --ray: replicas of each model deployment (the classifier, the latent models).",
)
@click.option(
    "--max-batch",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="With --ray: the most concurrent requests a replica runs as one batch "
    "(@serve.batch); 1 turns batching off.",
)
@click.option(
    "--batch-wait-ms",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="With --ray: how long a replica waits for a batch to fill.",
)
@click.option(
    "--replica-cpus",
    type=click.FloatRange(min=0, min_open=True),
    default=0.25,
    show_default=True,
    help="With --ray: the logical CPUs each replica and the ingress reserve; fractions let "
    "several share a core.",
)
@artifacts_option
@device_option
def serve_command(
    host: str,
    port: int,
    token: str | None,
    insecure: bool,
    max_body: int,
    max_images: int,
    access_log: bool,
    on_ray: bool,
    address: str | None,
    replicas: int,
    max_batch: int,
    batch_wait_ms: float,
    replica_cpus: float,
    artifacts: Path | None,
    device: str | None,
) -> None:
    """Serve the models over HTTP: the /v1 API, a web page at /, OpenAPI at /docs.

    Runs on uvicorn in this process, or with --ray on Ray Serve. SIGINT or SIGTERM lets
    in-flight requests finish, then exits 0.
    """
    if token is not None and not token.strip():
        raise click.BadParameter("the token must not be empty", param_hint="--token")
    if not insecure and token is None and not is_loopback(host):
        raise click.UsageError(
            f"--host {host} is reachable from other machines: give --token (or ${TOKEN_VAR}), "
            "or --insecure to serve without one"
        )
    try:
        import onnxdigits.serve.app  # noqa: F401  the serve extra, checked before anything starts
    except ModuleNotFoundError as exc:
        raise missing_extra("serve", "serve", exc) from None
    limits = Limits(max_body=max_body, max_images=max_images)
    if on_ray:
        _serve_on_ray(
            host=host,
            port=port,
            token=token,
            limits=limits,
            address=address,
            replicas=replicas,
            max_batch=max_batch,
            batch_wait_s=batch_wait_ms / 1000,
            replica_cpus=replica_cpus,
            artifacts=artifacts,
            device=device,
        )
    else:
        _serve_on_uvicorn(host, port, token, limits, access_log, artifacts, device)


def _serve_on_uvicorn(
    host: str,
    port: int,
    token: str | None,
    limits: Any,
    access_log: bool,
    artifacts: Path | None,
    device: str | None,
) -> None:
    import uvicorn
    from onnxdigits.serve.app import LOOPBACK_HOSTS, create_app
    from onnxdigits.serve.models import LocalBackend, Models

    # The models load before the port opens, so an unusable set or device exits 1 at once.
    models = Models(artifacts, device)
    if not models.served:
        raise click.ClickException(f"{models.artifacts.root} holds no model to serve")
    if models.absent:
        click.echo(f"onnxdigits serve: the set lacks {', '.join(models.absent)}", err=True)
    # Without a token, a loopback server answers only its loopback names (DNS rebinding).
    hosts = LOOPBACK_HOSTS if token is None and is_loopback(host) else None
    app = create_app(LocalBackend(models), token=token, limits=limits, hosts=hosts)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port"
        ) from None
    sock.listen(2048)
    config = uvicorn.Config(
        app,
        log_level="info",
        access_log=access_log,
        timeout_graceful_shutdown=DRAIN_S,
        server_header=False,
    )
    server = uvicorn.Server(config)
    # uvicorn drains on SIGINT and SIGTERM, then raises the signal again to end the process
    # with it; handlers that ignore that second raise let the command exit 0.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: None)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if family == socket.AF_INET6 else bound_host
    click.echo(f"onnxdigits serve: http://{shown}:{bound_port} (API docs at /docs)", err=True)
    sys.stderr.flush()
    server.run(sockets=[sock])


def _serve_on_ray(**options: Any) -> None:
    try:
        from onnxdigits.serve.deployments import serve_on_ray
    except ModuleNotFoundError as exc:
        raise missing_extra("serve --ray", "ray", exc) from None
    serve_on_ray(**options, announce=lambda line: click.echo(line, err=True))


def _counts(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of positive integers")
    return counts


def _hosts(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    try:
        from onnxdigits.serve.loadtest import HOSTS
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"bench-serve needs {exc.name}: {SERVE_EXTRA}") from None

    hosts = [part.strip() for part in value.split(",") if part.strip()]
    unknown = [host for host in hosts if host not in HOSTS]
    if unknown or not hosts:
        raise click.BadParameter(f"unknown host(s) {unknown}; choose from {', '.join(HOSTS)}")
    return hosts


@click.command("bench-serve", short_help="Load-test the service on each host, beside the SDK.")
@click.option(
    "--hosts",
    default="uvicorn,ray-1,ray-2,ray-1-nobatch,ray-2-nobatch",
    show_default=True,
    callback=_hosts,
    help="The servers to measure, in turn: uvicorn, and Ray Serve with 1 or 2 replicas of each "
    "model, with @serve.batch or without (-nobatch).",
)
@click.option(
    "--images",
    default="1,256",
    show_default=True,
    callback=_counts,
    help="Images per classify request: one raw PNG, or that many multipart files.",
)
@click.option(
    "--clients",
    default="1,8,32",
    show_default=True,
    callback=_counts,
    help="Concurrent clients, each sending its next request when the last is answered.",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0.5),
    default=5.0,
    show_default=True,
    help="How long each measurement lasts, after its warm-up.",
)
@click.option(
    "--warmup",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds of load before each measurement starts.",
)
@click.option(
    "--address",
    default=None,
    help="Deploy the Ray hosts on this Ray cluster (its head's host:port), where ray-1 and "
    "ray-2 put one or two replicas of each model over its nodes. Defaults to a local cluster "
    "for each.",
)
@figures_option
@artifacts_option
@device_option
def bench_serve_command(
    hosts: list[str],
    images: list[int],
    clients: list[int],
    seconds: float,
    warmup: float,
    address: str | None,
    json_path: Path | None,
    artifacts: Path | None,
    device: str | None,
) -> None:
    """Measure requests/s and p50/p99 latency of classify on loopback, for one PNG and for 256
    per request, at each number of clients, on each host in turn; beside them the SDK's
    in-process rate on the same PNG bytes. Prints a Markdown table; progress goes to stderr."""
    import json

    try:
        from onnxdigits.serve.loadtest import benchmark, machine_notes
    except ModuleNotFoundError as exc:
        raise click.ClickException(f"bench-serve needs {exc.name}: {SERVE_EXTRA}") from None
    from .bench import machine

    command = "onnxdigits bench-serve " + " ".join(sys.argv[2:])
    before = machine_notes()
    results = benchmark(
        hosts,
        images,
        clients,
        seconds,
        warmup,
        device,
        artifacts,
        lambda line: click.echo(line, err=True),
        address,
    )
    after = machine_notes()
    about = {**machine(), **before, "load_after": after["load"], "command": command.strip()}
    for line in _report(results, about):
        click.echo(line)
    if json_path is not None:
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
            for cell in results["cells"]
        ]
        document = {"machine": about, "sdk_requests_per_s": results["sdk"], "cells": cells}
        json_path.write_text(json.dumps(document, indent=2) + "\n")


def _report(results: dict[str, Any], about: dict[str, Any]) -> list[str]:
    """The figures as Markdown: the machine, the table, the ratios, and where the CPU went."""
    import importlib.metadata as metadata

    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("onnxruntime-gpu", "fastapi", "uvicorn", "ray", "httpx")
        if _installed(name)
    )
    sdk: dict[str, float] = results["sdk"]
    lines = [
        f"{about['date']}, {about['cpu']} ({about['cores']} cores, {about['vector']}), "
        f"{versions}; load average {about['load']} before, {about['load_after']} after",
        "",
        f"`{about['command']}`",
        "",
        "| host | workload | clients | requests/s | images/s | p50 ms | p99 ms | errors "
        "| of the SDK's rate |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for workload, rate in sdk.items():
        images = int(workload.split()[0])
        lines.append(
            f"| SDK in-process, 1 caller | {workload} | - | {rate:,.1f} | {rate * images:,.0f} "
            f"| {1000 / rate:.2f} | - | - | 1.00x |"
        )
    by_key = {}
    for cell in results["cells"]:
        load = cell.load
        by_key[(cell.host, cell.workload, load.clients)] = load.rate
        lines.append(
            f"| {cell.host} | {cell.workload} | {load.clients} | {load.rate:,.1f} "
            f"| {load.rate * cell.images:,.0f} | {load.percentile_ms(50):.1f} "
            f"| {load.percentile_ms(99):.1f} | {load.errors} "
            f"| {load.rate / sdk[cell.workload]:.2f}x |"
        )
    top = max(cell.load.clients for cell in results["cells"])
    ratios = []
    for a, b, what in (
        ("ray-2", "ray-1", "2 replicas over 1"),
        ("ray-1", "ray-1-nobatch", "@serve.batch on over off, 1 replica"),
        ("ray-2", "ray-2-nobatch", "@serve.batch on over off, 2 replicas"),
        ("uvicorn", "ray-2", "uvicorn over Ray Serve with 2 replicas"),
    ):
        ka, kb = (a, "1 image", top), (b, "1 image", top)
        if ka in by_key and kb in by_key:
            ratios.append(f"- {what}: {by_key[ka] / by_key[kb]:.2f}x")
    if ratios:
        lines += ["", f"Single-image requests/s at {top} clients:", *ratios]
    lines += ["", f"CPU milliseconds per request, 1 image at {top} clients:", ""]
    groups = ("client", "server", "ray::ProxyActor", "ingress", "classifier")
    lines += [
        "| host | " + " | ".join(groups) + " | other | total |",
        "|---|" + "---:|" * (len(groups) + 2),
    ]
    for cell in results["cells"]:
        if cell.workload != "1 image" or cell.load.clients != top:
            continue
        spent = dict(cell.cpu_ms)
        row = []
        for group in groups:
            keys = [k for k in spent if k == group or k.endswith(f":{group}")]
            row.append(sum(spent.pop(k) for k in keys))
        row += [sum(spent.values())]
        row += [sum(row)]
        lines.append(f"| {cell.host} | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    return lines


def _installed(name: str) -> bool:
    import importlib.metadata as metadata

    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True
