"""Open Inference Protocol v2 handlers (the KServe / Triton HTTP/REST protocol).

Routes: ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``GET /v2/models/{m}``
and ``.../versions/{v}`` (metadata), ``.../ready``, ``POST .../infer``,
``POST /v2/repository/index``, ``POST /v2/repository/models/{m}/load|unload``.

A yyai model has one input (named by the manifest's ``input.name``, shape
``[-1, *input.shape]``) and these outputs, all FP32 ``[-1, K]``: ``output`` (the combined
output, when the archive has one) and one per ensemble member, named after the member.
Errors follow the protocol: ``{"error": "..."}`` with the HTTP status.
"""

from __future__ import annotations

from tornado import web

from ..errors import InvalidInputError, ModelNotReadyError
from . import v2codec
from .base import BodyHandler, YyaiHandler, check_name, check_version, public_if

COMBINED = "output"
TRITON_STATES = {"ready": "READY", "loading": "LOADING"}
INLINE_BODY_BYTES = 16 * 1024  # bodies up to this size are handled on the IOLoop


def output_names(described: dict) -> list[str]:
    """The v2 output names of a described version: ``output`` (if combined), then members."""
    names = [COMBINED] if described.get("has_combined") else []
    return names + [m for m in described["members"] if m != COMBINED or not names]


def model_metadata(described: dict, versions: list[int]) -> dict:
    """The v2 model metadata object of a described version."""
    spec = described["input"]
    width = described["output_width"]
    return {
        "name": described["name"],
        "versions": [str(v) for v in versions],
        "platform": "keras",
        "inputs": [
            {
                "name": spec.get("name", "input"),
                "datatype": v2codec.datatype_of(spec.get("dtype", "float32")),
                "shape": [-1, *[int(d) for d in spec["shape"]]],
            }
        ],
        "outputs": [{"name": n, "datatype": "FP32", "shape": [-1, width]} for n in output_names(described)],
    }


class ServerMetadataHandler(YyaiHandler):
    """GET /v2: server name, version and protocol extensions."""

    @web.authenticated
    def get(self):
        from . import __version__

        self.reply({
            "name": "yyai",
            "version": __version__,
            "extensions": ["binary_tensor_data", "model_repository"],
        })


class LiveHandler(YyaiHandler):
    """GET /v2/health/live: 200 with an empty body while the process serves HTTP."""

    @public_if("public_health")
    def get(self):
        self.set_status(200)
        self.finish(b"", set_content_type="text/plain")


class ReadyHandler(YyaiHandler):
    """GET /v2/health/ready: 200 (empty body) once the start-up load finished, else 503."""

    @public_if("public_health")
    def get(self):
        if not self.state.ready:
            raise ModelNotReadyError("The server is still loading its models.")
        self.set_status(200)
        self.finish(b"", set_content_type="text/plain")


class ModelMetadataHandler(YyaiHandler):
    """GET /v2/models/{m}[/versions/{v}]: inputs and outputs with name, datatype and shape."""

    metric_endpoint = "v2_metadata"

    @web.authenticated
    async def get(self, name, version=None):
        name, version = check_name(name), check_version(version)
        self.label_model(name, version)

        def work():
            described = self.registry.describe(name, version)
            if version is None:
                versions = [m["versions"] for m in self.registry.list() if m["name"] == name]
                versions = versions[0] if versions else [described["version"]]
            else:
                versions = [described["version"]]
            return model_metadata(described, versions)

        self.reply(await self.run(work))


class ModelReadyHandler(YyaiHandler):
    """GET /v2/models/{m}[/versions/{v}]/ready: 200 (empty) when that version serves, else 503."""

    metric_endpoint = "v2_ready"

    @web.authenticated
    async def get(self, name, version=None):
        name, version = check_name(name), check_version(version)
        self.label_model(name, version)

        def work():
            resolved = self.registry.resolve_version(name, version)
            state = self.registry.status(name)["versions"][str(resolved)]["state"]
            if state != "ready":
                raise ModelNotReadyError(f"Model {name!r} version {resolved} is {state}.")
            return resolved

        self.metric_version = str(await self.run(work))
        self.set_status(200)
        self.finish(b"", set_content_type="text/plain")


class InferHandler(BodyHandler):
    """POST /v2/models/{m}[/versions/{v}]/infer: JSON tensors or the binary extension."""

    metric_endpoint = "v2_infer"

    @web.authenticated
    async def post(self, name, version=None):
        name, version = check_name(name), check_version(version)
        self.label_model(name, version)
        raw = self.body
        encoding = self.request.headers.get("Content-Encoding")
        header_length = self.request.headers.get("Inference-Header-Content-Length")
        limit = self.state.max_body_bytes
        registry = self.registry

        def submit():
            described = registry.describe(name, version)
            request = v2codec.parse_infer_request(v2codec.decode_content(raw, encoding, limit), header_length)
            x = v2codec.model_input(request, described["input"])
            return described, request, registry.submit(name, x, described["version"])

        def encode(described, request, prediction):
            available = {}
            if described.get("has_combined") and prediction.combined is not None:
                available[COMBINED] = prediction.combined
            for member, array in prediction.members.items():
                available.setdefault(member, array)
            chosen = v2codec.select_outputs(available, request)
            return prediction.version, v2codec.encode_infer_response(
                name,
                prediction.version,
                chosen,
                request_id=request.id,
                parameters={
                    "combined": COMBINED if COMBINED in available else None,
                    "members": list(prediction.members),
                },
            )

        # A small body for a batching version is parsed, queued and answered on the loop:
        # two thread hops would cost more than that work. Large tensors parse off the loop.
        inline = len(raw) <= INLINE_BODY_BYTES and not encoding and registry.batches(name, version)
        described, request, pending = await self.run(submit, inline=inline)
        prediction = await self.model_call(pending)
        resolved, (payload, header_length_out) = await self.run(encode, described, request, prediction, inline=inline)
        self.metric_version = str(resolved)
        if header_length_out is None:
            self.finish(payload)
        else:
            self.set_header("Inference-Header-Content-Length", str(header_length_out))
            self.finish(payload, set_content_type="application/octet-stream")


class RepositoryIndexHandler(BodyHandler):
    """POST /v2/repository/index: every model version in the store, with its state."""

    metric_endpoint = "v2_repository"

    @web.authenticated
    async def post(self):
        options = self.json_body(self.body, required=False) or {}
        if not isinstance(options, dict):
            raise InvalidInputError("The body must be a JSON object, such as {\"ready\": true}.")
        only_ready = options.get("ready", False)
        if not isinstance(only_ready, bool):
            raise InvalidInputError("'ready' must be true or false.")

        def work():
            index = []
            for name in self.registry.names():
                status = self.registry.status(name)
                for key, info in status["versions"].items():
                    state = TRITON_STATES.get(info["state"], "UNAVAILABLE")
                    if only_ready and state != "READY":
                        continue
                    reason = ""
                    if state == "UNAVAILABLE":
                        reason = info.get("last_error") or info["state"]
                    index.append({"name": name, "version": key, "state": state, "reason": reason})
            return index

        self.reply(await self.run(work))


class RepositoryLoadHandler(BodyHandler):
    """POST /v2/repository/models/{m}/load: load (or reload a changed) default version.

    Triton's model-config and file overrides are refused: nothing a client sends is ever
    written or read as a model.
    """

    metric_endpoint = "v2_repository"

    @web.authenticated
    async def post(self, name):
        name = check_name(name)
        self.label_model(name)
        options = self.json_body(self.body, required=False) or {}
        params = options.get("parameters") if isinstance(options, dict) else None
        if not isinstance(options, dict) or (params is not None and not isinstance(params, dict)):
            raise InvalidInputError("The body must be a JSON object.")
        if params and any(k == "config" or k.startswith("file:") for k in params):
            raise InvalidInputError(
                "Model config and file overrides are not accepted; upload an archive with POST /models."
            )
        status = await self.run(self.registry.load, name, manage=True)
        self.metric_version = str(status.get("default") or "")
        self.reply(status)


class RepositoryUnloadHandler(BodyHandler):
    """POST /v2/repository/models/{m}/unload: stop serving every version of a model."""

    metric_endpoint = "v2_repository"

    @web.authenticated
    async def post(self, name):
        name = check_name(name)
        self.label_model(name)
        options = self.json_body(self.body, required=False) or {}
        if not isinstance(options, dict):
            raise InvalidInputError("The body must be a JSON object.")
        self.reply(await self.run(self.registry.unload, name, manage=True))


def handlers(prefix) -> list:
    """The v2 routes, ``prefix(path)`` joining each to the server's base URL."""
    m = r"(?P<name>[^/]+)"
    v = r"(?P<version>[^/]+)"
    return [
        (prefix(r"/v2/?"), ServerMetadataHandler),
        (prefix(r"/v2/health/live"), LiveHandler),
        (prefix(r"/v2/health/ready"), ReadyHandler),
        (prefix(rf"/v2/models/{m}"), ModelMetadataHandler),
        (prefix(rf"/v2/models/{m}/versions/{v}"), ModelMetadataHandler),
        (prefix(rf"/v2/models/{m}/ready"), ModelReadyHandler),
        (prefix(rf"/v2/models/{m}/versions/{v}/ready"), ModelReadyHandler),
        (prefix(rf"/v2/models/{m}/infer"), InferHandler),
        (prefix(rf"/v2/models/{m}/versions/{v}/infer"), InferHandler),
        (prefix(r"/v2/repository/index"), RepositoryIndexHandler),
        (prefix(rf"/v2/repository/models/{m}/load"), RepositoryLoadHandler),
        (prefix(rf"/v2/repository/models/{m}/unload"), RepositoryUnloadHandler),
    ]
