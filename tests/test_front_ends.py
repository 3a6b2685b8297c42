"""One REST behaviour on both HTTP servers of ``yyai serve``: Tornado and uvicorn.

A single ``yyai serve`` answers REST with Tornado (beside the dashboard, on one port); the
front ends of ``--workers 2`` answer it with uvicorn over the ASGI adapter
(``server/workers/restport.py``). Both serve the one endpoint table, so the shared request
table (``tests/requesttable.py``) must get the same status, media type and body from
both, good requests and refusals alike, with the worker's name on every reply of the
second. One server of each kind, both over a copy of the demo archives with the same
token and body limit, serve every case of the module.
"""

from __future__ import annotations

import time

import pytest
from builders import demo_store
from requesttable import LIMIT, bad_cases, good_cases, same, send
from serving import start_server, wait_until_ready

TOKEN = "front-ends-token"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(one process on Tornado, ``--workers 2`` on uvicorn), both ready, digits v1 loaded on both."""
    started = []
    try:
        for name, args in (("single", []), ("workers", ["--workers", "2"])):
            store = demo_store(tmp_path_factory.mktemp(f"front-{name}-store"))
            started.append(start_server(store, tmp_path_factory.mktemp(f"front-{name}"), token=TOKEN,
                                        args=["--max-body-bytes", str(LIMIT), *args], wait_ready=False))
        for server in started:
            wait_until_ready(server, time.monotonic() + 300)
            assert server.post("/models/digits/load", json={"version": 1}).status_code == 200
        yield tuple(started)
    finally:
        for server in started:
            assert server.stop() == 0


@pytest.mark.parametrize("case", [*good_cases(), *bad_cases()], ids=lambda c: c.id)
def test_the_request_table_gets_the_same_replies_from_uvicorn_and_tornado(servers, case):
    single, workers = servers
    ours = send(workers, case)
    assert ours.headers["X-Yyai-Worker"] in ("0", "1"), case.id
    same(case, ours, send(single, case))
