"""The seam under the data plane: what :class:`~yyai_kernel.plane.dataplane.DataPlane` needs from a registry.

Two classes implement it. :class:`~yyai_kernel.registry.registry.Registry` holds the runtimes in this
process (``yyai serve``, a notebook). ``RayRegistry`` (``yyai_kernel/ray_app/registry.py``)
holds none: it reads the shared store's state and submits each request to the Ray model
deployment by model id. DataPlane is written against this Protocol only, so it runs
unchanged in both, and every rule (names, versions, errors, v2 encoding) stays in one place.

Only the Protocol and one shared rule (:func:`resolve_version`) live here: importing this
module imports no TensorFlow, no Ray and no HTTP framework.
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Callable, Iterable, Protocol, runtime_checkable

from yyai_kernel.config import ServingConfig
from yyai_kernel.errors import ModelNotFoundError, ModelNotReadyError
from yyai_kernel.store.store import ArchiveRecord
from yyai_kernel.types import (
    InstallResult,
    ModelError,
    ModelRemoved,
    ModelStatus,
    ModelSummary,
    Prediction,
    ServerStatus,
    TrafficPolicy,
    VersionDescription,
    parse_version_ref,
)


@runtime_checkable
class ModelRegistry(Protocol):
    """Reading, resolving, submitting and managing the models of one store.

    ``submit`` returns a Future of a :class:`Prediction` without waiting for the model;
    everything else may block (on a disk, a lock or a cluster) and runs off event loops.
    """

    config: ServingConfig

    # reading
    def names(self) -> list[str]: ...

    def list(self) -> list[ModelSummary]: ...

    def status(self, name: str | None = None) -> ModelStatus | ServerStatus: ...

    def resolve_version(self, name: str, version: int | str | None = None) -> int: ...

    def record(self, name: str, version: int | None = None) -> ArchiveRecord: ...

    def describe(self, name: str, version: int | None = None) -> VersionDescription: ...

    # predicting
    def submit(self, name: str, inputs, version: int | None = None, *, finite: bool = False) -> Future: ...

    def predict(self, name: str, inputs, version: int | None = None) -> Prediction: ...

    def batches(self, name: str, version: int | None = None) -> bool: ...

    # managing
    def load(self, name: str, version: int | None = None) -> ModelStatus: ...

    def unload(self, name: str, version: int | None = None) -> ModelStatus: ...

    def reload(self, name: str | None = None, *, force: bool = True) -> ModelStatus | dict[str, ModelStatus | ModelError]: ...

    def set_default(self, name: str, version: int) -> ModelStatus: ...

    def follow_latest(self, name: str) -> ModelStatus: ...

    def remove(self, name: str, version: int, *, purge: bool = False) -> ModelStatus | ModelRemoved: ...

    def install(self, path: str | Path) -> InstallResult: ...

    # rollouts (persisted in the store's state file)
    def traffic(self, name: str) -> TrafficPolicy | None: ...

    def set_label(self, name: str, label: str, version: int) -> ModelStatus: ...

    def delete_label(self, name: str, label: str) -> ModelStatus: ...

    def set_traffic(self, name: str, policy: TrafficPolicy) -> ModelStatus: ...

    def clear_traffic(self, name: str) -> ModelStatus: ...


def resolve_version(name: str, version, known: Iterable[int], default: int | None,
                    names: Callable[[], list[str]], label: Callable[[str], int]) -> int:
    """The version a request means: ``version`` checked against ``known``, the version a label
    names (``label(text)``, the store's labels), or ``default``.

    ModelNotFoundError (404) for an unknown name, version or label, naming the closest model
    or the versions there are; ModelNotReadyError (503) when the model has no default.
    """
    version = parse_version_ref(version)
    known = set(known)
    if not known:
        raise ModelNotFoundError(unknown_name(name, names()))
    if version is None:
        if default is None:
            raise ModelNotReadyError(f"Model {name!r} has no version in the store.")
        return default
    named, version = (version, label(version)) if isinstance(version, str) else (None, version)
    if version not in known:
        lacks = f"label {named!r} points at version {version}, which it lacks" if named else f"no version {version}"
        raise ModelNotFoundError(f"Model {name!r} has {lacks}; it has {sorted(known)}.")
    return version


def unknown_name(name: str, names: list[str]) -> str:
    """The 404 message for a model name nobody knows: the closest name, or the list."""
    import difflib

    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else (f" The models are: {', '.join(names)}." if names else
                                                          " The store holds no models yet.")
    return f"No model named {name!r}.{hint}"
