"""The yyai deployment on Ray Serve: each replica takes HTTP and runs the models itself.

What: the replicas of :data:`ModelDeployment` (``YyaiModels`` in Ray) answer Ray Serve's
proxy with the ASGI app of the endpoint table (``yyai_kernel/api/asgi.py``, less what
``http.py`` keeps off Ray) over unchanged planes (:class:`~yyai_kernel.plane.planes.Planes`)
whose registry is a :class:`~yyai_kernel.ray_app.registry.RayRegistry`: versions, defaults
and pins come from the shared store, and a prediction runs on this replica's own models
(:class:`~yyai_kernel.ray_app.models.ReplicaModels`: multiplexed by ``name:version:sha256``,
batched, least recently used out). A request crosses Ray's proxy and one replica, nothing else.

Why one deployment and no separate ingress: an ingress in front of the models cost one more
process hop per request (9 to 11 ms on the loaded 2-core dev machine, and half the throughput:
bench/RESULTS.md "yyai on Ray Serve: one hop fewer") and did nothing the replica cannot do:
resolving a version is a dictionary read in the store's view, which every replica keeps.
Management calls (uploads, pins, reloads) are rare; any replica takes them, writes the store
and tells the others (``replicas.py``).

How a request finds a replica: Ray's proxy routes a request that carries the
``serve_multiplexed_model_id`` header (``name:version:sha256``) to a replica holding that id;
one without it to any replica (Ray's power-of-two choices, preferring the proxy's node).
Either way the replica resolves the request from its path and body, once, and never trusts the
header for what to run: the header only steers routing. Every replica loads the default
version of the first ``max_models`` models at start, before Ray routes to it, and every version
a management call makes served is loaded on every replica before the call replies.

Calls that only other replicas, tests and benchmarks make through a deployment handle:
``predict`` (a tensor, by the handle's ``multiplexed_model_id``), ``warm``, ``stats``,
``apply`` (a :class:`~yyai_kernel.ray_app.registry.StateChange`) and ``state``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile

import ray
from ray import serve
from ray.serve import Deployment

from yyai_kernel.api.asgi import make_app
from yyai_kernel.api.context import Api
from yyai_kernel.config import ServingConfig
from yyai_kernel.errors import YyaiError
from yyai_kernel.plane.planes import Planes
from yyai_kernel.ray_app.http import ray_endpoints
from yyai_kernel.ray_app.loopback import keep_replica_grpc_on_loopback
from yyai_kernel.ray_app.models import (
    DEFAULT_BATCH_WAIT_S,
    DEFAULT_HOT_REQUESTS,
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MAX_MODELS,
    DEPLOYMENT_NAME,
    ModelId,
    ReplicaModels,
    ReplicaStats,
)
from yyai_kernel.ray_app.registry import RayRegistry, StateChange
from yyai_kernel.ray_app.replicas import Replicas
from yyai_kernel.runtime.prime import skip_serving_extras
from yyai_kernel.runtime.runtime import RuntimeOutput

log = logging.getLogger("yyai.ray")


class Replica:
    """yyai's REST API and the archives of the store at ``store``: what each replica of
    :data:`ModelDeployment` runs.

    ``token`` is the API token (None: no authentication); ``serving`` holds
    :class:`~yyai_kernel.config.ServingConfig` settings (limits, trust, public health). The
    rest size the replica's models: see :class:`~yyai_kernel.ray_app.models.ReplicaModels`.
    """

    async def __init__(self, store: str, *, token: str | None, serving: dict | None = None,  # type: ignore[misc]
                       max_models: int = DEFAULT_MAX_MODELS, max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
                       batch_wait_s: float = DEFAULT_BATCH_WAIT_S, hot_requests: int = DEFAULT_HOT_REQUESTS):
        # (Ray awaits an async constructor: the defaults load before the replica takes traffic.)
        skip_serving_extras()  # a replica's own process, before its first load imports Keras
        keep_replica_grpc_on_loopback()
        context = serve.get_replica_context()
        config = ServingConfig(**(serving or {}))
        self._loop = asyncio.get_running_loop()
        self._replicas = Replicas(context.deployment, context.app_name)
        self.models = ReplicaModels(
            store, replica_id=context.replica_id.unique_id, node_id=ray.get_runtime_context().get_node_id(),
            max_models=max_models, max_batch_rows=max_batch_rows, batch_wait_s=batch_wait_s,
            trusted=tuple(config.trusted), hot_requests=hot_requests, on_hot=self._spread)
        self.registry = RayRegistry(store, config, self._loop, run=self.models.run, replicas=self._replicas)
        self.planes = Planes.over(self.registry, config)
        self._token = token
        self._api = Api(self.planes, ray_endpoints(), tempfile.mkdtemp(prefix="yyai-replica-"))
        await self._warm_defaults(max_models)
        self.planes.data.mark_ready()

    def __serve_build_asgi_app__(self):
        return make_app(self._api, self._token)

    async def predict(self, inputs) -> RuntimeOutput:
        """Run the model that the handle's ``multiplexed_model_id`` names on ``[B, *shape]`` inputs."""
        return await self.models.run(serve.get_multiplexed_model_id(), inputs)

    async def warm(self, model_id: str) -> str:
        """Load a model on this replica ahead of traffic (``handle.broadcast("warm", id)``)."""
        return await self.models.warm(model_id)

    def stats(self) -> ReplicaStats:
        """This replica's counters (``handle.broadcast("stats")`` reaches every replica)."""
        return self.models.stats()

    def apply(self, change: StateChange) -> int:
        """Apply a change another replica announced (``handle.broadcast("apply", change)``)."""
        return self.registry.apply(change)

    def state(self) -> dict:
        """What this replica serves: ``{"ready", "node", "defaults", "pins", "unloaded"}`` (ready: its
        start-up load finished; node: its Ray node; defaults: the version that answers when none is named)."""
        store = self.registry.store
        return {"ready": self.planes.data.ready, "node": self.models.stats().node_id,
                "defaults": {name: store.default_version(name) for name in store.names()},
                "pins": store.pins(), "unloaded": sorted(self.registry.unloaded())}

    async def _warm_defaults(self, max_models: int) -> None:
        """Load the default version of the first ``max_models`` models here, before Ray routes to
        this replica (more would only evict each other)."""
        for name in self.registry.names()[:max(0, max_models)]:
            try:
                await self.models.warm(str(ModelId.of(self.registry.record(name))))
            except YyaiError as error:
                log.error("Could not load %s: %s", name, error.message)
            except Exception:  # start-up must end ready, as yyai serve's does
                log.exception("Loading %s failed", name)

    def _spread(self, model_id: str) -> None:
        """A model is hot here: load it on every replica (off the event loop; see ``ReplicaModels``)."""
        def warm_everywhere() -> None:
            try:
                log.info("%s loaded on %d replica(s)", model_id, self._replicas.warm(model_id))
            except Exception as error:  # noqa: BLE001 - spreading is an optimisation; requests still answer
                log.warning("could not load %s on every replica: %s", model_id, error)
            finally:
                self.registry.replicas.forget()

        self._loop.run_in_executor(self._api.manage_pool, warm_everywhere)

    def __del__(self):
        registry, api = getattr(self, "registry", None), getattr(self, "_api", None)
        if registry is not None:
            registry.close()
        if api is not None:
            api.shutdown()
            shutil.rmtree(api.tmp_dir, ignore_errors=True)


# max_ongoing_requests is what lets a batch fill (a replica never holds more requests than
# this), and also when Ray's router spills a model's requests onto replicas that lack it
# (only when those holding it are at the limit); one batch's worth balances the two.
# (Ray's decorators applied as calls: a class decorator does not change a class's type for mypy.)
ModelDeployment: Deployment = serve.deployment(
    name=DEPLOYMENT_NAME, max_ongoing_requests=DEFAULT_MAX_BATCH_ROWS, ray_actor_options={"num_cpus": 1},
)(serve.ingress()(Replica))
