"""API fuzzing: schemathesis drives a live ``yyai serve`` from its OpenAPI document.

What: every operation in the server's ``/openapi.json`` gets requests that schemathesis
generates from the document, both valid ones and ones that break it (negative mode), with
the server's token. Each reply must not be a 5xx, and must match the document: a declared
status code, the declared content type, and a body that fits the declared schema. After
the run the server still answers and lists no model that a request merely named.

Why: the hand-written OpenAPI document and the handlers can drift apart, and hostile
clients send what no test author thought of. The server's log must hold no traceback
either: an exception while an error reply is written never reaches the client. Names drawn from the document's pattern
almost never exist, so a hook swaps in the store's real models, versions and sample, a
real PNG for image predictions and a well-formed v2 request for inference in a share of
the cases: those reach the models and the 200 replies, not only the 404 path. Nothing is
excluded: uploads, unloads and purges run as well, on a store that is this module's own.

A short seeded, derandomized run is part of ``make test``; ``YYAI_FUZZ=long``
(``make fuzz``) runs many more examples per operation.
"""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import schemathesis
from builders import INPUT_SPEC, LABELS, install, pack_models, tiny_classifier
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from serving import start_server

LONG = os.environ.get("YYAI_FUZZ") == "long"
MAX_EXAMPLES = 120 if LONG else 12


def no_server_error(ctx, response, case):
    """schemathesis' ``not_a_server_error``, except for the one 5xx the API means to send.

    A version that is not loaded (yet, or any more) answers 503 ``ModelNotReadyError``, as
    the OpenAPI document says and the v2 clients expect; the fuzz run loads, unloads and
    purges, so it meets that answer on purpose. Any other 5xx fails.
    """
    if response.status_code == 503:
        try:
            if json.loads(response.content).get("type") == "ModelNotReadyError":
                return None
        except (ValueError, AttributeError):
            pass
    return not_a_server_error(ctx, response, case)


CHECKS = [no_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
LIMITS = ["--max-body-bytes", str(256 * 1024), "--max-archive-bytes", str(4 * 1024 * 1024),
          "--max-image-pixels", "10000"]
MODELS = {"alpha": [1, 2], "beta": [1]}
SAMPLE = "samples/0.png"
PNG = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (4, 4), dtype=np.uint8))[1].tobytes()
INFER = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4, 4, 1], "data": [0.5] * 16}]}


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    """A server over a store of its own: alpha v1 (two members) and v2, beta v1 (with a sample)."""
    from yyai_kernel.archive import pack

    root = tmp_path_factory.mktemp("api-fuzz")
    store = root / "store"
    store.mkdir()
    install(pack_models(root, "alpha", 1, [1, 2])[0], store)
    install(pack_models(root, "alpha", 2, [3])[0], store)
    build = root / "beta-build"
    build.mkdir()
    tiny_classifier(4).save(build / "m4.keras")
    (build / "0.png").write_bytes(PNG)
    beta = pack(name="beta", version=1, models=[build / "m4.keras"], input_spec=INPUT_SPEC,
                output_spec={"kind": "classification", "labels": LABELS},
                extra_files=[(build / "0.png", SAMPLE, "sample")], out_dir=build)
    install(beta, store)
    server = start_server(store, root / "work", args=LIMITS)
    yield server
    assert server.stop() == 0


def _schema():
    """The document the server serves, built here too so that pytest names one test per operation.

    (schemathesis' fixture-based loader fails under this pytest, so the document cannot come
    from the live server at collection time; ``test_the_fuzzed_document_is_the_served_one``
    checks that the two are the same document.)
    """
    from yyai_kernel.api.openapi import build_spec
    from yyai_kernel.api.table import all_endpoints
    from yyai_kernel.server import __version__

    loaded = schemathesis.openapi.from_dict(build_spec(all_endpoints(), __version__))
    loaded.config.generation.update(max_examples=MAX_EXAMPLES, modes=list(schemathesis.GenerationMode))
    return loaded


schema = _schema()


def _with_real_targets(case, choice: dict):
    """Point a generated case at the store's real models (and send a valid body) as `choice` says."""
    params = case.path_parameters or {}
    if choice["name"] and "name" in params:
        params["name"] = choice["name"]
        if "version" in params:
            params["version"] = choice["version"]
        if "sample" in params:
            params["sample"] = SAMPLE
    if choice["body"] and case.method == "POST" and case.path.startswith("/predictions/"):
        case.body, case.media_type = PNG, "image/png"
    if choice["body"] and case.method == "POST" and case.path.endswith("/infer"):
        case.body, case.media_type = json.loads(json.dumps(INFER)), "application/json"
    return case


@schema.hook
def flatmap_case(context, case):
    """Half the cases, unchanged; the others aimed at real models, versions, samples and bodies."""
    named = st.sampled_from(sorted(MODELS)).flatmap(
        lambda name: st.fixed_dictionaries({"name": st.just(name), "version": st.sampled_from(MODELS[name]),
                                            "body": st.booleans()}))
    unchanged = st.just({"name": None, "body": False})
    return st.one_of(unchanged, named).map(lambda choice: _with_real_targets(case, choice))


def test_the_fuzzed_document_is_the_served_one(fuzz_server):
    served = fuzz_server.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == json.loads(json.dumps(schema.raw_schema))


def test_what_the_fuzzing_found_gets_clean_4xx_replies(fuzz_server):
    """Each of these once got a 500, a 200 for a model that does not exist, or a server traceback.

    Runs before the fuzzing, which may unload or purge beta.
    """
    boundary = "a222103b9b30b1f9e8be6882ecedb1d2"
    headless_part = f"--{boundary}\r\n[]--{boundary}--\r\n".encode()
    reply = fuzz_server.post("/predictions/beta", data=headless_part,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert reply.status_code == 400 and reply.json()["type"] == "InvalidInputError", reply.text
    reply = fuzz_server.post("/models/nosuchmodel/reload")
    assert reply.status_code == 404 and reply.json()["type"] == "ModelNotFoundError", reply.text
    assert "nosuchmodel" not in {m["name"] for m in fuzz_server.get("/models").json()}
    for path in ("/models", "/v2/models/beta/infer", "/predictions/beta"):  # handlers that read their body
        reply = fuzz_server.request("QUERY", path)  # refused before the body is read: the connection closes
        assert reply.status_code == 405 and "error" in reply.json(), reply.text
        assert reply.headers.get("Connection", "").lower() == "close"


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=not LONG, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_answers_no_5xx_and_matches_its_openapi_document(case, fuzz_server):
    case.call_and_validate(base_url=fuzz_server.url, headers=fuzz_server.headers, checks=CHECKS, timeout=60)


def test_after_fuzzing_the_server_answers_and_lists_only_real_models(fuzz_server):
    assert fuzz_server.get("/v2/health/live").status_code == 200
    listed = fuzz_server.get("/models")
    assert listed.status_code == 200
    assert {m["name"] for m in listed.json()} <= set(MODELS), "a request created a model by naming it"
    assert fuzz_server.proc.poll() is None
    log = fuzz_server.log()
    assert "Traceback" not in log and "Uncaught exception" not in log, log[-5000:]
