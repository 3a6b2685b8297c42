"""The backend contract: what the dashboard (and any other client of yyai) calls.

Two classes implement it with the same methods and the same result types:
:class:`~yyai_kernel.plane.local.LocalBackend` in-process (a plain Jupyter notebook, the CLI on a store folder: the
data plane, model repository and evaluations of a Registry) and
:class:`~yyai_kernel.client.YyaiClient` over HTTP (the page that ``yyai serve`` shows, or a
notebook attached to a running server). A test calls both on the same store and checks
that they agree.

This module holds only the Protocol: importing it imports no TensorFlow and no HTTP.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, overload, runtime_checkable

from yyai_kernel.types import (
    BundledFiles,
    Disagreement,
    FileRole,
    Given,
    InstallResult,
    ModelRemoved,
    ModelStatus,
    ModelSummary,
    Prediction,
    ServerStatus,
    TrafficPolicy,
    TrafficReport,
    VersionDescription,
    VersionLabel,
)

if TYPE_CHECKING:  # the job type and arrays pull in numpy; the Protocol stays import-light
    import numpy as np

    from yyai_kernel.evaluation.jobs import EvaluationJob


@runtime_checkable
class Backend(Protocol):
    """Reading, predicting and managing models, whatever the transport."""

    def list(self) -> list[ModelSummary]: ...

    @overload
    def status(self, name: None = None) -> ServerStatus: ...
    @overload
    def status(self, name: str) -> ModelStatus: ...
    def status(self, name: str | None = None) -> ModelStatus | ServerStatus: ...

    def describe(self, name: str, version: int | None = None) -> VersionDescription: ...

    def samples(self, name: str, version: int | None = None) -> builtins.list[str]: ...

    def bundled(self, name: str, version: int | None = None, role: FileRole = FileRole.SAMPLE) -> BundledFiles: ...

    def sample(self, name: str, sample: str, version: int | None = None) -> bytes: ...

    def predict(self, name: str, inputs: np.ndarray, version: int | None = None) -> Prediction: ...

    def predict_images(self, name: str, images: Iterable[bytes], version: int | None = None,
                       filenames: builtins.list[str] | None = None, *, explain: str | None = None) -> Prediction: ...

    def predict_inputs(self, name: str, given: Given, version: int | None = None, *,
                       explain: str | None = None) -> Prediction: ...

    def load(self, name: str, version: int | None = None) -> ModelStatus: ...

    def unload(self, name: str, version: int | None = None) -> ModelStatus: ...

    # one model's status; for every model, each one's result (typed in process, the JSON reply over HTTP)
    def reload(self, name: str | None = None, *, force: bool = True) -> ModelStatus | Mapping[str, object]: ...

    def set_default(self, name: str, version: int) -> ModelStatus: ...

    def follow_latest(self, name: str) -> ModelStatus: ...

    def remove(self, name: str, version: int, *, purge: bool = False) -> ModelStatus | ModelRemoved: ...

    def add_archive(self, archive: bytes | str | os.PathLike[str], *, promote: bool | None = None,
                    label: str | None = None, replace: bool = False) -> InstallResult: ...

    def labels(self, name: str) -> dict[str, int]: ...

    def label(self, name: str, label: str) -> VersionLabel: ...

    def set_label(self, name: str, label: str, version: int) -> ModelStatus: ...

    def delete_label(self, name: str, label: str) -> ModelStatus: ...

    def traffic_report(self, name: str) -> TrafficReport: ...

    def set_traffic(self, name: str, policy: TrafficPolicy | dict[str, Any]) -> ModelStatus: ...

    def clear_traffic(self, name: str) -> ModelStatus: ...

    def promote(self, name: str) -> ModelStatus: ...

    def disagreements(self, name: str) -> builtins.list[Disagreement]: ...

    def eval_sets(self, name: str, version: int | None = None) -> builtins.list[str]: ...

    def eval_set(self, name: str, set_name: str, version: int | None = None) -> bytes: ...

    def start_evaluation(self, name: str, versions: builtins.list[int | None] | None,
                         data: bytes | os.PathLike[str] | None = None, *, bundled: str | None = None,
                         set_version: int | None = None, target: str | None = None) -> EvaluationJob: ...

    def evaluation(self, job_id: str) -> EvaluationJob: ...

