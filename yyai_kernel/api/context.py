"""Api: what every endpoint shares, whatever server it runs in.

The planes (data, repository, evaluations), the endpoint table the server serves (for
``/openapi.json``), the server's temporary folder (upload spools), its request metrics,
and two bounded thread pools: blocking work never runs on the event loop. Predictions that
decode images run on ``predict_pool``; uploads, loads and other management calls on
``manage_pool``, so that a slow upload never takes the threads predictions need. A model
call returns a ``concurrent.futures.Future`` that :meth:`Api.run` awaits without parking a
thread (``runtime.handoff.awaitable``: a batch's answers wake the loop once). The adapters
build one Api per server and hand it to every endpoint.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from yyai_kernel.api.call import Call
from yyai_kernel.api.endpoint import Endpoint
from yyai_kernel.config import ServingConfig
from yyai_kernel.errors import ModelNotFoundError
from yyai_kernel.plane.dataplane import DataPlane
from yyai_kernel.plane.evaluations import Evaluations
from yyai_kernel.plane.planes import Planes
from yyai_kernel.plane.repository import ModelRepository
from yyai_kernel.runtime import handoff

T = TypeVar("T")
PREDICT_THREADS = 32
MANAGE_THREADS = 4


@dataclass
class Api:
    """The shared state of one server's endpoints (see the module docstring).

    ``metrics`` is the server's ``ServerMetrics`` (None: no request metrics); ``worker`` this
    process's worker number (0 when it serves alone); ``in_flight`` counts requests begun
    and not finished (event loop only), which a draining stop waits for.
    """

    planes: Planes
    endpoints: list[Endpoint]
    tmp_dir: str
    metrics: Any = None
    worker: int = 0
    predict_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(PREDICT_THREADS, thread_name_prefix="yyai-predict"))
    manage_pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(MANAGE_THREADS, thread_name_prefix="yyai-manage"))
    in_flight: int = 0

    @property
    def data(self) -> DataPlane:
        return self.planes.data

    @property
    def repository(self) -> ModelRepository:
        return self.planes.repository

    @property
    def evaluations(self) -> Evaluations:
        return self.planes.evaluations

    @property
    def config(self) -> ServingConfig:
        return self.planes.config

    async def run(self, fn: Callable[..., Any], *args: Any, manage: bool = False, **kwargs: Any) -> Any:
        """Run a blocking call on a bounded pool (``manage`` for uploads, loads and changes);
        a Future it returns (a model call) is awaited too."""
        pool = self.manage_pool if manage else self.predict_pool
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(pool, lambda: fn(*args, **kwargs))
        return await handoff.awaitable(result) if isinstance(result, Future) else result

    async def model_call(self, call: Call, pending: Awaitable[T] | Future[T]) -> T:
        """Await a call on a model (a coroutine, an awaitable or a concurrent Future); once the
        model is known to exist (any outcome but a 404), the metrics may name it."""
        awaitable = handoff.awaitable(pending) if isinstance(pending, Future) else pending
        try:
            result = await awaitable
        except ModelNotFoundError:
            raise
        except Exception:
            call.confirm()
            raise
        call.confirm()
        return result

    def shutdown(self) -> None:
        """Stop the pools: queued work is dropped, running calls finish on their own."""
        self.predict_pool.shutdown(wait=False, cancel_futures=True)
        self.manage_pool.shutdown(wait=False, cancel_futures=True)
