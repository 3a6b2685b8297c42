"""One local Ray cluster for the Ray tests (``tests/on_ray/``): two nodes on loopback, token auth on.

Starting Ray costs tens of seconds on two cores, so ``ray_session`` starts it once and every
Ray test module shares it; each module deploys its own application and deletes it when it
ends. The fixture is package-scoped (``tests/on_ray/conftest.py``): the cluster stops when the
last Ray test ends, since an idle two-node cluster still costs about a tenth of a core.

The cluster is two Ray nodes on this machine (``ray.cluster_utils.Cluster``: a head and a
worker node, each its own raylet, 2 logical CPUs and one unit of the custom resource
:data:`NODE_RESOURCE`), so a deployment whose replicas ask for one unit gets one replica on
each node, and the store (a temporary folder) is a path both nodes see, as a shared mount
is on a real cluster. The Ray dashboard runs on 127.0.0.1 (a free port) because
``serve deploy`` talks to its REST API. ``tests/conftest.py`` imports this module first, for
the environment below; ``tests/on_ray/conftest.py`` imports the fixture.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parent.parent
# Ray's own switch for a single-machine Ray: the node address stays 127.0.0.1 instead of the
# machine's outward address. Ray reads it when it is first imported, so it is set here, when
# conftest imports this module, before any test imports ray. The nodes inherit the rest:
# Serve's one proxy (on the head) spreads requests over the replicas of both nodes instead of
# preferring its own node's until they are full (deploy/ray/README.md, "Two nodes").
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
                 "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0"}
NODE_RESOURCE = "yyai_node"  # one unit on each node: ask for 1 to get one replica per node
NODE_CPUS = 2
for _key, _value in LOCAL_RAY_ENV.items():
    os.environ.setdefault(_key, _value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RaySession:
    """The running Ray: the module, Serve's HTTP port, the dashboard's URL, the auth environment,
    and the two nodes' ids (head first)."""

    ray: object
    serve_port: int
    dashboard_url: str
    env: dict
    nodes: tuple[str, str]

    @property
    def serve_url(self) -> str:
        return f"http://127.0.0.1:{self.serve_port}"

    def serve_cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        """Ray Serve's own command line (``serve deploy ...``) against this Ray's dashboard."""
        command = [str(Path(sys.executable).parent / "serve"), *args, "--address", self.dashboard_url]
        return subprocess.run(command, env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=timeout, cwd=REPO)

    def listening_addresses(self) -> set[str]:
        """The addresses every socket of this session's Ray processes listens on."""
        pids = {p.pid for p in psutil.Process().children(recursive=True)}
        return {c.laddr.ip for c in psutil.net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN and c.pid in pids}


def forget_address(address: str) -> None:
    """Remove the record of ``address`` that the Cluster wrote where ``ray start`` writes its own
    (/tmp/ray/ray_current_cluster): any ray.init() or ``yyai ray`` on this machine would join the
    session's cluster through it. The session connects by address only."""
    record = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    if record.is_file() and record.read_text().strip() == address:
        record.unlink(missing_ok=True)


def start_cluster(ray, attempts: int = 3):
    """A head and a worker node, the dashboard on a free loopback port; the driver connected.
    Returns ``(cluster, dashboard_port)``. Retried: on a loaded 2-core machine a raylet can give
    up on its dashboard agent, whose port file it awaits for a fixed 15 s
    (ray/util/port_persistence.h). A failed start may hold its dashboard port a while, so
    each attempt takes a fresh one."""
    from ray.cluster_utils import Cluster

    for attempt in range(1, attempts + 1):
        dashboard_port, cluster = free_port(), None
        try:
            cluster = Cluster(initialize_head=True, head_node_args={
                "num_cpus": NODE_CPUS, "resources": {NODE_RESOURCE: 1}, "include_dashboard": True,
                "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port})
            cluster.add_node(num_cpus=NODE_CPUS, resources={NODE_RESOURCE: 1})
            ray.init(address=cluster.address, log_to_driver=False)
            forget_address(cluster.address)
            return cluster, dashboard_port
        except Exception:  # Ray raises a bare Exception for a start-up timeout
            ray.shutdown()
            if cluster is not None:
                cluster.shutdown()
            if attempt == attempts:
                raise


@pytest.fixture(scope="package")
def ray_session():
    """One local two-node Ray cluster and Serve for the Ray tests; every address on 127.0.0.1."""
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}  # in the environment, not ~/.ray
    with pytest.MonkeyPatch.context() as env:
        for key, value in auth.items():
            env.setenv(key, value)
        import ray
        from ray import serve

        cluster, dashboard_port = start_cluster(ray)
        head = ray.get_runtime_context().get_node_id()
        (worker,) = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != head]
        serve_port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": serve_port})
        try:
            yield RaySession(ray, serve_port, f"http://127.0.0.1:{dashboard_port}", auth, (head, worker))
        finally:
            serve.shutdown()
            ray.shutdown()
            cluster.shutdown()
