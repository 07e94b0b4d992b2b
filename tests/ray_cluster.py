"""A real Ray cluster of two nodes on loopback, started with `ray start` as users start theirs.

The head (127.0.0.2) and a second node (127.0.0.3) each have one CPU, a small object store and
a temp dir of their own, and run with token authentication on a token made for the session.
Each `ray start --block` runs in a session of its own, so a node is every process of that
session: `kill_node` ends one whole node as a machine's loss would, and the fixture ends what
it started the same way (never `ray stop`, which would end every Ray cluster on the machine).

The session's process is connected to the cluster (the tests read Ray's state through it), and
`$RAY_AUTH_MODE` and `$RAY_AUTH_TOKEN` are set for it and the commands it starts while the
cluster runs. The second node's Serve proxy listens on a port of its own, as on one machine two
proxies cannot share one (`$RAY_SERVE_WORKER_PROXY_HTTP_PORT`): clients talk to the head's.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from onnxdigits.bench.serve import free_port

START_S = 120  # for a node to start and join, on two busy cores
STORE = 200 * 2**20  # object store bytes of each node


@dataclass
class Node:
    """One `ray start --block` and the processes of its session."""

    ip: str
    command: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.start()

    def start(self) -> None:
        """Run the node's `ray start --block` in a session of its own."""
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def pids(self) -> list[int]:
        """Every live process of the node's session (its workers set their own groups)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat[stat.rindex(")") + 2 :].split()[3]) == self.process.pid:
                    found.append(int(entry.name))
        return found

    def kill(self) -> None:
        """SIGKILL every process of the node, at once, as if its machine went away."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(30)

    def stop(self) -> None:
        """SIGTERM `ray start`, which stops its node; SIGKILL what is left after 30 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 10
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.5)
        self.kill()


@dataclass
class RayCluster:
    """The running cluster: the head's address, its nodes, the node ids by IP, and the HTTP port
    of every Serve deployment on it (Serve keeps the port of its first start on a cluster it
    did not start, whatever a later start asks for)."""

    address: str
    head: Node
    worker: Node
    node_ids: dict[str, str] = field(default_factory=dict)  # ip -> node id
    serve_port: int = field(default_factory=free_port)

    def ids(self) -> set[str]:
        return set(self.node_ids.values())

    def restart_worker(self) -> None:
        """Start the second node again (after `worker.kill()`), in a fresh temp dir (the old
        one holds the dead node's sockets), and wait until it has joined."""
        self.worker.command = [
            f"{arg}-again" if arg.startswith("--temp-dir=") else arg for arg in self.worker.command
        ]
        lost = self.node_ids.get(self.worker.ip)
        self.worker.start()
        # Ray keeps a killed node "alive" until its heartbeats are missed: wait for the new one.
        self.node_ids = _wait_for_nodes(2, [self.head, self.worker], lost={lost})


def _ray_start(ip: str, temp_dir: Path, env: dict[str, str], *args: str) -> Node:
    command = [
        sys.executable,
        "-m",
        "ray.scripts.scripts",
        "start",
        "--block",
        f"--node-ip-address={ip}",
        "--num-cpus=1",
        f"--object-store-memory={STORE}",
        f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={free_port()}",
        "--disable-usage-stats",
        "--log-color=false",
        *args,
    ]
    return Node(ip, command, env, temp_dir.with_suffix(".log"))


def _wait_for_nodes(
    count: int, nodes: list[Node], lost: set[str | None] | None = None
) -> dict[str, str]:
    """The live nodes' ids by address, once `count` are up (none of the `lost` ids)."""
    import ray

    deadline = time.monotonic() + START_S
    while True:
        alive = {
            n["NodeManagerAddress"]: n["NodeID"]
            for n in ray.nodes()
            if n["Alive"] and n["NodeID"] not in (lost or set())
        }
        if len(alive) >= count:
            return alive
        for node in nodes:
            if node.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {node.ip} did not start:\n{node.log.read_text()[-3000:]}")
        time.sleep(0.5)


def _connect(address: str) -> None:
    import ray

    deadline = time.monotonic() + START_S
    while True:
        try:
            ray.init(
                address=address,
                namespace="onnxdigits-tests",
                logging_level="WARNING",
                log_to_driver=False,
            )
            return
        except ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """The two-node cluster, started once for the session, this process connected to it."""
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.fail("this process is connected to another Ray cluster already")
    root = Path(tempfile.mkdtemp(prefix="odr-"))  # short: Ray's socket paths must fit
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    saved = {name: os.environ.get(name) for name in auth}
    os.environ.update(auth)
    # Ray reads its settings and the token once, at import: read them again.
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    env = {**os.environ, "RAY_SERVE_WORKER_PROXY_HTTP_PORT": str(free_port())}
    port = free_port()
    head = _ray_start(
        "127.0.0.2",
        root / "head",
        env,
        "--head",
        f"--port={port}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-port={free_port()}",
        "--include-dashboard=false",
    )
    nodes = [head]
    try:
        address = f"127.0.0.2:{port}"
        _connect(address)
        nodes.append(_ray_start("127.0.0.3", root / "worker", env, f"--address={address}"))
        cluster = RayCluster(address, head, nodes[1], _wait_for_nodes(2, nodes))
        yield cluster
    finally:
        ray.shutdown()
        for node in reversed(nodes):
            node.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(root, ignore_errors=True)
