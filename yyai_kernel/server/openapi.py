"""The OpenAPI 3.0 document of every REST endpoint, served at ``GET /openapi.json``.

Written by hand as a Python dict so it ships inside the package with no data files.
``tests/test_server.py`` validates it with openapi-spec-validator and checks it against
the server's real routes in both directions, so a new endpoint cannot go undocumented.
"""

from __future__ import annotations

import copy

from tornado import web

from .base import YyaiHandler

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {
        400: "Bad input (malformed body, bad name or version, bad tensor or image).",
        401: "No valid token.",
        403: "Refused (cross-origin or missing XSRF token on a cookie-authenticated request).",
        404: "Unknown model or version.",
        409: "The store already holds that name and version.",
        413: "Too large: body, archive, image pixels or number of images over the limit.",
        415: "Unsupported Content-Type.",
        503: "Not ready: the model (or the server) is loading, failed or unloaded.",
        507: "The store could not be written (disk full or permissions); nothing changed.",
    }
    return {str(c): _json(_ref("Error"), text[c]) for c in (401, *codes)}


NAME = {"name": "name", "in": "path", "required": True, "description": "Model name.",
        "schema": {"type": "string", "pattern": NAME_PATTERN}}
VERSION = {"name": "version", "in": "path", "required": True, "description": "Model version (a positive integer).",
           "schema": {"type": "integer", "minimum": 1}}
VERSION_QUERY = {"name": "version", "in": "query", "required": False, "description": "Default: the default version.",
                 "schema": {"type": "integer", "minimum": 1}}
EMPTY_200 = {"description": "Yes: empty body."}

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "What was wrong, for a person."},
            "type": {"type": "string", "description": "The yyai error class, when the refusal is yyai's own."},
            "field": {"type": "string", "description": "The JSON path of the offending field, when known."},
        },
    },
    "ServerMetadata": {
        "type": "object",
        "required": ["name", "version", "extensions"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}},
        },
    },
    "TensorMetadata": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "ModelMetadata": {
        "type": "object",
        "required": ["name", "versions", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _ref("TensorMetadata")},
            "outputs": {"type": "array", "items": _ref("TensorMetadata")},
        },
    },
    "InferRequestInput": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string", "enum": ["UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16",
                                                    "INT32", "INT64", "FP16", "FP32", "FP64"]},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}},
            "data": {"type": "array", "items": {}, "description": "Values, flattened row-major (nested lists are accepted)."},
        },
    },
    "InferRequestOutput": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
        },
    },
    "InferRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "minItems": 1, "items": _ref("InferRequestInput")},
            "outputs": {"type": "array", "items": _ref("InferRequestOutput")},
        },
    },
    "InferResponseOutput": {
        "type": "object",
        "required": ["name", "datatype", "shape"],
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer"}}},
            "data": {"type": "array", "items": {"type": "number"}},
        },
    },
    "InferResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {
                "type": "object",
                "properties": {
                    "combined": {"type": "string", "nullable": True, "description": "The combined output's name."},
                    "members": {"type": "array", "items": {"type": "string"}},
                },
            },
            "outputs": {"type": "array", "items": _ref("InferResponseOutput")},
        },
    },
    "RepositoryIndexEntry": {
        "type": "object",
        "required": ["name", "version", "state"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "state": {"type": "string", "enum": ["READY", "LOADING", "UNAVAILABLE"]},
            "reason": {"type": "string"},
        },
    },
    "VersionStatus": {
        "type": "object",
        "required": ["version", "state"],
        "properties": {
            "version": {"type": "integer"},
            "state": {"type": "string", "enum": ["available", "loading", "ready", "failed", "unloaded", "removed"]},
            "in_store": {"type": "boolean"},
            "load_time_s": {"type": "number", "nullable": True},
            "warmup_time_s": {"type": "number", "nullable": True},
            "loaded_at": {"type": "number", "nullable": True},
            "last_error": {"type": "string", "nullable": True},
            "requests": {"type": "integer"},
            "errors": {"type": "integer"},
            "latency_ms": {"type": "object", "additionalProperties": {"type": "number", "nullable": True}},
            "batch_sizes": {"type": "object", "additionalProperties": {"type": "integer"}},
            "description": {"type": "string"},
            "created": {"type": "string", "nullable": True},
            "members": {"type": "array", "items": {"type": "string"}},
        },
    },
    "ModelStatus": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "default": {"type": "integer", "nullable": True},
            "pinned": {"type": "boolean"},
            "last_error": {"type": "string", "nullable": True},
            "versions": {"type": "object", "additionalProperties": _ref("VersionStatus")},
            "removed": {"type": "boolean", "description": "Present (true) when the last version was purged."},
        },
    },
    "ModelSummary": {
        "type": "object",
        "required": ["name", "versions", "loaded"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "integer"}},
            "default": {"type": "integer", "nullable": True},
            "loaded": {"type": "array", "items": {"type": "integer"}},
        },
    },
    "VersionDescription": {
        "type": "object",
        "required": ["name", "version", "input", "output", "members", "combine"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "integer"},
            "description": {"type": "string"},
            "input": {"type": "object", "description": "The manifest's input spec (shape, dtype, color, scaling)."},
            "output": {"type": "object", "description": "The manifest's output spec (labels or names)."},
            "output_width": {"type": "integer"},
            "members": {"type": "array", "items": {"type": "string"}},
            "combine": {"type": "string", "enum": ["mean", "each"]},
            "has_combined": {"type": "boolean"},
            "status": {"allOf": [_ref("VersionStatus")], "nullable": True},
        },
    },
    "UploadReply": {
        "type": "object",
        "required": ["name", "version", "model"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "integer"},
            "model": _ref("ModelStatus"),
        },
    },
    "VersionRequest": {
        "type": "object",
        "required": ["version"],
        "properties": {"version": {"type": "integer", "minimum": 1}},
        "additionalProperties": False,
    },
    "LabelledOutput": {
        "oneOf": [
            {
                "type": "array",
                "description": "Classification: every label with its probability, highest first.",
                "items": {
                    "type": "object",
                    "required": ["label", "probability"],
                    "properties": {"label": {"type": "string"}, "probability": {"type": "number"}},
                },
            },
            {
                "type": "object",
                "description": "Regression: each output name with its rounded value.",
                "additionalProperties": {"type": "number"},
            },
        ],
    },
    "ImagePrediction": {
        "type": "object",
        "required": ["members", "combined", "top"],
        "properties": {
            "members": {"type": "object", "additionalProperties": _ref("LabelledOutput")},
            "combined": {"allOf": [_ref("LabelledOutput")], "nullable": True},
            "top": {"type": "string", "nullable": True},
            "filename": {"type": "string"},
            "raw": {"type": "object", "description": "With ?raw=true: raw vectors in label order."},
        },
    },
    "PredictionReply": {
        "type": "object",
        "required": ["model", "version", "predictions"],
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "integer"},
            "predictions": {"type": "array", "items": _ref("ImagePrediction")},
        },
    },
}


def _op(summary: str, responses: dict, *, params=None, body=None, tags=None, description=None) -> dict:
    op = {"summary": summary, "responses": responses}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    if tags:
        op["tags"] = tags
    return op


def _v2_model_paths(with_version: bool) -> dict:
    base = "/v2/models/{name}" + ("/versions/{version}" if with_version else "")
    params = [NAME, VERSION] if with_version else [NAME]
    which = "that version" if with_version else "the default version"
    infer_body = {
        "required": True,
        "description": "JSON tensors; or, with the binary tensor data extension, the JSON request (its "
        "length in the Inference-Header-Content-Length header) followed by each binary input's bytes.",
        "content": {
            "application/json": {"schema": _ref("InferRequest")},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
    return {
        base: {"get": _op(f"Model metadata of {which}", {"200": _json(_ref("ModelMetadata"), "Inputs and outputs."),
                                                         **_errors(400, 404)}, params=params, tags=["v2"])},
        base + "/ready": {"get": _op(f"Is {which} ready?", {"200": EMPTY_200, **_errors(400, 404, 503)},
                                     params=params, tags=["v2"])},
        base + "/infer": {"post": _op(
            f"Inference on {which}",
            {
                "200": {
                    "description": "Outputs: JSON, or JSON followed by binary outputs when "
                    "Inference-Header-Content-Length is set on the response.",
                    "content": {
                        "application/json": {"schema": _ref("InferResponse")},
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    },
                },
                **_errors(400, 404, 413, 503),
            },
            params=[*params, {"name": "Inference-Header-Content-Length", "in": "header", "required": False,
                              "schema": {"type": "integer", "minimum": 0},
                              "description": "Length of the JSON part when binary tensors follow it."}],
            body=infer_body,
            tags=["v2"],
        )},
    }


def build_spec(server_version: str = "0") -> dict:
    """The OpenAPI document (a fresh dict on every call)."""
    optional_json = lambda schema: {"required": False, "content": {"application/json": {"schema": schema}}}  # noqa: E731
    image_body = {
        "required": True,
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                }
            },
        },
    }
    predict_responses = {"200": _json(_ref("PredictionReply"), "Each image's predictions."),
                         **_errors(400, 404, 413, 415, 503)}
    paths = {
        "/v2": {"get": _op("Server metadata", {"200": _json(_ref("ServerMetadata"), "Name, version, extensions.")},
                           tags=["v2"])},
        "/v2/health/live": {"get": _op("Liveness", {"200": EMPTY_200, **_errors()}, tags=["v2"])},
        "/v2/health/ready": {"get": _op("Readiness (start-up load finished)", {"200": EMPTY_200, **_errors(503)},
                                        tags=["v2"])},
        **_v2_model_paths(False),
        **_v2_model_paths(True),
        "/v2/repository/index": {"post": _op(
            "Every model version in the store, with its state",
            {"200": _json({"type": "array", "items": _ref("RepositoryIndexEntry")}, "The index."), **_errors(400)},
            body=optional_json({"type": "object", "properties": {"ready": {"type": "boolean"}}}),
            tags=["v2"],
        )},
        "/v2/repository/models/{name}/load": {"post": _op(
            "Load the model's default version",
            {"200": _json(_ref("ModelStatus"), "The model's status."), **_errors(400, 404, 503)},
            params=[NAME], body=optional_json({"type": "object"}), tags=["v2"],
            description="Model config and file overrides (parameters.config, parameters.file:*) are refused.",
        )},
        "/v2/repository/models/{name}/unload": {"post": _op(
            "Unload every version of the model",
            {"200": _json(_ref("ModelStatus"), "The model's status."), **_errors(400, 404)},
            params=[NAME], body=optional_json({"type": "object"}), tags=["v2"],
        )},
        "/predictions/{name}": {"post": _op(
            "Predict on images with the default version", predict_responses, params=[NAME], body=image_body,
            tags=["images"],
            description="Raw image bytes (Content-Type image/*) or a multipart upload of one or more files.",
        )},
        "/predictions/{name}/{version}": {"post": _op(
            "Predict on images with a given version", predict_responses, params=[NAME, VERSION], body=image_body,
            tags=["images"],
        )},
        "/models": {
            "get": _op("List models", {"200": _json({"type": "array", "items": _ref("ModelSummary")}, "One line per model."),
                                       **_errors()}, tags=["management"]),
            "post": _op(
                "Upload an archive (.yyar): verify, store atomically, load",
                {"201": _json(_ref("UploadReply"), "Stored and loaded."), **_errors(400, 409, 413, 415, 503, 507)},
                body={
                    "required": True,
                    "content": {
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        "multipart/form-data": {
                            "schema": {"type": "object", "properties": {"archive": {"type": "string", "format": "binary"}}}
                        },
                    },
                },
                tags=["management"],
            ),
        },
        "/models/_rescan": {"post": _op(
            "Re-read the store folder and reload what changed",
            {"200": _json({"type": "object", "additionalProperties": {"type": "object"}}, "Per model: status or error."),
             **_errors()},
            tags=["management"],
        )},
        "/models/_status": {"get": _op(
            "Every model's status, the store's problems and its state-file error",
            {"200": _json({
                "type": "object",
                "required": ["models", "problems"],
                "properties": {
                    "models": {"type": "object", "additionalProperties": _ref("ModelStatus")},
                    "problems": {"type": "array", "items": {
                        "type": "object",
                        "properties": {"path": {"type": "string"}, "kind": {"type": "string"},
                                       "error": {"type": "string"}},
                    }},
                    "state_error": {"type": "string", "nullable": True},
                },
            }, "The registry's status."), **_errors()},
            tags=["management"],
        )},
        "/models/{name}/samples": {"get": _op(
            "The sample inputs a version bundles",
            {"200": _json({
                "type": "object",
                "required": ["name", "version", "samples"],
                "properties": {"name": {"type": "string"}, "version": {"type": "integer"},
                               "samples": {"type": "array", "items": {"type": "string"}}},
            }, "Sample names, as the manifest lists them."), **_errors(400, 404)},
            params=[NAME, VERSION_QUERY], tags=["management"],
        )},
        "/models/{name}/samples/{sample}": {"get": _op(
            "One bundled sample's bytes (read from inside the archive, by its manifest name)",
            {"200": {"description": "The sample.", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
             **_errors(400, 404)},
            params=[NAME, {"name": "sample", "in": "path", "required": True,
                           "description": "A sample name from the list (URL-encode its '/').",
                           "schema": {"type": "string"}}, VERSION_QUERY],
            tags=["management"],
        )},
        "/models/{name}": {"get": _op("A model's status", {"200": _json(_ref("ModelStatus"), "Status."),
                                                          **_errors(400, 404)}, params=[NAME], tags=["management"])},
        "/models/{name}/load": {"post": _op(
            "Load a version (the default when none is given)",
            {"200": _json(_ref("ModelStatus"), "Status."), **_errors(400, 404, 503)},
            params=[NAME], body=optional_json({"type": "object", "properties": {"version": {"type": "integer", "minimum": 1}},
                                            "additionalProperties": False}),
            tags=["management"],
        )},
        "/models/{name}/reload": {"post": _op(
            "Re-read the store and reload the model; the old runtime serves until the new one is ready",
            {"200": _json(_ref("ModelStatus"), "Status."), **_errors(400, 404, 503)},
            params=[NAME, {"name": "force", "in": "query", "required": False, "schema": {"type": "boolean", "default": True}}],
            tags=["management"],
        )},
        "/models/{name}/default": {"put": _op(
            "Make a version the default (persisted)",
            {"200": _json(_ref("ModelStatus"), "Status."), **_errors(400, 404, 503)},
            params=[NAME], body={"required": True, "content": {"application/json": {"schema": _ref("VersionRequest")}}},
            tags=["management"],
        )},
        "/models/{name}/versions/{version}": {
            "get": _op("What a version takes and gives, and its status",
                       {"200": _json(_ref("VersionDescription"), "Description."), **_errors(400, 404)},
                       params=[NAME, VERSION], tags=["management"]),
            "delete": _op(
                "Unload a version; with purge=true also delete its archive",
                {"200": _json(_ref("ModelStatus"), "Status."), **_errors(400, 404, 507)},
                params=[NAME, VERSION, {"name": "purge", "in": "query", "required": False,
                                        "schema": {"type": "boolean", "default": False}}],
                tags=["management"],
            ),
        },
        "/metrics": {"get": _op("Prometheus metrics", {
            "200": {"description": "Text exposition format.", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors(),
        }, tags=["ops"])},
        "/openapi.json": {"get": _op("This document", {"200": _json({"type": "object"}, "OpenAPI 3.0 document."),
                                                       **_errors()}, tags=["ops"])},
    }
    return copy.deepcopy({
        "openapi": "3.0.3",
        "info": {
            "title": "yyai",
            "version": server_version,
            "description": "Keras model serving with hot reload: Open Inference Protocol v2, image predictions "
            "and model management. Every endpoint needs the server's token: 'Authorization: token <T>' "
            "(or 'Bearer <T>'), or ?token=<T>.",
        },
        "servers": [{"url": "/"}],
        "security": [{"tokenHeader": []}, {"bearer": []}, {"tokenQuery": []}],
        "tags": [{"name": "v2"}, {"name": "images"}, {"name": "management"}, {"name": "ops"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "tokenHeader": {"type": "apiKey", "in": "header", "name": "Authorization",
                                "description": "The value is 'token <T>'."},
                "bearer": {"type": "http", "scheme": "bearer"},
                "tokenQuery": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
    })


class OpenAPIHandler(YyaiHandler):
    """GET /openapi.json."""

    @web.authenticated
    def get(self):
        from . import __version__

        self.reply(build_spec(__version__))


def handlers(prefix) -> list:
    """The OpenAPI route."""
    return [(prefix(r"/openapi\.json"), OpenAPIHandler)]
