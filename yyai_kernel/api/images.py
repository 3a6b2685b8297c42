"""Image predictions: ``POST /predictions/{m}`` and ``POST /predictions/{m}/{v}``.

The body is either raw image bytes (``Content-Type: image/*``, so that
``curl --data-binary @digit.png -H 'Content-Type: image/png'`` works) or a
``multipart/form-data`` upload with one or more files. Anything else is a 415. The data
plane decodes and preprocesses the images as the version's manifest says (pixel limit
included), on the predict pool. The reply (``Prediction.to_json``):

    {"model": "digits", "version": 2,
     "predictions": [{"members": {"cnn_a": [{"label": "3", "probability": 0.97}, ...]},
                      "combined": [...] | null, "top": "3" | null, "filename": "x.png"?}]}

Classification entries are sorted by probability, highest first; regression outputs are
``{"name": value}`` rounded as the manifest says. ``top`` is the best label of the
combined output (or of the only member), or null for regression. ``?raw=true`` adds each
row's raw vectors under ``"raw"``, in label order, which the HTTP client uses.
``?explain=gradcam`` adds each row's ``"explanations"``: per member, a Grad-CAM heat map
and its overlay PNG (base64), or ``"available": false`` with the reason; the data plane
computes them and bounds them (``plane/explanations.py``).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from yyai_kernel.api.call import Call, Reply, reply
from yyai_kernel.api.context import Api
from yyai_kernel.api.endpoint import Auth, Body, Endpoint
from yyai_kernel.api.refs import path_ref
from yyai_kernel.api.spec import NAME, STICKY, VERSION, errors, json_reply, op, ref
from yyai_kernel.protocol.restparse import check_image_media, images_of, loose_flag
from yyai_kernel.types import STICKY_HEADER, ExplainMethod, Prediction


async def predictions(api: Api, call: Call) -> Reply:
    """POST /predictions/{m}[/{v}]: one raw image, or a multipart upload of several."""
    data = api.data
    ref_ = path_ref(call)
    raw = loose_flag(call.query.get("raw", "false"))
    explain = call.query.get("explain")
    media, content_type = call.media_type, call.content_type
    check_image_media(media)
    target = data.resolve(ref_)
    call.confirm()
    body, most = call.body, api.config.max_images_per_request
    sticky = call.headers.get(STICKY_HEADER)

    def work() -> Future[Prediction]:  # multipart parsing and image decoding are CPU work: off the loop
        images, filenames = images_of(media, content_type, body, most)
        return data.submit_images(target, images, filenames, sticky=sticky, explain=explain)

    prediction = await api.model_call(call, api.run(work))  # the batcher's thread completes it
    call.confirm(prediction.version)
    return reply(prediction.to_json(raw=raw))


_IMAGE_BODY = {
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
_REPLIES = {"200": json_reply(ref("PredictionReply"), "Each image's predictions."),
            **errors(400, 404, 413, 415, 429, 503)}
_EXPLAIN = {"name": "explain", "in": "query", "required": False,
            "schema": {"type": "string", "enum": [m.value for m in ExplainMethod]},
            "description": "Also explain each member's answer with a Grad-CAM heat map (bounded: at most "
                           "max_explain_images images a request, max_concurrent_explains requests at once). "
                           "An explained request is never rerouted: the version named, else the default, answers."}
_IMAGES: dict[str, Any] = {"body": Body.MEMORY, "auth": Auth.TOKEN, "metric": "predictions"}

ENDPOINTS = [
    Endpoint("POST", "/predictions/{name}", predictions, op(
        "Predict on images with the default version", _REPLIES, params=[NAME, STICKY, _EXPLAIN], body=_IMAGE_BODY,
        tags=["images"],
        description="Raw image bytes (Content-Type image/*) or a multipart upload of one or more files. "
        "The server decodes and preprocesses them as the archive's manifest says. The model's traffic "
        "policy (canary, shadow) applies: the reply's version says which version answered.",
    ), **_IMAGES),
    Endpoint("POST", "/predictions/{name}/{version}", predictions, op(
        "Predict on images with a given version or label (never rerouted)", _REPLIES,
        params=[NAME, VERSION, _EXPLAIN], body=_IMAGE_BODY, tags=["images"],
    ), **_IMAGES),
]
