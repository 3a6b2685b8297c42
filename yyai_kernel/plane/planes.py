"""Planes: the data plane, the model repository and the evaluations, composed over one registry.

The composition root of everything a front end calls, in the manner of MLServer's
``rest/app.py`` composing its ``DataPlane`` and ``ModelRepositoryHandlers``: one traffic
router (which the data plane places requests with and the repository's statuses report)
and one readiness flag, shared by the three objects. ``yyai serve``, each Ray replica, the
in-process backend and the tests build theirs with :meth:`Planes.over`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from yyai_kernel.config import ServingConfig
from yyai_kernel.plane.dataplane import DataPlane, Readiness
from yyai_kernel.plane.evaluations import Evaluations
from yyai_kernel.plane.repository import ModelRepository, Peers
from yyai_kernel.registry.protocol import ModelRegistry
from yyai_kernel.rollout.traffic import TrafficRouter


@dataclass(frozen=True)
class Planes:
    """What a front end calls: ``data`` (reading, inference), ``repository`` (changes) and
    ``evaluations`` (jobs), over ``registry``."""

    registry: ModelRegistry
    data: DataPlane
    repository: ModelRepository
    evaluations: Evaluations

    @classmethod
    def over(cls, registry: ModelRegistry, config: ServingConfig | None = None, *, peers: Peers | None = None,
             worker: int = 0, jobs_dir: str | os.PathLike[str] | None = None) -> Planes:
        """The three objects over ``registry``; ``peers`` and ``worker``: see ``ModelRepository``."""
        config = config or registry.config
        traffic = TrafficRouter(registry, max_pending=config.shadow_max_pending, keep=config.shadow_disagreements)
        health = Readiness()
        data = DataPlane(registry, traffic, config, health=health)
        repository = ModelRepository(registry, traffic, config, health=health, peers=peers, worker=worker)
        return cls(registry, data, repository, Evaluations(data, jobs_dir))

    @property
    def config(self) -> ServingConfig:
        return self.data.config

    def close(self) -> None:
        """Stop the shadow runner, drop queued evaluations and close the registry."""
        self.data.close()
        self.evaluations.close()
        self.registry.close()
