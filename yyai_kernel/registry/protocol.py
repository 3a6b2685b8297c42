"""The seam under the data plane: what it needs from a registry, and what a resolved request carries.

Three classes implement :class:`ModelRegistry`. :class:`~yyai_kernel.registry.registry.Registry`
holds the runtimes in this process (``yyai serve``, a notebook, the model host of
``--workers N``). ``HostRegistry`` (``yyai_kernel/host/remote.py``), a front end's under
``--workers N``, holds none: it keeps the host's views and sends each request to the host.
``RayRegistry`` (``yyai_kernel/ray_app/registry.py``), one in each Ray replica, reads the
shared store's state and runs each request on that replica's runtimes by model id
(``ray_app/models.py`` holds them). The data plane is written against this Protocol only, so
it runs unchanged in all three.

Resolution happens once per request. A registry keeps one :class:`ModelView` per model: an
immutable picture of its versions in the store, its default, its labels and its traffic
policy, replaced whole whenever any of them changes. :meth:`ModelRegistry.resolve` reads
the model's view (one dictionary read, no lock that a disk write can hold) and turns the
request's :class:`~yyai_kernel.types.ModelRef` into a :class:`Target`: one version, with its
archive record and description. Everything below takes the Target and never resolves again;
a canary or a shadow version is picked from the same view (:meth:`ModelView.target`).

Importing this module imports no TensorFlow, no Ray and no HTTP framework.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, overload, runtime_checkable

import numpy as np

from yyai_kernel.config import ServingConfig
from yyai_kernel.errors import ModelNotFoundError, ModelNotReadyError
from yyai_kernel.runtime.membermap import Explained
from yyai_kernel.store.store import ArchiveRecord, ModelStore
from yyai_kernel.types import (
    InstallOptions,
    InstallResult,
    ModelError,
    ModelRef,
    ModelRemoved,
    ModelStatus,
    ModelSummary,
    Prediction,
    ServerStatus,
    TrafficPolicy,
    VersionDescription,
)


@dataclass(frozen=True)
class ModelView:
    """One model as requests see it at one moment: its archives, default, labels and policy.

    ``records`` holds every version a request may name: those in the store, and those that
    still serve although their archive became unreadable (their runtime answers until a
    reload succeeds). ``stored`` is the versions in the store.
    """

    name: str
    records: Mapping[int, ArchiveRecord]
    default: int | None
    labels: Mapping[str, int]
    policy: TrafficPolicy | None
    stored: frozenset[int] = frozenset()

    def resolve(self, ref: ModelRef) -> Target:
        """The version ``ref`` means: the number it names, the version its label names, or the default.

        ModelNotFoundError (404) for a version or label the model lacks, naming what it has;
        ModelNotReadyError (503) when the model has no default.
        """
        if ref.label is not None:
            version = self.labels.get(ref.label)
            if version is None:
                known = f"its labels are {', '.join(sorted(self.labels))}" if self.labels else "it has no labels"
                raise ModelNotFoundError(f"Model {self.name!r} has no label {ref.label!r}; {known}.")
            if version not in self.records:
                raise ModelNotFoundError(f"Model {self.name!r} has label {ref.label!r} pointing at version "
                                         f"{version}, which it lacks; it has {sorted(self.records)}.")
            return Target(self, version, named=True)
        if ref.version is not None:
            return self.target(ref.version)
        if self.default is None:
            raise ModelNotReadyError(f"Model {self.name!r} has no version in the store.")
        return Target(self, self.default, named=False)

    def target(self, version: int) -> Target:
        """A version of this model, named as such (404 when the store lacks it)."""
        if version not in self.records:
            raise ModelNotFoundError(f"Model {self.name!r} has no version {version}; it has {sorted(self.records)}.")
        return Target(self, version, named=True)


@dataclass(frozen=True)
class Target:
    """A resolved request: one version of one model, and the view it was resolved in.

    ``named`` is False when the request named no version: the default was chosen, and
    the model's traffic policy (``model.policy``) may place the request elsewhere.
    """

    model: ModelView
    version: int
    named: bool = True

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def record(self) -> ArchiveRecord:
        return self.model.records[self.version]

    @property
    def description(self) -> VersionDescription:
        return self.record.description


@runtime_checkable
class ModelRegistry(Protocol):
    """Reading, resolving, submitting and managing the models of one store.

    ``submit`` returns a Future of a :class:`Prediction` without waiting for the model, and
    ``resolve`` never blocks; everything else may (on a disk, a lock or a cluster) and runs
    off event loops. Management methods take a version as a number or a label, already
    checked by the caller.
    """

    config: ServingConfig

    # reading
    def names(self) -> list[str]: ...

    def list(self) -> list[ModelSummary]: ...

    @overload
    def status(self, name: None = None) -> ServerStatus: ...
    @overload
    def status(self, name: str) -> ModelStatus: ...
    def status(self, name: str | None = None) -> ModelStatus | ServerStatus: ...

    def resolve(self, ref: ModelRef) -> Target: ...

    # predicting
    def submit(self, target: Target, inputs: np.ndarray, *, finite: bool = False) -> Future[Prediction]: ...

    def explain(self, target: Target, inputs: np.ndarray) -> tuple[Prediction, Explained]: ...

    def batches(self, target: Target) -> bool: ...

    def close(self) -> None: ...

    # managing
    def load(self, name: str, version: int | str | None = None) -> ModelStatus: ...

    def unload(self, name: str, version: int | str | None = None) -> ModelStatus: ...

    def reload(
        self, name: str | None = None, *, force: bool = True
    ) -> ModelStatus | dict[str, ModelStatus | ModelError]: ...

    def set_default(self, name: str, version: int | str) -> ModelStatus: ...

    def follow_latest(self, name: str) -> ModelStatus: ...

    def remove(self, name: str, version: int | str, *, purge: bool = False) -> ModelStatus | ModelRemoved: ...

    def install(self, path: str | Path, options: InstallOptions | None = None) -> InstallResult: ...

    # rollouts (persisted in the store's state file)
    def set_label(self, name: str, label: str, version: int | str) -> ModelStatus: ...

    def delete_label(self, name: str, label: str) -> ModelStatus: ...

    def set_traffic(self, name: str, policy: TrafficPolicy) -> ModelStatus: ...

    def clear_traffic(self, name: str) -> ModelStatus: ...


def views_of(
    store: ModelStore, default: Callable[[str], int | None], serving: Iterable[ArchiveRecord] = ()
) -> dict[str, ModelView]:
    """Every model's view: its records in ``store`` (plus the ``serving`` records the store no
    longer reads), ``default(name)``, and the store's labels and policy."""
    records: dict[str, dict[int, ArchiveRecord]] = {}
    for record in store.records():
        records.setdefault(record.name, {})[record.version] = record
    stored = {name: frozenset(versions) for name, versions in records.items()}
    for record in serving:
        records.setdefault(record.name, {}).setdefault(record.version, record)
    return {name: ModelView(name, versions, default(name), store.labels(name), store.traffic(name),
                            stored.get(name, frozenset()))
            for name, versions in records.items()}


def ref_of(name: str, version: int | str | None) -> ModelRef:
    """A reference from a name and an already checked version or label (management calls)."""
    return ModelRef(name, label=version) if isinstance(version, str) else ModelRef(name, version)


def unknown_name(name: str, names: list[str]) -> str:
    """The 404 message for a model name nobody knows: the closest name, or the list."""
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else (f" The models are: {', '.join(names)}." if names else
                                                          " The store holds no models yet.")
    return f"No model named {name!r}.{hint}"
