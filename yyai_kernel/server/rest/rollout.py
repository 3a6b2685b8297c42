"""Rollout REST API: version labels, the traffic policy (canary and shadow), its figures.

Routes (each a thin adapter over ``DataPlane``):
  GET    /models/{m}/labels                      ``{label: version}``
  GET    /models/{m}/labels/{label}              ``{name, label, version}``
  PUT    /models/{m}/labels/{label}              ``{"version": N}``: point the label at N (loaded first)
  DELETE /models/{m}/labels/{label}              forget the label
  GET    /models/{m}/traffic                     the policy and its running figures
  PUT    /models/{m}/traffic                     ``{"canary": {"version": N, "percent": P},
                                                   "shadow": {"version": M, "percent": Q}, "sticky": bool}``
  DELETE /models/{m}/traffic                     clear the policy (roll back: the default takes all)
  POST   /models/{m}/traffic/promote             the candidate (canary, else shadow) becomes the default
  GET    /models/{m}/traffic/disagreements       the last inputs on which the shadow disagreed

A label is accepted wherever a version is, in the version's place: ``/predictions/m/stable``,
``/v2/models/m/versions/stable/infer``, ``?version=stable``. Labels and the policy persist
in the store's state file; PUT and DELETE answer with the model's status, and with
``--workers N`` return once every worker follows (``X-Yyai-Applied``).
"""

from __future__ import annotations

from tornado import web

from yyai_kernel.plane.operations import Operation, OpKind
from yyai_kernel.protocol.restparse import version_body
from yyai_kernel.server.rest.base import BodyHandler, YyaiHandler
from yyai_kernel.server.rest.openapi import LABEL, NAME, errors, json_reply, op, ref
from yyai_kernel.server.rest.routes import Route
from yyai_kernel.types import check_label, check_name


class LabelsHandler(YyaiHandler):
    """GET /models/{m}/labels."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name):
        self.label_model(name)
        self.reply(await self.run(self.dataplane.labels, name))


class LabelHandler(BodyHandler):
    """GET, PUT and DELETE /models/{m}/labels/{label}."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name, label):
        self.label_model(name)
        self.reply((await self.run(self.dataplane.label, name, label)).to_json())

    @web.authenticated
    async def put(self, name, label):
        check_name(name), check_label(label)
        version = version_body(self.json_body(self.body), required=True)
        self.label_model(name, version)
        self.reply_managed(await self.manage(Operation(OpKind.SET_LABEL, name, version, label=label)))

    @web.authenticated
    async def delete(self, name, label):
        self.label_model(name)
        self.reply_managed(await self.manage(Operation(OpKind.DELETE_LABEL, name, label=label)))


class TrafficHandler(BodyHandler):
    """GET, PUT and DELETE /models/{m}/traffic."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name):
        self.label_model(name)
        self.reply((await self.run(self.dataplane.traffic_report, name)).to_json())

    @web.authenticated
    async def put(self, name):
        check_name(name)
        document = self.json_body(self.body)
        self.label_model(name)
        self.reply_managed(await self.manage(Operation(OpKind.SET_TRAFFIC, name, policy=document)))

    @web.authenticated
    async def delete(self, name):
        self.label_model(name)
        self.reply_managed(await self.manage(Operation(OpKind.CLEAR_TRAFFIC, name)))


class PromoteHandler(BodyHandler):
    """POST /models/{m}/traffic/promote."""

    metric_endpoint = "management"

    @web.authenticated
    async def post(self, name):
        self.label_model(name)
        self.reply_managed(await self.manage(Operation(OpKind.PROMOTE, name)))


class DisagreementsHandler(YyaiHandler):
    """GET /models/{m}/traffic/disagreements."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name):
        self.label_model(name)
        found = await self.run(self.dataplane.disagreements, name)
        self.reply([d.to_json() for d in found])


_STATUS = json_reply(ref("ModelStatus"), "The model's status, with its labels and traffic policy.")
_TAGS = ["rollout"]

ROUTES = [
    Route("/models/{name}/labels", LabelsHandler, {"get": op(
        "A model's version labels", {"200": json_reply({"type": "object", "additionalProperties": {"type": "integer"}},
                                                        "{label: version}."), **errors(400, 404)},
        params=[NAME], tags=_TAGS)}, trailing_slash=True),
    Route("/models/{name}/labels/{label}", LabelHandler, {
        "get": op("The version a label names", {"200": json_reply(ref("VersionLabel"), "The label."),
                                                **errors(400, 404)}, params=[NAME, LABEL], tags=_TAGS),
        "put": op("Point a label at a version (loaded first; persisted)", {"200": _STATUS, **errors(400, 404, 503, 507)},
                  params=[NAME, LABEL], body={"required": True, "content": {"application/json": {
                      "schema": ref("VersionRequest")}}}, tags=_TAGS,
                  description="Labels start with a letter (1-32 characters of a-z, 0-9, '_', '-'), so they never "
                  "read as a version. Use one wherever a version goes: /predictions/{name}/{label}, "
                  "/v2/models/{name}/versions/{label}/infer, ?version={label}."),
        "delete": op("Forget a label", {"200": _STATUS, **errors(400, 404, 507)}, params=[NAME, LABEL], tags=_TAGS),
    }),
    Route("/models/{name}/traffic", TrafficHandler, {
        "get": op("The traffic policy and its running figures", {"200": json_reply(ref("TrafficReport"), "Policy."),
                                                                 **errors(400, 404)}, params=[NAME], tags=_TAGS),
        "put": op("Set the canary and shadow split of requests that name no version (persisted)",
                  {"200": _STATUS, **errors(400, 404, 503, 507)}, params=[NAME],
                  body={"required": True, "content": {"application/json": {"schema": ref("TrafficPolicy")}}},
                  tags=_TAGS, description="Refused: a percent outside 0-100, an unknown key, a version the model "
                  "lacks (404), or a side equal to the default version."),
        "delete": op("Clear the traffic policy: the default answers every request again (roll back)",
                     {"200": _STATUS, **errors(400, 404, 507)}, params=[NAME], tags=_TAGS),
    }),
    Route("/models/{name}/traffic/promote", PromoteHandler, {"post": op(
        "Promote the candidate (the canary, else the shadow) to the default, pinned, and clear the policy",
        {"200": _STATUS, **errors(400, 404, 503, 507)}, params=[NAME], tags=_TAGS)}),
    Route("/models/{name}/traffic/disagreements", DisagreementsHandler, {"get": op(
        "The last inputs on which the shadow disagreed with the answer sent, newest first",
        {"200": json_reply({"type": "array", "items": ref("Disagreement")}, "Kept disagreements."),
         **errors(400, 404)}, params=[NAME], tags=_TAGS)}),
]
