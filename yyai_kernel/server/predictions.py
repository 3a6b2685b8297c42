"""Image predictions: ``POST /predictions/{m}`` and ``POST /predictions/{m}/{v}``.

The body is either raw image bytes (``Content-Type: image/*``, so that
``curl --data-binary @digit.png -H 'Content-Type: image/png'`` works) or a
``multipart/form-data`` upload with one or more files. Anything else is a 415. Images are
decoded and preprocessed as the version's manifest says (pixel limit included), off the
IOLoop. The reply:

    {"model": "digits", "version": 2,
     "predictions": [{"members": {"cnn_a": [{"label": "3", "probability": 0.97}, ...]},
                      "combined": [...] | null, "top": "3" | null, "filename": "x.png"?}]}

Classification entries are sorted by probability, highest first; regression outputs are
``{"name": value}`` rounded as the manifest says. ``top`` is the best label of the
combined output (or of the only member), or null for regression. ``?raw=true`` adds each
row's raw vectors under ``"raw"`` (``{"members": {m: [...]}, "combined": [...]}``), in
label order, which the HTTP client uses.
"""

from __future__ import annotations

from tornado import web
from tornado.httputil import HTTPInputError, parse_body_arguments

from ..errors import ImageError, InvalidInputError, PayloadTooLargeError, UnsupportedMediaError
from .base import BodyHandler, check_name, check_version


def format_rows(prediction, filenames: list[str | None] | None = None, *, raw: bool = False) -> list[dict]:
    """Per image: each member's labelled output, the combined one, and the top label."""
    rows = prediction.rows()
    for i, row in enumerate(rows):
        best = row["combined"]
        if best is None and len(row["members"]) == 1:
            best = next(iter(row["members"].values()))
        row["top"] = best[0]["label"] if isinstance(best, list) and best else None
        if filenames and filenames[i] is not None:
            row["filename"] = filenames[i]
        if raw:
            row["raw"] = {
                "members": {m: out[i].tolist() for m, out in prediction.members.items()},
                "combined": None if prediction.combined is None else prediction.combined[i].tolist(),
            }
    return rows


class PredictionsHandler(BodyHandler):
    """POST /predictions/{m}[/{v}]: one raw image, or a multipart upload of several."""

    metric_endpoint = "predictions"

    @web.authenticated
    async def post(self, name, version=None):
        name, version = check_name(name), check_version(version)
        self.label_model(name, version)
        raw = self.get_query_argument("raw", "false").lower() in ("1", "true", "yes")
        media = self.content_type()
        if not (media.startswith("image/") or media == "multipart/form-data"):
            raise UnsupportedMediaError(
                f"Content-Type {media or '(none)'!r} is not accepted here; send image bytes with "
                "Content-Type image/png (or another image/*), or a multipart/form-data upload."
            )
        body = self.body
        content_type = self.request.headers.get("Content-Type", "")
        registry = self.registry

        def work():  # multipart parsing and image decoding are CPU work: off the loop
            resolved = registry.resolve_version(name, version)
            images, filenames = self._images(media, content_type, body)
            return filenames, registry.submit_images(name, images, resolved)

        filenames, pending = await self.run(work)
        prediction = await self.model_call(pending)  # the batcher's thread completes it
        self.metric_version = str(prediction.version)
        rows = format_rows(prediction, filenames, raw=raw)
        self.reply({"model": name, "version": prediction.version, "predictions": rows})

    def _images(self, media: str, content_type: str, body: bytes) -> tuple[list[bytes], list[str | None] | None]:
        if media.startswith("image/"):
            if not body:
                raise ImageError("The request body is empty; send the image bytes.")
            return [body], None
        if media == "multipart/form-data":
            arguments: dict = {}
            files: dict = {}
            try:
                parse_body_arguments(content_type, body, arguments, files)
            except HTTPInputError as exc:  # tornado >= 6.5 raises on a malformed multipart body
                raise InvalidInputError(f"The multipart upload is malformed: {exc}.") from None
            uploads = [f for field in files.values() for f in field]
            if not uploads:
                raise InvalidInputError("The multipart upload holds no files; attach one or more images.")
            if len(uploads) > self.state.max_images_per_request:
                raise PayloadTooLargeError(
                    f"The upload holds {len(uploads)} images; the limit is {self.state.max_images_per_request}."
                )
            for upload in uploads:
                if not upload["body"]:
                    raise ImageError(f"The uploaded file {upload.get('filename')!r} is empty.")
            return [u["body"] for u in uploads], [u.get("filename") or None for u in uploads]
        raise UnsupportedMediaError(f"Content-Type {media!r} is not accepted here.")


def handlers(prefix) -> list:
    """The image prediction routes."""
    return [
        (prefix(r"/predictions/(?P<name>[^/]+)"), PredictionsHandler),
        (prefix(r"/predictions/(?P<name>[^/]+)/(?P<version>[^/]+)"), PredictionsHandler),
    ]
