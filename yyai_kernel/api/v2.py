"""Open Inference Protocol v2 endpoints (the KServe / Triton HTTP/REST protocol).

Each endpoint parses its request, calls the data plane (or, for the repository extension's
load and unload, the model repository) and encodes the reply: the protocol's logic lives in
``plane/dataplane.py`` and its HTTP encoding in ``protocol/v2codec.py``. A yyai model has one
input (the manifest's ``input.name``, shape ``[-1, *input.shape]``: the tensor after
preprocessing) and FP32 ``[-1, K]`` outputs: ``output`` (the combined output, when the
archive has one) and one per member. Errors follow the protocol: ``{"error": "..."}`` with
the HTTP status.

``infer`` resolves its model once, on the event loop (a dictionary read in the model's
view); a small body for a batching version is then decoded, queued and answered there too
(``v2codec.decode_inline``), anything else on the predict pool.
"""

from __future__ import annotations

from concurrent.futures import Future

from yyai_kernel.api.call import Call, Reply, cold_start_headers, reply, reply_managed
from yyai_kernel.api.context import Api
from yyai_kernel.api.endpoint import Auth, Body, Endpoint
from yyai_kernel.api.refs import path_name, path_ref
from yyai_kernel.api.spec import (
    COLD_START,
    NAME,
    STICKY,
    VERSION,
    errors,
    json_reply,
    op,
    optional_json,
    ref,
)
from yyai_kernel.plane.operations import Operation, OpKind
from yyai_kernel.plane.repository import repository_load_op
from yyai_kernel.protocol import restparse, v2codec
from yyai_kernel.types import STICKY_HEADER

BINARY_TYPE = "application/octet-stream"


async def server_metadata(api: Api, call: Call) -> Reply:
    """GET /v2: server name, version and protocol extensions."""
    return reply(api.data.server_metadata().to_json())


async def live(api: Api, call: Call) -> Reply:
    """GET /v2/health/live: 200 ``{"live": true}`` while the process serves HTTP.

    The Open Inference Protocol's JSON bodies (KServe's REST client reads them; Triton's
    clients read only the status), for liveness and both readiness checks.
    """
    return reply(v2codec.LIVE)


async def ready(api: Api, call: Call) -> Reply:
    """GET /v2/health/ready: 200 ``{"ready": true}`` once the start-up load finished, else 503."""
    api.data.check_ready()
    return reply(v2codec.READY)


async def model_metadata(api: Api, call: Call) -> Reply:
    """GET /v2/models/{m}[/versions/{v}]: inputs and outputs with name, datatype and shape."""
    target = api.data.resolve(path_ref(call))
    call.confirm()
    return reply(api.data.model_metadata(target).to_json())


async def model_ready(api: Api, call: Call) -> Reply:
    """GET /v2/models/{m}[/versions/{v}]/ready: 200 ``{"name", "ready": true}`` when that version serves, else 503."""
    target = api.data.resolve(path_ref(call))
    call.confirm()
    call.confirm(await api.run(api.data.model_ready, target))
    return reply(v2codec.model_ready_body(target.name))


async def infer(api: Api, call: Call) -> Reply:
    """POST /v2/models/{m}[/versions/{v}]/infer: JSON tensors or the binary extension."""
    data = api.data
    target = data.resolve(path_ref(call))
    call.confirm()
    raw, limit = call.body, api.config.max_body_bytes
    encoding = call.headers.get("Content-Encoding")
    header_length = call.headers.get("Inference-Header-Content-Length")
    sticky = call.headers.get(STICKY_HEADER)

    def submit() -> Future[v2codec.InferResult]:
        return data.infer(target, v2codec.read_http_request(raw, encoding, header_length, limit), sticky=sticky)

    if v2codec.decode_inline(data.batches(target), len(raw), bool(encoding)):
        result = await api.model_call(call, submit())
        payload, header_out = v2codec.encode_result(result)
    else:
        result = await api.model_call(call, api.run(submit))
        payload, header_out = await api.run(v2codec.encode_result, result)
    call.confirm(result.model_version)
    headers = cold_start_headers(result.cold_start_s)
    if header_out is None:
        return Reply(payload, headers=headers)
    return Reply(payload, media_type=BINARY_TYPE,
                 headers={"Inference-Header-Content-Length": str(header_out), **headers})


async def repository_index(api: Api, call: Call) -> Reply:
    """POST /v2/repository/index: every model version in the store, with its state."""
    only_ready = restparse.repository_index_options(call.body)
    return reply([entry.to_json() for entry in await api.run(api.data.repository_index, only_ready)])


async def repository_load(api: Api, call: Call) -> Reply:
    """POST /v2/repository/models/{m}/load: load (or reload a changed) default version.

    Triton's model-config and file overrides are refused: nothing a client sends is ever
    written or read as a model.
    """
    name = path_name(call)
    params = restparse.repository_load_parameters(call.body)
    managed = await api.model_call(call, api.run(api.repository.manage, repository_load_op(name, params).checked(),
                                                 manage=True))
    call.confirm(managed.result.default or "")
    return reply_managed(managed)


async def repository_unload(api: Api, call: Call) -> Reply:
    """POST /v2/repository/models/{m}/unload: stop serving every version of a model."""
    name = path_name(call)
    restparse.repository_unload_options(call.body)
    return reply_managed(await api.model_call(call, api.run(api.repository.manage, Operation(OpKind.UNLOAD, name),
                                                            manage=True)))


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
    "headers": COLD_START,
}
_HEADER_LENGTH = {"name": "Inference-Header-Content-Length", "in": "header", "required": False,
                  "schema": {"type": "integer", "minimum": 0},
                  "description": "Length of the JSON part when binary tensors follow it."}


def _model_endpoints(with_version: bool) -> list[Endpoint]:
    base = "/v2/models/{name}" + ("/versions/{version}" if with_version else "")
    params = [NAME, VERSION] if with_version else [NAME]
    which = "that version (a number or a label)" if with_version else "the default version"
    return [
        Endpoint("GET", base, model_metadata, op(
            f"Model metadata of {which}", {"200": json_reply(ref("ModelMetadata"), "Inputs and outputs."),
                                           **errors(400, 404)}, params=params, tags=["v2"],
            description="The parameters say how images become the input tensor (scale, offset, colour).",
        ), metric="v2_metadata"),
        Endpoint("GET", base + "/ready", model_ready, op(
            f"Is {which} ready?", {"200": json_reply(ref("ModelReady"), "Ready."), **errors(400, 404, 503)},
            params=params, tags=["v2"]), metric="v2_ready"),
        Endpoint("POST", base + "/infer", infer, op(
            f"Inference on {which}", {"200": _INFER_REPLY, **errors(400, 404, 413, 503)},
            params=[*params, _HEADER_LENGTH, *([] if with_version else [STICKY])], body=_INFER_BODY, tags=["v2"],
            description="A version or label in the path is served as named; without one, the model's traffic "
            "policy (canary, shadow) applies and the reply's model_version says which version answered."),
            body=Body.MEMORY, auth=Auth.TOKEN, metric="v2_infer"),
    ]


ENDPOINTS = [
    Endpoint("GET", "/v2", server_metadata, op(
        "Server metadata", {"200": json_reply(ref("ServerMetadata"), "Name, version, extensions.")}, tags=["v2"]),
        metric=None, trailing_slash=True),
    Endpoint("GET", "/v2/health/live", live, op(
        "Liveness", {"200": json_reply(ref("ServerLive"), "Live."), **errors()}, tags=["v2"]),
        metric=None, public="public_health"),
    Endpoint("GET", "/v2/health/ready", ready, op(
        "Readiness (start-up load finished)", {"200": json_reply(ref("ServerReady"), "Ready."), **errors(503)},
        tags=["v2"]), metric=None, public="public_health"),
    *_model_endpoints(False),
    *_model_endpoints(True),
    Endpoint("POST", "/v2/repository/index", repository_index, op(
        "Every model version in the store, with its state",
        {"200": json_reply({"type": "array", "items": ref("RepositoryIndexEntry")}, "The index."), **errors(400)},
        body=optional_json({"type": "object", "properties": {"ready": {"type": "boolean"}}}), tags=["v2"],
    ), body=Body.MEMORY, metric="v2_repository"),
    Endpoint("POST", "/v2/repository/models/{name}/load", repository_load, op(
        "Load the model's default version",
        {"200": json_reply(ref("ModelStatus"), "The model's status."), **errors(400, 404, 503)},
        params=[NAME], body=optional_json({"type": "object"}), tags=["v2"],
        description="Model config and file overrides (parameters.config, parameters.file:*) are refused.",
    ), body=Body.MEMORY, metric="v2_repository"),
    Endpoint("POST", "/v2/repository/models/{name}/unload", repository_unload, op(
        "Unload every version of the model",
        {"200": json_reply(ref("ModelStatus"), "The model's status."), **errors(400, 404)},
        params=[NAME], body=optional_json({"type": "object"}), tags=["v2"],
    ), body=Body.MEMORY, metric="v2_repository"),
]
