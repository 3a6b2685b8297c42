"""The model repository: every change to what serves, each an operation the model host leads.

:class:`ModelRepository` changes what serves: load, unload, reload, default and pin,
remove, install, version labels and traffic policies, over the same registry as the
:class:`~yyai_kernel.plane.dataplane.DataPlane` (reading and inference), in the manner of
MLServer's ``handlers/model_repository.py`` beside its ``dataplane.py``. Each change is an
:class:`~yyai_kernel.plane.operations.Operation`. In one process it is led here, on the
registry beside it; in a front end of ``yyai serve --workers N`` (``peers`` set) the model
host leads it on the one registry and every front end sees the new state before the reply
(``host/``). It also answers the reads that belong with the changes: labels, the traffic
report, the kept disagreements, and the worker view.

No framework types; safe from any thread (the registry and the store lock).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from yyai_kernel.config import ServingConfig
from yyai_kernel.errors import InvalidInputError
from yyai_kernel.plane.dataplane import Readiness
from yyai_kernel.plane.operations import (
    Managed,
    Operation,
    OpKind,
    Reloaded,
    WorkerInfo,
    WorkerReport,
    lead,
    led_as,
    local_worker,
)
from yyai_kernel.registry.protocol import ModelRegistry
from yyai_kernel.rollout.traffic import TrafficRouter
from yyai_kernel.types import (
    Disagreement,
    InstallOptions,
    InstallResult,
    ModelRef,
    ModelRemoved,
    ModelStatus,
    TrafficPolicy,
    TrafficReport,
    VersionLabel,
)


class Peers(Protocol):
    """The model host and the other worker processes, as a front end of ``--workers N`` sees them."""

    def manage(self, op: Operation) -> Managed:
        """Have the model host lead ``op``; the report says which front ends serve the new state."""

    def gather(self) -> list[WorkerInfo]:
        """Every worker process's state, this one included, and the model host's."""


class ModelRepository:
    """The changes to what serves over one registry, led here and followed by the peers.

    ``traffic`` is the router the data plane places requests with (statuses carry its
    figures); ``health`` says whether this process finished its start-up load.
    """

    def __init__(self, registry: ModelRegistry, traffic: TrafficRouter, config: ServingConfig | None = None, *,
                 health: Readiness, peers: Peers | None = None, worker: int = 0):
        self.registry = registry
        self.traffic = traffic
        self.config = config or registry.config
        self.health = health
        self.peers = peers
        self.worker = worker

    def _with_rollout(self, status: ModelStatus) -> ModelStatus:
        return self.traffic.with_rollout(status)

    # --- managing ------------------------------------------------------------------------------
    # Each change is an Operation (``operations.py``), led where the models are: on this
    # registry, or by the model host (``peers``). The named methods are the single-process API;
    # ``manage`` also returns the WorkerReport, for front ends that say which workers serve it.

    def manage(self, op: Operation) -> Managed:
        """Apply a management operation where the models are; returns once every worker process
        serves the new state (or is reported as not doing so). ``op`` was checked at the edge
        (:meth:`Operation.checked`), where it was parsed from a request."""
        if self.peers is not None:
            managed = self.peers.manage(op)
        else:
            managed = Managed(lead(self.registry, op), WorkerReport.alone(self.worker))
        if op.kind in (OpKind.SET_TRAFFIC, OpKind.CLEAR_TRAFFIC, OpKind.PROMOTE):
            # this process's figures
            return Managed(self._with_rollout(led_as(managed.result, ModelStatus)), managed.report)
        return managed

    def _status(self, op: Operation) -> ModelStatus:
        """Check and lead ``op``, one whose result is the model's status."""
        return led_as(self.manage(op.checked()).result, ModelStatus)

    def load(self, name: str, version: int | str | None = None) -> ModelStatus:
        return self._status(Operation(OpKind.LOAD, name, version))

    def unload(self, name: str, version: int | str | None = None) -> ModelStatus:
        return self._status(Operation(OpKind.UNLOAD, name, version))

    def reload(self, name: str | None = None, *, force: bool = True) -> ModelStatus | Reloaded:
        """Re-read the store and reload one model, or every model when ``name`` is None."""
        result = self.manage(Operation(OpKind.RELOAD, name, force=force).checked()).result
        if isinstance(result, (InstallResult, ModelRemoved)):
            raise TypeError(f"Expected a reload's statuses, not a {type(result).__name__}")
        return result

    def set_default(self, name: str, version: int | str) -> ModelStatus:
        return self._status(Operation(OpKind.SET_DEFAULT, name, version))

    def follow_latest(self, name: str) -> ModelStatus:
        return self._status(Operation(OpKind.FOLLOW_LATEST, name))

    def remove(self, name: str, version: int | str, *, purge: bool = False) -> ModelStatus | ModelRemoved:
        result = self.manage(Operation(OpKind.REMOVE, name, version, purge=purge).checked()).result
        if not isinstance(result, (ModelStatus, ModelRemoved)):
            raise TypeError(f"Expected a removal's status, not a {type(result).__name__}")
        return result

    # --- labels and traffic ------------------------------------------------------------------

    def labels(self, name: str) -> dict[str, int]:
        """A model's labels, ``{label: version}``."""
        return self.registry.status(name).labels

    def label(self, ref: ModelRef) -> VersionLabel:
        """The version a label names (``ref`` names it; 404 for an unknown model or label)."""
        if ref.label is None:
            raise InvalidInputError(f"Name a label of model {ref.name!r}.", field="label")
        return VersionLabel(ref.name, ref.label, self.registry.resolve(ref).version)

    def set_label(self, name: str, label: str, version: int | str) -> ModelStatus:
        """Point a label at a version (a number), loading it first; persisted in the store."""
        return self._status(Operation(OpKind.SET_LABEL, name, version, label=label))

    def delete_label(self, name: str, label: str) -> ModelStatus:
        return self._status(Operation(OpKind.DELETE_LABEL, name, label=label))

    def traffic_report(self, name: str) -> TrafficReport:
        """The traffic policy of a model and its running figures."""
        policy = self.registry.status(name).traffic
        return TrafficReport(name, policy, self.traffic.stats(name, policy))

    def set_traffic(self, name: str, policy: TrafficPolicy | dict[str, Any]) -> ModelStatus:
        """Set the canary and shadow policy (a :class:`TrafficPolicy` or its JSON document)."""
        if isinstance(policy, TrafficPolicy):
            policy = policy.to_json()
        return self._status(Operation(OpKind.SET_TRAFFIC, name, policy=policy))

    def clear_traffic(self, name: str) -> ModelStatus:
        """Drop the traffic policy: every request that names no version goes to the default (a roll-back)."""
        return self._status(Operation(OpKind.CLEAR_TRAFFIC, name))

    def promote(self, name: str) -> ModelStatus:
        """Make the candidate (the canary, else the shadow) the default, pinned, and clear the policy."""
        return self._status(Operation(OpKind.PROMOTE, name))

    def disagreements(self, name: str) -> list[Disagreement]:
        """The last inputs on which the shadow disagreed with the answer sent, newest first."""
        return self.traffic.disagreements(name, self.registry.status(name).traffic)  # 404 for an unknown model

    def add_archive(self, archive: bytes | str | os.PathLike[str],
                    options: InstallOptions | None = None) -> InstallResult:
        """Install an archive (its bytes, or a file the caller owns): verify, store, load (see ``install``)."""
        return led_as(self.install(archive, options).result, InstallResult)

    def install(self, archive: bytes | str | os.PathLike[str], options: InstallOptions | None = None) -> Managed:
        """:meth:`add_archive` with the report of which workers serve the new version. ``options``
        (promote, label, replace) were checked at the edge (``InstallOptions.parse``)."""
        options = options or InstallOptions()
        op = Operation(OpKind.INSTALL, label=options.label, promote=options.promote, replace=options.replace)
        if isinstance(archive, (str, os.PathLike)):
            return self.manage(replace(op, archive=os.fspath(archive)))
        with tempfile.TemporaryDirectory(prefix="yyai-install-") as folder:
            path = Path(folder) / "upload.yyar"
            path.write_bytes(bytes(archive))
            return self.manage(replace(op, archive=str(path)))

    # --- workers -------------------------------------------------------------------------------

    def workers(self) -> list[WorkerInfo]:
        """Every worker process: its state, memory and what it serves (this one alone without peers)."""
        if self.peers is None:
            return [self.describe_self()]
        return self.peers.gather()

    def describe_self(self) -> WorkerInfo:
        """This worker, as :meth:`workers` lists it."""
        return local_worker(self.registry, self.worker, ready=self.health.ready)

    def repository_load(self, name: str, parameters: dict[str, Any] | None = None) -> ModelStatus:
        """Triton's load: the default version. Config and file overrides are refused."""
        return self._status(repository_load_op(name, parameters))


def repository_load_op(name: str, parameters: dict[str, Any] | None = None) -> Operation:
    """The operation of Triton's load; config and file overrides are refused (400)."""
    if parameters and any(k == "config" or k.startswith("file:") for k in parameters):
        raise InvalidInputError(
            "Model config and file overrides are not accepted; upload an archive with POST /models."
        )
    return Operation(OpKind.LOAD, name)
