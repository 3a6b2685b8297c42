"""Evaluation over REST: start a job on a labelled set, follow it, fetch its results.

Routes (thin adapters over ``DataPlane.start_evaluation`` / ``evaluation`` / ``eval_sets``):

  POST /models/{m}/evaluate?versions=1,2            the labelled set as a zip: the raw body
                                                    (application/zip or octet-stream) or a
                                                    multipart file, up to the archive limit
  POST /models/{m}/evaluate?versions=1,2&set=S      a set the model's archive bundles
       [&set_version=v]                             (role eval; default: the default version's)
       -> 202 {id, state, done, total, ...}, Location: /evaluations/{id}
  GET  /evaluations/{id}                            the job: state, done of total, and once done
                                                    the results (scores, pairs, items, bad items)
  GET  /evaluations/{id}/predictions.csv            one row per item, each version's answer
  GET  /evaluations/{id}/residuals.png              residuals against predictions (regression)
  GET  /models/{m}/evalsets[?version=v]             the labelled sets a version bundles
  GET  /models/{m}/evalsets/{set}[?version=v]       one of them, as a zip

An uploaded set is spooled to the server's temporary folder, handed to the data plane
(which keeps it in its jobs' folder) and deleted when the job ends. No route reads a path
the client names: a bundled set is found by its manifest name inside the archive.

Under ``--workers N`` the jobs' folder must be shared by the workers (see evaljobs): a job
runs in the worker that accepted it, and any worker answers its GETs from that folder.
"""

from __future__ import annotations

import os
import re

from jupyter_server.utils import url_path_join
from tornado import web

from yyai_kernel.errors import InvalidInputError, UnsupportedMediaError
from yyai_kernel.protocol.multipart import extract_archive_part
from yyai_kernel.protocol.restparse import AUTH_QUERY
from yyai_kernel.server.rest.base import BodyHandler, YyaiHandler
from yyai_kernel.server.rest.openapi import NAME, VERSION_QUERY, errors, json_reply, op
from yyai_kernel.server.rest.routes import Route
from yyai_kernel.types import FileRole, OutputKind, check_name

ZIP_TYPES = {"application/zip", "application/octet-stream", "application/x-zip-compressed"}
EVALUATE_QUERY = {"versions", "set", "set_version"}
JOBS_PATH = "evaluations"


def parse_versions(values: list[str]) -> list[str]:
    """``?versions=1,2`` (or repeated): the version strings, for the data plane to parse; [] for the default."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


class EvaluateHandler(BodyHandler):
    """POST /models/{m}/evaluate: start an evaluation job (202 and its Location)."""

    spool = True
    metric_endpoint = "management"

    def body_limit(self) -> int:
        return self.config.max_archive_bytes

    @web.authenticated
    async def post(self, name):
        check_name(name)
        self.label_model(name)
        unknown = sorted(set(self.request.query_arguments) - AUTH_QUERY - EVALUATE_QUERY)
        if unknown:
            raise InvalidInputError(f"Unknown query parameter(s) {', '.join(map(repr, unknown))}; this endpoint "
                                    "takes versions, set and set_version.")
        versions = parse_versions(self.get_query_arguments("versions"))
        bundled = self.get_query_argument("set", None)
        spooled = self.spooled_body()
        data = await self._upload(spooled, bundled)
        try:
            job = await self.run(self.dataplane.start_evaluation, name, versions, data, bundled=bundled,
                                 set_version=self.get_query_argument("set_version", None), handover=True,
                                 manage=True)
        finally:
            if data not in (None, spooled) and os.path.exists(data):
                os.unlink(data)  # a multipart part the data plane did not take
        self._model_confirmed = True
        self.set_header("Location", url_path_join(self.base_url, JOBS_PATH, job.id))
        self.reply(job.to_json(), status=202)

    async def _upload(self, spooled: str, bundled: str | None) -> str | None:
        """The uploaded zip's file (the spool, or the multipart's file part); None for a bundled set."""
        size = os.path.getsize(spooled)
        if bundled is not None:
            if size:
                raise InvalidInputError("Send a labelled set or name a bundled one with ?set=..., not both.")
            return None
        media = self.content_type()
        if media == "multipart/form-data":
            return await self.run(extract_archive_part, spooled, self.request.headers["Content-Type"],
                                  self.state.tmp_dir, what="the labelled set (a .zip)", suffix=".zip", manage=True)
        if media not in ZIP_TYPES:
            raise UnsupportedMediaError(
                f"Content-Type {media or '(none)'!r} is not accepted here; send the labelled set as "
                "application/zip, or as a multipart/form-data file upload, or name a bundled set with ?set=...")
        if size == 0:
            raise InvalidInputError("The request body is empty; send the labelled set as a zip, or name a set "
                                    "the model's archive bundles with ?set=...")
        return spooled


class JobHandler(YyaiHandler):
    """GET /evaluations/{id}: the job's progress and, once done, its results."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, job):
        self.reply((await self.run(self.dataplane.evaluation, job)).to_json())


class PredictionsCsvHandler(YyaiHandler):
    """GET /evaluations/{id}/predictions.csv: every item with each version's answer."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, job):
        finished = await self.run(self.dataplane.evaluation, job)
        text = await self.run(lambda: finished.evaluation().to_csv())
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", f"{finished.model}-evaluation-{finished.id}.csv")
        self.set_header("Content-Disposition", f'attachment; filename="{filename}"')
        self.finish(text.encode(), set_content_type="text/csv; charset=utf-8")


class ResidualsHandler(YyaiHandler):
    """GET /evaluations/{id}/residuals.png: the residual plot of a regression evaluation."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, job):
        finished = await self.run(self.dataplane.evaluation, job)
        result = finished.evaluation()
        if result.kind is OutputKind.CLASSIFICATION:
            raise InvalidInputError("A residual plot is drawn for regression evaluations; this one is a "
                                    "classification (see its confusion matrices).")
        png = await self.run(result.residual_plot)
        self.finish(png, set_content_type="image/png")


class EvalSetsHandler(YyaiHandler):
    """GET /models/{m}/evalsets[?version=v]: the labelled sets a version bundles."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name):
        version = self.get_query_argument("version", None)
        self.label_model(name, version)
        resolved, sets = await self.run(self.dataplane.bundled, name, version, FileRole.EVAL)
        self.reply({"name": name, "version": resolved, "sets": sets})


class EvalSetHandler(YyaiHandler):
    """GET /models/{m}/evalsets/{set}[?version=v]: one bundled labelled set (a zip)."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name, set):  # noqa: A002 - the route's parameter name
        version = self.get_query_argument("version", None)
        self.label_model(name, version)
        data = await self.run(self.dataplane.eval_set, name, set, version)
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", set.rsplit("/", 1)[-1])
        self.set_header("Content-Disposition", f'attachment; filename="{filename}"')
        self.finish(data, set_content_type="application/zip")


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
                   "file,target); empty when ?set= names a bundled set.",
    "content": {
        "application/zip": {"schema": {"type": "string", "format": "binary"}},
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
]
_CONFLICT = {"409": json_reply({"$ref": "#/components/schemas/Error"}, "The job has not finished.")}
_TAGS = ["evaluation"]

ROUTES = [
    Route("/models/{name}/evaluate", EvaluateHandler, {"post": op(
        "Evaluate versions on a labelled set (a job)",
        {"202": {**json_reply(_JOB, "Accepted; follow the job at its Location."),
                 "headers": {"Location": {"schema": {"type": "string"}, "description": "The job's URL."}}},
         **errors(400, 404, 413, 415, 503)},
        params=_EVALUATE_PARAMS, body=_ZIP_BODY, tags=_TAGS,
        description="Runs in the background; GET the Location for progress and, once done, the results.")}),
    Route("/models/{name}/evalsets", EvalSetsHandler, {"get": op(
        "The labelled sets a version bundles",
        {"200": json_reply({"type": "object", "required": ["name", "version", "sets"], "properties": {
            "name": {"type": "string"}, "version": {"type": "integer"},
            "sets": {"type": "array", "items": {"type": "string"}}}}, "Set names, as the manifest lists them."),
         **errors(400, 404)}, params=[NAME, VERSION_QUERY], tags=_TAGS)}, trailing_slash=True),
    Route("/models/{name}/evalsets/{set}", EvalSetHandler, {"get": op(
        "One bundled labelled set, as a zip",
        {"200": {"description": "The zip.", "content": {"application/zip": {"schema": {
            "type": "string", "format": "binary"}}}}, **errors(400, 404)},
        params=[NAME, {"name": "set", "in": "path", "required": True, "schema": {"type": "string"},
                       "description": "A set name from the list (URL-encode its '/')."}, VERSION_QUERY],
        tags=_TAGS)}),
    Route("/evaluations/{job}", JobHandler, {"get": op(
        "An evaluation job: progress, and the results once done",
        {"200": json_reply(_JOB, "The job."), **errors(404)}, params=[JOB], tags=_TAGS)}),
    Route("/evaluations/{job}/predictions.csv", PredictionsCsvHandler, {"get": op(
        "Per-item predictions of a finished evaluation, as CSV",
        {"200": {"description": "file, truth, each version's answer and probability (or residual), problem.",
                 "content": {"text/csv": {"schema": {"type": "string"}}}}, **errors(400, 404), **_CONFLICT},
        params=[JOB], tags=_TAGS)}),
    Route("/evaluations/{job}/residuals.png", ResidualsHandler, {"get": op(
        "The residual plot of a finished regression evaluation",
        {"200": {"description": "PNG.", "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}},
         **errors(400, 404), **_CONFLICT}, params=[JOB], tags=_TAGS)}),
]
