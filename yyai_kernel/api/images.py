"""Predictions for people: ``POST /predictions/{m}`` and ``POST /predictions/{m}/{v}``.

The body is what the model's input suggests:

- images: raw image bytes (``Content-Type: image/*``, so that
  ``curl --data-binary @digit.png -H 'Content-Type: image/png'`` works) or a
  ``multipart/form-data`` upload with one or more files;
- a table: JSON records (``{"age": 41, "plan": "pro"}`` or a list of them,
  ``application/json``) or a CSV with a header (``text/csv``);
- a tensor: JSON numbers (one input, or a batch of them) or a ``.npy`` (``application/x-npy``);
  several inputs: JSON records naming each.

Anything else is a 415. The data plane decodes and preprocesses the images, or fits the
records and numbers to the version's input (``runtime/tabular.py``), as its manifest says,
on the predict pool; a bad feature is a 400 whose ``field`` names it. The reply
(``Prediction.to_json``):

    {"model": "digits", "version": 2,
     "predictions": [{"members": {"cnn_a": [{"label": "3", "probability": 0.97}, ...]},
                      "combined": [...] | null, "top": "3" | null, "filename": "x.png"?}]}

Classification entries are sorted by probability, highest first; regression outputs are
``{"name": value}`` rounded as the manifest says. ``top`` is the best label of the
combined output (or of the only member), or null for regression. ``?raw=true`` adds each
row's raw vectors under ``"raw"``, in label order, which the HTTP client uses.
``?explain=gradcam`` (images) adds each row's ``"explanations"``: per member, a Grad-CAM
heat map and its overlay PNG (base64); ``?explain=integrated_gradients`` (tables) adds per
member each feature's attribution; either way ``"available": false`` with the reason where
a member has none. The data plane computes them and bounds them (``plane/explanations.py``).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from yyai_kernel.api.call import Call, Reply, cold_start_headers, reply
from yyai_kernel.api.context import Api
from yyai_kernel.api.endpoint import Auth, Body, Endpoint
from yyai_kernel.api.refs import path_ref
from yyai_kernel.api.spec import (
    COLD_START,
    NAME,
    STICKY,
    VERSION,
    errors,
    json_reply,
    op,
    ref,
)
from yyai_kernel.protocol.records import given_of
from yyai_kernel.protocol.restparse import images_of, loose_flag, prediction_media
from yyai_kernel.types import STICKY_HEADER, ExplainMethod, Prediction


async def predictions(api: Api, call: Call) -> Reply:
    """POST /predictions/{m}[/{v}]: images (one raw, or a multipart upload), records or numbers."""
    data = api.data
    ref_ = path_ref(call)
    raw = loose_flag(call.query.get("raw", "false"))
    explain = call.query.get("explain")
    media, content_type = call.media_type, call.content_type
    target = data.resolve(ref_)
    images = prediction_media(media, target.description.input)
    call.confirm()
    body, most, rows = call.body, api.config.max_images_per_request, api.config.max_rows_per_request
    sticky = call.headers.get(STICKY_HEADER)

    def work() -> Future[Prediction]:  # parsing, decoding and fitting are CPU work: off the loop
        if not images:
            return data.submit_inputs(target, given_of(media, body, max_rows=rows), sticky=sticky, explain=explain)
        uploads, filenames = images_of(media, content_type, body, most)
        return data.submit_images(target, uploads, filenames, sticky=sticky, explain=explain)

    prediction = await api.model_call(call, api.run(work))  # the batcher's thread completes it
    call.confirm(prediction.version)
    return reply(prediction.to_json(raw=raw), headers=cold_start_headers(prediction.cold_start_s))


_RECORD = {"type": "object", "additionalProperties": {
    "oneOf": [{"type": "number"}, {"type": "string"}, {"type": "array"}]}}
_IMAGE_BODY = {
    "required": True,
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "application/json": {"schema": {"oneOf": [
            _RECORD, {"type": "array", "items": _RECORD}, {"type": "number"}, {"type": "array", "items": {}}]},
            "example": {"alcohol": 13.2, "malic_acid": 1.78}},
        "text/csv": {"schema": {"type": "string"}, "example": "alcohol,malic_acid\n13.2,1.78\n"},
        "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "array", "items": {"type": "string", "format": "binary"}}},
            }
        },
    },
}
_REPLIES = {"200": {**json_reply(ref("PredictionReply"), "Each image's predictions."), "headers": COLD_START},
            **errors(400, 404, 413, 415, 429, 503)}
_EXPLAIN = {"name": "explain", "in": "query", "required": False,
            "schema": {"type": "string", "enum": [m.value for m in ExplainMethod]},
            "description": "Also explain each member's answer: gradcam (images: a heat map) or integrated_gradients "
                           "(tables: each feature's attribution). Bounded: at most max_explain_images images or rows "
                           "a request, max_concurrent_explains requests at once. An explained request is never "
                           "rerouted: the version named, else the default, answers."}
_IMAGES: dict[str, Any] = {"body": Body.MEMORY, "auth": Auth.TOKEN, "metric": "predictions"}

ENDPOINTS = [
    Endpoint("POST", "/predictions/{name}", predictions, op(
        "Predict with the default version", _REPLIES, params=[NAME, STICKY, _EXPLAIN], body=_IMAGE_BODY,
        tags=["images"],
        description="What the model's input takes: raw image bytes (Content-Type image/*) or a multipart upload "
        "of one or more image files; JSON records or a CSV with a header (a table); JSON numbers or a .npy (a "
        "tensor). The server preprocesses them as the archive's manifest says; a bad feature is a 400 naming it. "
        "The model's traffic policy (canary, shadow) applies: the reply's version says which version answered.",
    ), **_IMAGES),
    Endpoint("POST", "/predictions/{name}/{version}", predictions, op(
        "Predict with a given version or label (never rerouted)", _REPLIES,
        params=[NAME, VERSION, _EXPLAIN], body=_IMAGE_BODY, tags=["images"],
    ), **_IMAGES),
]
