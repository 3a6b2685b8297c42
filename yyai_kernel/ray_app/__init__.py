"""yyai as a Ray Serve application: the same .yyar archives and REST API, over Ray replicas.

What: ``build_app`` is the application builder that Ray's own tools call:

    serve run yyai_kernel.ray_app:build_app store=/mnt/yyai-store
    serve deploy deploy/ray/serve_config.yaml

and ``yyai ray`` (``cli/raylaunch.py``) calls it too. The application is one deployment,
``YyaiModels`` (``deployment.py``): each replica serves yyai's REST API over the data plane
and runs the archives' runtimes itself (``models.py``: multiplexed by model id, batched), so
a request crosses Ray's proxy and one replica. The ``args`` (``key=value`` on the command
line, ``args:`` in a config file) are validated into :class:`AppArgs`. Replica counts,
placement and autoscaling are Ray's deployment options: ``deployments:`` in the config
file, or ``yyai ray --replicas N | --autoscale MIN:MAX``.

The token: ``token`` in the args, else the ``YYAI_TOKEN`` environment variable where the
builder runs (``runtime_env: env_vars:`` in a config file), else a random one that the
builder logs; ``no_token: true`` turns authentication off. Every replica gets the same
token, since the builder picks it once.

Importing this package imports Ray: only the ``ray`` extra installs it.
"""

from __future__ import annotations

import logging
import os
import secrets

from pydantic import BaseModel, Field, field_validator
from ray.serve import Application

from yyai_kernel.config import DEFAULT_MAX_ARCHIVE_BYTES, DEFAULT_MAX_BODY_BYTES
from yyai_kernel.ray_app.deployment import ModelDeployment
from yyai_kernel.ray_app.models import (
    DEFAULT_BATCH_WAIT_S,
    DEFAULT_HOT_REQUESTS,
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MAX_MODELS,
    DEPLOYMENT_NAME,
    ModelId,
    ReplicaStats,
)

__all__ = [
    "DEPLOYMENT_NAME",
    "AppArgs",
    "ModelDeployment",
    "ModelId",
    "ReplicaStats",
    "application",
    "build_app",
]

log = logging.getLogger("yyai.ray")
TOKEN_ENV = "YYAI_TOKEN"


class AppArgs(BaseModel):
    """The application's arguments; ``store`` must be the same path on every node."""

    store: str
    max_models: int = Field(DEFAULT_MAX_MODELS, ge=1, description="archives kept per replica (LRU)")
    max_batch_rows: int = Field(DEFAULT_MAX_BATCH_ROWS, ge=1, description="rows in one traced call")
    batch_wait_s: float = Field(DEFAULT_BATCH_WAIT_S, ge=0, description="how long a batch waits to fill")
    hot_requests: int = Field(DEFAULT_HOT_REQUESTS, ge=0, description="requests of one model in flight on a "
                              "replica that make every replica load it (0: never)")
    trusted: list[str] = Field(default_factory=list, description="models whose archives may run Lambda code")
    token: str | None = Field(None, description="the API token (default: $YYAI_TOKEN, else a random one)")
    no_token: bool = Field(False, description="serve without authentication")
    public_health: bool = Field(False, description="answer /v2/health/live and /ready without a token")
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1, description="largest prediction body")
    max_archive_bytes: int = Field(DEFAULT_MAX_ARCHIVE_BYTES, ge=1, description="largest archive upload")

    @field_validator("trusted", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        """``serve run ... trusted=a,b`` passes one string; a config file passes a list."""
        return [part for part in value.split(",") if part] if isinstance(value, str) else value

    def api_token(self) -> str | None:
        """The token every replica checks (None: authentication off)."""
        if self.no_token:
            return None
        token = self.token or os.environ.get(TOKEN_ENV)
        if not token:
            token = secrets.token_hex(24)
            log.warning("yyai on Ray: no token given (args token or $%s); this one was generated: %s",
                        TOKEN_ENV, token)
        return token


def application(args: AppArgs, *, token: str | None, model_options: dict | None = None) -> Application:
    """The deployment, bound; ``model_options`` are its Ray options (``num_replicas`` or
    ``autoscaling_config``, ``ray_actor_options``)."""
    serving = {"trusted": list(args.trusted), "public_health": args.public_health,
               "max_body_bytes": args.max_body_bytes, "max_archive_bytes": args.max_archive_bytes}
    return ModelDeployment.options(**(model_options or {})).bind(
        args.store, token=token, serving=serving, max_models=args.max_models, max_batch_rows=args.max_batch_rows,
        batch_wait_s=args.batch_wait_s, hot_requests=args.hot_requests)


def build_app(args: dict | AppArgs) -> Application:
    """The application builder of ``serve run`` and ``serve deploy``.

    Ray converts the arguments only when the annotation is the model class itself, and this
    module's annotations are strings (``from __future__ import annotations``), so they are
    validated here: a missing ``store`` or a wrong type fails the deploy with pydantic's message.
    """
    args = args if isinstance(args, AppArgs) else AppArgs.model_validate(args)
    return application(args, token=args.api_token())
