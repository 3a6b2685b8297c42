"""Bundled sample images over REST, for the dashboard's "pick a sample" list.

Endpoints:

  GET /models/{m}/samples[?version=v]           {"name", "version", "samples": ["samples/3.png", ...]}
  GET /models/{m}/samples/{sample}[?version=v]  the sample's bytes (Content-Type from its name)

A sample is looked up by the name the archive's manifest lists with role ``sample``
(``DataPlane.bundled_file``), read from inside the archive, never as a path on the server's
disk: an unknown name is a 404, whatever it contains.
"""

from __future__ import annotations

from yyai_kernel.api.call import Call, Reply, reply
from yyai_kernel.api.context import Api
from yyai_kernel.api.endpoint import Endpoint
from yyai_kernel.api.refs import path_ref
from yyai_kernel.api.spec import NAME, VERSION_QUERY, errors, json_reply, op
from yyai_kernel.protocol.restparse import sample_reply_headers
from yyai_kernel.types import FileRole


async def bundled_list(api: Api, call: Call, role: FileRole) -> Reply:
    """The files with ``role`` that go with the version ``?version=`` names (default: the default)."""
    target = api.data.resolve(path_ref(call, query_version=True))
    call.confirm()
    return reply(api.data.bundled(target, role).to_json())


async def bundled_bytes(api: Api, call: Call, role: FileRole, name: str) -> bytes:
    """One such file's bytes, by its manifest name."""
    target = api.data.resolve(path_ref(call, query_version=True))
    call.confirm()
    data: bytes = await api.run(api.data.bundled_file, target, name, role)
    return data


async def samples(api: Api, call: Call) -> Reply:
    """GET /models/{m}/samples[?version=v]: the names of the samples that go with a version."""
    return await bundled_list(api, call, FileRole.SAMPLE)


async def sample(api: Api, call: Call) -> Reply:
    """GET /models/{m}/samples/{sample}[?version=v]: one sample's bytes (Content-Type from its name)."""
    name = call.path["sample"]
    data = await bundled_bytes(api, call, FileRole.SAMPLE, name)
    media, headers = sample_reply_headers(name)
    return Reply(data, media_type=media, headers=headers)


ENDPOINTS = [
    Endpoint("GET", "/models/{name}/samples", samples, op(
        "The sample inputs a version bundles",
        {"200": json_reply({
            "type": "object",
            "required": ["name", "version", "samples"],
            "properties": {"name": {"type": "string"}, "version": {"type": "integer"},
                           "samples": {"type": "array", "items": {"type": "string"}}},
        }, "Sample names, as the manifest lists them."), **errors(400, 404)},
        params=[NAME, VERSION_QUERY], tags=["management"],
    ), trailing_slash=True),
    Endpoint("GET", "/models/{name}/samples/{sample}", sample, op(
        "One bundled sample's bytes (read from inside the archive, by its manifest name)",
        {"200": {"description": "The sample.", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
         **errors(400, 404)},
        params=[NAME, {"name": "sample", "in": "path", "required": True,
                       "description": "A sample name from the list (URL-encode its '/').",
                       "schema": {"type": "string"}}, VERSION_QUERY],
        tags=["management"],
    )),
]
