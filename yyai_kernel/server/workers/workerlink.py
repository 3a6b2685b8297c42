"""A worker's end of its link to the supervisor (``yyai serve --workers N``).

:class:`WorkerLink` is the data plane's ``Peers``: ``follow`` asks the supervisor to have
every other worker apply an operation this worker led, and returns their report;
``gather`` asks for every worker's state. It also answers the supervisor: ``apply`` (follow
an operation another worker led, once this worker's start-up load is done, so that a
starting worker never applies a change and then loads an older state over it) and
``info`` (this worker's memory and what it serves).

Threads: requests from the supervisor run on the Link's pool; ``ready`` is an Event set
once the start-up load finished. When the supervisor goes away, ``on_lost`` runs (the
server stops: a worker never outlives its supervisor).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from yyai_kernel.errors import YyaiError
from yyai_kernel.plane.operations import (
    Operation,
    Outcome,
    WorkerInfo,
    WorkerOutcome,
    WorkerReport,
    follow,
)
from yyai_kernel.server.workers.link import Link, LinkClosed
from yyai_kernel.server.workers.supervisor import WorkerSpec


class WorkerLink:
    """This worker's view of the others, through the supervisor (see the module docstring)."""

    def __init__(self, spec: WorkerSpec, on_lost: Callable[[], None]):
        self.spec = spec
        self.planes = None  # set once the server built them
        self.ready = threading.Event()
        self.link = Link(spec.fd, self._handle, name="supervisor", on_close=on_lost)

    # --- the data plane's Peers ------------------------------------------------------------------

    def follow(self, op: Operation, leader: int) -> WorkerReport:
        """Have every other worker apply ``op``; the supervisor bounds the wait for each."""
        try:
            reply = self.link.call({"type": "follow", "op": op.to_json()})
        except LinkClosed:
            lost = [WorkerOutcome(i, Outcome.FAILED, "the supervisor is gone; this server is stopping")
                    for i in range(self.spec.count) if i != leader]
            return WorkerReport(tuple(sorted([WorkerOutcome(leader, Outcome.APPLIED), *lost],
                                             key=lambda o: o.worker)))
        return WorkerReport.from_json(reply["report"])

    def gather(self) -> list[WorkerInfo]:
        """Every worker's state, memory and models."""
        try:
            reply = self.link.call({"type": "gather"}, timeout=60)
        except (LinkClosed, TimeoutError):
            return [self._self_info()]
        return [WorkerInfo.from_json(w) for w in reply["workers"]]

    # --- telling the supervisor -------------------------------------------------------------------

    def join(self, models: list[str]) -> None:
        """This worker loaded its models: apply what the others changed meanwhile, then return
        (the supervisor answers once every operation it sent here was applied); the caller
        then joins the shared port."""
        self.ready.set()
        self.link.call({"type": "ready", "models": models})

    # --- answering it -------------------------------------------------------------------------------

    def _handle(self, message: dict) -> dict:
        kind = message.get("type")
        if kind == "apply":
            if not self.ready.wait(self.spec.sync_timeout):
                return {"ok": False, "error": "still loading its models"}
            try:
                follow(self.planes.registry, Operation.from_json(message["op"]))
            except YyaiError as error:
                return {"ok": False, "error": error.message}
            return {"ok": True}
        if kind == "info":
            return {"info": self._self_info().to_json()}
        return {"ok": False, "error": f"unknown request {kind!r}"}

    def _self_info(self) -> WorkerInfo:
        if self.planes is None:
            return WorkerInfo(self.spec.index, os.getpid(), "starting")
        return self.planes.repository.describe_self()
