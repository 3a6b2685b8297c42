"""A front end's links under ``yyai serve --workers N``: to the supervisor, and through it the picture of all.

:class:`WorkerLink` is the data plane's ``Peers`` in a front end: ``manage`` hands an
operation to the model host (``host/remote.py``), which leads it and replies once every
front end serves the new state; ``gather`` asks the supervisor for every process (front
ends and the host: pid, state, memory, restarts) and adds what the host has loaded.
With ``--devices`` there is a host per GPU, and each lists the models it owns.
``ready`` tells the supervisor this front end serves on the shared port.

When the supervisor goes away, ``on_lost`` runs (the server stops: a front end never
outlives its supervisor). Requests from the supervisor: none any more (nothing to follow).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from yyai_kernel.errors import YyaiError
from yyai_kernel.plane.operations import Managed, Operation, PlacedModel, WorkerInfo
from yyai_kernel.server.workers.link import Link, LinkClosed
from yyai_kernel.server.workers.supervisor import WorkerSpec

GATHER_TIMEOUT_S = 30.0


class WorkerLink:
    """This front end's view of the others and of the host (see the module docstring)."""

    def __init__(self, spec: WorkerSpec, on_lost: Callable[[], None]):
        self.spec = spec
        self.host = None  # the HostRegistry, once the server built it
        self.link = Link(spec.fd, lambda message: {"ok": False, "error": "nothing to ask"}, name="supervisor",
                         on_close=on_lost)

    # --- the data plane's Peers ------------------------------------------------------------------

    def manage(self, op: Operation) -> Managed:
        """The model host leads ``op`` (503 with Retry-After while it restarts)."""
        return self.host.manage(op)

    def gather(self) -> list[WorkerInfo]:
        """Every process: the front ends, then the host with the models it holds."""
        try:
            reply = self.link.call({"type": "gather"}, timeout=GATHER_TIMEOUT_S)
        except (LinkClosed, TimeoutError):
            return [WorkerInfo(self.spec.index, os.getpid(), "serving")]
        processes = [WorkerInfo.from_json(w) for w in reply["workers"]]
        return [WorkerInfo(p.worker, p.pid, p.state, p.rss_bytes, p.restarts, self._hosted(p.worker), p.role)
                if p.role == "host" else p for p in processes]

    def _hosted(self, host: int) -> dict[str, PlacedModel]:
        """The models host ``host`` holds (one per device under --devices); none while it restarts."""
        try:
            return {m.name: PlacedModel(default=m.default, loaded=list(m.loaded)) for m in self.host.hosted(host)}
        except (YyaiError, IndexError):  # the host is restarting
            return {}

    # --- telling the supervisor -------------------------------------------------------------------

    def joined(self, models: list[str]) -> None:
        """This front end serves on the shared port."""
        self.link.call({"type": "ready", "models": models}, timeout=GATHER_TIMEOUT_S)
