"""v2 gRPC: ``inference.GRPCInferenceService`` in the ``yyai serve`` process (``--grpc-port``).

A thin adapter over the data plane, as the REST handlers in ``v2.py`` are: each RPC
translates its protobuf message (``yyai_kernel.protocol.v2grpc``), calls one data-plane method and
translates the reply; a typed yyai error becomes the gRPC status Triton uses for that case
(``v2grpc.grpc_status``), with the same message REST sends. The message and service
definitions are tritonclient's generated ``service_pb2`` / ``service_pb2_grpc``.

It runs on grpcio's asyncio server, on the same asyncio loop as Tornado, and shares the
REST handlers' :class:`~yyai_kernel.server.rest.base.ServerState`: the same registry (so gRPC
and REST requests for one version batch together), the same thread pools and limits.
Nothing here waits on a thread: a prediction is the batcher's ``Future``, awaited through
``runtime.handoff.awaitable``. Decoding follows REST's rule (``v2.decode_inline``): a small
request for a batching version is decoded on the loop, anything bigger on the predict
pool. Calls that may wait on the registry's locks (metadata, readiness, the index) run on
the predict pool, loads and unloads on the manage pool, as over REST.

Auth: every RPC needs ``authorization: token T`` (or ``Bearer T``) in its metadata, checked
in constant time by an interceptor before any handler runs; a missing or wrong token is
``UNAUTHENTICATED``. With ``public_health`` only ``ServerLive`` and ``ServerReady`` answer
without it (Kubernetes' probes), as ``/v2/health/*`` does over REST. With no token
(``--no-token``) every RPC is open, as REST is.

Rollouts come with the data plane: a ModelInfer naming no version follows the model's
traffic policy (its sticky key: the ``x-yyai-sticky`` metadata, else the request id), and a
label goes where a version does (``model_version: "stable"``).

Limits: gRPC refuses a message over the REST body limit (``max_body_bytes``) with
``RESOURCE_EXHAUSTED``; shapes and element counts are checked by the REST codec.
``SO_REUSEPORT`` is off (grpc.aio turns it on by default on Linux, which would let a
second server share the port silently) unless ``reuse_port`` asks for it: each worker
process of ``yyai serve --workers N`` runs its own server on the shared port.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from concurrent.futures import Executor

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from yyai_kernel.api.context import Api
from yyai_kernel.errors import ModelNotFoundError, ModelNotReadyError, YyaiError
from yyai_kernel.plane.dataplane import DataPlane
from yyai_kernel.plane.operations import Operation, OpKind
from yyai_kernel.plane.repository import repository_load_op
from yyai_kernel.protocol import v2grpc
from yyai_kernel.protocol.tokenauth import authorization_matches
from yyai_kernel.protocol.v2codec import decode_inline
from yyai_kernel.runtime import handoff
from yyai_kernel.types import STICKY_HEADER, ModelRef

log = logging.getLogger("yyai.server.grpc")

SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
HEALTH_METHODS = frozenset(f"/{SERVICE}/{name}" for name in ("ServerLive", "ServerReady"))
INTERNAL_MESSAGE = "Internal server error; the server log has the details."


def server_options(max_message_bytes: int, reuse_port: bool) -> list[tuple[str, int]]:
    """grpcio channel arguments: the receive limit and SO_REUSEPORT."""
    return [("grpc.max_receive_message_length", int(max_message_bytes)),
            ("grpc.so_reuseport", 1 if reuse_port else 0)]


class GrpcServer:
    """The v2 gRPC server of one ``yyai serve`` process.

    Build and start it on the running asyncio loop (``await GrpcServer(...).start(host,
    port)``); ``start`` returns the bound port (the OS picks one for port 0) and raises
    RuntimeError when the address cannot be bound.
    """

    def __init__(self, api: Api, *, token: str | None, public_health: bool = False, reuse_port: bool = False):
        public = HEALTH_METHODS if public_health else frozenset()
        self.server = grpc.aio.server(
            interceptors=[TokenInterceptor(token, public)],
            options=server_options(api.config.max_body_bytes, reuse_port),
        )
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(api), self.server)
        self.port: int | None = None

    async def start(self, host: str, port: int) -> int:
        self.port = self.server.add_insecure_port(_address(host, port))
        await self.server.start()
        return self.port

    async def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new RPCs, give those in flight ``grace`` seconds, then cancel them."""
        await self.server.stop(grace)


def _address(host: str, port: int) -> str:
    host = host or "0.0.0.0"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    return f"{host}:{port}"


# --- auth ----------------------------------------------------------------------------


class TokenInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every RPC whose metadata lacks the server's token, before its handler runs."""

    def __init__(self, token: str | None, public_methods: frozenset[str]):
        self.token = token or None
        self.public = public_methods

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if self.token is None or details.method in self.public:
            return handler
        sent = [value for key, value in details.invocation_metadata or () if key == "authorization"]
        if sent and authorization_matches(sent[0], self.token):
            return handler
        if sent:
            message = ("Invalid token: it is not the token this server printed at start "
                       "(or set with --token / YYAI_TOKEN).")
        else:
            message = "Authentication required: send the metadata 'authorization: token <token>'."
        return _refusal(handler, message)


def _refusal(handler, message: str):
    """A handler of the same kind as ``handler`` that answers UNAUTHENTICATED."""

    async def refuse(request, context):
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler is None:  # an unknown method: refused like any other without the token
        return grpc.unary_unary_rpc_method_handler(refuse)
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    return make(refuse, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


# --- the service ---------------------------------------------------------------------


def _rpc(method):
    """Turn a yyai error into its gRPC status and message; anything else into INTERNAL."""

    @functools.wraps(method)
    async def translated(self, request, context):
        try:
            return await method(self, request, context)
        except YyaiError as error:
            code = v2grpc.grpc_status(error)
            log.info("gRPC %s -> %s %s: %s", method.__name__, code.name, type(error).__name__, error.message)
            if getattr(error, "retry_after", None):
                context.set_trailing_metadata((("retry-after", str(error.retry_after)),))
            await context.abort(code, error.message)
        except Exception:
            log.exception("gRPC %s failed", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

    return translated


def _ref(name: str, version: str) -> ModelRef:
    """A request's model reference, parsed once (the protocol's empty version means the default)."""
    return ModelRef.parse(name, version or None)


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The RPCs yyai answers; the others (streaming, shared memory, traces, statistics,
    model config) keep the generated base's UNIMPLEMENTED."""

    def __init__(self, api: Api):
        self.api = api

    @property
    def dataplane(self) -> DataPlane:
        return self.api.data

    async def _run(self, fn, *args, manage: bool = False, inline: bool = False):
        """``fn(*args)`` on a pool of the server (``manage`` for loads), or right here when
        ``inline`` (work well under a millisecond, where two thread hops cost more)."""
        if inline:
            return fn(*args)
        pool: Executor = self.api.manage_pool if manage else self.api.predict_pool
        return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(fn, *args))

    # --- health and metadata ---------------------------------------------------------

    @_rpc
    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    @_rpc
    async def ServerReady(self, request, context):
        return pb.ServerReadyResponse(ready=self.dataplane.ready)

    @_rpc
    async def ModelReady(self, request, context):
        """Ready or not, as Triton answers: an unknown or unloaded model is ``ready: false``."""
        try:
            target = self.dataplane.resolve(_ref(request.name, request.version))
            await self._run(self.dataplane.model_ready, target)
        except (ModelNotFoundError, ModelNotReadyError):
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @_rpc
    async def ServerMetadata(self, request, context):
        return v2grpc.encode_server_metadata(self.dataplane.server_metadata())

    @_rpc
    async def ModelMetadata(self, request, context):
        target = self.dataplane.resolve(_ref(request.name, request.version))
        metadata = await self._run(self.dataplane.model_metadata, target)
        return v2grpc.encode_model_metadata(metadata)

    # --- inference -------------------------------------------------------------------

    @_rpc
    async def ModelInfer(self, request, context):
        dataplane = self.dataplane
        target = dataplane.resolve(_ref(request.model_name, request.model_version))
        sticky = dict(context.invocation_metadata() or ()).get(STICKY_HEADER.lower())

        def submit():
            return dataplane.infer(target, v2grpc.parse_model_infer_request(request), sticky=sticky)

        inline = decode_inline(dataplane.batches(target), v2grpc.payload_bytes(request))
        pending = await self._run(submit, inline=inline)
        result = await handoff.awaitable(pending)
        return await self._run(v2grpc.encode_result, result, inline=inline)

    # --- the repository extension ----------------------------------------------------

    @_rpc
    async def RepositoryIndex(self, request, context):
        """The index of yyai's one repository (``repository_name`` is not read)."""
        entries = await self._run(self.dataplane.repository_index, request.ready)
        return v2grpc.encode_repository_index(entries)

    @_rpc
    async def RepositoryModelLoad(self, request, context):
        parameters = v2grpc.parameters_to_dict(request.parameters)
        op = repository_load_op(request.model_name, parameters).checked()
        await self._run(self.api.repository.manage, op, manage=True)
        return pb.RepositoryModelLoadResponse()

    @_rpc
    async def RepositoryModelUnload(self, request, context):
        await self._run(self.api.repository.manage, Operation(OpKind.UNLOAD, request.model_name).checked(),
                        manage=True)
        return pb.RepositoryModelUnloadResponse()
