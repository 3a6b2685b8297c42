"""The Ray Serve ingress deployment: yyai's REST API over the same DataPlane, on a Ray cluster.

What: ``YyaiIngress`` replicas take HTTP from Ray Serve's proxy and answer it with the ASGI
app of the endpoint table (``yyai_kernel/api/asgi.py``, less what ``http.py`` keeps off Ray)
over unchanged planes (:class:`~yyai_kernel.plane.planes.Planes`), whose registry is a
:class:`~yyai_kernel.ray_app.registry.RayRegistry`: versions, defaults and
pins come from the shared store, predictions go to the model deployment (``YyaiModels``)
by model id. The ingress imports no TensorFlow and loads no model.

Start-up: the constructor builds the registry (it reads the store), then a thread loads
every model's default version on every model replica; ``/v2/health/ready`` answers 503
until that is done, as ``yyai serve`` does while it loads. A replica also answers two
calls that only other replicas and tests make through a deployment handle: ``apply`` (a
:class:`~yyai_kernel.ray_app.registry.StateChange` broadcast after a management call) and
``state`` (the defaults, pins and unloaded versions this replica sees).

Multiplexing stays on the model deployment, never here (ray-project/ray#61304 proposes to
forbid it on ingress deployments).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
import time

from ray import serve

from yyai_kernel.api.asgi import make_app
from yyai_kernel.api.context import Api
from yyai_kernel.config import ServingConfig
from yyai_kernel.errors import YyaiError
from yyai_kernel.plane.planes import Planes
from yyai_kernel.ray_app.http import ray_endpoints
from yyai_kernel.ray_app.loopback import keep_replica_grpc_on_loopback
from yyai_kernel.ray_app.registry import RayRegistry, StateChange

log = logging.getLogger("yyai.ray")

INGRESS_NAME = "YyaiIngress"
WARM_DEADLINE_S = 600  # how long start-up waits for the first model replica to come up


@serve.deployment(name=INGRESS_NAME, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0.5})
@serve.ingress()
class Ingress:
    """The REST API of ``yyai serve`` over the store at ``store``, answered by ``models``.

    ``token`` is the API token (None: no authentication); ``serving`` holds
    :class:`~yyai_kernel.config.ServingConfig` settings (limits, trust, public health).
    """

    async def __init__(self, models, store: str, *, token: str | None, serving: dict | None = None):
        keep_replica_grpc_on_loopback()
        context = serve.get_replica_context()
        self._peers = (context.deployment, context.app_name)
        config = ServingConfig(**(serving or {}))
        self.registry = RayRegistry(store, models, config, asyncio.get_running_loop(), announce=self._announce)
        self.planes = Planes.over(self.registry, config)
        self._token = token
        self._api = Api(self.planes, ray_endpoints(), tempfile.mkdtemp(prefix="yyai-ingress-"))
        threading.Thread(target=self._warm_defaults, name="yyai-warm", daemon=True).start()

    def __serve_build_asgi_app__(self):
        return make_app(self._api, self._token)

    def apply(self, change: StateChange) -> int:
        """Apply a change another replica announced (``handle.broadcast("apply", change)``)."""
        return self.registry.apply(change)

    def state(self) -> dict:
        """What this replica serves: ``{"ready", "defaults", "pins", "unloaded"}`` (ready: its
        start-up load finished; defaults: the version that answers when none is named)."""
        store = self.registry.store
        return {"ready": self.planes.data.ready,
                "defaults": {name: store.default_version(name) for name in store.names()},
                "pins": store.pins(), "unloaded": sorted(self.registry.unloaded())}

    def _announce(self, change: StateChange) -> int:
        """Apply a change on every ingress replica (this one too); how many applied it."""
        handle = serve.get_deployment_handle(*self._peers)
        return sum(handle.broadcast("apply", change).results())

    def _warm_defaults(self) -> None:
        """Load every default version on every model replica, then say ready (a thread)."""
        deadline = time.monotonic() + WARM_DEADLINE_S
        for name in self.registry.names():
            try:
                record = self.registry.record(name)
                while not self.registry.warm(record) and time.monotonic() < deadline:
                    time.sleep(1.0)  # no model replica runs yet
            except YyaiError as error:
                log.error("Could not load %s: %s", name, error.message)
            except Exception:  # start-up must end ready, as yyai serve's does
                log.exception("Loading %s failed", name)
        self.planes.data.mark_ready()
        log.info("yyai ingress ready: %d model(s)", len(self.registry.names()))

    def __del__(self):
        registry, api = getattr(self, "registry", None), getattr(self, "_api", None)
        if registry is not None:
            registry.close()
        if api is not None:
            api.shutdown()
            shutil.rmtree(api.tmp_dir, ignore_errors=True)
