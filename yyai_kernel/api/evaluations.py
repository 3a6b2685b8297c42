"""Evaluation over REST: start a job on a labelled set, follow it, fetch its results.

Endpoints (thin adapters over ``Evaluations`` and the data plane's bundled sets):

  POST /models/{m}/evaluate?versions=1,2            the labelled set as a zip: the raw body
                                                    (application/zip or octet-stream) or a
                                                    multipart file, up to the archive limit;
       [&target=COLUMN]                             or a table set: a CSV of features and the
                                                    truth's column (text/csv; default: label
                                                    or target)
  POST /models/{m}/evaluate?versions=1,2&set=S      a set the model's archive bundles
       [&set_version=v]                             (role eval; default: the default version's)
       -> 202 {id, state, done, total, ...}, Location: /evaluations/{id}
  GET  /evaluations/{id}                            the job: state, done of total, and once done
                                                    the results (scores, pairs, items, bad items)
  GET  /evaluations/{id}/predictions.csv            one row per item, each version's answer
  GET  /evaluations/{id}/residuals.png              residuals against predictions (regression)
  GET  /models/{m}/evalsets[?version=v]             the labelled sets a version bundles
  GET  /models/{m}/evalsets/{set}[?version=v]       one of them, as a zip

An uploaded set is spooled to the server's temporary folder, handed to the evaluations
(which keep it in their jobs' folder) and deleted when the job ends. No route reads a path
the client names: a bundled set is found by its manifest name inside the archive.

Under ``--workers N`` the jobs' folder must be shared by the workers (see ``evaluation/jobs.py``): a job
runs in the worker that accepted it, and any worker answers its GETs from that folder.
Not served on Ray: the jobs' folder is one server's, which Ray replicas do not share.
"""

from __future__ import annotations

import os
import re
from typing import Any

from yyai_kernel.api.call import Call, Reply, reply
from yyai_kernel.api.context import Api
from yyai_kernel.api.endpoint import Body, Endpoint
from yyai_kernel.api.refs import path_name
from yyai_kernel.api.samples import bundled_bytes, bundled_list
from yyai_kernel.api.spec import NAME, VERSION_QUERY, errors, json_reply, op
from yyai_kernel.errors import InvalidInputError, UnsupportedMediaError
from yyai_kernel.protocol.multipart import extract_archive_part
from yyai_kernel.protocol.records import CSV_TYPES
from yyai_kernel.protocol.restparse import AUTH_QUERY, MULTIPART
from yyai_kernel.types import FileRole, ModelRef, OutputKind, parse_version_ref

ZIP_TYPES = {"application/zip", "application/octet-stream", "application/x-zip-compressed"}
EVALUATE_QUERY = {"versions", "set", "set_version", "target"}
JOBS_PATH = "evaluations"


def parse_versions(values: list[str]) -> list[int | str]:
    """``?versions=1,2`` (or repeated), each a checked version or label; [] for the default."""
    return [parse_version_ref(part.strip()) for value in values for part in value.split(",") if part.strip()]


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{re.sub(r"[^A-Za-z0-9._-]", "_", filename)}"'}


async def evaluate(api: Api, call: Call) -> Reply:
    """POST /models/{m}/evaluate: start an evaluation job (202 and its Location)."""
    name = path_name(call)
    unknown = sorted(call.query.names() - AUTH_QUERY - EVALUATE_QUERY)
    if unknown:
        raise InvalidInputError(f"Unknown query parameter(s) {', '.join(map(repr, unknown))}; this endpoint "
                                "takes versions, set, set_version and target.")
    versions = parse_versions(call.query.get_all("versions"))
    bundled = call.query.get("set")
    set_version = call.query.get("set_version")
    set_ref = None if set_version is None else ModelRef.parse(name, set_version)
    spooled = call.spooled
    data = await _upload(api, call, spooled, bundled)
    try:
        job = await api.model_call(call, api.run(api.evaluations.start, name, versions, data, bundled=bundled,
                                                 set_ref=set_ref, handover=True, target=call.query.get("target"),
                                                 csv=_csv_upload(call.media_type), manage=True))
    finally:
        if data not in (None, spooled) and os.path.exists(data):  # noqa: ASYNC240 - a stat of the local spool
            os.unlink(data)  # a multipart part the evaluations did not take
    location = call.base_url.rstrip("/") + f"/{JOBS_PATH}/{job.id}"
    return reply(job.to_json(), status=202, headers={"Location": location})


def _csv_upload(media: str) -> bool | None:
    """Whether the upload is a table set's CSV, as its Content-Type says (a multipart part: by its bytes)."""
    return None if media == MULTIPART else media in CSV_TYPES


async def _upload(api: Api, call: Call, spooled: str, bundled: str | None) -> str | None:
    """The uploaded zip's file (the spool, or the multipart's file part); None for a bundled set."""
    size = os.path.getsize(spooled)  # noqa: ASYNC240 - a stat of the local spool
    if bundled is not None:
        if size:
            raise InvalidInputError("Send a labelled set or name a bundled one with ?set=..., not both.")
        return None
    media = call.media_type
    if media == MULTIPART:
        part: str = await api.run(extract_archive_part, spooled, call.content_type, call.tmp_dir,
                                  what="the labelled set (a .zip)", suffix=".zip", manage=True)
        return part
    if media not in ZIP_TYPES | CSV_TYPES:
        raise UnsupportedMediaError(
            f"Content-Type {media or '(none)'!r} is not accepted here; send the labelled set as "
            "application/zip (a table set: text/csv), or as a multipart/form-data file upload, or name a bundled "
            "set with ?set=...")
    if size == 0:
        raise InvalidInputError("The request body is empty; send the labelled set as a zip, or name a set "
                                "the model's archive bundles with ?set=...")
    return spooled


async def job(api: Api, call: Call) -> Reply:
    """GET /evaluations/{id}: the job's progress and, once done, its results."""
    return reply((await api.run(api.evaluations.get, call.path["job"])).to_json())


async def predictions_csv(api: Api, call: Call) -> Reply:
    """GET /evaluations/{id}/predictions.csv: every item with each version's answer."""
    finished = await api.run(api.evaluations.get, call.path["job"])
    text = await api.run(lambda: finished.evaluation().to_csv())
    return Reply(text.encode(), media_type="text/csv; charset=utf-8",
                 headers=_attachment(f"{finished.model}-evaluation-{finished.id}.csv"))


async def residuals(api: Api, call: Call) -> Reply:
    """GET /evaluations/{id}/residuals.png: the residual plot of a regression evaluation."""
    finished = await api.run(api.evaluations.get, call.path["job"])
    result = finished.evaluation()
    if result.kind is OutputKind.CLASSIFICATION:
        raise InvalidInputError("A residual plot is drawn for regression evaluations; this one is a "
                                "classification (see its confusion matrices).")
    return Reply(await api.run(result.residual_plot), media_type="image/png")


async def eval_sets(api: Api, call: Call) -> Reply:
    """GET /models/{m}/evalsets[?version=v]: the labelled sets that go with a version."""
    return await bundled_list(api, call, FileRole.EVAL)


async def eval_set(api: Api, call: Call) -> Reply:
    """GET /models/{m}/evalsets/{set}[?version=v]: one bundled labelled set (a zip, or a table set's CSV)."""
    name = call.path["set"]
    data = await bundled_bytes(api, call, FileRole.EVAL, name)
    media = "text/csv" if name.lower().endswith(".csv") else "application/zip"
    return Reply(data, media_type=media, headers=_attachment(name.rsplit("/", 1)[-1]))


# --- OpenAPI ----------------------------------------------------------------------------

JOB = {"name": "job", "in": "path", "required": True, "description": "The job id from POST .../evaluate.",
       "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"}}
_SCORES = {"type": "object", "description": "Classification: n, accuracy, top_k, macro_f1, labels, per_class, "
           "confusion (rows: true label, columns: predicted). Regression: n, mae, rmse, r2."}
_RESULT = {
    "type": "object", "nullable": True,
    "description": "The results, once the job is done.",
    "required": ["model", "kind", "dataset", "versions", "pairs", "items", "bad_items"],
    "properties": {
        "model": {"type": "string"}, "kind": {"type": "string", "enum": [k.value for k in OutputKind]},
        "dataset": {"type": "string"}, "n_items": {"type": "integer"},
        "tolerance": {"type": "number", "nullable": True},
        "versions": {"type": "array", "items": {"type": "object", "properties": {
            "version": {"type": "integer"}, "output": {"type": "string"}, "scores": _SCORES,
            "members": {"type": "object", "additionalProperties": _SCORES}}}},
        "pairs": {"type": "array",
                  "items": {"type": "object", "description": "Items where versions a and b disagree."}},
        "items": {"type": "array", "items": {"type": "object", "properties": {
            "key": {"type": "string"}, "truth": {}, "predicted": {"type": "array", "items": {}},
            "probability": {"type": "array", "items": {"type": "number", "nullable": True}}}}},
        "bad_items": {"type": "array", "items": {"type": "object", "properties": {
            "key": {"type": "string"}, "reason": {"type": "string"}}}},
    },
}
_JOB = {
    "type": "object",
    "required": ["id", "model", "versions", "state", "done", "total"],
    "properties": {
        "id": {"type": "string"}, "model": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "integer"}}, "dataset": {"type": "string"},
        "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
        "done": {"type": "integer", "description": "Set items handled so far."},
        "total": {"type": "integer"}, "created": {"type": "number"}, "finished": {"type": "number", "nullable": True},
        "error": {"type": "object", "nullable": True, "description": "Why it failed: error, type, status."},
        "result": _RESULT,
    },
}
_ZIP_BODY = {
    "required": False,
    "description": "The labelled set as a zip (one folder per class, or labels.csv with file,label or "
                   "file,target); for a table model, a CSV of its features and the truth's column (?target=); "
                   "empty when ?set= names a bundled set.",
    "content": {
        "application/zip": {"schema": {"type": "string", "format": "binary"}},
        "text/csv": {"schema": {"type": "string"}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "set": {"type": "string", "format": "binary"}}}},
    },
}
_EVALUATE_PARAMS = [
    NAME,
    {"name": "versions", "in": "query", "required": False, "schema": {"type": "string", "example": "1,2"},
     "description": "Comma-separated versions to compare (default: the default version)."},
    {"name": "set", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "A labelled set the archive bundles (GET /models/{name}/evalsets), instead of an upload."},
    {"name": "set_version", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1},
     "description": "Whose archive bundles that set (default: the default version)."},
    {"name": "target", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "A table set's column that holds the truth (default: label, else target)."},
]
_CONFLICT = {"409": json_reply({"$ref": "#/components/schemas/Error"}, "The job has not finished.")}
_TAGS = ["evaluation"]

_NOT_ON_RAY: dict[str, Any] = {"on_ray": False}

ENDPOINTS = [
    Endpoint("POST", "/models/{name}/evaluate", evaluate, op(
        "Evaluate versions on a labelled set (a job)",
        {"202": {**json_reply(_JOB, "Accepted; follow the job at its Location."),
                 "headers": {"Location": {"schema": {"type": "string"}, "description": "The job's URL."}}},
         **errors(400, 404, 413, 415, 503)},
        params=_EVALUATE_PARAMS, body=_ZIP_BODY, tags=_TAGS,
        description="Runs in the background; GET the Location for progress and, once done, the results."),
        body=Body.SPOOL, **_NOT_ON_RAY),
    Endpoint("GET", "/models/{name}/evalsets", eval_sets, op(
        "The labelled sets a version bundles",
        {"200": json_reply({"type": "object", "required": ["name", "version", "sets"], "properties": {
            "name": {"type": "string"}, "version": {"type": "integer"},
            "sets": {"type": "array", "items": {"type": "string"}}}}, "Set names, as the manifest lists them."),
         **errors(400, 404)}, params=[NAME, VERSION_QUERY], tags=_TAGS), trailing_slash=True, **_NOT_ON_RAY),
    Endpoint("GET", "/models/{name}/evalsets/{set}", eval_set, op(
        "One bundled labelled set, as a zip (a table set: a CSV)",
        {"200": {"description": "The zip, or the CSV.", "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "text/csv": {"schema": {"type": "string"}}}}, **errors(400, 404)},
        params=[NAME, {"name": "set", "in": "path", "required": True, "schema": {"type": "string"},
                       "description": "A set name from the list (URL-encode its '/')."}, VERSION_QUERY],
        tags=_TAGS), **_NOT_ON_RAY),
    Endpoint("GET", "/evaluations/{job}", job, op(
        "An evaluation job: progress, and the results once done",
        {"200": json_reply(_JOB, "The job."), **errors(404)}, params=[JOB], tags=_TAGS), **_NOT_ON_RAY),
    Endpoint("GET", "/evaluations/{job}/predictions.csv", predictions_csv, op(
        "Per-item predictions of a finished evaluation, as CSV",
        {"200": {"description": "file, truth, each version's answer and probability (or residual), problem.",
                 "content": {"text/csv": {"schema": {"type": "string"}}}}, **errors(400, 404), **_CONFLICT},
        params=[JOB], tags=_TAGS), **_NOT_ON_RAY),
    Endpoint("GET", "/evaluations/{job}/residuals.png", residuals, op(
        "The residual plot of a finished regression evaluation",
        {"200": {"description": "PNG.", "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
         **errors(400, 404), **_CONFLICT}, params=[JOB], tags=_TAGS), **_NOT_ON_RAY),
]
