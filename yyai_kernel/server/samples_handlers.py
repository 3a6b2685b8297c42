"""Bundled sample images over REST, for the dashboard's "pick a sample" list.

Routes (add ``SAMPLE_HANDLERS``, or ``handlers(prefix)``, before the ``/models/.*``
catch-all):

  GET /models/{m}/samples[?version=v]           {"name", "version", "samples": ["samples/3.png", ...]}
  GET /models/{m}/samples/{sample}[?version=v]  the sample's bytes (Content-Type from its name)

A sample is looked up by the name the archive's manifest lists with role ``sample``
(``Registry.sample``), read from inside the archive, never as a path on the server's
disk: an unknown name is a 404, whatever it contains.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import PurePosixPath

from tornado import web

from .base import YyaiHandler, check_name, check_version


class SamplesHandler(YyaiHandler):
    """GET /models/{m}/samples[?version=v]: the names of the samples a version bundles."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name):
        name = check_name(name)
        version = check_version(self.get_query_argument("version", None))
        self.label_model(name, version)
        registry = self.registry

        def work():
            resolved = registry.resolve_version(name, version)
            return {"name": name, "version": resolved, "samples": registry.samples(name, resolved)}

        self.reply(await self.run(work))


class SampleHandler(YyaiHandler):
    """GET /models/{m}/samples/{sample}[?version=v]: one sample's bytes."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name, sample):
        name = check_name(name)
        version = check_version(self.get_query_argument("version", None))
        self.label_model(name, version)
        data = await self.run(self.registry.sample, name, sample, version)
        media = mimetypes.guess_type(sample)[0] or "application/octet-stream"
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Content-Security-Policy", "default-src 'none'; sandbox")  # inert, even if SVG
        filename = re.sub(r"[^A-Za-z0-9._-]", "_", PurePosixPath(sample).name)
        self.set_header("Content-Disposition", f'inline; filename="{filename}"')
        self.finish(data, set_content_type=media)  # APIHandler.finish would say JSON


def handlers(prefix) -> list:
    """The sample routes, joined to the server's base URL by ``prefix``."""
    m = r"(?P<name>[^/]+)"
    return [
        (prefix(rf"/models/{m}/samples/?"), SamplesHandler),
        (prefix(rf"/models/{m}/samples/(?P<sample>.+)"), SampleHandler),
    ]


SAMPLE_HANDLERS = handlers(lambda path: path)
