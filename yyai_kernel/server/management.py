"""Management REST API: list, describe, upload, reload, promote, unload and remove models.

Routes:
  GET    /models                              one line per model (``Registry.list()``)
  POST   /models                              upload a .yyar (raw body or multipart): verified in
                                              a temporary file outside the store, moved in
                                              atomically, then loaded; 201 {name, version, model: status}
  POST   /models/_rescan                      re-read the store folder and reload what changed
  GET    /models/_status                      every model's status, the store's problems, state error
  GET    /models/{m}                          the model's status (``Registry.status(m)``)
  POST   /models/{m}/load                     load a version (``{"version": N}``, default: the default)
  POST   /models/{m}/reload                   re-read the store and reload this model
  PUT    /models/{m}/default                  ``{"version": N}``: make N the default (persisted pin)
  GET    /models/{m}/versions/{v}             what version v takes and gives, and its status
  DELETE /models/{m}/versions/{v}[?purge=true] unload v; with purge, delete its archive too

No endpoint takes a file path from the client: archives arrive as request bodies only,
and whether an archive may run code (``trusted``) is the operator's setting, never the
uploader's.
"""

from __future__ import annotations

import mmap
import os
import re
import tempfile

from tornado import web

from ..archive import read_manifest
from ..errors import InvalidInputError, UnsupportedMediaError
from .base import BodyHandler, YyaiHandler, check_name, check_version

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


def version_body(options, *, required: bool) -> int | None:
    """The version of a ``{"version": N}`` body; any other key is a 400 (no path or URL is ever read)."""
    example = 'The body must be a JSON object such as {"version": 2}'
    if not isinstance(options, dict) or (required and "version" not in options):
        raise InvalidInputError(f"{example}.")
    unknown = sorted(set(options) - {"version"})
    if unknown:
        raise InvalidInputError(f"{example}; unknown field(s) {', '.join(map(repr, unknown))}.")
    return check_version(options.get("version"))


def extract_multipart_file(path: str, content_type: str, out_dir: str) -> str:
    """Copy the first file part of a spooled multipart body into its own temporary file.

    Works on a memory map of the spooled body, so a large archive is never held in memory.
    """
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        raise InvalidInputError("The multipart Content-Type has no boundary.")
    delimiter = b"--" + match.group(1).encode("latin-1")
    size = os.path.getsize(path)
    if size == 0:
        raise InvalidInputError("The upload is empty; attach the .yyar archive.")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as body:
        position = body.find(delimiter)
        while position != -1:
            start = position + len(delimiter)
            if body[start:start + 2] == b"--":
                break  # closing delimiter
            header_end = body.find(b"\r\n\r\n", start)
            if header_end == -1:
                break
            headers = body[start:header_end].decode("utf-8", "replace")
            content_start = header_end + 4
            next_position = body.find(b"\r\n" + delimiter, content_start)
            if next_position == -1:
                raise InvalidInputError("The multipart body is truncated: its closing boundary is missing.")
            if re.search(r'filename\*?=', headers, re.IGNORECASE):
                fd, out_path = tempfile.mkstemp(prefix="upload-", suffix=".yyar", dir=out_dir)
                with os.fdopen(fd, "wb") as out:
                    chunk = 1024 * 1024
                    for offset in range(content_start, next_position, chunk):
                        out.write(body[offset:min(offset + chunk, next_position)])
                return out_path
            position = next_position + 2
    raise InvalidInputError("The multipart upload holds no file; attach the .yyar archive as a file field.")


class ModelsHandler(BodyHandler):
    """GET /models (list) and POST /models (upload an archive)."""

    spool = True
    metric_endpoint = "management"

    def body_limit(self) -> int:
        return self.state.max_archive_bytes if self.request.method == "POST" else self.state.max_body_bytes

    @web.authenticated
    async def get(self):
        self.reply(await self.run(self.registry.list))

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
                archive_path = await self.run(
                    extract_multipart_file, spooled, self.request.headers["Content-Type"], self.state.tmp_dir,
                    manage=True,
                )
            elif os.path.getsize(spooled) == 0:
                raise InvalidInputError("The request body is empty; send the .yyar archive.")
            reply = await self.run(self._add, archive_path, manage=True)
        finally:
            if archive_path != spooled:
                try:
                    os.unlink(archive_path)
                except FileNotFoundError:
                    pass
        self.label_model(reply["name"], reply["version"])
        self._model_confirmed = True
        self.reply(reply, status=201)

    def _add(self, path: str) -> dict:
        manifest = read_manifest(path)
        status = self.registry.add_archive(path)
        return {"name": manifest.name, "version": manifest.version, "model": status}


class RescanHandler(BodyHandler):
    """POST /models/_rescan: re-read the store folder and reload every model (unforced)."""

    metric_endpoint = "management"

    @web.authenticated
    async def post(self):
        self.reply(await self.run(self.registry.reload, None, force=False, manage=True))


class StatusHandler(YyaiHandler):
    """GET /models/_status: every model's status, plus the store's problems and state error."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self):
        self.reply(await self.run(self.registry.status))


class ModelHandler(YyaiHandler):
    """GET /models/{m}: everything the registry knows about one model."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name):
        name = check_name(name)
        self.label_model(name)
        self.reply(await self.run(self.registry.status, name))


class LoadHandler(BodyHandler):
    """POST /models/{m}/load with an optional ``{"version": N}``."""

    metric_endpoint = "management"

    @web.authenticated
    async def post(self, name):
        name = check_name(name)
        options = self.json_body(self.body, required=False)
        version = version_body({} if options is None else options, required=False)
        self.label_model(name, version)
        self.reply(await self.run(self.registry.load, name, version, manage=True))


class ReloadHandler(BodyHandler):
    """POST /models/{m}/reload[?force=false]: re-read the store and reload this model."""

    metric_endpoint = "management"

    @web.authenticated
    async def post(self, name):
        name = check_name(name)
        self.label_model(name)
        force = _flag(self.get_query_argument("force", "true"))
        self.reply(await self.run(self.registry.reload, name, force=force, manage=True))


class DefaultHandler(BodyHandler):
    """PUT /models/{m}/default with ``{"version": N}``: promote (or roll back) and pin."""

    metric_endpoint = "management"

    @web.authenticated
    async def put(self, name):
        name = check_name(name)
        version = version_body(self.json_body(self.body), required=True)
        self.label_model(name, version)
        self.reply(await self.run(self.registry.set_default, name, version, manage=True))


class VersionHandler(YyaiHandler):
    """GET and DELETE /models/{m}/versions/{v}."""

    metric_endpoint = "management"

    @web.authenticated
    async def get(self, name, version):
        name, version = check_name(name), check_version(version)
        self.label_model(name, version)

        def work():
            described = self.registry.describe(name, version)
            described["status"] = self.registry.status(name)["versions"].get(str(described["version"]))
            return described

        self.reply(await self.run(work))

    @web.authenticated
    async def delete(self, name, version):
        name, version = check_name(name), check_version(version)
        self.label_model(name, version)
        purge = _flag(self.get_query_argument("purge", "false"))
        self.reply(await self.run(self.registry.remove, name, version, purge=purge, manage=True))


def handlers(prefix) -> list:
    """The management routes."""
    m = r"(?P<name>[^/]+)"
    return [
        (prefix(r"/models/?"), ModelsHandler),
        (prefix(r"/models/_rescan"), RescanHandler),
        (prefix(r"/models/_status"), StatusHandler),
        (prefix(rf"/models/{m}"), ModelHandler),
        (prefix(rf"/models/{m}/load"), LoadHandler),
        (prefix(rf"/models/{m}/reload"), ReloadHandler),
        (prefix(rf"/models/{m}/default"), DefaultHandler),
        (prefix(rf"/models/{m}/versions/(?P<version>[^/]+)"), VersionHandler),
    ]
