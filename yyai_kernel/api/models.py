"""Management REST API: list, describe, upload, reload, promote, unload and remove models.

Endpoints (each a thin adapter over the data plane or the model repository):
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

Labels and traffic policies have their own module, ``rollout.py``. Uploads and every change
run on the manage pool, so they never take the threads or the event loop predictions need.

No endpoint takes a file path from the client: archives arrive as request bodies only,
and whether an archive may run code (``trusted``) is the operator's setting, never the
uploader's.
"""

from __future__ import annotations

import os

from yyai_kernel.api.call import Call, Reply, reply, reply_managed
from yyai_kernel.api.context import Api
from yyai_kernel.api.endpoint import Body, Endpoint
from yyai_kernel.api.refs import path_name, path_ref
from yyai_kernel.api.spec import (
    NAME,
    VERSION,
    errors,
    json_reply,
    op,
    optional_json,
    ref,
)
from yyai_kernel.plane.operations import Operation, OpKind
from yyai_kernel.protocol import restparse
from yyai_kernel.protocol.multipart import extract_archive_part
from yyai_kernel.protocol.restparse import flag, json_body, version_body
from yyai_kernel.types import LABEL_PATTERN


async def manage(api: Api, call: Call, op: Operation, status: int = 200) -> Reply:
    """Lead a management operation on the manage pool; the reply says which workers apply it."""
    return reply_managed(await api.model_call(call, api.run(api.repository.manage, op, manage=True)), status)


async def list_models(api: Api, call: Call) -> Reply:
    """GET /models: one line per model."""
    return reply([s.to_json() for s in await api.run(api.data.list)])


async def upload(api: Api, call: Call) -> Reply:
    """POST /models[?promote=true|false][&label=L][&replace=true]: the archive as the body (or a
    multipart file), spooled outside the store.

    The spool is verified, copied into the store and loaded on the manage pool: nothing
    of it runs on the event loop, and no lock that requests take is held meanwhile. 201
    with what became the default; 200 when the same content was there already.
    """
    media = call.media_type
    restparse.check_upload(call.query.names(), media)
    options = restparse.upload_options(call.query)
    spooled = call.spooled
    archive = spooled
    try:
        if media == restparse.MULTIPART:
            archive = await api.run(extract_archive_part, spooled, call.content_type, call.tmp_dir, manage=True)
        elif os.path.getsize(spooled) == 0:  # noqa: ASYNC240 - a stat of the local spool
            raise restparse.empty_upload()
        managed = await api.run(api.repository.install, archive, options, manage=True)
    finally:
        if archive != spooled:
            try:
                os.unlink(archive)
            except FileNotFoundError:
                pass
    call.label(managed.result.name, managed.result.version)
    call.confirm()
    return reply_managed(managed, status=201 if managed.result.changed else 200)


async def rescan(api: Api, call: Call) -> Reply:
    """POST /models/_rescan: re-read the store folder and reload every model (unforced)."""
    return await manage(api, call, Operation(OpKind.RELOAD, force=False))


async def status_all(api: Api, call: Call) -> Reply:
    """GET /models/_status: every model's status, the store's problems and state error, what
    the registry keeps loaded against its budget (``residency``), every worker process (its
    state and memory) and, under ``--workers N``, the model host (its memory and what it holds)."""
    body = (await api.run(api.data.status)).to_json()
    processes = await api.run(api.repository.workers)
    body["workers"] = [w.to_json() for w in processes if w.role != "host"]
    body["hosts"] = [w.to_json() for w in processes if w.role == "host"]
    return reply(body)


async def model_status(api: Api, call: Call) -> Reply:
    """GET /models/{m}: everything the registry knows about one model."""
    name = path_name(call)
    return reply((await api.model_call(call, api.run(api.data.status, name))).to_json())


async def load(api: Api, call: Call) -> Reply:
    """POST /models/{m}/load with an optional ``{"version": N}``."""
    name = path_name(call)
    options = json_body(call.body, required=False)
    version = version_body({} if options is None else options, required=False)
    call.label(name, version)
    return await manage(api, call, Operation(OpKind.LOAD, name, version))


async def reload(api: Api, call: Call) -> Reply:
    """POST /models/{m}/reload[?force=false]: re-read the store and reload this model."""
    name = path_name(call)
    force = flag(call.query.get("force", "true"))
    return await manage(api, call, Operation(OpKind.RELOAD, name, force=force))


async def set_default(api: Api, call: Call) -> Reply:
    """PUT /models/{m}/default with ``{"version": N}``: promote (or roll back) and pin."""
    name = path_name(call)
    version = version_body(json_body(call.body), required=True, hint=restparse.default_hint(name))
    call.label(name, version)
    return await manage(api, call, Operation(OpKind.SET_DEFAULT, name, version))


async def follow_latest(api: Api, call: Call) -> Reply:
    """DELETE /models/{m}/default: forget the pin, so that the latest version is the default."""
    return await manage(api, call, Operation(OpKind.FOLLOW_LATEST, path_name(call)))


async def describe(api: Api, call: Call) -> Reply:
    """GET /models/{m}/versions/{v}: what a version takes and gives, and its status."""
    target = api.data.resolve(path_ref(call))
    call.confirm()
    return reply((await api.run(api.data.describe, target)).to_json())


async def remove(api: Api, call: Call) -> Reply:
    """DELETE /models/{m}/versions/{v}[?purge=true]: unload; with purge, delete the archive."""
    ref_ = path_ref(call)
    purge = flag(call.query.get("purge", "false"))
    version = ref_.version if ref_.label is None else ref_.label
    return await manage(api, call, Operation(OpKind.REMOVE, ref_.name, version, purge=purge))


_STATUS = json_reply(ref("ModelStatus"), "The model's status.")
_VERSION_BODY = {"type": "object", "properties": {"version": {"type": "integer", "minimum": 1}},
                 "additionalProperties": False}
_PROCESS = {
    "type": "object",
    "required": ["worker", "state"],
    "properties": {
        "worker": {"type": "integer", "description": "The worker's number (0 serves the dashboard), or the host's."},
        "role": {"type": "string", "enum": ["worker", "host"]},
        "pid": {"type": "integer", "nullable": True},
        "state": {"type": "string", "enum": ["serving", "starting", "restarting"]},
        "rss_bytes": {"type": "integer", "nullable": True, "description": "Resident memory."},
        "restarts": {"type": "integer"},
        "models": {"type": "object", "description": "Per model: its default and loaded versions, where the models "
                                                    "live (the single process, or the host)."},
    },
}
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
        "residency": {"type": "object", "nullable": True, "description": (
            "What the registry keeps loaded against its budget (--memory-budget, --max-loaded), the process's "
            "memory, and the loads, evictions and cold starts since it started."), "properties": {
            "budget_bytes": {"type": "integer", "nullable": True},
            "max_loaded": {"type": "integer", "nullable": True},
            "loaded": {"type": "integer"},
            "resident_bytes": {"type": "integer", "description": "The measured cost of the loaded versions."},
            "process_rss_bytes": {"type": "integer"},
            "loads": {"type": "integer"}, "load_failures": {"type": "integer"}, "evictions": {"type": "integer"},
            "cold_starts": {"type": "integer"}, "cold_start_wait_s": {"type": "number"},
            "cold_start_timeouts": {"type": "integer"},
        }},
        "workers": {"type": "array", "items": _PROCESS},
        "hosts": {"type": "array", "items": _PROCESS,
                  "description": "Under --workers N: the model host, which holds the models (else empty)."},
    },
}
_UPLOAD_PARAMS = [
    {"name": "promote", "in": "query", "required": False, "schema": {"type": "boolean"},
     "description": "true: the new version becomes the default (pinned); false: it is staged. Absent: staged when "
                    "the model is pinned, labelled or under a traffic policy, else the server's rule."},
    {"name": "label", "in": "query", "required": False, "schema": {"type": "string", "pattern": LABEL_PATTERN},
     "description": "A version label to point at the new version."},
    {"name": "replace", "in": "query", "required": False, "schema": {"type": "boolean", "default": False},
     "description": "Replace different content under the same name and version (refused while a label or the "
                    "traffic policy names it). The same content again is never an error: nothing changes."},
]
_UPLOAD_BODY = {
    "required": True,
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"archive": {"type": "string", "format": "binary"}}}
        },
    },
}

ENDPOINTS = [
    Endpoint("GET", "/models", list_models, op(
        "List models", {"200": json_reply({"type": "array", "items": ref("ModelSummary")}, "One line per model."),
                        **errors()}, tags=["management"]),
        trailing_slash=True),
    Endpoint("POST", "/models", upload, op(
        "Upload an archive (.yyar): verify, store atomically, load",
        {"201": json_reply(ref("UploadReply"), "Stored and loaded."),
         "200": json_reply(ref("UploadReply"), "The same content was there already: nothing changed."),
         **errors(400, 409, 413, 415, 503, 507)},
        params=_UPLOAD_PARAMS, body=_UPLOAD_BODY, tags=["management"],
        description="A new version of a model that is pinned, labelled or under a traffic policy is staged: it "
        "serves by its number (and label) while the default stays, pinned, until it is promoted (PUT "
        "/models/{name}/default). Other models follow the latest unless the server runs with --no-auto-promote. "
        "promote=true makes the upload the default at once; promote=false stages it."),
        body=Body.SPOOL, trailing_slash=True),
    Endpoint("POST", "/models/_rescan", rescan, op(
        "Re-read the store folder and reload what changed",
        {"200": json_reply({"type": "object", "additionalProperties": {"type": "object"}},
                           "Per model: status or error."), **errors()}, tags=["management"],
    )),
    Endpoint("GET", "/models/_status", status_all, op(
        "Every model's status, the store's problems and its state-file error",
        {"200": json_reply(_STATUS_ALL, "The registry's status."), **errors()}, tags=["management"],
    )),
    Endpoint("GET", "/models/{name}", model_status, op(
        "A model's status", {"200": _STATUS, **errors(400, 404)}, params=[NAME], tags=["management"])),
    Endpoint("POST", "/models/{name}/load", load, op(
        "Load a version (the default when none is given)", {"200": _STATUS, **errors(400, 404, 503)},
        params=[NAME], body=optional_json(_VERSION_BODY), tags=["management"],
    ), body=Body.MEMORY),
    Endpoint("POST", "/models/{name}/reload", reload, op(
        "Re-read the store and reload the model; the old runtime serves until the new one is ready",
        {"200": _STATUS, **errors(400, 404, 503)},
        params=[NAME, {"name": "force", "in": "query", "required": False,
                       "schema": {"type": "boolean", "default": True}}],
        tags=["management"],
    ), body=Body.MEMORY),
    Endpoint("PUT", "/models/{name}/default", set_default, op(
        "Make a version the default (persisted pin)", {"200": _STATUS, **errors(400, 404, 503)},
        params=[NAME], body={"required": True, "content": {"application/json": {"schema": ref("VersionRequest")}}},
        tags=["management"]), body=Body.MEMORY),
    Endpoint("DELETE", "/models/{name}/default", follow_latest, op(
        "Forget the pin: the latest version becomes the default again (once it serves)",
        {"200": _STATUS, **errors(400, 404, 503, 507)}, params=[NAME], tags=["management"]), body=Body.MEMORY),
    Endpoint("GET", "/models/{name}/versions/{version}", describe, op(
        "What a version takes and gives, and its status",
        {"200": json_reply(ref("VersionDescription"), "Description."), **errors(400, 404)},
        params=[NAME, VERSION], tags=["management"])),
    Endpoint("DELETE", "/models/{name}/versions/{version}", remove, op(
        "Unload a version; with purge=true also delete its archive", {"200": _STATUS, **errors(400, 404, 409, 507)},
        params=[NAME, VERSION, {"name": "purge", "in": "query", "required": False,
                                "schema": {"type": "boolean", "default": False}}],
        tags=["management"]), body=Body.MEMORY),
]
