"""yyai as a Ray Serve application: the same .yyar archives, multiplexed over Ray replicas.

What: ``build_app`` is the application builder that Ray's own tools call:

    serve run yyai_kernel.ray_app:build_app store=/mnt/yyai-store
    serve deploy deploy/ray/serve_config.yaml

Ray validates the ``args`` (``key=value`` on the command line, ``args:`` in a config file)
into :class:`AppArgs`. Replica counts and autoscaling are Ray's deployment options: set
them under ``deployments:`` in the config file, not here.

For now the application is the model deployment alone (models.py), reached through
deployment handles; the HTTP ingress over the data plane comes with issue #15's second part.
Importing this package imports Ray: only the ``ray`` extra installs it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator
from ray.serve import Application

from yyai_kernel.ray_app.models import (
    DEFAULT_BATCH_WAIT_S,
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MAX_MODELS,
    DEPLOYMENT_NAME,
    ModelDeployment,
    ModelId,
    ReplicaStats,
    StaleModelIdError,
)

__all__ = ["AppArgs", "DEPLOYMENT_NAME", "ModelDeployment", "ModelId", "ReplicaStats",
           "StaleModelIdError", "build_app"]


class AppArgs(BaseModel):
    """The application's arguments; ``store`` must be the same path on every node."""

    store: str
    max_models: int = Field(DEFAULT_MAX_MODELS, ge=1, description="archives kept per replica (LRU)")
    max_batch_rows: int = Field(DEFAULT_MAX_BATCH_ROWS, ge=1, description="rows in one traced call")
    batch_wait_s: float = Field(DEFAULT_BATCH_WAIT_S, ge=0, description="how long a batch waits to fill")
    trusted: list[str] = Field(default_factory=list, description="models whose archives may run Lambda code")

    @field_validator("trusted", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        """``serve run ... trusted=a,b`` passes one string; a config file passes a list."""
        return [part for part in value.split(",") if part] if isinstance(value, str) else value


def build_app(args: AppArgs) -> Application:
    """Bind the model deployment to the store and the batching and caching limits."""
    return ModelDeployment.bind(
        args.store, max_models=args.max_models, max_batch_rows=args.max_batch_rows,
        batch_wait_s=args.batch_wait_s, trusted=tuple(args.trusted),
    )
