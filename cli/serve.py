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

from .main import RAY_EXTRA, artifacts_option, device_option, install_command, missing_extra

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
            hosts=answered_hosts(host, token),
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


def answered_hosts(host: str, token: str | None) -> tuple[str, ...] | None:
    """The Host names a server listening on `host` answers: without a token on loopback, only
    the loopback names and the name it was given, so that a page on another site that rebinds
    its own name to a loopback address gets 400 (DNS rebinding); otherwise None, for any."""
    from onnxdigits.serve.app import LOOPBACK_HOSTS

    if token is not None or not is_loopback(host):
        return None
    given = (f"[{host}]" if ":" in host else host).lower()
    return tuple(dict.fromkeys((*LOOPBACK_HOSTS, given)))


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
    from onnxdigits.serve.app import create_app
    from onnxdigits.serve.backend import LocalBackend, Models

    # The models load before the port opens, so an unusable set or device exits 1 at once.
    models = Models(artifacts, device)
    if not models.served:
        raise click.ClickException(f"{models.artifacts.root} holds no model to serve")
    if models.absent:
        click.echo(f"onnxdigits serve: the set lacks {', '.join(models.absent)}", err=True)
    app = create_app(
        LocalBackend(models), token=token, limits=limits, hosts=answered_hosts(host, token)
    )
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
