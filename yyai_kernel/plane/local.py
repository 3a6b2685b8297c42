"""LocalBackend: the dashboard's and the CLI's :class:`~yyai_kernel.plane.backend.Backend` in this process.

It answers by name and version from the data plane, the model repository and the
evaluations of one registry (a plain notebook's dashboard, ``Dashboard.for_models``, the
CLI on a store folder), with the same result types as the HTTP client. Each call parses
its name and version once, as a REST endpoint does, then calls one plane method.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from yyai_kernel.config import ServingConfig
from yyai_kernel.evaluation.jobs import EvaluationJob
from yyai_kernel.plane.operations import Reloaded
from yyai_kernel.plane.planes import Planes
from yyai_kernel.plane.repository import Peers
from yyai_kernel.registry.protocol import ModelRegistry, Target
from yyai_kernel.types import (
    BundledFiles,
    Disagreement,
    FileRole,
    Given,
    InstallOptions,
    InstallResult,
    ModelRef,
    ModelRemoved,
    ModelStatus,
    ModelSummary,
    Prediction,
    ServerStatus,
    TrafficPolicy,
    TrafficReport,
    VersionDescription,
    VersionLabel,
    check_label,
    check_name,
)


class LocalBackend:
    """The Backend in this process: the data plane, the model repository and the
    evaluations of one registry, called by name and version (a notebook's dashboard, the CLI
    on a store folder). Each call parses its name and version once, as a REST endpoint does."""

    def __init__(self, planes: Planes) -> None:
        self.planes = planes
        self.data, self.repository, self.evaluations = planes.data, planes.repository, planes.evaluations

    @classmethod
    def over(cls, registry: ModelRegistry, config: ServingConfig | None = None, *, peers: Peers | None = None,
             worker: int = 0, jobs_dir: str | os.PathLike[str] | None = None) -> LocalBackend:
        """The backend over a registry (the options: see ``Planes.over``); closing it closes the registry."""
        return cls(Planes.over(registry, config, peers=peers, worker=worker, jobs_dir=jobs_dir))

    def _target(self, name: str, version: int | str | None = None) -> Target:
        return self.data.resolve(ModelRef.parse(name, version))

    # reading
    def list(self) -> list[ModelSummary]:
        return self.data.list()

    def status(self, name: str | None = None) -> ModelStatus | ServerStatus:
        return self.data.status(None if name is None else check_name(name))

    def describe(self, name: str, version: int | str | None = None) -> VersionDescription:
        return self.data.describe(self._target(name, version))

    def samples(self, name: str, version: int | str | None = None) -> builtins.list[str]:
        return list(self.data.bundled(self._target(name, version), FileRole.SAMPLE).files)

    def sample(self, name: str, sample: str, version: int | str | None = None) -> bytes:
        return self.data.bundled_file(self._target(name, version), sample, FileRole.SAMPLE)

    def bundled(self, name: str, version: int | str | None = None, role: FileRole = FileRole.SAMPLE) -> BundledFiles:
        return self.data.bundled(self._target(name, version), role)

    def eval_sets(self, name: str, version: int | str | None = None) -> builtins.list[str]:
        return list(self.data.bundled(self._target(name, version), FileRole.EVAL).files)

    def eval_set(self, name: str, set_name: str, version: int | str | None = None) -> bytes:
        return self.data.bundled_file(self._target(name, version), set_name, FileRole.EVAL)

    # predicting
    def predict(self, name: str, inputs: np.ndarray, version: int | str | None = None) -> Prediction:
        return self.data.predict(self._target(name, version), inputs)

    def predict_images(self, name: str, images: Iterable[bytes], version: int | str | None = None,
                       filenames: builtins.list[str | None] | None = None, *, explain: str | None = None) -> Prediction:
        return self.data.submit_images(self._target(name, version), list(images), filenames,
                                       explain=explain).result()

    def predict_inputs(self, name: str, given: Given, version: int | str | None = None, *,
                       explain: str | None = None) -> Prediction:
        return self.data.submit_inputs(self._target(name, version), given, explain=explain).result()

    # managing
    def load(self, name: str, version: int | str | None = None) -> ModelStatus:
        return self.repository.load(name, version)

    def unload(self, name: str, version: int | str | None = None) -> ModelStatus:
        return self.repository.unload(name, version)

    def reload(self, name: str | None = None, *, force: bool = True) -> ModelStatus | Reloaded:
        return self.repository.reload(name, force=force)

    def set_default(self, name: str, version: int | str) -> ModelStatus:
        return self.repository.set_default(name, version)

    def follow_latest(self, name: str) -> ModelStatus:
        return self.repository.follow_latest(name)

    def remove(self, name: str, version: int | str, *, purge: bool = False) -> ModelStatus | ModelRemoved:
        return self.repository.remove(name, version, purge=purge)

    def add_archive(self, archive: bytes | str | os.PathLike[str], *, promote: bool | None = None,
                    label: str | None = None, replace: bool = False) -> InstallResult:
        return self.repository.add_archive(archive, InstallOptions.parse(promote, label, replace))

    # rollouts
    def labels(self, name: str) -> dict[str, int]:
        return self.repository.labels(check_name(name))

    def label(self, name: str, label: str) -> VersionLabel:
        return self.repository.label(ModelRef(check_name(name), label=check_label(label)))

    def set_label(self, name: str, label: str, version: int | str) -> ModelStatus:
        return self.repository.set_label(name, label, version)

    def delete_label(self, name: str, label: str) -> ModelStatus:
        return self.repository.delete_label(name, label)

    def traffic_report(self, name: str) -> TrafficReport:
        return self.repository.traffic_report(check_name(name))

    def set_traffic(self, name: str, policy: TrafficPolicy | dict[str, Any]) -> ModelStatus:
        return self.repository.set_traffic(name, policy)

    def clear_traffic(self, name: str) -> ModelStatus:
        return self.repository.clear_traffic(name)

    def promote(self, name: str) -> ModelStatus:
        return self.repository.promote(name)

    def disagreements(self, name: str) -> builtins.list[Disagreement]:
        return self.repository.disagreements(check_name(name))

    # evaluations
    def start_evaluation(self, name: str, versions: Iterable[int | str | None] | None,
                         data: bytes | os.PathLike[str] | None = None, *, bundled: str | None = None,
                         set_version: int | str | None = None, target: str | None = None) -> EvaluationJob:
        parsed = [ModelRef.parse(name, v) for v in versions or ()]
        return self.evaluations.start(check_name(name), [r.version if r.label is None else r.label for r in parsed],
                                      data, bundled=bundled,
                                      set_ref=None if set_version is None else ModelRef.parse(name, set_version),
                                      target=target)

    def evaluation(self, job_id: str) -> EvaluationJob:
        return self.evaluations.get(job_id)

    def close(self) -> None:
        self.planes.close()
