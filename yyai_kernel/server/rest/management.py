"""Management REST API: list, describe, upload, reload, promote, unload and remove models.

Routes (each a thin adapter over ``DataPlane``):
  GET    /models                              one line per model
  POST   /models                              upload a .yyar (raw body or multipart): verified in
                                              a temporary file outside the store, moved in
                                              atomically, then loaded; 201 {name, version, message, model}
  POST   /models/_rescan                      re-read the store folder and reload what changed
  GET    /models/_status                      every model's status, the store's problems, state error
  GET    /models/{m}                          the model's status, labels, traffic policy and rollout figures
  POST   /models/{m}/load                     load a version (``{"version": N}``, default: the default)
  POST   /models/{m}/reload                   re-read the store and reload this model
  PUT    /models/{m}/default                  ``{"version": N}``: make N the default (persisted pin)
  DELETE /models/{m}/default                  forget the pin: the latest version is the default again
  GET    /models/{m}/versions/{v}             what version v takes and gives, and its status
  DELETE /models/{m}/versions/{v}[?purge=true] unload v; with purge, delete its archive too (409 while
                                              a label or the traffic policy names v)

Labels and traffic policies have their own module, ``rollout.py``.

No endpoint takes a file path from the client: archives arrive as request bodies only,
and whether an archive may run code (``trusted``) is the operator's setting, never the
uploader's.
"""

from __future__ import annotations

import os

from tornado import web

from yyai_kernel.plane.operations import Operation, OpKind
from yyai_kernel.protocol import restparse
from yyai_kernel.protocol.multipart import extract_archive_part
from yyai_kernel.protocol.restparse import flag, version_body
from yyai_kernel.server.rest.base import BodyHandler, YyaiHandler
from yyai_kernel.server.rest.openapi import (
    NAME,
    VERSION,
    errors,
    json_reply,
    op,
    optional_json,
    ref,
)
from yyai_kernel.server.rest.routes import Route
from yyai_kernel.types import check_name, parse_version_ref


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
        media = self.content_type()
        restparse.check_upload(self.request.query_arguments, media)
        spooled = self.spooled_body()
        archive_path = spooled
        try:
            if media == "multipart/form-data":
                archive_path = await self.run(extract_archive_part, spooled, self.request.headers["Content-Type"],
                                              self.state.tmp_dir, manage=True)
            elif os.path.getsize(spooled) == 0:
                raise restparse.empty_upload()
            managed = await self.run(self.dataplane.install, archive_path, manage=True)
        finally:
            if archive_path != spooled:
                try:
                    os.unlink(archive_path)
                except FileNotFoundError:
                    pass
        self.label_model(managed.result.name, managed.result.version)
        self._model_confirmed = True
        self.reply_managed(managed, status=201)


class RescanHandler(BodyHandler):
    """POST /models/_rescan: re-read the store folder and reload every model (unforced)."""

    metric_endpoint = "management"

    @web.authenticated
    async def post(self):
        self.reply_managed(await self.manage(Operation(OpKind.RELOAD, force=False)))


class StatusHandler(YyaiHandler):
    """GET /models/_status: every model's status, the store's problems and state error, and
    every worker process (its state, memory and what it serves)."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self):
        body = (await self.run(self.dataplane.status)).to_json()
        body["workers"] = [w.to_json() for w in await self.run(self.dataplane.workers)]
        self.reply(body)


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
        self.reply_managed(await self.manage(Operation(OpKind.LOAD, name, version)))


class ReloadHandler(BodyHandler):
    """POST /models/{m}/reload[?force=false]: re-read the store and reload this model."""

    metric_endpoint = "management"

    @web.authenticated
    async def post(self, name):
        check_name(name)
        self.label_model(name)
        force = flag(self.get_query_argument("force", "true"))
        self.reply_managed(await self.manage(Operation(OpKind.RELOAD, name, force=force)))


class DefaultHandler(BodyHandler):
    """PUT /models/{m}/default with ``{"version": N}``: promote (or roll back) and pin.
    DELETE /models/{m}/default: forget the pin, so that the latest version is the default."""

    metric_endpoint = "management"

    @web.authenticated
    async def put(self, name):
        check_name(name)
        version = version_body(self.json_body(self.body), required=True, hint=restparse.default_hint(name))
        self.label_model(name, version)
        self.reply_managed(await self.manage(Operation(OpKind.SET_DEFAULT, name, version)))

    @web.authenticated
    async def delete(self, name):
        self.label_model(name)
        self.reply_managed(await self.manage(Operation(OpKind.FOLLOW_LATEST, name)))


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
        check_name(name), parse_version_ref(version)
        self.label_model(name, version)
        purge = flag(self.get_query_argument("purge", "false"))
        self.reply_managed(await self.manage(Operation(OpKind.REMOVE, name, version, purge=purge)))


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
        "workers": {"type": "array", "items": {
            "type": "object",
            "required": ["worker", "state"],
            "properties": {
                "worker": {"type": "integer", "description": "The worker's number (0 serves the dashboard)."},
                "pid": {"type": "integer", "nullable": True},
                "state": {"type": "string", "enum": ["serving", "starting", "restarting"]},
                "rss_bytes": {"type": "integer", "nullable": True, "description": "Resident memory."},
                "restarts": {"type": "integer"},
                "models": {"type": "object", "description": "Per model: its default and loaded versions."},
            },
        }},
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
                     {"200": _STATUS, **errors(400, 404, 409, 507)},
                     params=[NAME, VERSION, {"name": "purge", "in": "query", "required": False,
                                             "schema": {"type": "boolean", "default": False}}],
                     tags=["management"]),
    }),
]
