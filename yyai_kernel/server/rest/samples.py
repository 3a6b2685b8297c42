"""Bundled sample images over REST, for the dashboard's "pick a sample" list.

Routes:

  GET /models/{m}/samples[?version=v]           {"name", "version", "samples": ["samples/3.png", ...]}
  GET /models/{m}/samples/{sample}[?version=v]  the sample's bytes (Content-Type from its name)

A sample is looked up by the name the archive's manifest lists with role ``sample``
(``DataPlane.sample``), read from inside the archive, never as a path on the server's
disk: an unknown name is a 404, whatever it contains.
"""

from __future__ import annotations

from tornado import web

from yyai_kernel.protocol.restparse import sample_reply_headers
from yyai_kernel.server.rest.base import YyaiHandler
from yyai_kernel.server.rest.openapi import NAME, VERSION_QUERY, errors, json_reply, op
from yyai_kernel.server.rest.routes import Route


class SamplesHandler(YyaiHandler):
    """GET /models/{m}/samples[?version=v]: the names of the samples a version bundles."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name):
        version = self.get_query_argument("version", None)
        self.label_model(name, version)
        resolved, samples = await self.run(self.dataplane.sample_list, name, version)
        self.reply({"name": name, "version": resolved, "samples": samples})


class SampleHandler(YyaiHandler):
    """GET /models/{m}/samples/{sample}[?version=v]: one sample's bytes."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name, sample):
        version = self.get_query_argument("version", None)
        self.label_model(name, version)
        data = await self.run(self.dataplane.sample, name, sample, version)
        media, headers = sample_reply_headers(sample)
        for header, value in headers.items():
            self.set_header(header, value)
        self.finish(data, set_content_type=media)  # APIHandler.finish would say JSON


ROUTES = [
    Route("/models/{name}/samples", SamplesHandler, {"get": op(
        "The sample inputs a version bundles",
        {"200": json_reply({
            "type": "object",
            "required": ["name", "version", "samples"],
            "properties": {"name": {"type": "string"}, "version": {"type": "integer"},
                           "samples": {"type": "array", "items": {"type": "string"}}},
        }, "Sample names, as the manifest lists them."), **errors(400, 404)},
        params=[NAME, VERSION_QUERY], tags=["management"],
    )}, trailing_slash=True),
    Route("/models/{name}/samples/{sample}", SampleHandler, {"get": op(
        "One bundled sample's bytes (read from inside the archive, by its manifest name)",
        {"200": {"description": "The sample.", "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
         **errors(400, 404)},
        params=[NAME, {"name": "sample", "in": "path", "required": True,
                       "description": "A sample name from the list (URL-encode its '/').",
                       "schema": {"type": "string"}}, VERSION_QUERY],
        tags=["management"],
    )}),
]
