"""API fuzzing: schemathesis drives a live ``yyai serve`` from its own ``/openapi.json``.

What: every operation in the server's OpenAPI document gets requests that schemathesis
generates from the document, both valid ones and ones that break it (negative mode), with
the server's token. Each reply must not be a 5xx, and must match the document: a declared
status code, the declared content type, and a body that fits the declared schema.

Why: the hand-written OpenAPI document and the handlers can drift apart, and hostile
clients send what no test author thought of. The store holds real archives (two models,
one with a bundled sample), so requests that name them reach the model code, not only
the 404 path. Nothing is excluded: uploads, unloads and purges run as well, which is why
the store is this module's own.

A short seeded, derandomized run is part of ``make test``; ``YYAI_FUZZ=long``
(``make fuzz``) runs many more examples per operation.
"""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance, not_a_server_error, response_schema_conformance, status_code_conformance,
)

from builders import INPUT_SPEC, LABELS, install, pack_models
from serving import start_server

LONG = os.environ.get("YYAI_FUZZ") == "long"
MAX_EXAMPLES = 60 if LONG else 6
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance, content_type_conformance]
LIMITS = ["--max-body-bytes", str(256 * 1024), "--max-archive-bytes", str(4 * 1024 * 1024),
          "--max-image-pixels", "10000"]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    """A server over a store of its own: alpha v1 (two members), beta v1 (with a sample)."""
    from yyai_kernel.archive import pack

    root = tmp_path_factory.mktemp("api-fuzz")
    store = root / "store"
    store.mkdir()
    install(pack_models(root, "alpha", 1, [1, 2])[0], store)
    model_dir = root / "beta-build"
    model_dir.mkdir()
    from builders import tiny_classifier

    tiny_classifier(3).save(model_dir / "m3.keras")
    ok, png = cv2.imencode(".png", np.random.default_rng(0).integers(0, 256, (4, 4), dtype=np.uint8))
    assert ok
    (model_dir / "0.png").write_bytes(png.tobytes())
    beta = pack(name="beta", version=1, models=[model_dir / "m3.keras"], input_spec=INPUT_SPEC,
                output_spec={"kind": "classification", "labels": LABELS},
                extra_files=[(model_dir / "0.png", "samples/0.png", "sample")], out_dir=model_dir)
    install(beta, store)
    server = start_server(store, root / "work", args=LIMITS)
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    """The live server's OpenAPI document, loaded with the token, aimed at the server."""
    schema = schemathesis.openapi.from_url(fuzz_server.url + "/openapi.json", headers=fuzz_server.headers,
                                           timeout=30)
    schema.config.update(base_url=fuzz_server.url, headers=fuzz_server.headers, request_timeout=60)
    schema.config.generation.update(max_examples=MAX_EXAMPLES)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, derandomize=not LONG, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_answers_no_5xx_and_matches_its_openapi_document(case, fuzz_server):
    case.call_and_validate(headers=fuzz_server.headers, checks=CHECKS, timeout=60)
