"""The pieces of the OpenAPI 3.0 document: shared parameters, component schemas, helpers.

Each API module writes its endpoints' operations with these (``op``, ``errors``,
``json_reply``, ``ref``, the ``NAME`` / ``VERSION`` parameters), and ``openapi.py`` puts
them together with :data:`SCHEMAS`. The patterns come from ``yyai_kernel.types`` (the one
name rule), so the document cannot disagree with what the server accepts.
"""

from __future__ import annotations

from typing import Any

from yyai_kernel.hints import Step
from yyai_kernel.types import (
    LABEL_PATTERN,
    NAME_PATTERN,
    Combine,
    DefaultWhy,
    ExplainMethod,
    VersionState,
)


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_reply(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


COLD_START: dict[str, Any] = {"X-Yyai-Cold-Start": {
    "description": "Present when the version was not loaded: the seconds this request waited for its load.",
    "schema": {"type": "number"}}}


def errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad input (malformed body, bad name or version, bad tensor or image).",
        401: "No valid token.",
        403: "Refused (cross-origin or missing XSRF token on a cookie-authenticated request).",
        404: "Unknown model or version.",
        409: "Conflict: the store already holds that name and version, or a label or the traffic policy "
             "names the version being deleted.",
        413: "Too large: body, archive, image pixels or number of images over the limit.",
        415: "Unsupported Content-Type.",
        429: "Too many expensive requests (explanations) at once; retry after Retry-After seconds.",
        503: "Not ready: the model (or the server) is loading, failed or unloaded, or the model host is "
             "restarting; retry after Retry-After seconds when the reply gives it.",
        507: "The store could not be written (disk full or permissions); nothing changed.",
    }
    return {str(c): json_reply(ref("Error"), text[c]) for c in (401, *codes)}


NAME = {"name": "name", "in": "path", "required": True, "description": "Model name.",
        "schema": {"type": "string", "pattern": NAME_PATTERN}}
# A label goes wherever a version does: /predictions/digits/stable, /v2/models/digits/versions/stable/infer.
VERSION_OR_LABEL = {"type": "string", "pattern": f"^([1-9][0-9]{{0,8}}|{LABEL_PATTERN[1:-1]})$",
                    "description": "A version number, or a label that names one (labels start with a letter)."}
VERSION = {"name": "version", "in": "path", "required": True,
           "description": "Model version: a positive integer, or a version label such as 'stable' "
                          "(PUT /models/{name}/labels/{label}).", "schema": VERSION_OR_LABEL}
VERSION_QUERY = {"name": "version", "in": "query", "required": False,
                 "description": "A version number or label. Default: the default version.", "schema": VERSION_OR_LABEL}
LABEL = {"name": "label", "in": "path", "required": True, "description": "A version label.",
         "schema": {"type": "string", "pattern": LABEL_PATTERN}}
STICKY = {"name": "X-Yyai-Sticky", "in": "header", "required": False, "schema": {"type": "string"},
          "description": "With a sticky traffic policy, requests with the same key always reach the same side "
                         "of the canary split (v2 requests may use their 'id' instead)."}

_SPLIT = {
    "type": "object",
    "required": ["version", "percent"],
    "additionalProperties": False,
    "properties": {"version": {"type": "integer", "minimum": 1},
                   "percent": {"type": "number", "minimum": 0, "maximum": 100}},
}
_LATENCY = {"type": "object", "additionalProperties": {"type": "number", "nullable": True},
            "description": "p50, p90, p99 in milliseconds."}
ROLLOUT_SCHEMAS = {
    "TrafficPolicy": {
        "type": "object",
        "additionalProperties": False,
        "description": "What happens to requests that name no version. canary: that percentage is answered by "
                       "its version. shadow: that percentage of the rest is also run on its version, off the "
                       "reply's path, and compared with the answer sent. sticky: a request's X-Yyai-Sticky header "
                       "(or v2 id) places it by hash, so one key always lands on one side. Requests that name a "
                       "version or a label are never rerouted.",
        "properties": {"canary": {"allOf": [_SPLIT], "nullable": True},
                       "shadow": {"allOf": [_SPLIT], "nullable": True},
                       "sticky": {"type": "boolean", "default": False}},
    },
    "RolloutStats": {
        "type": "object",
        "description": "Running figures since the traffic policy was last set (in this process).",
        "properties": {
            "since": {"type": "number"},
            "default_requests": {"type": "integer", "description": "Requests that named no version."},
            "canary": {"type": "object", "nullable": True, "properties": {
                "version": {"type": "integer"}, "requests": {"type": "integer"},
                "fallbacks": {"type": "integer", "description": "Canary picks answered by the default "
                                                                "(the canary did not serve)."}}},
            "shadow": {"type": "object", "nullable": True, "properties": {
                "version": {"type": "integer"}, "runs": {"type": "integer"},
                "rows_compared": {"type": "integer"}, "rows_agreed": {"type": "integer"},
                "agreement": {"type": "number", "nullable": True,
                              "description": "Classification: same top-1 label; regression: equal once rounded."},
                "errors": {"type": "integer"}, "dropped": {"type": "integer",
                                                           "description": "Shadow runs dropped: the queue was full."},
                "max_abs_diff": {"type": "number", "nullable": True}, "mean_abs_diff": {"type": "number",
                                                                                         "nullable": True},
                "last_error": {"type": "string", "nullable": True},
                "latency_ms": _LATENCY, "real_latency_ms": _LATENCY}},
            "disagreements": {"type": "integer", "description": "How many disagreements are kept."},
        },
    },
    "TrafficReport": {
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"},
                       "policy": {"allOf": [{"$ref": "#/components/schemas/TrafficPolicy"}], "nullable": True},
                       "rollout": {"allOf": [{"$ref": "#/components/schemas/RolloutStats"}], "nullable": True}},
    },
    "Disagreement": {
        "type": "object",
        "required": ["id", "version", "shadow_version", "input", "output", "shadow_output"],
        "properties": {
            "id": {"type": "integer"}, "time": {"type": "number"}, "version": {"type": "integer"},
            "shadow_version": {"type": "integer"},
            "input": {"type": "object", "properties": {
                "shape": {"type": "array", "items": {"type": "integer"}}, "min": {"type": "number"},
                "max": {"type": "number"}, "mean": {"type": "number"},
                "png_base64": {"type": "string", "nullable": True,
                               "description": "The input as an image (a PNG thumbnail), when it is one."},
                "filename": {"type": "string", "nullable": True}}},
            "output": {"type": "array", "items": {"type": "number"}, "description": "The answer sent."},
            "shadow_output": {"type": "array", "items": {"type": "number"}},
            "labels": {"type": "array", "items": {"type": "string"}},
            "shadow_labels": {"type": "array", "items": {"type": "string"}},
            "top": {"type": "string", "nullable": True}, "shadow_top": {"type": "string", "nullable": True},
            "abs_diff": {"type": "number", "nullable": True},
        },
    },
    "VersionLabel": {
        "type": "object",
        "required": ["name", "label", "version"],
        "properties": {"name": {"type": "string"}, "label": {"type": "string"}, "version": {"type": "integer"}},
    },
}

SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "What was wrong, for a person, with what to do next "
                      "in this API's words."},
            "type": {"type": "string", "description": "The yyai error class, when the refusal is yyai's own."},
            "field": {"type": "string", "description": "The JSON path of the offending field, when known."},
            "message": {"type": "string", "description": "With hints: what was wrong, without the next steps."},
            "hints": {"type": "array", "items": ref("Hint"),
                      "description": "The next steps as data, for a client to word in its own interface."},
        },
    },
    "Hint": {
        "type": "object",
        "required": ["step"],
        "properties": {
            "step": {"type": "string", "enum": [step.value for step in Step]},
            "name": {"type": "string", "description": "The model it applies to."},
            "version": {"type": "integer"},
            "label": {"type": "string"},
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
    "ServerLive": {"type": "object", "required": ["live"], "properties": {"live": {"type": "boolean"}}},
    "ServerReady": {"type": "object", "required": ["ready"], "properties": {"ready": {"type": "boolean"}}},
    "ModelReady": {"type": "object", "required": ["name", "ready"],
                   "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
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
            "inputs": {"type": "array", "items": ref("TensorMetadata")},
            "outputs": {"type": "array", "items": ref("TensorMetadata")},
            "parameters": {
                "type": "object",
                "description": "How images become the input tensor. v2 takes the tensor AFTER preprocessing "
                "(x = pixel * scale + offset, in the colour order given); POST /predictions takes images.",
                "properties": {"preprocessed": {"type": "boolean"}, "scale": {"type": "number"},
                               "offset": {"type": "number"}, "color": {"type": "string"},
                               "description": {"type": "string"}},
            },
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
            "data": {"type": "array", "items": {},
                     "description": "Values, flattened row-major (nested lists are accepted)."},
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
            "inputs": {"type": "array", "minItems": 1, "items": ref("InferRequestInput")},
            "outputs": {"type": "array", "items": ref("InferRequestOutput")},
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
            "outputs": {"type": "array", "items": ref("InferResponseOutput")},
        },
    },
    "RepositoryIndexEntry": {
        "type": "object",
        "required": ["name", "version", "state"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "state": {"type": "string", "enum": ["READY", "LOADING", "UNLOADING", "UNAVAILABLE"]},
            "reason": {"type": "string"},
        },
    },
    "VersionStatus": {
        "type": "object",
        "required": ["version", "state"],
        "properties": {
            "version": {"type": "integer"},
            "state": {"type": "string", "enum": [s.value for s in VersionState]},
            "reason": {"type": "string", "description": "Why the version is not serving, for people."},
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
            "memory_bytes": {"type": "integer", "nullable": True, "description": (
                "What the version costs while loaded, measured at its load (the process's resident set and "
                "allocated bytes before and after); null while not loaded.")},
            "used_at": {"type": "number", "nullable": True,
                        "description": "When it last answered a request (Unix time): the budget unloads the "
                                       "least recently used first."},
        },
    },
    "ModelStatus": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "default": {"type": "integer", "nullable": True},
            "pinned": {"type": "boolean"},
            "default_reason": {"type": "string", "description": "Which version is the default, and why."},
            "default_why": {
                "type": "object", "nullable": True, "description": "The same as data: why, and the versions it names.",
                "properties": {"why": {"type": "string", "enum": [why.value for why in DefaultWhy]},
                               "name": {"type": "string"}, "default": {"type": "integer", "nullable": True},
                               "latest": {"type": "integer", "nullable": True}},
            },
            "last_error": {"type": "string", "nullable": True},
            "versions": {"type": "object", "additionalProperties": ref("VersionStatus")},
            "removed": {"type": "boolean", "description": "Present (true) when the last version was purged."},
            "labels": {"type": "object", "additionalProperties": {"type": "integer"},
                       "description": "Version labels: {label: version}."},
            "traffic": {"allOf": [ref("TrafficPolicy")], "nullable": True},
            "rollout": {"allOf": [ref("RolloutStats")], "nullable": True},
        },
    },
    **ROLLOUT_SCHEMAS,
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
            "combine": {"type": "string", "enum": [c.value for c in Combine]},
            "has_combined": {"type": "boolean"},
            "status": {"allOf": [ref("VersionStatus")], "nullable": True},
        },
    },
    "UploadReply": {
        "type": "object",
        "required": ["name", "version", "model"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "integer"},
            "message": {"type": "string", "description": "What happened, and which version is the default now."},
            "staged": {"type": "boolean", "description": "The version serves by its number while another stays "
                                                          "the default, until it is promoted."},
            "changed": {"type": "boolean", "description": "False when the same content was there already."},
            "default": {"type": "integer", "nullable": True, "description": "The default version afterwards."},
            "model": ref("ModelStatus"),
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
            "members": {"type": "object", "additionalProperties": ref("LabelledOutput")},
            "combined": {"allOf": [ref("LabelledOutput")], "nullable": True},
            "top": {"type": "string", "nullable": True},
            "filename": {"type": "string"},
            "raw": {"type": "object", "description": "With ?raw=true: raw vectors in label order."},
            "explanations": {"type": "object", "additionalProperties": ref("Explanation"),
                             "description": "With ?explain=gradcam: each member's explanation."},
        },
    },
    "Explanation": {
        "type": "object",
        "required": ["method", "available"],
        "properties": {
            "method": {"type": "string", "enum": [m.value for m in ExplainMethod]},
            "available": {"type": "boolean"},
            "reason": {"type": "string", "description": "Why there is no map (such as no convolutional layer)."},
            "layer": {"type": "string", "description": "The convolutional layer explained (the last one)."},
            "label": {"type": "string", "description": "The class (or output) explained: the version's answer."},
            "heatmap": {"type": "array", "items": {"type": "array", "items": {"type": "number"}},
                        "description": "The map on the layer's grid, rows of values in 0..1."},
            "overlay_png": {"type": "string", "format": "byte",
                            "description": "The map over the image as the model sees it, PNG in base64."},
        },
    },
    "PredictionReply": {
        "type": "object",
        "required": ["model", "version", "predictions"],
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "integer"},
            "predictions": {"type": "array", "items": ref("ImagePrediction")},
        },
    },
}


def op(summary: str, responses: dict[str, Any], *, params: list[dict[str, Any]] | None = None,
       body: dict[str, Any] | None = None, tags: list[str] | None = None,
       description: str | None = None) -> dict[str, Any]:
    """One OpenAPI operation."""
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if description:
        operation["description"] = description
    if params:
        operation["parameters"] = params
    if body:
        operation["requestBody"] = body
    if tags:
        operation["tags"] = tags
    return operation


def optional_json(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional JSON request body."""
    return {"required": False, "content": {"application/json": {"schema": schema}}}
