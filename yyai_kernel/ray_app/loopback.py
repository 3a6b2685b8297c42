"""Keep a single-machine Ray on loopback: the one socket Ray Serve opens on every interface.

Why: yyai binds 127.0.0.1 by default, and a local Ray started with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` puts its own node on 127.0.0.1 too. Ray Serve 2.60
still starts each replica's inter-deployment gRPC server on ``[::]:0``, every interface,
with no setting to change it (``ray/serve/_private/replica.py``, ``_on_initialized``). When
the node's address is loopback, nothing outside the machine can be part of the cluster, so
that server is moved to 127.0.0.1 as well. On a real cluster (a routable node address)
nothing changes: other nodes must reach it.

How: the replica module's ``add_port_to_grpc_server`` is wrapped before the replica starts
that server (a deployment's ``__init__`` runs first). Process-wide, done once, no locking
needed (a replica's constructor runs once per process).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LOOPBACK = "127.0.0.1"


def keep_replica_grpc_on_loopback() -> bool:
    """Bind this replica's gRPC server to 127.0.0.1 when the Ray node is loopback-only.

    Returns whether the server was moved (or already was).
    """
    import ray
    from ray.serve._private import replica

    if ray.util.get_node_ip_address() != LOOPBACK:
        return False
    if not isinstance(replica.add_port_to_grpc_server, _OnLoopback):
        replica.add_port_to_grpc_server = _OnLoopback(replica.add_port_to_grpc_server)
    return True


class _OnLoopback:
    """Ray's ``add_port_to_grpc_server`` with the wildcard address replaced by 127.0.0.1."""

    def __init__(self, original: Callable[[Any, str], Any]):
        self.original = original

    def __call__(self, server: Any, address: str) -> Any:
        return self.original(server, address.replace("[::]", LOOPBACK).replace("0.0.0.0", LOOPBACK))
