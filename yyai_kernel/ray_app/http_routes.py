"""The routes of the Ray ingress's REST API, grouped as ``yyai serve`` groups its handlers.

Each endpoint reads the request, calls one ``DataPlane`` method through ``RestApi`` (on a
pool unless it is trivial) and writes the typed result's JSON. The paths are the route
table's (``yyai_kernel/server/rest/routes.py``), written the same way; ``{sample:path}`` is
Starlette's spelling of a parameter that may hold '/'. See ``http.py`` for the app.
"""

from __future__ import annotations

import os

from starlette.requests import Request
from starlette.routing import Route

from yyai_kernel.protocol import restparse, v2codec
from yyai_kernel.protocol.multipart import extract_archive_part
from yyai_kernel.protocol.restparse import flag, json_body, version_body
from yyai_kernel.ray_app.http import RestApi, infer, model_path, reply
from yyai_kernel.types import STICKY_HEADER, check_label, check_name, parse_version_ref


def v2_routes(api: RestApi) -> list[Route]:
    """The Open Inference Protocol v2, with Triton's binary tensor and repository extensions."""
    plane = api.plane

    async def server_metadata(request: Request):
        return reply(plane.server_metadata().to_json())

    async def live(request: Request):
        return reply(v2codec.LIVE)

    async def ready(request: Request):
        plane.check_ready()
        return reply(v2codec.READY)

    async def metadata(request: Request):
        return reply((await api.run(plane.model_metadata, *model_path(request))).to_json())

    async def model_ready(request: Request):
        name, version = model_path(request)
        await api.run(plane.model_ready, name, version)
        return reply(v2codec.model_ready_body(name))

    async def inference(request: Request):
        return await infer(api, request)

    async def index(request: Request):
        only_ready = restparse.repository_index_options(await api.body(request))
        return reply([entry.to_json() for entry in await api.run(plane.repository_index, only_ready)])

    async def repository_load(request: Request):
        name = request.path_params["name"]
        params = restparse.repository_load_parameters(await api.body(request))
        return reply((await api.run(plane.repository_load, name, params, manage=True)).to_json())

    async def repository_unload(request: Request):
        name = request.path_params["name"]
        restparse.repository_unload_options(await api.body(request))
        return reply((await api.run(plane.unload, name, manage=True)).to_json())

    routes = [Route("/v2", server_metadata, methods=["GET"]), Route("/v2/", server_metadata, methods=["GET"]),
              Route("/v2/health/live", live, methods=["GET"]), Route("/v2/health/ready", ready, methods=["GET"])]
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        routes += [Route(base, metadata, methods=["GET"]), Route(base + "/ready", model_ready, methods=["GET"]),
                   Route(base + "/infer", inference, methods=["POST"])]
    return routes + [
        Route("/v2/repository/index", index, methods=["POST"]),
        Route("/v2/repository/models/{name}/load", repository_load, methods=["POST"]),
        Route("/v2/repository/models/{name}/unload", repository_unload, methods=["POST"]),
    ]


def image_routes(api: RestApi) -> list[Route]:
    """``POST /predictions/{m}[/{v}]``: raw image bytes or a multipart upload of several."""
    plane = api.plane

    async def predictions(request: Request):
        name, version = model_path(request)
        raw = restparse.loose_flag(request.query_params.get("raw"))
        content_type = request.headers.get("content-type", "")
        media = restparse.media_type(content_type)
        restparse.check_image_media(media)
        body, most = await api.body(request), api.config.max_images_per_request
        sticky, explain = request.headers.get(STICKY_HEADER), request.query_params.get("explain")

        def work():  # multipart parsing and image decoding are CPU work: off the loop
            images, filenames = restparse.images_of(media, content_type, body, most)
            return plane.submit_images(name, version, images, filenames, sticky=sticky, explain=explain)

        return reply((await api.run(work)).to_json(raw=raw))

    return [Route("/predictions/{name}", predictions, methods=["POST"]),
            Route("/predictions/{name}/{version}", predictions, methods=["POST"])]


def management_routes(api: RestApi) -> list[Route]:
    """List, describe, upload, load, reload, pin, unpin, unload and remove; the bundled samples."""
    plane = api.plane

    def manage(fn, *args, **kwargs):
        return api.run(fn, *args, manage=True, **kwargs)

    async def models(request: Request):
        if request.method == "GET":
            return reply([summary.to_json() for summary in await api.run(plane.list)])
        return await _upload(api, request)

    async def rescan(request: Request):
        results = await manage(plane.reload, None, force=False)
        return reply({name: result.to_json() for name, result in results.items()})

    async def status_all(request: Request):
        return reply((await api.run(plane.status)).to_json())

    async def model(request: Request):
        return reply((await api.run(plane.status, request.path_params["name"])).to_json())

    async def load(request: Request):
        name = check_name(request.path_params["name"])
        options = json_body(await api.body(request), required=False)
        version = version_body({} if options is None else options, required=False)
        return reply((await manage(plane.load, name, version)).to_json())

    async def reload(request: Request):
        name = check_name(request.path_params["name"])
        force = flag(request.query_params.get("force", "true"))
        return reply((await manage(plane.reload, name, force=force)).to_json())

    async def default(request: Request):
        name = check_name(request.path_params["name"])
        if request.method == "DELETE":
            return reply((await manage(plane.follow_latest, name)).to_json())
        body = json_body(await api.body(request))
        version = version_body(body, required=True, hint=restparse.default_hint(name))
        return reply((await manage(plane.set_default, name, version)).to_json())

    async def version(request: Request):
        name, number = request.path_params["name"], request.path_params["version"]
        if request.method == "GET":
            return reply((await api.run(plane.describe, name, number)).to_json())
        check_name(name), parse_version_ref(number)
        purge = flag(request.query_params.get("purge", "false"))
        return reply((await manage(plane.remove, name, number, purge=purge)).to_json())

    return [
        Route("/models", models, methods=["GET", "POST"]), Route("/models/", models, methods=["GET", "POST"]),
        Route("/models/_rescan", rescan, methods=["POST"]),
        Route("/models/_status", status_all, methods=["GET"]),
        Route("/models/{name}", model, methods=["GET"]),
        Route("/models/{name}/load", load, methods=["POST"]),
        Route("/models/{name}/reload", reload, methods=["POST"]),
        Route("/models/{name}/default", default, methods=["PUT", "DELETE"]),
        Route("/models/{name}/versions/{version}", version, methods=["GET", "DELETE"]),
        *sample_routes(api),
    ]


def rollout_routes(api: RestApi) -> list[Route]:
    """Version labels and the traffic policy (canary, shadow), as ``server/rollout_handlers.py``."""
    plane = api.plane

    def manage(fn, *args):
        return api.run(fn, *args, manage=True)

    async def labels(request: Request):
        return reply(await api.run(plane.labels, request.path_params["name"]))

    async def label(request: Request):
        name, label = request.path_params["name"], request.path_params["label"]
        if request.method == "GET":
            return reply((await api.run(plane.label, name, label)).to_json())
        if request.method == "DELETE":
            return reply((await manage(plane.delete_label, name, label)).to_json())
        check_name(name), check_label(label)
        version = version_body(json_body(await api.body(request)), required=True)
        return reply((await manage(plane.set_label, name, label, version)).to_json())

    async def traffic(request: Request):
        name = request.path_params["name"]
        if request.method == "GET":
            return reply((await api.run(plane.traffic_report, name)).to_json())
        if request.method == "DELETE":
            return reply((await manage(plane.clear_traffic, name)).to_json())
        check_name(name)
        return reply((await manage(plane.set_traffic, name, json_body(await api.body(request)))).to_json())

    async def promote(request: Request):
        return reply((await manage(plane.promote, request.path_params["name"])).to_json())

    async def disagreements(request: Request):
        return reply([d.to_json() for d in await api.run(plane.disagreements, request.path_params["name"])])

    return [Route("/models/{name}/labels", labels, methods=["GET"]),
            Route("/models/{name}/labels/{label}", label, methods=["GET", "PUT", "DELETE"]),
            Route("/models/{name}/traffic", traffic, methods=["GET", "PUT", "DELETE"]),
            Route("/models/{name}/traffic/promote", promote, methods=["POST"]),
            Route("/models/{name}/traffic/disagreements", disagreements, methods=["GET"])]


def sample_routes(api: RestApi) -> list[Route]:
    """The sample inputs a version bundles, read from inside its archive (never a server path)."""
    from starlette.responses import Response

    plane = api.plane

    async def samples(request: Request):
        name, version = request.path_params["name"], request.query_params.get("version")
        resolved, names = await api.run(plane.sample_list, name, version)
        return reply({"name": name, "version": resolved, "samples": names})

    async def sample(request: Request):
        name, sample_name = request.path_params["name"], request.path_params["sample"]
        data = await api.run(plane.sample, name, sample_name, request.query_params.get("version"))
        media, headers = restparse.sample_reply_headers(sample_name)
        return Response(data, media_type=media, headers=headers)

    return [Route("/models/{name}/samples", samples, methods=["GET"]),
            Route("/models/{name}/samples/{sample:path}", sample, methods=["GET"])]


async def _upload(api: RestApi, request: Request):
    """POST /models: the archive as the body (or a multipart file), spooled outside the store."""
    content_type = request.headers.get("content-type", "")
    media = restparse.media_type(content_type)
    restparse.check_upload(request.query_params.keys(), media)
    spooled = await api.spool(request)
    archive = spooled
    try:
        if media == restparse.MULTIPART:
            archive = await api.run(extract_archive_part, spooled, content_type, api.tmp_dir, manage=True)
        elif os.path.getsize(spooled) == 0:
            raise restparse.empty_upload()
        result = await api.run(api.plane.add_archive, archive, manage=True)
    finally:
        for path in {spooled, archive}:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    return reply(result.to_json(), status=201)
