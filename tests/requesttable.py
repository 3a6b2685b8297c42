"""One table of REST requests, good and bad, that every yyai front end must answer alike.

Each :class:`Case` is a request and how two replies to it are compared: ``exact`` (status
and the whole body), or a ``view`` of the JSON body that leaves out what differs between
two live servers by nature (latencies, request counts, which versions are loaded). The
front ends serve one endpoint table (``yyai_kernel/api/table.py``) through different
adapters, so any difference here is a bug in an adapter. ``test_ray_ingress.py`` sends the
table to ``yyai serve`` and to the Ray ingress; a new front end adds its own pair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "model_archives" / "samples"
LIMIT = 1024 * 1024  # max_body_bytes on both servers, so that 413s can be compared


@dataclass(frozen=True)
class Case:
    """A request (``options`` are ``requests``' keyword arguments; ``auth=False`` sends no token)."""

    method: str
    path: str
    options: dict = field(default_factory=dict)
    view: Callable | None = None  # None: compare the whole JSON body (or the bytes)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def _without(*keys: str) -> Callable:
    return lambda body: {k: v for k, v in body.items() if k not in keys}


def _infer_view(body: dict) -> dict:
    rounded = [{**o, "data": [round(v, 4) for v in o["data"]]} for o in body["outputs"]]
    return {**body, "outputs": rounded}


def _summaries(body: list) -> list:
    return [{k: m[k] for k in ("name", "versions", "default")} for m in body]


def _prediction_view(body: dict) -> dict:
    return {"model": body["model"], "version": body["version"],
            "top": [row["top"] for row in body["predictions"]],
            "filenames": [row.get("filename") for row in body["predictions"]]}


def _kind_only(body: dict) -> dict:
    return {"type": body.get("type")}


def _digits_tensor() -> dict:
    return {"id": "same", "inputs": [{"name": "input", "shape": [1, 8, 8, 1], "datatype": "FP32",
                                      "data": [round(i / 64, 4) for i in range(64)]}]}


def good_cases() -> list[Case]:
    """Requests every front end answers with 200 and the same (viewed) body."""
    png = (SAMPLES / "digit-3.png").read_bytes()
    files = [("file", (name, (SAMPLES / name).read_bytes(), "image/png")) for name in ("digit-7.png", "digit-0.png")]
    return [
        Case("GET", "/v2"),
        Case("GET", "/v2/health/live"),
        Case("GET", "/v2/health/ready"),
        Case("GET", "/v2/models/digits"),
        Case("GET", "/v2/models/digits/versions/1"),
        Case("GET", "/v2/models/digits/ready"),
        Case("GET", "/v2/models/colorfulness/versions/1/ready"),
        Case("POST", "/v2/models/digits/infer", {"json": _digits_tensor()}, _infer_view),
        Case("POST", "/v2/models/digits/versions/1/infer", {"json": _digits_tensor()}, _infer_view),
        Case("POST", "/predictions/digits", {"data": png, "headers": {"Content-Type": "image/png"}}, _prediction_view),
        Case("POST", "/predictions/digits/1", {"files": files}, _prediction_view),
        Case("GET", "/models", {}, _summaries),
        Case("GET", "/models/digits/versions/2", {}, _without("status")),
        Case("GET", "/models/digits/samples"),
        Case("GET", "/models/digits/samples/samples/digit-3.png"),
        Case("GET", "/models/digits/labels"),
        Case("GET", "/models/digits/traffic"),
        Case("GET", "/models/digits/traffic/disagreements"),
    ]


def bad_cases() -> list[Case]:
    """Requests every front end refuses with the same status and the same JSON error."""
    wrong_shape = {"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}
    return [
        Case("GET", "/v2", {"auth": False}),
        Case("GET", "/v2", {"auth": False, "headers": {"Authorization": "token wrong"}}),
        Case("GET", "/models?token=wrong", {"auth": False}),
        Case("GET", "/v2/models/digitz"),
        Case("GET", "/v2/models/digits/versions/9/ready"),
        Case("GET", "/v2/models/Digits!/ready"),
        Case("POST", "/v2/models/digits/infer", {"data": b"{"}),
        Case("POST", "/v2/models/digits/infer", {"json": wrong_shape}),
        Case("POST", "/v2/models/digits/versions/0/infer", {"json": wrong_shape}),
        Case("POST", "/v2/models/digits/infer", {"data": b"x" * (LIMIT + LIMIT // 2)}),
        Case("POST", "/v2/repository/index", {"json": {"ready": "yes"}}),
        Case("POST", "/v2/repository/models/digits/load", {"json": {"parameters": {"config": "{}"}}}),
        Case("POST", "/predictions/digits", {"data": b"abc", "headers": {"Content-Type": "text/plain"}}),
        Case("POST", "/predictions/digits", {"data": b"not an image", "headers": {"Content-Type": "image/png"}}),
        Case("POST", "/predictions/digits/7", {"data": b"x", "headers": {"Content-Type": "image/png"}}),
        Case("POST", "/models", {"data": b"{}", "headers": {"Content-Type": "application/json"}}),
        Case("POST", "/models?path=/etc/passwd", {"data": b"x", "headers": {"Content-Type": "application/zip"}}),
        # the message names each server's own temporary file
        Case("POST", "/models", {"data": b"not a zip", "headers": {"Content-Type": "application/zip"}}, _kind_only),
        Case("PUT", "/models/digits/default", {"json": {}}),
        Case("PUT", "/models/digits/default", {"json": {"version": 9}}),
        Case("PUT", "/models/digits/default", {"json": {"version": 1, "path": "/tmp"}}),
        Case("PUT", "/models/digits/labels/Bad!", {"json": {"version": 1}}),
        Case("PUT", "/models/digits/traffic", {"json": {"canary": {"version": 1, "percent": 101}}}),
        Case("POST", "/models/digits/reload?force=maybe"),
        Case("GET", "/models/digits/versions/x"),
        Case("GET", "/models/digits/samples/..%2F..%2Fetc%2Fpasswd"),
        Case("GET", "/models/nosuch/labels/stable"),
        Case("DELETE", "/v2"),
        Case("GET", "/v2/no/such/thing"),
    ]


def send(server, case: Case):
    """The reply of ``server`` (an object with ``request(method, path, **options)``) to ``case``."""
    return server.request(case.method, case.path, **dict(case.options))


def same(case: Case, ours, theirs) -> None:
    """Assert that two replies to ``case`` agree: status, media type, and the (viewed) body."""
    assert ours.status_code == theirs.status_code, (case.id, ours.status_code, ours.text[:300], theirs.text[:300])
    media = [r.headers.get("Content-Type", "").split(";")[0] for r in (ours, theirs)]
    assert media[0] == media[1], (case.id, media)
    if media[0] != "application/json":
        assert ours.content == theirs.content, case.id
        return
    view = case.view or (lambda body: body)
    assert view(ours.json()) == view(theirs.json()), (case.id, ours.text[:500], theirs.text[:500])
    assert ours.headers.get("WWW-Authenticate") == theirs.headers.get("WWW-Authenticate"), case.id
