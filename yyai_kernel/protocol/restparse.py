"""What yyai's REST front ends read from a request, with no web framework: one set of rules.

Two front ends serve the same REST API: the Tornado handlers of ``yyai serve``
(``yyai_kernel/server/``) and the ASGI app on Ray's replicas (``yyai_kernel/api/asgi.py``).
Each reads bytes, headers and query arguments its own way, then calls these functions,
so a body, a flag, a media type or a limit is judged once and refused with the same typed
error and the same words on both. The auth words live in ``tokenauth.py``.

Pure functions, no state: safe from any thread. Imports no Tornado, Starlette or Ray.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Iterable
from pathlib import PurePosixPath
from typing import Any

from yyai_kernel.errors import (
    ImageError,
    InvalidInputError,
    PayloadTooLargeError,
    UnsupportedMediaError,
)
from yyai_kernel.protocol import jsonparse
from yyai_kernel.protocol.multipart import read_files
from yyai_kernel.protocol.records import CSV_TYPES, JSON_TYPES, NPY_TYPES
from yyai_kernel.types import InputKind, InputSpec, InstallOptions, parse_version

AUTH_QUERY = {"token", "_xsrf"}  # query arguments the auth layer reads
ARCHIVE_TYPES = {"application/octet-stream", "application/zip", "application/x-yyar", "application/x-zip-compressed"}
MULTIPART = "multipart/form-data"
TRUE_WORDS = ("1", "true", "yes")


def media_type(content_type: str | None) -> str:
    """A Content-Type's media type, lower case, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def flag(value: str | None) -> bool:
    """A true/false query argument (``?force=false``); anything else is a 400."""
    if value is None:
        return False
    value = value.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in ("", "0", "false", "no"):
        return False
    raise InvalidInputError(f"Expected true or false, not {value!r}.")


def loose_flag(value: str | None) -> bool:
    """A lenient on/off query argument (``?raw=true``): on for 1, true or yes, off otherwise."""
    return (value or "").lower() in TRUE_WORDS


def json_body(body: bytes, *, required: bool = True) -> Any:
    """A JSON request body: 400 when it is missing (if required), not JSON, or nests too deep."""
    if not body.strip():
        if required:
            raise InvalidInputError("The request needs a JSON body.")
        return None
    return jsonparse.loads(body, what="The body")


def too_large(what: str, size: int, limit: int) -> PayloadTooLargeError:
    """The 413 for a body of ``size`` bytes over ``limit`` (``what``: "archive" or "request body")."""
    return PayloadTooLargeError(f"The {what} is {size:,} bytes; the limit is {limit:,} bytes.")


def version_body(options: object, *, required: bool, hint: str = "") -> int | None:
    """The version of a ``{"version": N}`` body; any other key is a 400 (no path or URL is ever read)."""
    example = 'The body must be a JSON object such as {"version": 2}'
    if not isinstance(options, dict) or (required and "version" not in options):
        raise InvalidInputError(f"{example}.{hint}")
    unknown = sorted(set(options) - {"version"})
    if unknown:
        raise InvalidInputError(f"{example}; unknown field(s) {', '.join(map(repr, unknown))}.{hint}")
    return parse_version(options.get("version"))


def default_hint(name: str) -> str:
    """What ``PUT /models/{m}/default`` adds to a refusal: how to follow the latest again."""
    return f" To follow the latest version again, send DELETE /models/{name}/default."


# --- the v2 repository extension ---------------------------------------------------------


def repository_index_options(body: bytes) -> bool:
    """``POST /v2/repository/index``'s body: whether only ready versions are listed."""
    options = json_body(body, required=False) or {}
    if not isinstance(options, dict):
        raise InvalidInputError("The body must be a JSON object, such as {\"ready\": true}.")
    only_ready = options.get("ready", False)
    if not isinstance(only_ready, bool):
        raise InvalidInputError("'ready' must be true or false.")
    return only_ready


def repository_load_parameters(body: bytes) -> dict[str, Any] | None:
    """``POST /v2/repository/models/{m}/load``'s body: its ``parameters``, if any."""
    options = json_body(body, required=False) or {}
    params = options.get("parameters") if isinstance(options, dict) else None
    if not isinstance(options, dict) or (params is not None and not isinstance(params, dict)):
        raise InvalidInputError("The body must be a JSON object.")
    return params


def repository_unload_options(body: bytes) -> None:
    """``POST /v2/repository/models/{m}/unload``'s body: an optional JSON object, otherwise unused."""
    options = json_body(body, required=False) or {}
    if not isinstance(options, dict):
        raise InvalidInputError("The body must be a JSON object.")


# --- images ------------------------------------------------------------------------------


def prediction_media(media: str, spec: InputSpec) -> bool:
    """What ``POST /predictions`` was sent, checked against what the version takes: True for images
    (``image/*`` bytes or a multipart upload), False for records or numbers (JSON, CSV, ``.npy``);
    415 for a body the model's input cannot take, saying what it takes."""
    images = media.startswith("image/") or media == MULTIPART
    fits = images if spec.kind is InputKind.IMAGE else media in JSON_TYPES | CSV_TYPES | NPY_TYPES
    if fits:
        return images
    takes = {
        InputKind.IMAGE: "images: send image bytes with Content-Type image/png (or another image/*), or a "
                         "multipart/form-data upload of image files",
        InputKind.TABLE: "a table of named features: send JSON records (application/json) or a CSV with a "
                         "header (text/csv)",
        InputKind.TENSOR: "a tensor: send JSON numbers (application/json) or a .npy (application/x-npy)",
        InputKind.SEVERAL: "several named inputs: send JSON records naming each (application/json), or a CSV",
    }[spec.kind]
    raise UnsupportedMediaError(f"Content-Type {media or '(none)'!r} is not accepted here; this model takes {takes}.")


def images_of(media: str, content_type: str, body: bytes, most: int) -> tuple[list[bytes], list[str | None] | None]:
    """The images of a prediction request and, for an upload, their file names."""
    if media.startswith("image/"):
        if not body:
            raise ImageError("The request body is empty; send the image bytes.")
        return [body], None
    uploads = read_files(content_type, [body], max_files=most)
    if not uploads:
        raise InvalidInputError("The multipart upload holds no files; attach one or more images.")
    for upload in uploads:
        if not upload.size:
            raise ImageError(f"The uploaded file {upload.filename!r} is empty.")
    return [u.data() for u in uploads], [u.filename or None for u in uploads]


# --- archives and samples ------------------------------------------------------------------


UPLOAD_QUERY = {"promote", "label", "replace"}


def check_upload(query_names: Iterable[str], media: str) -> None:
    """``POST /models``: no query parameters but auth's and the upload's options, and an archive or
    multipart body."""
    unknown = sorted(set(query_names) - AUTH_QUERY - UPLOAD_QUERY)
    if unknown:  # ?url=, ?path=, ?trusted=...: the archive is the body, and trust is the operator's
        raise InvalidInputError(
            f"POST /models takes no query parameters but promote, label and replace (got "
            f"{', '.join(map(repr, unknown))}); send the .yyar archive itself as the request body."
        )
    if media not in ARCHIVE_TYPES and media != MULTIPART:
        raise UnsupportedMediaError(
            f"Content-Type {media or '(none)'!r} is not accepted here; send the .yyar archive as "
            "application/octet-stream, or as a multipart/form-data file upload."
        )


def upload_options(query: Any) -> InstallOptions:
    """``POST /models``'s options: ``?promote=true|false`` (absent: the server's rule), ``?label=``,
    ``?replace=true``; 400 for a bad value."""
    promote = query.get("promote")
    return InstallOptions.parse(None if promote is None else flag(promote), query.get("label"),
                                flag(query.get("replace")))


def empty_upload() -> InvalidInputError:
    return InvalidInputError("The request body is empty; send the .yyar archive.")


def sample_reply_headers(sample: str) -> tuple[str, dict[str, str]]:
    """(media type, headers) of a bundled sample's bytes: inert in a browser, even an SVG."""
    media = mimetypes.guess_type(sample)[0] or "application/octet-stream"
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", PurePosixPath(sample).name)
    return media, {"X-Content-Type-Options": "nosniff",
                   "Content-Security-Policy": "default-src 'none'; sandbox",
                   "Content-Disposition": f'inline; filename="{filename}"'}
