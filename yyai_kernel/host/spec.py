"""HostSpec: what the supervisor tells a model host process, and where front ends find it.

The supervisor of ``yyai serve --workers N`` starts each host with its spec as JSON in the
environment (``YYAI_HOST``, removed from the environment as it is read, so that nothing the
host starts inherits the key). The same address and key reach the front ends in their
:class:`~yyai_kernel.server.workers.supervisor.WorkerSpec`.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any

HOST_ENV = "YYAI_HOST"
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes; past this an abstract address is used


@dataclass(frozen=True)
class HostSpec:
    """A model host's settings: its socket and key, the store, the serving settings, its GPU."""

    index: int  # which host (one per device under --devices; see placement.py)
    address: str  # a Unix socket path, or an abstract name starting with a NUL
    authkey: str  # hex; front ends prove they know it
    store: str
    front_ends: int  # how many front ends a management call waits for
    fd: int  # the host's end of its link to the supervisor
    config: dict[str, Any] = field(default_factory=dict)  # ServingConfig traits
    cuda_visible_devices: str | None = None  # None: what the supervisor sees
    gpu_memory_fraction: float | None = None
    verbose: bool = False
    ack_timeout: float = 10.0  # seconds a management call waits for each front end to confirm
    devices: list[str] = field(default_factory=list)  # every host's device, by index (placement.py); [] or one: all

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> HostSpec | None:
        raw = os.environ.pop(HOST_ENV, None)
        return None if raw is None else cls(**json.loads(raw))

    @property
    def key(self) -> bytes:
        return bytes.fromhex(self.authkey)


def host_address(folder: str, index: int) -> str:
    """The socket of host ``index`` in the supervisor's private folder (mode 0700), or an abstract
    name (Linux) when that path would not fit in a socket address."""
    path = os.path.join(folder, f"host-{index}.sock")
    return path if len(path.encode()) <= MAX_SOCKET_PATH else f"\0yyai-host-{secrets.token_hex(8)}"


def new_key() -> str:
    return secrets.token_hex(32)
