"""Rollout REST API: version labels, the traffic policy (canary and shadow), its figures.

Endpoints (each a thin adapter over the model repository):
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

from yyai_kernel.api.call import Call, Reply, reply
from yyai_kernel.api.context import Api
from yyai_kernel.api.endpoint import Body, Endpoint
from yyai_kernel.api.models import manage
from yyai_kernel.api.refs import path_name
from yyai_kernel.api.spec import LABEL, NAME, errors, json_reply, op, ref
from yyai_kernel.plane.operations import Operation, OpKind
from yyai_kernel.protocol.restparse import json_body, version_body
from yyai_kernel.types import ModelRef, check_label


async def labels(api: Api, call: Call) -> Reply:
    """GET /models/{m}/labels: ``{label: version}``."""
    name = path_name(call)
    return reply(await api.model_call(call, api.run(api.repository.labels, name)))


async def label(api: Api, call: Call) -> Reply:
    """GET /models/{m}/labels/{label}: the version the label names."""
    ref_ = ModelRef(path_name(call), label=check_label(call.path["label"]))
    return reply((await api.model_call(call, api.run(api.repository.label, ref_))).to_json())


async def set_label(api: Api, call: Call) -> Reply:
    """PUT /models/{m}/labels/{label} with ``{"version": N}``: point the label at N (loaded first)."""
    name, label_ = path_name(call), check_label(call.path["label"])
    version = version_body(json_body(call.body), required=True)
    call.label(name, version)
    return await manage(api, call, Operation(OpKind.SET_LABEL, name, version, label=label_))


async def delete_label(api: Api, call: Call) -> Reply:
    """DELETE /models/{m}/labels/{label}: forget the label."""
    name, label_ = path_name(call), check_label(call.path["label"])
    return await manage(api, call, Operation(OpKind.DELETE_LABEL, name, label=label_))


async def traffic(api: Api, call: Call) -> Reply:
    """GET /models/{m}/traffic: the policy and its running figures."""
    name = path_name(call)
    return reply((await api.model_call(call, api.run(api.repository.traffic_report, name))).to_json())


async def set_traffic(api: Api, call: Call) -> Reply:
    """PUT /models/{m}/traffic: the canary and shadow policy (parsed by ``TrafficPolicy.parse``)."""
    name = path_name(call)
    return await manage(api, call, Operation(OpKind.SET_TRAFFIC, name, policy=json_body(call.body)))


async def clear_traffic(api: Api, call: Call) -> Reply:
    """DELETE /models/{m}/traffic: clear the policy (roll back: the default takes all)."""
    return await manage(api, call, Operation(OpKind.CLEAR_TRAFFIC, path_name(call)))


async def promote(api: Api, call: Call) -> Reply:
    """POST /models/{m}/traffic/promote: the candidate (canary, else shadow) becomes the default."""
    return await manage(api, call, Operation(OpKind.PROMOTE, path_name(call)))


async def disagreements(api: Api, call: Call) -> Reply:
    """GET /models/{m}/traffic/disagreements: the last inputs on which the shadow disagreed."""
    name = path_name(call)
    found = await api.model_call(call, api.run(api.repository.disagreements, name))
    return reply([d.to_json() for d in found])


_STATUS = json_reply(ref("ModelStatus"), "The model's status, with its labels and traffic policy.")
_TAGS = ["rollout"]

ENDPOINTS = [
    Endpoint("GET", "/models/{name}/labels", labels, op(
        "A model's version labels", {"200": json_reply({"type": "object", "additionalProperties": {"type": "integer"}},
                                                        "{label: version}."), **errors(400, 404)},
        params=[NAME], tags=_TAGS), trailing_slash=True),
    Endpoint("GET", "/models/{name}/labels/{label}", label, op(
        "The version a label names", {"200": json_reply(ref("VersionLabel"), "The label."),
                                      **errors(400, 404)}, params=[NAME, LABEL], tags=_TAGS)),
    Endpoint("PUT", "/models/{name}/labels/{label}", set_label, op(
                  "Point a label at a version (loaded first; persisted)",
                  {"200": _STATUS, **errors(400, 404, 503, 507)}, params=[NAME, LABEL],
                  body={"required": True, "content": {"application/json": {"schema": ref("VersionRequest")}}},
                  tags=_TAGS,
                  description="Labels start with a letter (1-32 characters of a-z, 0-9, '_', '-'), so they never "
                  "read as a version. Use one wherever a version goes: /predictions/{name}/{label}, "
                  "/v2/models/{name}/versions/{label}/infer, ?version={label}."), body=Body.MEMORY),
    Endpoint("DELETE", "/models/{name}/labels/{label}", delete_label, op(
        "Forget a label", {"200": _STATUS, **errors(400, 404, 507)}, params=[NAME, LABEL], tags=_TAGS),
        body=Body.MEMORY),
    Endpoint("GET", "/models/{name}/traffic", traffic, op(
        "The traffic policy and its running figures", {"200": json_reply(ref("TrafficReport"), "Policy."),
                                                       **errors(400, 404)}, params=[NAME], tags=_TAGS)),
    Endpoint("PUT", "/models/{name}/traffic", set_traffic, op(
                  "Set the canary and shadow split of requests that name no version (persisted)",
                  {"200": _STATUS, **errors(400, 404, 503, 507)}, params=[NAME],
                  body={"required": True, "content": {"application/json": {"schema": ref("TrafficPolicy")}}},
                  tags=_TAGS, description="Refused: a percent outside 0-100, an unknown key, a version the model "
                  "lacks (404), or a side equal to the default version."), body=Body.MEMORY),
    Endpoint("DELETE", "/models/{name}/traffic", clear_traffic, op(
        "Clear the traffic policy: the default answers every request again (roll back)",
        {"200": _STATUS, **errors(400, 404, 507)}, params=[NAME], tags=_TAGS), body=Body.MEMORY),
    Endpoint("POST", "/models/{name}/traffic/promote", promote, op(
        "Promote the candidate (the canary, else the shadow) to the default, pinned, and clear the policy",
        {"200": _STATUS, **errors(400, 404, 503, 507)}, params=[NAME], tags=_TAGS), body=Body.MEMORY),
    Endpoint("GET", "/models/{name}/traffic/disagreements", disagreements, op(
        "The last inputs on which the shadow disagreed with the answer sent, newest first",
        {"200": json_reply({"type": "array", "items": ref("Disagreement")}, "Kept disagreements."),
         **errors(400, 404)}, params=[NAME], tags=_TAGS)),
]
