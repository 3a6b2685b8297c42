"""Management REST API: list, describe, upload, reload, promote, unload and remove models.

Routes (each a thin adapter over ``DataPlane``):
  GET    /models                              one line per model
  POST   /models                              upload a .yyar (raw body or multipart): verified in
                                              a temporary file outside the store, moved in
                                              atomically, then loaded; 201 {name, version, message, model}
  POST   /models/_rescan                      re-read the store folder and reload what changed
  GET    /models/_status                      every model's status, the store's problems, state error
  GET    /models/{m}                          the model's status
  POST   /models/{m}/load                     load a version (``{"version": N}``, default: the default)
  POST   /models/{m}/reload                   re-read the store and reload this model
  PUT    /models/{m}/default                  ``{"version": N}``: make N the default (persisted pin)
  DELETE /models/{m}/default                  forget the pin: the latest version is the default again
  GET    /models/{m}/versions/{v}             what version v takes and gives, and its status
  DELETE /models/{m}/versions/{v}[?purge=true] unload v; with purge, delete its archive too

No endpoint takes a file path from the client: archives arrive as request bodies only,
and whether an archive may run code (``trusted``) is the operator's setting, never the
uploader's.
"""

from __future__ import annotations

import os
import tempfile

from tornado import web

from ..errors import InvalidInputError, UnsupportedMediaError
from ..multipart import file_chunks, read_files
from ..types import check_name, parse_version
from .base import BodyHandler, YyaiHandler
from .openapi import NAME, VERSION, errors, json_reply, op, optional_json, ref
from .routes import Route

AUTH_QUERY = {"token", "_xsrf"}  # query arguments the auth layer reads
ARCHIVE_TYPES = {"application/octet-stream", "application/zip", "application/x-yyar", "application/x-zip-compressed"}


def _flag(value: str | None) -> bool:
    if value is None:
        return False
    value = value.strip().lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("", "0", "false", "no"):
        return False
    raise InvalidInputError(f"Expected true or false, not {value!r}.")


def version_body(options, *, required: bool, hint: str = "") -> int | None:
    """The version of a ``{"version": N}`` body; any other key is a 400 (no path or URL is ever read)."""
    example = 'The body must be a JSON object such as {"version": 2}'
    if not isinstance(options, dict) or (required and "version" not in options):
        raise InvalidInputError(f"{example}.{hint}")
    unknown = sorted(set(options) - {"version"})
    if unknown:
        raise InvalidInputError(f"{example}; unknown field(s) {', '.join(map(repr, unknown))}.{hint}")
    return parse_version(options.get("version"))


class _Discard:
    """A sink for the file parts after the first: an upload carries one archive."""

    def write(self, data) -> None:
        pass

    def close(self) -> None:
        pass


def extract_archive_part(path: str, content_type: str, out_dir: str, *, what: str = "the .yyar archive",
                         suffix: str = ".yyar") -> str:
    """Copy the first file part of a spooled multipart body into its own temporary file."""
    if os.path.getsize(path) == 0:
        raise InvalidInputError(f"The upload is empty; attach {what}.")
    created: list[str] = []
    sinks: list = []

    def open_sink(_filename: str):
        if created:
            sinks.append(_Discard())
        else:
            fd, out_path = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=out_dir)
            created.append(out_path)
            sinks.append(os.fdopen(fd, "wb"))
        return sinks[-1]

    try:
        with open(path, "rb") as body:
            files = read_files(content_type, file_chunks(body), open_sink=open_sink, max_files=1)
    except BaseException:
        for out_path in created:
            os.unlink(out_path)
        raise
    finally:
        for sink in sinks:
            sink.close()
    if not files:
        raise InvalidInputError(f"The multipart upload holds no file; attach {what} as a file field.")
    return created[0]


class ModelsHandler(BodyHandler):
    """GET /models (list) and POST /models (upload an archive)."""

    spool = True
    metric_endpoint = "management"

    def body_limit(self) -> int:
        return self.config.max_archive_bytes if self.request.method == "POST" else self.config.max_body_bytes

    @web.authenticated
    async def get(self):
        summaries = await self.run(self.dataplane.list)
        self.reply([s.to_json() for s in summaries])

    @web.authenticated
    async def post(self):
        unknown = sorted(set(self.request.query_arguments) - AUTH_QUERY)
        if unknown:  # ?url=, ?path=, ?trusted=...: the archive is the body, and trust is the operator's
            raise InvalidInputError(
                f"POST /models takes no query parameters (got {', '.join(map(repr, unknown))}); "
                "send the .yyar archive itself as the request body."
            )
        media = self.content_type()
        if media not in ARCHIVE_TYPES and media != "multipart/form-data":
            raise UnsupportedMediaError(
                f"Content-Type {media or '(none)'!r} is not accepted here; send the .yyar archive as "
                "application/octet-stream, or as a multipart/form-data file upload."
            )
        spooled = self.spooled_body()
        archive_path = spooled
        try:
            if media == "multipart/form-data":
                archive_path = await self.run(extract_archive_part, spooled, self.request.headers["Content-Type"],
                                              self.state.tmp_dir, manage=True)
            elif os.path.getsize(spooled) == 0:
                raise InvalidInputError("The request body is empty; send the .yyar archive.")
            result = await self.run(self.dataplane.add_archive, archive_path, manage=True)
        finally:
            if archive_path != spooled:
                try:
                    os.unlink(archive_path)
                except FileNotFoundError:
                    pass
        self.label_model(result.name, result.version)
        self._model_confirmed = True
        self.reply(result.to_json(), status=201)


class RescanHandler(BodyHandler):
    """POST /models/_rescan: re-read the store folder and reload every model (unforced)."""

    metric_endpoint = "management"

    @web.authenticated
    async def post(self):
        results = await self.run(self.dataplane.reload, None, force=False, manage=True)
        self.reply({name: result.to_json() for name, result in results.items()})


class StatusHandler(YyaiHandler):
    """GET /models/_status: every model's status, plus the store's problems and state error."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self):
        self.reply((await self.run(self.dataplane.status)).to_json())


class ModelHandler(YyaiHandler):
    """GET /models/{m}: everything the registry knows about one model."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name):
        self.label_model(name)
        self.reply((await self.run(self.dataplane.status, name)).to_json())


class LoadHandler(BodyHandler):
    """POST /models/{m}/load with an optional ``{"version": N}``."""

    metric_endpoint = "management"

    @web.authenticated
    async def post(self, name):
        check_name(name)
        options = self.json_body(self.body, required=False)
        version = version_body({} if options is None else options, required=False)
        self.label_model(name, version)
        self.reply((await self.run(self.dataplane.load, name, version, manage=True)).to_json())


class ReloadHandler(BodyHandler):
    """POST /models/{m}/reload[?force=false]: re-read the store and reload this model."""

    metric_endpoint = "management"

    @web.authenticated
    async def post(self, name):
        check_name(name)
        self.label_model(name)
        force = _flag(self.get_query_argument("force", "true"))
        self.reply((await self.run(self.dataplane.reload, name, force=force, manage=True)).to_json())


class DefaultHandler(BodyHandler):
    """PUT /models/{m}/default with ``{"version": N}``: promote (or roll back) and pin.
    DELETE /models/{m}/default: forget the pin, so that the latest version is the default."""

    metric_endpoint = "management"

    @web.authenticated
    async def put(self, name):
        check_name(name)
        hint = f" To follow the latest version again, send DELETE /models/{name}/default."
        version = version_body(self.json_body(self.body), required=True, hint=hint)
        self.label_model(name, version)
        self.reply((await self.run(self.dataplane.set_default, name, version, manage=True)).to_json())

    @web.authenticated
    async def delete(self, name):
        self.label_model(name)
        self.reply((await self.run(self.dataplane.follow_latest, name, manage=True)).to_json())


class VersionHandler(YyaiHandler):
    """GET and DELETE /models/{m}/versions/{v}."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name, version):
        self.label_model(name, version)
        described = await self.run(self.dataplane.describe, name, version)
        self.reply(described.to_json())

    @web.authenticated
    async def delete(self, name, version):
        check_name(name), parse_version(version)
        self.label_model(name, version)
        purge = _flag(self.get_query_argument("purge", "false"))
        self.reply((await self.run(self.dataplane.remove, name, version, purge=purge, manage=True)).to_json())


_STATUS = json_reply(ref("ModelStatus"), "The model's status.")
_VERSION_BODY = {"type": "object", "properties": {"version": {"type": "integer", "minimum": 1}},
                 "additionalProperties": False}
_STATUS_ALL = {
    "type": "object",
    "required": ["models", "problems"],
    "properties": {
        "models": {"type": "object", "additionalProperties": ref("ModelStatus")},
        "problems": {"type": "array", "items": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "kind": {"type": "string"}, "error": {"type": "string"}},
        }},
        "state_error": {"type": "string", "nullable": True},
    },
}
_UPLOAD_BODY = {
    "required": True,
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"archive": {"type": "string", "format": "binary"}}}
        },
    },
}

ROUTES = [
    Route("/models", ModelsHandler, {
        "get": op("List models", {"200": json_reply({"type": "array", "items": ref("ModelSummary")},
                                                     "One line per model."), **errors()}, tags=["management"]),
        "post": op("Upload an archive (.yyar): verify, store atomically, load",
                   {"201": json_reply(ref("UploadReply"), "Stored and loaded."),
                    **errors(400, 409, 413, 415, 503, 507)}, body=_UPLOAD_BODY, tags=["management"]),
    }, trailing_slash=True),
    Route("/models/_rescan", RescanHandler, {"post": op(
        "Re-read the store folder and reload what changed",
        {"200": json_reply({"type": "object", "additionalProperties": {"type": "object"}},
                           "Per model: status or error."), **errors()}, tags=["management"],
    )}),
    Route("/models/_status", StatusHandler, {"get": op(
        "Every model's status, the store's problems and its state-file error",
        {"200": json_reply(_STATUS_ALL, "The registry's status."), **errors()}, tags=["management"],
    )}),
    Route("/models/{name}", ModelHandler, {"get": op(
        "A model's status", {"200": _STATUS, **errors(400, 404)}, params=[NAME], tags=["management"])}),
    Route("/models/{name}/load", LoadHandler, {"post": op(
        "Load a version (the default when none is given)", {"200": _STATUS, **errors(400, 404, 503)},
        params=[NAME], body=optional_json(_VERSION_BODY), tags=["management"],
    )}),
    Route("/models/{name}/reload", ReloadHandler, {"post": op(
        "Re-read the store and reload the model; the old runtime serves until the new one is ready",
        {"200": _STATUS, **errors(400, 404, 503)},
        params=[NAME, {"name": "force", "in": "query", "required": False,
                       "schema": {"type": "boolean", "default": True}}],
        tags=["management"],
    )}),
    Route("/models/{name}/default", DefaultHandler, {
        "put": op("Make a version the default (persisted pin)", {"200": _STATUS, **errors(400, 404, 503)},
                  params=[NAME], body={"required": True,
                                       "content": {"application/json": {"schema": ref("VersionRequest")}}},
                  tags=["management"]),
        "delete": op("Forget the pin: the latest version becomes the default again (once it serves)",
                     {"200": _STATUS, **errors(400, 404, 503, 507)}, params=[NAME], tags=["management"]),
    }),
    Route("/models/{name}/versions/{version}", VersionHandler, {
        "get": op("What a version takes and gives, and its status",
                  {"200": json_reply(ref("VersionDescription"), "Description."), **errors(400, 404)},
                  params=[NAME, VERSION], tags=["management"]),
        "delete": op("Unload a version; with purge=true also delete its archive",
                     {"200": _STATUS, **errors(400, 404, 507)},
                     params=[NAME, VERSION, {"name": "purge", "in": "query", "required": False,
                                             "schema": {"type": "boolean", "default": False}}],
                     tags=["management"]),
    }),
]
