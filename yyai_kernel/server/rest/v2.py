"""Open Inference Protocol v2 handlers (the KServe / Triton HTTP/REST protocol).

Each handler reads the request, calls the data plane and writes the reply: the protocol's
logic lives in ``yyai_kernel/plane/dataplane.py`` and its HTTP encoding in
``yyai_kernel/protocol/v2codec.py``. A yyai model has one input (the manifest's ``input.name``,
shape ``[-1, *input.shape]``: the tensor after preprocessing) and FP32 ``[-1, K]``
outputs: ``output`` (the combined output, when the archive has one) and one per member.
Errors follow the protocol: ``{"error": "..."}`` with the HTTP status.
"""

from __future__ import annotations

from tornado import web

from yyai_kernel.plane.operations import Operation, OpKind
from yyai_kernel.protocol import restparse, v2codec
from yyai_kernel.protocol.restparse import INLINE_BODY_BYTES
from yyai_kernel.server.rest.base import BodyHandler, YyaiHandler, public_if
from yyai_kernel.server.rest.common import JSON_TYPE
from yyai_kernel.server.rest.lean import LeanBodyHandler
from yyai_kernel.server.rest.openapi import (
    NAME,
    STICKY,
    VERSION,
    errors,
    json_reply,
    op,
    optional_json,
    ref,
)
from yyai_kernel.server.rest.routes import Route
from yyai_kernel.types import STICKY_HEADER, check_name, parse_version_ref


def decode_inline(batching: bool, size: int, encoded: bool = False) -> bool:
    """Whether a v2 request is decoded, queued and answered on the event loop (REST and gRPC).

    A small request for a batching version costs less there than two thread hops would;
    a large one, a compressed one or one for a version that runs unbatched (its call
    blocks) goes to the thread pool.
    """
    return batching and size <= INLINE_BODY_BYTES and not encoded


class ServerMetadataHandler(YyaiHandler):
    """GET /v2: server name, version and protocol extensions."""

    @web.authenticated
    def get(self):
        self.reply(self.dataplane.server_metadata().to_json())


class LiveHandler(YyaiHandler):
    """GET /v2/health/live: 200 ``{"live": true}`` while the process serves HTTP.

    The Open Inference Protocol's JSON bodies (KServe's REST client reads them; Triton's
    clients read only the status) for liveness and both readiness checks.
    """

    @public_if("public_health")
    def get(self):
        self.reply(v2codec.LIVE)


class ReadyHandler(YyaiHandler):
    """GET /v2/health/ready: 200 ``{"ready": true}`` once the start-up load finished, else 503."""

    @public_if("public_health")
    def get(self):
        self.dataplane.check_ready()
        self.reply(v2codec.READY)


class ModelMetadataHandler(YyaiHandler):
    """GET /v2/models/{m}[/versions/{v}]: inputs and outputs with name, datatype and shape."""

    metric_endpoint = "v2_metadata"

    @web.authenticated
    async def get(self, name, version=None):
        self.label_model(name, version)
        metadata = await self.run(self.dataplane.model_metadata, name, version)
        self.reply(metadata.to_json())


class ModelReadyHandler(YyaiHandler):
    """GET /v2/models/{m}[/versions/{v}]/ready: 200 ``{"name", "ready": true}`` when that version serves, else 503."""

    metric_endpoint = "v2_ready"

    @web.authenticated
    async def get(self, name, version=None):
        self.label_model(name, version)
        self.metric_version = str(await self.run(self.dataplane.model_ready, name, version))
        self.reply(v2codec.model_ready_body(name))


class InferHandler(LeanBodyHandler):
    """POST /v2/models/{m}[/versions/{v}]/infer: JSON tensors or the binary extension (a lean handler)."""

    metric_endpoint = "v2_infer"

    async def post(self, name, version=None):
        check_name(name), parse_version_ref(version)  # a bad name or version is a 400 before the body matters
        self.label_model(name, version)
        raw = self.body
        encoding = self.request.headers.get("Content-Encoding")
        header_length = self.request.headers.get("Inference-Header-Content-Length")
        limit = self.config.max_body_bytes
        dataplane = self.dataplane
        sticky = self.request.headers.get(STICKY_HEADER)

        def submit():
            request = v2codec.read_http_request(raw, encoding, header_length, limit)
            return dataplane.infer(name, version, request, sticky=sticky)

        inline = decode_inline(dataplane.batches(name, version), len(raw), bool(encoding))
        if inline:
            self.confirm_model()  # batches() found the model
            pending = submit()
        else:
            pending = await self.run(submit)
        result = await self.model_call(pending)
        if inline:
            payload, header_length_out = v2codec.encode_result(result)
        else:
            payload, header_length_out = await self.run(v2codec.encode_result, result)
        self.metric_version = str(result.model_version)
        if header_length_out is None:
            self.set_header("Content-Type", JSON_TYPE)
        else:
            self.set_header("Inference-Header-Content-Length", str(header_length_out))
            self.set_header("Content-Type", "application/octet-stream")
        self.finish(payload)


class RepositoryIndexHandler(BodyHandler):
    """POST /v2/repository/index: every model version in the store, with its state."""

    metric_endpoint = "v2_repository"

    @web.authenticated
    async def post(self):
        only_ready = restparse.repository_index_options(self.body)
        index = await self.run(self.dataplane.repository_index, only_ready)
        self.reply([entry.to_json() for entry in index])


class RepositoryLoadHandler(BodyHandler):
    """POST /v2/repository/models/{m}/load: load (or reload a changed) default version.

    Triton's model-config and file overrides are refused: nothing a client sends is ever
    written or read as a model.
    """

    metric_endpoint = "v2_repository"

    @web.authenticated
    async def post(self, name):
        self.label_model(name)
        params = restparse.repository_load_parameters(self.body)
        managed = await self.manage(self.dataplane.repository_load_op(name, params))
        self.metric_version = str(managed.result.default or "")
        self.reply_managed(managed)


class RepositoryUnloadHandler(BodyHandler):
    """POST /v2/repository/models/{m}/unload: stop serving every version of a model."""

    metric_endpoint = "v2_repository"

    @web.authenticated
    async def post(self, name):
        self.label_model(name)
        restparse.repository_unload_options(self.body)
        self.reply_managed(await self.manage(Operation(OpKind.UNLOAD, name)))


_INFER_BODY = {
    "required": True,
    "description": "JSON tensors; or, with the binary tensor data extension, the JSON request (its "
    "length in the Inference-Header-Content-Length header) followed by each binary input's bytes. "
    "The input is the model's tensor AFTER preprocessing (x = pixel * scale + offset, as the model "
    "metadata's parameters say); to send image bytes, use POST /predictions/{name}.",
    "content": {
        "application/json": {"schema": ref("InferRequest")},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
_INFER_REPLY = {
    "description": "Outputs: JSON, or JSON followed by binary outputs when "
    "Inference-Header-Content-Length is set on the response.",
    "content": {
        "application/json": {"schema": ref("InferResponse")},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
_HEADER_LENGTH = {"name": "Inference-Header-Content-Length", "in": "header", "required": False,
                  "schema": {"type": "integer", "minimum": 0},
                  "description": "Length of the JSON part when binary tensors follow it."}


def _model_routes(with_version: bool) -> list[Route]:
    base = "/v2/models/{name}" + ("/versions/{version}" if with_version else "")
    params = [NAME, VERSION] if with_version else [NAME]
    which = "that version (a number or a label)" if with_version else "the default version"
    return [
        Route(base, ModelMetadataHandler, {"get": op(
            f"Model metadata of {which}", {"200": json_reply(ref("ModelMetadata"), "Inputs and outputs."),
                                           **errors(400, 404)}, params=params, tags=["v2"],
            description="The parameters say how images become the input tensor (scale, offset, colour).",
        )}),
        Route(base + "/ready", ModelReadyHandler, {"get": op(
            f"Is {which} ready?", {"200": json_reply(ref("ModelReady"), "Ready."), **errors(400, 404, 503)},
            params=params, tags=["v2"])}),
        Route(base + "/infer", InferHandler, {"post": op(
            f"Inference on {which}", {"200": _INFER_REPLY, **errors(400, 404, 413, 503)},
            params=[*params, _HEADER_LENGTH, *([] if with_version else [STICKY])], body=_INFER_BODY, tags=["v2"],
            description="A version or label in the path is served as named; without one, the model's traffic "
            "policy (canary, shadow) applies and the reply's model_version says which version answered.")}),
    ]


ROUTES = [
    Route("/v2", ServerMetadataHandler, {"get": op(
        "Server metadata", {"200": json_reply(ref("ServerMetadata"), "Name, version, extensions.")}, tags=["v2"])},
        trailing_slash=True),
    Route("/v2/health/live", LiveHandler, {"get": op(
        "Liveness", {"200": json_reply(ref("ServerLive"), "Live."), **errors()}, tags=["v2"])}),
    Route("/v2/health/ready", ReadyHandler, {"get": op(
        "Readiness (start-up load finished)", {"200": json_reply(ref("ServerReady"), "Ready."), **errors(503)},
        tags=["v2"])}),
    *_model_routes(False),
    *_model_routes(True),
    Route("/v2/repository/index", RepositoryIndexHandler, {"post": op(
        "Every model version in the store, with its state",
        {"200": json_reply({"type": "array", "items": ref("RepositoryIndexEntry")}, "The index."), **errors(400)},
        body=optional_json({"type": "object", "properties": {"ready": {"type": "boolean"}}}), tags=["v2"],
    )}),
    Route("/v2/repository/models/{name}/load", RepositoryLoadHandler, {"post": op(
        "Load the model's default version",
        {"200": json_reply(ref("ModelStatus"), "The model's status."), **errors(400, 404, 503)},
        params=[NAME], body=optional_json({"type": "object"}), tags=["v2"],
        description="Model config and file overrides (parameters.config, parameters.file:*) are refused.",
    )}),
    Route("/v2/repository/models/{name}/unload", RepositoryUnloadHandler, {"post": op(
        "Unload every version of the model",
        {"200": json_reply(ref("ModelStatus"), "The model's status."), **errors(400, 404)},
        params=[NAME], body=optional_json({"type": "object"}), tags=["v2"],
    )}),
]
