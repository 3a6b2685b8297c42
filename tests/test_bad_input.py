"""The bad-input matrix: every hostile request against one live ``yyai serve``.

One real server runs over a temporary store of small real archives, with small limits
(``--max-body-bytes``, ``--max-archive-bytes``, ``--max-image-pixels``) so that the
oversized cases are cheap. Every case sends one bad request and checks three things:

1. the reply is the exact expected 4xx, as JSON with an ``error`` message (and, for the
   library's typed refusals, the error ``type``), with no traceback and no file content;
2. the server is still healthy: a good prediction right after it succeeds and equals
   the Keras models' own output (the default pin survived too);
3. the store folder is byte-for-byte what it was (every file's name and sha256, the
   state file included), and the server's upload spool folder is empty.

The cases cover the archive reader's refusals over ``POST /models``, image and v2
predictions, requests that name a file on the server, bad labels and traffic policies
(percent outside 0-100, unknown versions and keys, a side equal to the default), and every
management and
prediction endpoint without a token, with a wrong one, or with the token in the wrong
place. ``CASE_IDS`` (bottom) lists the whole matrix.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import struct
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import conftest
import cv2
import numpy as np
import pytest
import requests
from builders import install, pack_models, reference
from serving import start_server

KiB = 1024
MiB = 1024 * KiB
TOKEN = "test-token"
MAX_BODY = 64 * KiB
MAX_ARCHIVE = 1 * MiB
MAX_PIXELS = 10_000
LIMITS = ["--max-body-bytes", str(MAX_BODY), "--max-archive-bytes", str(MAX_ARCHIVE),
          "--max-image-pixels", str(MAX_PIXELS)]
PASSWD_LINE = "root:x:0:0"


# --- the server and its store ---------------------------------------------------------------


def png(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", image)
    assert ok
    return buffer.tobytes()


def jpeg(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image)
    assert ok
    return buffer.tobytes()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden ones and the state file included) -> its sha256.

    The state file's ``recent`` section is left out: the server rewrites that hint (the
    versions that answered, most recent first) on its own clock, whenever the order moved."""
    def content(path: Path) -> bytes:
        if path.name != ".yyai-state.json":
            return path.read_bytes()
        state = json.loads(path.read_bytes())
        state.pop("recent", None)
        return json.dumps(state, sort_keys=True).encode()

    return {str(p.relative_to(folder)): hashlib.sha256(content(p)).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def wait_ready(server, timeout: float = 300) -> None:
    """Poll ``/v2/health/ready`` until the start-up load is done (bounded in time)."""
    deadline = time.monotonic() + timeout
    while server.get("/v2/health/ready", timeout=10).status_code != 200:
        assert server.proc.poll() is None and time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.3)


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def ctx(tmp_path_factory, request):
    """One server over alpha v1 (pinned) and v2, and beta v1; plus the archives the cases send.

    The whole matrix runs against a single process and against ``--workers 2`` (each
    case then reaches whichever worker the kernel picks for its connection)."""
    root = tmp_path_factory.mktemp("bad-input")
    archives, members = {}, {}

    def build(key, name, version, seeds):
        archives[key], members[key] = pack_models(root / "built", name, version, seeds)

    build("alpha1", "alpha", 1, [1, 2])
    build("alpha2", "alpha", 2, [3])
    build("beta1", "beta", 1, [4])
    store = root / "store"
    store.mkdir()
    for key in ("alpha1", "alpha2", "beta1"):
        install(archives[key], store)
    # the server loads while this process builds what the cases send (delta and lam stay out
    # of the store: cases try to sneak them in)
    server = start_server(store, root / "work", token=TOKEN, args=[*LIMITS, "--workers", str(request.param)],
                          wait_ready=False)
    try:
        models = request.getfixturevalue("models")
        build("delta1", "delta", 1, [5])
        build("alpha1_other", "alpha", 1, [6])  # alpha v1 again, other weights
        build("alpha2_other", "alpha", 2, [7])
        from yyai_kernel.archive import pack

        archives["lambda"] = pack(name="lam", version=1, models=[models.lambda_keras], input_spec=conftest.INPUT_SPEC,
                                  output_spec=conftest.OUTPUT_SPEC, out_dir=root / "lambda", trusted=True)
        wait_ready(server)
        # pin alpha to v1 (v2 is newer): the state file exists, and a lost pin would show
        assert server.request("PUT", "/models/alpha/default", json={"version": 1}).status_code == 200
        spools = [Path(p) for p in re.findall(r"Temporary files in (\S+)", server.log())]  # one per worker
        probe = np.random.default_rng(7).integers(0, 256, (4, 4), dtype=np.uint8)
        x = (probe.astype(np.float32) / 255.0)[None, :, :, None]
        context = SimpleNamespace(
            server=server, store=store, spools=spools, tmp=root / "cases", archives=archives, models=models,
            probe_png=png(probe), expected=reference(members["alpha1"], x)["combined"][0],
        )
        context.tmp.mkdir()
        assert (store / ".yyai-state.json").is_file()
        assert_unharmed(context, first=True)
        context.snapshot = snapshot(store)
        yield context
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log(), server.log()[-3000:]


def assert_refused(response: requests.Response, status: int, error_type: str | None = None) -> dict:
    """The exact status, a JSON ``{"error": message}`` body, nothing leaked."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers.get("Content-Type", "").startswith("application/json"), response.headers
    assert "Traceback" not in response.text and PASSWD_LINE not in response.text
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"].strip(), body
    if error_type is not None:
        assert body.get("type") == error_type, body
    return body


def assert_unharmed(ctx, first: bool = False) -> None:
    """Still serving, still right, default pin intact, store unchanged, spool empty."""
    assert ctx.server.proc.poll() is None, ctx.server.log()[-3000:]
    reply = ctx.server.post("/predictions/alpha", params={"raw": "true"}, data=ctx.probe_png,
                            headers={"Content-Type": "image/png"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["model"] == "alpha" and body["version"] == 1
    np.testing.assert_allclose(body["predictions"][0]["raw"]["combined"], ctx.expected, atol=1e-5)
    if not first:
        assert snapshot(ctx.store) == ctx.snapshot
    assert all(list(spool.iterdir()) == [] for spool in ctx.spools)


# --- how cases send -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One bad request: ``send(ctx)`` makes it; the reply must be ``status`` (and ``error_type``,
    and hold ``words`` in its message)."""

    id: str
    status: int
    send: Callable
    error_type: str | None = None
    words: str | None = None


def post(path: str, **kwargs) -> Callable:
    return lambda ctx: ctx.server.post(path, **kwargs)


def image(path: str, data: bytes, content_type: str = "image/png", **kwargs) -> Callable:
    return post(path, data=data, headers={"Content-Type": content_type}, **kwargs)


def raw_path(method: str, path: str, **kwargs) -> Callable:
    """A request whose path goes out exactly as written (requests would collapse ``/../``)."""

    def send(ctx):
        headers = {**ctx.server.headers, **kwargs.get("headers", {})}
        prepared = requests.Request(method, ctx.server.url + "/", **{**kwargs, "headers": headers}).prepare()
        prepared.url = ctx.server.url + path
        with requests.Session() as session:
            return session.send(prepared, timeout=60)

    return send


def upload(make: Callable[[SimpleNamespace], bytes], content_type: str = "application/octet-stream",
           params: dict | None = None) -> Callable:
    """POST /models with the archive bytes that ``make(ctx)`` returns."""
    return lambda ctx: ctx.server.post("/models", data=make(ctx), params=params,
                                       headers={"Content-Type": content_type})


def crafted(**kwargs) -> Callable[[SimpleNamespace], bytes]:
    """The bytes of an archive written by ``conftest.craft_archive(**kwargs)``."""

    def make(ctx):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about duplicate names
            return conftest.craft_archive(ctx.tmp / "crafted.yyar", **kwargs).read_bytes()

    return make


def manifest(members: dict, change: Callable[[dict], object]) -> dict:
    data = conftest.manifest_for(members)
    change(data)
    return data


def built(key: str, cut: Callable[[bytes], bytes] = lambda b: b) -> Callable[[SimpleNamespace], bytes]:
    return lambda ctx: cut(ctx.archives[key].read_bytes())


def multipart_archive(filename: str, key: str) -> Callable:
    return lambda ctx: ctx.server.post("/models", files={"archive": (filename, ctx.archives[key].read_bytes())})


def junk_member(ctx) -> bytes:
    return conftest.craft_archive(ctx.tmp / "junk.yyar",
                                  members={"models/junk.h5": ctx.models.junk_h5.read_bytes()}).read_bytes()


def misfit_member(ctx) -> bytes:
    """A real Keras model (8x8x1 input) under a manifest that says 4x4x1."""
    members = {"models/tiny.keras": ctx.models.tiny_keras.read_bytes()}
    data = conftest.manifest_for(members)
    data["input"]["shape"] = [4, 4, 1]
    return conftest.craft_archive(ctx.tmp / "misfit.yyar", members=members, manifest=data).read_bytes()


M = {"models/m.h5": b"abc"}
GOOD_MEMBER = {"models/m.h5": b"good"}

ARCHIVE_CASES = [
    Case("archive-traversal-dotdot", 400, upload(crafted(extra=[("../evil.py", b"x")])), "UnsafeMemberError"),
    Case("archive-traversal-nested", 400, upload(crafted(extra=[("models/../../evil.py", b"x")])),
         "UnsafeMemberError"),
    Case("archive-traversal-backslash", 400, upload(crafted(extra=[("..\\..\\evil.py", b"x")])),
         "UnsafeMemberError"),
    Case("archive-absolute-posix-name", 400, upload(crafted(extra=[("/etc/cron.d/evil", b"x")])),
         "UnsafeMemberError"),
    Case("archive-absolute-drive-name", 400, upload(crafted(extra=[("C:/evil.py", b"x")])), "UnsafeMemberError"),
    Case("archive-symlink-extra", 400,
         upload(crafted(extra=[(conftest.symlink_info("models/link.h5"), b"/etc/passwd")])), "UnsafeMemberError"),
    Case("archive-symlink-as-listed-member", 400, upload(lambda ctx: conftest.write_zip(
        ctx.tmp / "link.yyar", [("MANIFEST.json", json.dumps(conftest.manifest_for({"models/m.h5": b"/etc/passwd"}))),
                                (conftest.symlink_info("models/m.h5"), b"/etc/passwd")]).read_bytes()),
         "UnsafeMemberError"),
    Case("archive-duplicate-entry-names", 400, upload(crafted(extra=[("models/m.h5", b"second copy")])),
         "UnsafeMemberError"),
    Case("archive-zip-bomb", 413, upload(crafted(members={"models/m.h5": bytes(2 * MiB)})), "ZipBombError"),
    Case("archive-too-many-members", 413, upload(crafted(extra=[(f"junk/{i}", b"") for i in range(70)])),
         "ArchiveLimitError"),
    Case("archive-member-larger-than-declared", 413, upload(crafted(
        members={"models/m.h5": b"x" * 100}, manifest=conftest.manifest_for({"models/m.h5": b"x" * 10}))),
         "ArchiveLimitError"),
    Case("archive-checksum-mismatch", 400, upload(crafted(
        members={"models/m.h5": b"evil"}, manifest=conftest.manifest_for(GOOD_MEMBER))), "ChecksumError"),
    Case("archive-unlisted-extra-file", 400, upload(crafted(extra=[("samples/sneaky.py", b"import os")])),
         "UnexpectedMemberError"),
    Case("archive-listed-file-missing", 400, upload(crafted(files={"samples/0.png": b"png"}, omit={"samples/0.png"})),
         "MissingMemberError"),
    Case("archive-manifest-missing", 400, upload(lambda ctx: conftest.write_zip(
        ctx.tmp / "nomanifest.yyar", [("models/m.h5", b"abc")]).read_bytes()), "ManifestError"),
    Case("archive-manifest-not-json", 400, upload(crafted(manifest=b"{not json")), "ManifestError"),
    Case("archive-manifest-not-an-object", 400, upload(crafted(manifest=b"[1, 2]")), "ManifestError"),
    Case("archive-schema-name-traversal", 400, upload(crafted(
        members=M, manifest=manifest(M, lambda d: d.update(name="../../etc")))), "ManifestError"),
    Case("archive-schema-member-path-traversal", 400, upload(crafted(
        members=M, manifest=manifest(M, lambda d: d["members"][0].update(path="../m.h5")))), "ManifestError"),
    Case("archive-schema-file-absolute-path", 400, upload(crafted(members=M, manifest=manifest(M, lambda d: d.update(
        files=[{"path": "/etc/passwd", "sha256": "0" * 64, "size": 1, "role": "other"}])))), "ManifestError"),
    Case("archive-schema-unknown-field", 400, upload(crafted(
        members=M, manifest=manifest(M, lambda d: d.update(surprise=1)))), "ManifestError"),
    Case("archive-schema-missing-input-shape", 400, upload(crafted(
        members=M, manifest=manifest(M, lambda d: d["input"].pop("shape")))), "ManifestError"),
    Case("archive-schema-version-zero", 400, upload(crafted(
        members=M, manifest=manifest(M, lambda d: d.update(version=0)))), "ManifestError"),
    Case("archive-unknown-format", 400, upload(crafted(
        members=M, manifest=manifest(M, lambda d: d.update(format="zip")))), "FormatVersionError"),
    Case("archive-unknown-format-version", 400, upload(crafted(
        members=M, manifest=manifest(M, lambda d: d.update(format_version=2)))), "FormatVersionError"),
    Case("archive-truncated-zip-half", 400, upload(built("delta1", lambda b: b[: len(b) // 2])), "NotAnArchiveError"),
    Case("archive-truncated-zip-tail", 400, upload(built("delta1", lambda b: b[:-10])), "NotAnArchiveError"),
    Case("archive-not-a-zip", 400, upload(lambda ctx: b"this is plain text, not a zip\n" * 10), "NotAnArchiveError"),
    Case("archive-empty-body", 400, upload(lambda ctx: b""), "InvalidInputError"),
    Case("archive-lambda-layer-with-code", 400, upload(built("lambda")), "UnsafeModelError"),
    Case("archive-lambda-layer-trusted-query-refused", 400, upload(built("lambda"), params={"trusted": "true"}),
         "InvalidInputError"),
    Case("archive-member-not-a-keras-model", 400, upload(junk_member), "ModelLoadError"),
    Case("archive-member-does-not-fit-manifest", 400, upload(misfit_member), "ManifestError"),
    Case("archive-duplicate-name-and-version", 409, upload(built("alpha1_other")), "ConflictError"),
    Case("archive-duplicate-older-version", 409, upload(built("alpha2_other")), "ConflictError"),
    Case("archive-duplicate-multipart-traversal-filename", 409,
         multipart_archive("../../../alpha-9.yyar", "alpha1_other"), "ConflictError"),
    Case("archive-over-size-limit", 413, upload(lambda ctx: np.random.default_rng(0).bytes(MAX_ARCHIVE + 64 * KiB)),
         "PayloadTooLargeError"),
    Case("archive-wrong-content-type", 415, upload(built("delta1"), content_type="text/plain"),
         "UnsupportedMediaError"),
    Case("archive-multipart-without-file", 400, post("/models", files={"name": (None, "delta")}),
         "InvalidInputError"),
]


# --- predictions ----------------------------------------------------------------------------


def gray(seed: int, size: int = 4) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size), dtype=np.uint8)


def png_declaring(width: int, height: int) -> bytes:
    """A ~70-byte PNG whose header declares width x height pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header is rewritten to declare width x height."""
    data = bytearray(jpeg(np.zeros((8, 8), np.uint8)))
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


PNG_64 = png(gray(1, 64))
JPEG_64 = jpeg(gray(2, 64))
GOOD_PNG = png(gray(3))


def chunks(total: int, size: int = 16 * KiB):
    for _ in range(total // size):
        yield bytes(size)


PREDICTION_CASES = [
    Case("pred-empty-body", 400, image("/predictions/alpha", b""), "ImageError"),
    Case("pred-non-image-bytes", 400, image("/predictions/alpha", b"hello, this is not an image"), "ImageError"),
    Case("pred-truncated-png", 400, image("/predictions/alpha", PNG_64[: len(PNG_64) // 2]), "ImageError"),
    Case("pred-truncated-png-header", 400, image("/predictions/alpha", PNG_64[:40]), "ImageError"),
    Case("pred-truncated-jpeg", 400, image("/predictions/alpha", JPEG_64[: len(JPEG_64) // 2], "image/jpeg"),
         "ImageError"),
    Case("pred-png-declares-100000x100000", 413, image("/predictions/alpha", png_declaring(100_000, 100_000)),
         "ImageTooLargeError"),
    Case("pred-png-declares-200x200-over-limit", 413, image("/predictions/alpha", png_declaring(200, 200)),
         "ImageTooLargeError"),
    Case("pred-jpeg-declares-65000x65000", 413,
         image("/predictions/alpha", jpeg_declaring(65_000, 65_000), "image/jpeg"), "ImageTooLargeError"),
    Case("pred-real-png-over-pixel-limit", 413, image("/predictions/alpha", png(np.zeros((200, 200), np.uint8))),
         "ImageTooLargeError"),
    Case("pred-body-over-size-limit", 413, image("/predictions/alpha", bytes(MAX_BODY + 32 * KiB)),
         "PayloadTooLargeError"),
    Case("pred-chunked-body-over-size-limit", 413,
         # a fresh generator per send: the matrix runs once per server configuration
         lambda ctx: ctx.server.post("/predictions/alpha", data=chunks(MAX_BODY + 32 * KiB),
                                     headers={"Content-Type": "image/png"}),
         "PayloadTooLargeError"),
    Case("pred-content-type-text", 415, image("/predictions/alpha", GOOD_PNG, "text/plain"), "UnsupportedMediaError"),
    Case("pred-content-type-json", 415, image("/predictions/alpha", GOOD_PNG, "application/json"),
         "UnsupportedMediaError"),
    Case("pred-content-type-missing", 415, post("/predictions/alpha", data=GOOD_PNG), "UnsupportedMediaError"),
    Case("pred-multipart-without-files", 400, post("/predictions/alpha", files={"field": (None, "value")}),
         "InvalidInputError"),
    Case("pred-multipart-empty-file", 400, post("/predictions/alpha", files={"file": ("a.png", b"", "image/png")}),
         "ImageError"),
    Case("pred-multipart-one-bad-image", 400, post("/predictions/alpha", files=[
        ("file", ("good.png", GOOD_PNG, "image/png")), ("file", ("bad.png", b"not an image", "image/png"))]),
         "ImageError"),
    Case("pred-multipart-too-many-images", 413, post("/predictions/alpha", files=[
        ("file", (f"{i}.png", GOOD_PNG, "image/png")) for i in range(65)]), "PayloadTooLargeError"),
    Case("pred-unknown-model", 404, image("/predictions/nosuch", GOOD_PNG), "ModelNotFoundError"),
    Case("pred-unknown-version", 404, image("/predictions/alpha/9", GOOD_PNG), "ModelNotFoundError"),
    Case("pred-version-not-a-number", 400, image("/predictions/alpha/One", GOOD_PNG), "InvalidInputError",
         "positive integer or a label"),
    Case("pred-version-unknown-label", 404, image("/predictions/alpha/one", GOOD_PNG), "ModelNotFoundError",
         "no label 'one'"),
    Case("pred-version-zero", 400, image("/predictions/alpha/0", GOOD_PNG), "InvalidInputError"),
    Case("pred-version-negative", 400, image("/predictions/alpha/-1", GOOD_PNG), "InvalidInputError"),
    Case("pred-version-fraction", 400, image("/predictions/alpha/1.5", GOOD_PNG), "InvalidInputError"),
    Case("pred-name-dotdot-raw", 400, raw_path("POST", "/predictions/../alpha", data=GOOD_PNG,
                                               headers={"Content-Type": "image/png"}), "InvalidInputError"),
    Case("pred-name-dotdot-encoded", 400, image("/predictions/%2e%2e%2falpha", GOOD_PNG), "InvalidInputError"),
    Case("pred-name-dotdot-etc-passwd-encoded", 400, image("/predictions/..%2F..%2Fetc%2Fpasswd", GOOD_PNG),
         "InvalidInputError"),
    Case("pred-name-uppercase", 400, image("/predictions/ALPHA", GOOD_PNG), "InvalidInputError"),
]


def tensor(**changes) -> dict:
    """A v2 request for alpha with its one input changed by ``changes``."""
    return {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4, 4, 1], "data": [0.5] * 16, **changes}]}


def infer(path: str = "/v2/models/alpha/infer", **kwargs) -> Callable:
    return post(path, **kwargs)


def infer_json(text: str, **kwargs) -> Callable:
    return post("/v2/models/alpha/infer", data=text.encode(), headers={"Content-Type": "application/json"}, **kwargs)


NAN_BODY = json.dumps(tensor(data=[0.5] * 15 + [float("nan")]))
INF_BODY = json.dumps(tensor(data=[0.5] * 15 + [float("inf")]))
NEG_INF_BODY = json.dumps(tensor(data=[float("-inf")] + [0.5] * 15))
BINARY_HEADER = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4, 4, 1],
                                        "parameters": {"binary_data_size": 64}}]}).encode()

V2_CASES = [
    Case("v2-empty-body", 400, infer(data=b""), "InvalidInputError"),
    Case("v2-not-json", 400, infer(data=b"{nope"), "InvalidInputError"),
    Case("v2-json-not-an-object", 400, infer(json=[1, 2, 3]), "InvalidInputError"),
    Case("v2-no-inputs", 400, infer(json={"inputs": []}), "InvalidInputError"),
    Case("v2-wrong-shape", 400, infer(json=tensor(shape=[1, 16], data=[0.5] * 16)), "InvalidInputError"),
    Case("v2-wrong-spatial-size", 400, infer(json=tensor(shape=[1, 2, 8, 1])), "InvalidInputError"),
    Case("v2-negative-dimension", 400, infer(json=tensor(shape=[-1, 4, 4, 1])), "InvalidInputError"),
    Case("v2-empty-batch", 400, infer(json=tensor(shape=[0, 4, 4, 1], data=[])), "InvalidInputError"),
    Case("v2-datatype-bytes", 400, infer(json=tensor(datatype="BYTES", data=["a"] * 16)), "InvalidInputError"),
    Case("v2-datatype-unknown", 400, infer(json=tensor(datatype="FP128")), "InvalidInputError"),
    Case("v2-data-strings", 400, infer(json=tensor(data=["0.5"] * 16)), "InvalidInputError"),
    Case("v2-element-count-too-few", 400, infer(json=tensor(data=[0.5] * 15)), "InvalidInputError"),
    Case("v2-element-count-too-many", 400, infer(json=tensor(data=[0.5] * 17)), "InvalidInputError"),
    Case("v2-nan", 400, infer_json(NAN_BODY), "InvalidInputError"),
    Case("v2-infinity", 400, infer_json(INF_BODY), "InvalidInputError"),
    Case("v2-negative-infinity", 400, infer_json(NEG_INF_BODY), "InvalidInputError"),
    Case("v2-fp64-overflows-fp32", 400, infer(json=tensor(datatype="FP64", data=[1e300] * 16)), "InvalidInputError"),
    Case("v2-wrong-input-name", 400, infer(json=tensor(name="pixels")), "InvalidInputError"),
    Case("v2-unknown-output", 400, infer(json={**tensor(), "outputs": [{"name": "secret"}]}), "InvalidInputError"),
    Case("v2-binary-size-mismatch", 400, infer(data=BINARY_HEADER + bytes(32), headers={
        "Inference-Header-Content-Length": str(len(BINARY_HEADER))}), "InvalidInputError"),
    Case("v2-header-length-past-body", 400, infer(data=BINARY_HEADER + bytes(64), headers={
        "Inference-Header-Content-Length": "999999"}), "InvalidInputError"),
    Case("v2-header-length-not-a-number", 400, infer(data=BINARY_HEADER + bytes(64), headers={
        "Inference-Header-Content-Length": "12abc"}), "InvalidInputError"),
    Case("v2-trailing-bytes", 400, infer(data=BINARY_HEADER + bytes(80), headers={
        "Inference-Header-Content-Length": str(len(BINARY_HEADER))}), "InvalidInputError"),
    Case("v2-unknown-content-encoding", 400, infer(data=b"x", headers={"Content-Encoding": "br"}),
         "InvalidInputError"),
    Case("v2-gzip-bomb", 413, infer(data=gzip.compress(b"0" * (4 * MAX_BODY)), headers={"Content-Encoding": "gzip"}),
         "PayloadTooLargeError"),
    Case("v2-body-over-size-limit", 413, infer(data=bytes(MAX_BODY + 32 * KiB)), "PayloadTooLargeError"),
    Case("v2-unknown-model", 404, infer("/v2/models/nosuch/infer", json=tensor()), "ModelNotFoundError"),
    Case("v2-unknown-version", 404, infer("/v2/models/alpha/versions/9/infer", json=tensor()), "ModelNotFoundError"),
    Case("v2-version-unknown-label", 404, infer("/v2/models/alpha/versions/latest/infer", json=tensor()),
         "ModelNotFoundError", "no label 'latest'"),
    Case("v2-version-not-a-number", 400, infer("/v2/models/alpha/versions/1x/infer", json=tensor()),
         "InvalidInputError"),
    Case("v2-name-dotdot-raw", 400, raw_path("POST", "/v2/models/../infer", json=tensor()), "InvalidInputError"),
    Case("v2-name-dotdot-encoded", 400, infer("/v2/models/%2e%2e%2fetc/infer", json=tensor()), "InvalidInputError"),
    Case("v2-metadata-name-dotdot-encoded", 400, lambda ctx: ctx.server.get("/v2/models/%2e%2e"),
         "InvalidInputError"),
]


# --- requests that name a file on the server ------------------------------------------------

PATH_CASES = [
    Case("path-models-json-path", 415, post("/models", json={"path": "/etc/passwd"}), "UnsupportedMediaError"),
    Case("path-models-json-url", 415, post("/models", json={"url": "file:///etc/passwd"}), "UnsupportedMediaError"),
    Case("path-models-query-path-empty-body", 400, upload(lambda ctx: b"", params={"path": "/etc/passwd"}),
         "InvalidInputError"),
    Case("path-models-query-url-with-archive", 400,
         upload(built("delta1"), params={"url": "file:///etc/passwd"}), "InvalidInputError"),
    Case("path-models-query-model-path-with-archive", 400,
         upload(built("delta1"), params={"model_path": "/tmp/evil.yyar"}), "InvalidInputError"),
    Case("path-models-body-is-a-path", 400, upload(lambda ctx: b"/etc/passwd"), "NotAnArchiveError"),
    Case("path-models-multipart-path-field", 400, post("/models", files={"path": (None, "/etc/passwd")}),
         "InvalidInputError"),
    Case("path-predictions-json-path", 415, post("/predictions/alpha", json={"path": "/etc/passwd"}),
         "UnsupportedMediaError"),
    Case("path-predictions-body-is-a-path", 400, image("/predictions/alpha", b"/etc/passwd"), "ImageError"),
    Case("path-predictions-query-path", 400, image("/predictions/alpha", b"", params={"path": "/etc/passwd"}),
         "ImageError"),
    Case("path-v2-infer-json-path", 400, infer(json={"path": "/etc/passwd"}), "InvalidInputError"),
    Case("path-v2-infer-bytes-tensor-path", 400,
         infer(json={"inputs": [{"name": "input", "datatype": "BYTES", "shape": [1], "data": ["/etc/passwd"]}]}),
         "InvalidInputError"),
    Case("path-v2-repository-file-override", 400, post("/v2/repository/models/alpha/load", json={
        "parameters": {"file:/etc/passwd": base64.b64encode(b"x").decode()}}), "InvalidInputError"),
    Case("path-v2-repository-config-override", 400, post("/v2/repository/models/alpha/load", json={
        "parameters": {"config": json.dumps({"backend": "python", "default_model_filename": "/etc/passwd"})}}),
         "InvalidInputError"),
    Case("path-load-body-path", 400, post("/models/alpha/load", json={"version": 1, "path": "/etc/passwd"}),
         "InvalidInputError"),
    Case("path-default-body-path", 400, lambda ctx: ctx.server.request(
        "PUT", "/models/alpha/default", json={"version": 1, "path": "/etc/passwd"}), "InvalidInputError"),
    Case("path-sample-traversal-encoded", 404,
         lambda ctx: ctx.server.get("/models/alpha/samples/..%2F..%2F..%2F..%2Fetc%2Fpasswd"), "ModelNotFoundError"),
    Case("path-sample-absolute", 404, lambda ctx: ctx.server.get("/models/alpha/samples//etc/passwd"),
         "ModelNotFoundError"),
    Case("path-sample-traversal-raw", 404, raw_path("GET", "/models/alpha/samples/../../../../etc/passwd"),
         "ModelNotFoundError"),
]

# --- labels and traffic policies (each refused with the store left as it was) ----------------------


def put(path: str, body) -> Callable:
    return lambda ctx: ctx.server.request("PUT", path, json=body)


def canary(version=2, percent=10, **extra) -> dict:
    return {"canary": {"version": version, "percent": percent, **extra}}


ROLLOUT_CASES = [
    Case("traffic-percent-over-100", 400, put("/models/alpha/traffic", canary(percent=150)), "InvalidInputError",
         "canary.percent must be a number from 0 to 100, not 150"),
    Case("traffic-percent-negative", 400, put("/models/alpha/traffic", {"shadow": {"version": 2, "percent": -1}}),
         "InvalidInputError", "shadow.percent must be a number from 0 to 100"),
    Case("traffic-percent-a-string", 400, put("/models/alpha/traffic", canary(percent="10")), "InvalidInputError",
         "from 0 to 100"),
    Case("traffic-percent-a-boolean", 400, put("/models/alpha/traffic", canary(percent=True)), "InvalidInputError"),
    Case("traffic-unknown-version", 404, put("/models/alpha/traffic", canary(version=9)), "ModelNotFoundError",
         "no version 9"),
    Case("traffic-version-zero", 400, put("/models/alpha/traffic", canary(version=0)), "InvalidInputError",
         "positive integer"),
    Case("traffic-version-a-label", 400, put("/models/alpha/traffic", canary(version="stable")), "InvalidInputError"),
    Case("traffic-unknown-key", 400, put("/models/alpha/traffic", {**canary(), "mirror": {"version": 2}}),
         "InvalidInputError", "Unknown field(s) 'mirror'"),
    Case("traffic-unknown-key-in-split", 400, put("/models/alpha/traffic", canary(timeout_ms=5)),
         "InvalidInputError", "Unknown field(s) 'timeout_ms' in canary"),
    Case("traffic-shadow-equals-default", 400, put("/models/alpha/traffic", {"shadow": {"version": 1, "percent": 50}}),
         "InvalidInputError", "already the default"),
    Case("traffic-canary-equals-default", 400, put("/models/alpha/traffic", canary(version=1)), "InvalidInputError",
         "already the default"),
    Case("traffic-empty-policy", 400, put("/models/alpha/traffic", {}), "InvalidInputError", "neither a canary"),
    Case("traffic-policy-not-an-object", 400, put("/models/alpha/traffic", [2, 10]), "InvalidInputError"),
    Case("traffic-sticky-not-a-boolean", 400, put("/models/alpha/traffic", {**canary(), "sticky": "yes"}),
         "InvalidInputError", "'sticky' must be true or false"),
    Case("traffic-not-json", 400, lambda ctx: ctx.server.request("PUT", "/models/alpha/traffic", data=b"{canary"),
         "InvalidInputError"),
    Case("traffic-no-body", 400, lambda ctx: ctx.server.request("PUT", "/models/alpha/traffic"), "InvalidInputError"),
    Case("traffic-unknown-model", 404, put("/models/nosuch/traffic", canary()), "ModelNotFoundError"),
    Case("traffic-bad-model-name", 400, put("/models/Alpha/traffic", canary()), "InvalidInputError"),
    Case("traffic-promote-without-policy", 400, post("/models/alpha/traffic/promote"), "InvalidInputError",
         "no canary or shadow"),
    Case("traffic-disagreements-unknown-model", 404, lambda ctx: ctx.server.get("/models/nosuch/traffic/disagreements"),
         "ModelNotFoundError"),
    Case("label-name-uppercase", 400, put("/models/alpha/labels/Stable", {"version": 1}), "InvalidInputError",
         "not a version label"),
    Case("label-name-a-number", 400, put("/models/alpha/labels/2", {"version": 1}), "InvalidInputError",
         "starting with a letter"),
    Case("label-name-too-long", 400, put("/models/alpha/labels/" + "a" * 33, {"version": 1}), "InvalidInputError"),
    Case("label-name-dotdot-encoded", 400, put("/models/alpha/labels/%2e%2e", {"version": 1}), "InvalidInputError"),
    Case("label-unknown-version", 404, put("/models/alpha/labels/stable", {"version": 9}), "ModelNotFoundError",
         "no version 9"),
    Case("label-version-a-label", 400, put("/models/alpha/labels/stable", {"version": "canary"}),
         "InvalidInputError", "positive integer"),
    Case("label-body-path", 400, put("/models/alpha/labels/stable", {"version": 1, "path": "/etc/passwd"}),
         "InvalidInputError", "unknown field"),
    Case("label-no-version", 400, put("/models/alpha/labels/stable", {}), "InvalidInputError"),
    Case("label-unknown-model", 404, put("/models/nosuch/labels/stable", {"version": 1}), "ModelNotFoundError"),
    Case("label-get-unknown", 404, lambda ctx: ctx.server.get("/models/alpha/labels/stable"), "ModelNotFoundError",
         "no label 'stable'"),
    Case("label-delete-unknown", 404, lambda ctx: ctx.server.request("DELETE", "/models/alpha/labels/stable"),
         "ModelNotFoundError", "no label 'stable'"),
    Case("label-sample-query-unknown", 404, lambda ctx: ctx.server.get("/models/alpha/samples",
                                                                      params={"version": "stable"}),
         "ModelNotFoundError"),
]


# --- JSON nested deeper than the parser's limit (yyai_kernel.protocol.jsonparse.MAX_DEPTH, 64) -----------

DEEP = 5000  # Python's json recursed once per level: RecursionError, a 500
NESTS = "nests deeper than 64 levels"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


NESTED_BODIES = {
    "array": nested(DEEP),
    "inputs": '{"inputs": ' + nested(DEEP) + "}",
    "unclosed": "[" * DEEP,
    "just-over-the-limit": '{"inputs": ' + nested(64) + "}",  # 65 levels; orjson reads it, the limit refuses it
}
JSON_ENDPOINTS = [
    ("PUT", "/models/alpha/default"),
    ("PUT", "/models/alpha/traffic"),
    ("PUT", "/models/alpha/labels/stable"),
    ("POST", "/models/alpha/load"),
    ("POST", "/v2/repository/index"),
    ("POST", "/v2/repository/models/alpha/load"),
    ("POST", "/v2/repository/models/alpha/unload"),
    ("POST", "/v2/models/alpha/infer"),
    ("POST", "/v2/models/alpha/versions/1/infer"),
]


def send_json(method: str, path: str, text: str) -> Callable:
    return lambda ctx: ctx.server.request(method, path, data=text.encode(),
                                          headers={"Content-Type": "application/json"})


NESTED_CASES = [
    Case(f"nested-{form}-{method}-{path.strip('/').replace('/', '-')}", 400, send_json(method, path, text),
         "InvalidInputError", NESTS)
    for method, path in JSON_ENDPOINTS for form, text in NESTED_BODIES.items()
] + [
    Case("archive-manifest-nested-5000-deep", 400, upload(crafted(manifest=nested(DEEP).encode())), "ManifestError",
         NESTS),
    Case("archive-manifest-field-nested-65-deep", 400, upload(crafted(
        members=M, manifest=manifest(M, lambda d: d.update(description=json.loads(nested(65)))))),
         "ManifestError", NESTS),
]

BAD_INPUT_CASES = ARCHIVE_CASES + PREDICTION_CASES + V2_CASES + PATH_CASES + ROLLOUT_CASES + NESTED_CASES


@pytest.mark.parametrize("case", BAD_INPUT_CASES, ids=[c.id for c in BAD_INPUT_CASES])
def test_bad_input_is_refused_and_harms_nothing(ctx, case):
    refusal = assert_refused(case.send(ctx), case.status, case.error_type)
    assert case.words is None or case.words in refusal["error"], refusal
    assert_unharmed(ctx)


# --- auth -----------------------------------------------------------------------------------


def _delta(ctx) -> dict:
    return {"data": ctx.archives["delta1"].read_bytes(), "headers": {"Content-Type": "application/octet-stream"}}


def _png(ctx) -> dict:
    return {"data": ctx.probe_png, "headers": {"Content-Type": "image/png"}}


def _tensor(ctx) -> dict:
    return {"json": tensor()}


def _none(ctx) -> dict:
    return {}


def _json(body):
    return lambda ctx: {"json": body}


# (method, path, the request's natural body): each would change or reveal something if let in
ENDPOINTS = [
    ("GET", "/models", _none),
    ("POST", "/models", _delta),
    ("POST", "/models/_rescan", _none),
    ("GET", "/models/_status", _none),
    ("GET", "/models/alpha", _none),
    ("POST", "/models/alpha/load", _json({"version": 2})),
    ("POST", "/models/alpha/reload", _none),
    ("PUT", "/models/alpha/default", _json({"version": 2})),
    ("GET", "/models/alpha/versions/1", _none),
    ("DELETE", "/models/alpha/versions/2?purge=true", _none),
    ("GET", "/models/alpha/samples", _none),
    ("GET", "/models/alpha/labels", _none),
    ("GET", "/models/alpha/labels/stable", _none),
    ("PUT", "/models/alpha/labels/stable", _json({"version": 2})),
    ("DELETE", "/models/alpha/labels/stable", _none),
    ("GET", "/models/alpha/traffic", _none),
    ("PUT", "/models/alpha/traffic", _json({"shadow": {"version": 2, "percent": 100}})),
    ("DELETE", "/models/alpha/traffic", _none),
    ("POST", "/models/alpha/traffic/promote", _none),
    ("GET", "/models/alpha/traffic/disagreements", _none),
    ("GET", "/models/alpha/samples/samples%2F0.png", _none),
    ("POST", "/predictions/alpha", _png),
    ("POST", "/predictions/alpha/1", _png),
    ("GET", "/v2", _none),
    ("GET", "/v2/health/live", _none),
    ("GET", "/v2/health/ready", _none),
    ("GET", "/v2/models/alpha", _none),
    ("GET", "/v2/models/alpha/versions/1", _none),
    ("GET", "/v2/models/alpha/ready", _none),
    ("GET", "/v2/models/alpha/versions/1/ready", _none),
    ("POST", "/v2/models/alpha/infer", _tensor),
    ("POST", "/v2/models/alpha/versions/1/infer", _tensor),
    ("POST", "/v2/repository/index", _json({})),
    ("POST", "/v2/repository/models/alpha/load", _json({})),
    ("POST", "/v2/repository/models/alpha/unload", _json({})),
    ("GET", "/metrics", _none),
    ("GET", "/openapi.json", _none),
]


def _with_headers(extra: dict) -> Callable:
    def apply(kwargs: dict) -> dict:
        return {**kwargs, "headers": {**kwargs.get("headers", {}), **extra}}

    return apply


AUTH_MODES = {
    "no-token": lambda kwargs: kwargs,
    "wrong-token-header": _with_headers({"Authorization": "token not-the-token"}),
    "wrong-bearer-token": _with_headers({"Authorization": "Bearer not-the-token"}),
    "wrong-token-query": lambda kwargs: {**kwargs, "params": {"token": "not-the-token"}},
    "token-in-x-token-header": _with_headers({"X-Token": TOKEN}),
    "token-in-json-body": lambda kwargs: {"json": {"token": TOKEN}},
    "token-as-basic-auth": _with_headers(
        {"Authorization": "Basic " + base64.b64encode(f"yyai:{TOKEN}".encode()).decode()}),
    "token-without-scheme": _with_headers({"Authorization": TOKEN}),
    "token-in-cookie": _with_headers({"Cookie": f"token={TOKEN}"}),
}

AUTH_CASES = [(method, path, body, mode) for method, path, body in ENDPOINTS for mode in AUTH_MODES]
AUTH_IDS = [f"auth-{mode}-{method}-{path.strip('/').replace('/', '-').replace('?', '-')}"
            for method, path, _, mode in AUTH_CASES]


@pytest.mark.parametrize("method, path, body, mode", AUTH_CASES, ids=AUTH_IDS)
def test_auth_is_required_everywhere(ctx, method, path, body, mode):
    kwargs = AUTH_MODES[mode](body(ctx))
    response = ctx.server.request(method, path, auth=False, **kwargs)
    refusal = assert_refused(response, 401)
    assert "token" in refusal["error"].lower()
    assert response.headers.get("WWW-Authenticate", "").startswith("Token")
    assert_unharmed(ctx)


CASE_IDS = [c.id for c in BAD_INPUT_CASES] + AUTH_IDS
assert len(set(CASE_IDS)) == len(CASE_IDS), "case ids must be unique"
