"""Faults: what a crash, a full disk or a damaged store leaves behind, and what serves after.

Every server here is a real ``yyai serve`` process over a temporary store of small real
archives. The cases:

- a server killed with SIGKILL in the middle of an archive upload: after a restart no
  partial archive is visible and the old state serves, and the temp files a crash leaves
  are swept (the dead server's spool folder, stale ``.tmp-*`` files in the store);
- a store write that fails with ENOSPC: simulated at the library level (the write and the
  fsync of the store's temp file), and for real over HTTP with the store on a small tmpfs.
  The typed error (StoreWriteError, 507) comes back, the state file stays valid JSON with
  the previous pins, no temp file remains and the archive is not visible;
- a corrupted state file (garbage, truncated, wrong types): the server starts, says so in
  its log and in ``GET /models/_status``, and the latest versions serve;
- a restart after pins, uploads, a label and a shadow serves exactly what was served before;
- a version deleted (unloaded, and purged) while client threads predict on it and on the
  model's default: every request gets a 200, or a clean JSON 404 or 503; never a 500 or a
  broken connection.

The restart, kill and delete cases share one chain of servers over one store, alternating
the two ways to serve: A is ``yyai serve`` alone, B ``yyai serve --workers 2`` (a supervisor,
a model host and two front ends) restarted over what A left, C alone again over what B's
kill left. So a restart is tried in both directions across the modes, the kill case
against the workers (the richer one: first the front end that is receiving the upload,
which the supervisor starts again while the server keeps serving and its spool folder is
removed, then the supervisor itself, whose host and front ends stop on their own, and the
next start sweeps what they left), and the delete case against one process. With workers,
what a server serves is read through each front end (``X-Yyai-Worker`` says which
answered) and must be the same through both. The model host's own kill -9 is
``test_workers.py``'s, under 8 clients, and deletes under load through two front ends are
its reloads and default swaps under 8 clients.

Server starts cost seconds, so these cases share the one chain, and the state-file and
full-disk cases share the tmpfs server.
"""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import cv2
import numpy as np
import psutil
import pytest
import requests
from builders import (
    INPUT_SPEC,
    LABELS,
    install,
    pack_models,
    reference,
    tiny_classifier,
)
from serving import start_server

from yyai_kernel.errors import StoreWriteError
from yyai_kernel.store import store as store_module
from yyai_kernel.store.store import STATE_FILE, TEMP_PREFIX, ModelStore

KiB = 1024
MiB = 1024 * KiB
IMAGE = np.random.default_rng(7).integers(0, 256, (4, 4), dtype=np.uint8)
X = IMAGE.astype(np.float32)[None, :, :, None] / 255.0


def png(image: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", image)
    assert ok
    return buffer.tobytes()


PNG = png(IMAGE)


def pack_big(out_dir: Path, name: str, version: int, seed: int, size: int) -> Path:
    """A valid archive padded with `size` random bytes (a bundled file), so it is slow to send."""
    from yyai_kernel.archive import pack

    work = Path(out_dir) / f".big-{name}-{version}"
    work.mkdir(parents=True)
    tiny_classifier(seed).save(work / f"m{seed}.keras")
    (work / "padding.bin").write_bytes(np.random.default_rng(seed).bytes(size))
    return pack(name=name, version=version, models=[work / f"m{seed}.keras"], input_spec=INPUT_SPEC,
                output_spec={"kind": "classification", "labels": LABELS},
                extra_files=[(work / "padding.bin", "padding.bin", "other")], out_dir=work)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every archive the module needs, keyed "<name><version>", with the Keras models."""
    root = tmp_path_factory.mktemp("faults-built")
    archives = {}
    for name, version, seeds in [("alpha", 1, [1, 2]), ("alpha", 2, [3]), ("gamma", 1, [4]), ("gamma", 2, [5]),
                                 ("gamma", 3, [6]), ("delta", 1, [7]), ("delta", 2, [8])]:
        path, models = pack_models(root, name, version, seeds)
        archives[f"{name}{version}"] = SimpleNamespace(path=path, models=models)
    archives["big"] = SimpleNamespace(path=pack_big(root, "alpha", 3, 9, 2 * MiB), models=None)
    return archives


def expected(built, name: str, version: int) -> np.ndarray:
    return reference(built[f"{name}{version}"].models, X)["combined"][0]


def store_files(folder: Path) -> dict:
    """{file name: bytes} of a store folder's plain files. The state file's ``recent`` section is
    left out: the server rewrites that hint (the versions that answered, most recent first) on
    its own clock, whenever the order moved (a corrupt state file stays as its bytes)."""
    def content(path: Path) -> bytes:
        data = path.read_bytes()
        if path.name != STATE_FILE:
            return data
        try:
            state = json.loads(data)
        except ValueError:
            return data
        if isinstance(state, dict):
            state.pop("recent", None)
        return json.dumps(state, sort_keys=True).encode()

    return {p.name: content(p) for p in sorted(folder.iterdir()) if p.is_file()}


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX))


def assert_json_error(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"] and "Traceback" not in body["error"]
    return body


def predict(srv, name: str, version: int | str | None = None) -> tuple[int, list]:
    path = f"/predictions/{name}" + ("" if version is None else f"/{version}")
    reply = srv.post(path, data=PNG, headers={"Content-Type": "image/png"}, params={"raw": "true"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    return body["version"], body["predictions"][0]["raw"]["combined"]


# --- library level: ENOSPC and damaged state files ---------------------------------------


class FullDisk:
    """Stands in for ``os.fdopen`` in the store: files that take `capacity` bytes, then ENOSPC.

    Like a disk that fills up mid-write, the bytes that fit are written (the temp file is
    really there, partly written) before the error.
    """

    def __init__(self, capacity: int):
        self.left = capacity

    def __call__(self, fd, mode="r", *args, **kwargs):
        disk = self

        class FullFile(io.FileIO):
            def write(self, data):
                n = min(len(data), disk.left)
                if n:
                    super().write(bytes(data[:n]))
                    disk.left -= n
                if n < len(data):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return n

        return FullFile(fd, mode.replace("b", ""))


class StoreOs:
    """The ``os`` module as store.py sees it, with some functions replaced (only there)."""

    def __init__(self, **replaced):
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(os, name)


def full_disk(monkeypatch, where: str, capacity: int = 4 * KiB) -> None:
    """Make the store's temp-file writes fail with ENOSPC, at write() or at fsync()."""
    if where == "write":
        monkeypatch.setattr(store_module, "os", StoreOs(fdopen=FullDisk(capacity)))
    else:
        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(store_module, "os", StoreOs(fsync=fsync))


@pytest.fixture
def pinned_store(built, tmp_path):
    """A store with alpha v1 and v2, alpha pinned to 1."""
    folder = tmp_path / "store"
    folder.mkdir()
    install(built["alpha1"].path, folder)
    install(built["alpha2"].path, folder)
    store = ModelStore(folder)
    store.pin("alpha", 1)
    return store


def assert_state_kept(store: ModelStore, before: dict) -> None:
    """The folder is byte for byte as before, the state file valid JSON with the old pins."""
    assert store_files(store.root) == before
    assert json.loads((store.root / STATE_FILE).read_text()) == {"pins": {"alpha": 1}}
    assert temp_files(store.root) == []
    reopened = ModelStore(store.root)
    assert reopened.state_error is None
    assert reopened.versions("alpha") == [1, 2] and reopened.default_version("alpha") == 1


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_store_add_on_a_full_disk_raises_and_changes_nothing(pinned_store, built, monkeypatch, where):
    before = store_files(pinned_store.root)
    full_disk(monkeypatch, where)
    with pytest.raises(StoreWriteError) as caught:
        pinned_store.add(built["big"].path)
    assert caught.value.status == 507
    assert "No space left on device" in caught.value.message
    assert caught.value.to_dict()["type"] == "StoreWriteError"
    assert pinned_store.versions("alpha") == [1, 2] and pinned_store.default_version("alpha") == 1
    assert_state_kept(pinned_store, before)
    monkeypatch.undo()  # space again: the same archive goes in
    assert pinned_store.add(built["big"].path).version == 3
    assert pinned_store.default_version("alpha") == 1


@pytest.mark.parametrize("where", ["write", "fsync"])
def test_pin_on_a_full_disk_raises_and_keeps_the_old_pin(pinned_store, monkeypatch, where):
    before = store_files(pinned_store.root)
    full_disk(monkeypatch, where, capacity=8)
    for change in (lambda: pinned_store.pin("alpha", 2), lambda: pinned_store.unpin("alpha")):
        with pytest.raises(StoreWriteError) as caught:
            change()
        assert caught.value.status == 507 and "No space left on device" in caught.value.message
        assert pinned_store.pins() == {"alpha": 1} and pinned_store.default_version("alpha") == 1
        assert_state_kept(pinned_store, before)


def test_remove_of_the_pinned_version_on_a_full_disk_changes_nothing(pinned_store, monkeypatch):
    """The pin must be cleared before the archive goes: when that write fails, both stay,
    rather than a pin to a deleted version that a later re-upload would revive."""
    before = store_files(pinned_store.root)
    full_disk(monkeypatch, "write", capacity=0)
    with pytest.raises(StoreWriteError) as caught:
        pinned_store.remove("alpha", 1)
    assert caught.value.status == 507 and "No space left on device" in caught.value.message
    assert pinned_store.versions("alpha") == [1, 2] and pinned_store.default_version("alpha") == 1
    assert_state_kept(pinned_store, before)
    pinned_store.remove("alpha", 2)  # an unpinned version needs no write: it goes
    assert pinned_store.versions("alpha") == [1] and ModelStore(pinned_store.root).versions("alpha") == [1]
    monkeypatch.undo()
    pinned_store.remove("alpha", 1)
    assert pinned_store.names() == [] and pinned_store.pins() == {}
    assert json.loads((pinned_store.root / STATE_FILE).read_text()) == {"pins": {}}


CORRUPT_STATES = {
    "garbage": b"\x00\xff\xfe not json at all \x89PNG",
    "truncated": b'{"pins": {"alpha": 1',
    "empty": b"",
    "string-version": b'{"pins": {"alpha": "1"}}',
    "zero-version": b'{"pins": {"alpha": 0}}',
    "bool-version": b'{"pins": {"alpha": true}}',
    "pins-a-list": b'{"pins": [["alpha", 1]]}',
    "not-an-object": b"[1, 2, 3]",
}


@pytest.mark.parametrize("case", sorted(CORRUPT_STATES))
def test_a_corrupt_state_file_is_reported_and_the_latest_serves(built, tmp_path, caplog, case):
    folder = tmp_path / "store"
    folder.mkdir()
    install(built["alpha1"].path, folder)
    install(built["alpha2"].path, folder)
    (folder / STATE_FILE).write_bytes(CORRUPT_STATES[case])
    with caplog.at_level("WARNING", logger="yyai.store"):
        store = ModelStore(folder)
    assert store.state_error and STATE_FILE in store.state_error
    assert store.pins() == {} and store.default_version("alpha") == 2
    assert "ignoring the store state file" in caplog.text and STATE_FILE in caplog.text
    store.pin("alpha", 1)  # a new pin rewrites the file whole
    assert store.state_error is None
    assert json.loads((folder / STATE_FILE).read_text()) == {"pins": {"alpha": 1}}
    assert ModelStore(folder).default_version("alpha") == 1


def test_stale_temp_files_are_swept_and_fresh_ones_left_alone(built, tmp_path):
    folder = tmp_path / "store"
    folder.mkdir()
    install(built["alpha1"].path, folder)
    stale, fresh = folder / f"{TEMP_PREFIX}stale", folder / f"{TEMP_PREFIX}fresh"
    for path in (stale, fresh):
        path.write_bytes(built["alpha2"].path.read_bytes()[:1000])
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    store = ModelStore(folder)
    assert not stale.exists() and fresh.exists()
    assert store.versions("alpha") == [1] and store.problems == []


# --- a store on a small tmpfs: a corrupt state file at start, and a disk that really fills ---


def mount_tmpfs(folder: Path, size: int) -> None:
    folder.mkdir(parents=True)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "yyai-test", str(folder)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, (
        f"mounting a tmpfs for the full-disk test failed (needs root): {result.stderr.strip()}"
    )


@pytest.fixture(scope="module")
def tiny_disk(built, tmp_path_factory):
    """A server over a 256 KiB tmpfs store holding alpha v1, v2 and a truncated state file."""
    root = tmp_path_factory.mktemp("tiny-disk")
    folder = root / "store"
    mount_tmpfs(folder, 256 * KiB)
    srv = None
    try:
        install(built["alpha1"].path, folder)
        install(built["alpha2"].path, folder)
        (folder / STATE_FILE).write_bytes(CORRUPT_STATES["truncated"])
        srv = start_server(folder, root / "work")
        yield SimpleNamespace(server=srv, store=folder)
    finally:
        try:
            if srv is not None:
                assert srv.stop() == 0
        finally:
            if subprocess.run(["umount", str(folder)], timeout=60).returncode != 0:
                subprocess.run(["umount", "-l", str(folder)], timeout=60)


def test_server_starts_over_a_corrupt_state_file_and_says_so(tiny_disk, built):
    srv, folder = tiny_disk.server, tiny_disk.store
    log = srv.log()
    assert "ignoring the store state file" in log and str(folder / STATE_FILE) in log
    assert "the latest versions serve" in log
    status = srv.get("/models/_status").json()
    assert STATE_FILE in status["state_error"]
    assert status["models"]["alpha"]["default"] == 2 and status["models"]["alpha"]["pinned"] is False
    version, combined = predict(srv, "alpha")
    assert version == 2
    np.testing.assert_allclose(combined, expected(built, "alpha", 2), atol=1e-5)
    assert (folder / STATE_FILE).read_bytes() == CORRUPT_STATES["truncated"]  # reported, not rewritten

    # damaged again while it runs, differently: a rescan reports the new problem
    (folder / STATE_FILE).write_bytes(CORRUPT_STATES["string-version"])
    assert srv.post("/models/_rescan").status_code == 200
    assert "does not hold" in srv.get("/models/_status").json()["state_error"]
    assert f'{folder / STATE_FILE} does not hold' in srv.log()

    # a pin rewrites the state file whole, and the error clears
    pinned = srv.request("PUT", "/models/alpha/default", json={"version": 1})
    assert pinned.status_code == 200 and pinned.json()["default"] == 1
    assert json.loads((folder / STATE_FILE).read_text()) == {"pins": {"alpha": 1}}
    assert srv.get("/models/_status").json()["state_error"] is None


def fill(folder: Path) -> Path:
    """Write into `folder` until the disk is full (bounded by the tmpfs size)."""
    blob = folder / "filler.bin"
    with open(blob, "wb", buffering=0) as f:
        for _ in range(1024):
            try:
                f.write(b"\0" * 4096)
            except OSError as error:
                assert error.errno == errno.ENOSPC
                break
        else:
            raise AssertionError("the tmpfs never filled up")
    return blob


def test_a_store_that_runs_out_of_space_refuses_cleanly_over_http(tiny_disk, built):
    srv, folder = tiny_disk.server, tiny_disk.store
    pinned = srv.request("PUT", "/models/alpha/default", json={"version": 1})
    assert pinned.status_code == 200
    before = store_files(folder)
    listed = srv.get("/models").json()

    # an upload bigger than the free space: verified, then the copy into the store fails
    upload = srv.post("/models", data=built["big"].path.read_bytes(),
                      headers={"Content-Type": "application/octet-stream"})
    body = assert_json_error(upload, 507)
    assert body["type"] == "StoreWriteError" and "No space left on device" in body["error"]
    assert store_files(folder) == before and temp_files(folder) == []
    assert srv.get("/models").json() == listed
    assert json.loads((folder / STATE_FILE).read_text()) == {"pins": {"alpha": 1}}

    # a full disk: a pin cannot be written, the old one stays and serves
    filler = fill(folder)
    try:
        body = assert_json_error(srv.request("PUT", "/models/alpha/default", json={"version": 2}), 507)
        assert body["type"] == "StoreWriteError"
        assert json.loads((folder / STATE_FILE).read_text()) == {"pins": {"alpha": 1}}
        assert temp_files(folder) == []
        assert srv.get("/models").json() == listed
        assert predict(srv, "alpha")[0] == 1
    finally:
        filler.unlink()
    assert store_files(folder) == before
    # with space again the same requests succeed
    assert srv.request("PUT", "/models/alpha/default", json={"version": 2}).json()["default"] == 2
    assert json.loads((folder / STATE_FILE).read_text()) == {"pins": {"alpha": 2}}
    assert predict(srv, "alpha")[0] == 2
    assert srv.stop() == 0  # now rather than at the end of the module: one server less running


def test_a_full_temporary_folder_refuses_uploads_cleanly(built, tmp_path, monkeypatch):
    """Uploads spool to, and are unpacked for checking in, the system temporary folder.

    With TMPDIR on a tmpfs that holds the 2 MiB archive once but not twice, the upload
    spools and then fails while it is unpacked; a body bigger than the tmpfs fails while
    it spools. Both are a JSON 507, the store is unchanged and the server goes on serving.
    """
    tmp = tmp_path / "tmp"
    big = built["big"].path.read_bytes()
    mount_tmpfs(tmp, len(big) * 3 // 2)
    store = tmp_path / "store"
    store.mkdir()
    install(built["alpha1"].path, store)
    monkeypatch.setenv("TMPDIR", str(tmp))
    srv = None
    try:
        srv = start_server(store, tmp_path / "work")
        before = store_files(store)
        for body, where in [(big, "could not unpack"), (big * 2, "could not be saved to a temporary file")]:
            reply = srv.post("/models", data=body, headers={"Content-Type": "application/octet-stream"})
            error = assert_json_error(reply, 507)
            assert error["type"] == "StoreWriteError" and where in error["error"], error
            assert store_files(store) == before
            version, combined = predict(srv, "alpha")
            assert version == 1
            np.testing.assert_allclose(combined, expected(built, "alpha", 1), atol=1e-5)
        assert "Traceback" not in srv.log()
        assert srv.stop() == 0
    finally:
        if srv is not None:
            srv.stop()
        if subprocess.run(["umount", str(tmp)], timeout=60).returncode != 0:
            subprocess.run(["umount", "-l", str(tmp)], timeout=60)


# --- one store, three servers: restart after changes, kill -9 mid-upload, delete under load ---

MODES = {"alone": [], "workers": ["--workers", "2"]}
CHAIN = ("alone", "workers", "alone")  # the modes of servers A, B and C
WORKER = "X-Yyai-Worker"


class FrontEnd:
    """One front end of a server, over a kept-alive connection that reached it; every reply is
    checked to come from it. ``yyai serve`` alone is one front end, worker "0"."""

    def __init__(self, srv, worker: str, session: requests.Session):
        self.srv, self.worker, self.session = srv, worker, session

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 120)
        headers = {**self.srv.headers, **kwargs.pop("headers", {})}
        reply = self.session.request(method, self.srv.url + path, headers=headers, **kwargs)
        assert reply.headers.get(WORKER) == self.worker, (method, path, reply.headers.get(WORKER), self.worker)
        return reply

    def get(self, path: str, **kwargs) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return self.request("POST", path, **kwargs)


def front_ends(srv, count: int) -> list[FrontEnd]:
    return [FrontEnd(srv, str(worker), srv.session_to(worker)) for worker in range(count)]


def served_through_each(srv, built) -> dict:
    """What ``srv`` serves (:func:`served`), read through each of its front ends: the same through all."""
    ends = front_ends(srv, srv.count)
    try:
        first = served(ends[0], built)
        for end in ends[1:]:
            assert_serves_the_same(served(end, built), first)
    finally:
        for end in ends:
            end.session.close()
    return first


def managed(srv, reply: requests.Response, *codes: int) -> requests.Response:
    """A management reply of ``srv``: its status, and with workers that both front ends serve the change."""
    assert reply.status_code in (codes or (200,)), (reply.status_code, reply.text[:500])
    if srv.count > 1:
        assert reply.headers["X-Yyai-Applied"] == f"{srv.count}/{srv.count}", reply.headers
    return reply


def served(srv, built) -> dict:
    """What a server serves: each model's versions, default and pin, and every version's output.

    Versions that are not loaded get loaded first (after a restart only defaults are), so
    each version's answer is compared, and checked against its Keras models.
    """
    listed = {m["name"]: (m["versions"], m["default"]) for m in srv.get("/models").json()}
    status = srv.get("/models/_status").json()
    answers = {}
    for name, (versions, default) in listed.items():
        version, combined = predict(srv, name)
        assert version == default
        answers[(name, "default")] = (version, combined)
        for v in versions:
            assert srv.post(f"/models/{name}/load", json={"version": v}).status_code == 200
            answers[(name, v)] = predict(srv, name, v)
            np.testing.assert_allclose(answers[(name, v)][1], expected(built, name, v), atol=1e-5)
        for label, v in status["models"][name]["labels"].items():
            answers[(name, label)] = predict(srv, name, label)
            assert answers[(name, label)][0] == v
    return {
        "models": listed,
        "pinned": {n: s["pinned"] for n, s in status["models"].items()},
        "labels": {n: s["labels"] for n, s in status["models"].items()},
        "traffic": {n: s["traffic"] for n, s in status["models"].items()},
        "problems": status["problems"],
        "answers": answers,
    }


def assert_serves_the_same(now: dict, before: dict) -> None:
    assert now["models"] == before["models"]
    assert now["pinned"] == before["pinned"]
    assert now["labels"] == before["labels"] and now["traffic"] == before["traffic"]
    assert now["problems"] == before["problems"] == []
    assert now["answers"].keys() == before["answers"].keys()
    for key, (version, combined) in before["answers"].items():
        assert now["answers"][key][0] == version, key
        np.testing.assert_allclose(now["answers"][key][1], combined, rtol=0, atol=1e-6, err_msg=str(key))


@pytest.fixture(scope="module")
def chain(built, tmp_path_factory):
    """A store changed by uploads and pins on server A; B restarted over it; C after B's kill.

    Each server is started in the next mode of :data:`CHAIN`; ``srv.count`` is its front ends."""
    root = tmp_path_factory.mktemp("chain")
    folder = root / "store"
    folder.mkdir()
    for key in ("alpha1", "gamma1", "gamma2", "delta1", "delta2"):
        install(built[key].path, folder)
    servers = []

    def start():
        mode = CHAIN[len(servers)]
        srv = start_server(folder, root / "work", args=MODES[mode])
        srv.count = 2 if mode == "workers" else 1
        servers.append(srv)
        return srv

    try:
        yield SimpleNamespace(root=root, store=folder, servers=servers, start=start, a=start())
    finally:
        for srv in servers:
            if srv.proc.poll() is None:
                srv.stop()


def test_restart_after_pins_and_uploads_serves_exactly_the_same(chain, built):
    a = chain.a
    upload = a.post("/models", data=built["gamma3"].path.read_bytes(),
                    headers={"Content-Type": "application/octet-stream"})
    managed(a, upload, 201)
    with open(built["alpha2"].path, "rb") as f:
        upload = a.post("/models", files={"archive": ("alpha-2.yyar", f, "application/octet-stream")})
    managed(a, upload, 201)
    managed(a, a.request("PUT", "/models/gamma/default", json={"version": 2}))
    managed(a, a.request("PUT", "/models/delta/default", json={"version": 2}))
    managed(a, a.request("PUT", "/models/delta/default", json={"version": 1}))
    managed(a, a.request("PUT", "/models/gamma/labels/old", json={"version": 1}))
    managed(a, a.request("PUT", "/models/gamma/traffic", json={"shadow": {"version": 3, "percent": 100}}))
    before = served_through_each(a, built)
    assert before["models"] == {"alpha": ([1, 2], 2), "delta": ([1, 2], 1), "gamma": ([1, 2, 3], 2)}
    assert before["pinned"] == {"alpha": False, "delta": True, "gamma": True}
    assert before["labels"]["gamma"] == {"old": 1} and before["traffic"]["gamma"]["shadow"]["version"] == 3
    assert a.stop() == 0

    b = chain.start()
    chain.b, chain.before = b, before
    assert_serves_the_same(served_through_each(b, built), before)


def spool_dirs(srv) -> list[Path]:
    """The folders the server's front ends spool uploads into (each logs its own), those that exist."""
    logged = [Path(line.split("Temporary files in ", 1)[1].strip())
              for line in srv.log().splitlines() if "Temporary files in " in line]
    return [folder for folder in logged if folder.is_dir()]


def upload_slowly_then_kill(srv, archive: Path, spool: list[Path], kill) -> Path:
    """Send the headers and the first half of an upload, wait until a front end spooled some of
    it into its folder (one of ``spool``), then ``kill(that folder)``. Returns the folder."""
    data = archive.read_bytes()
    url = urlsplit(srv.url)
    head = (f"POST {url.path.rstrip('/')}/models HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Authorization: token {srv.token}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head)
        sent = 0
        for offset in range(0, len(data) // 2, 64 * KiB):
            sock.sendall(data[offset:offset + 64 * KiB])
            sent = offset + 64 * KiB
        deadline = time.monotonic() + 30
        spooled, into = 0, None
        while spooled == 0:
            for folder in spool:
                parts = list(folder.glob("upload-*.part"))
                spooled, into = sum(p.stat().st_size for p in parts if p.exists()), folder
                if spooled:
                    break
            assert time.monotonic() < deadline, "the server never spooled the upload"
            time.sleep(0.05)
        kill(into)
    assert 0 < spooled <= sent < len(data)
    return into


def kill_server(srv):
    def kill(_folder: Path) -> None:
        srv.proc.kill()
        srv.proc.wait(30)

    return kill


def kill_the_front_end_spooling(folder: Path) -> None:
    """SIGKILL the front end whose temporary folder (``worker-<n>-<pid>``) is ``folder``."""
    victim = psutil.Process(int(folder.name.rsplit("-", 1)[1]))
    victim.kill()
    victim.wait(30)


def workers_of(srv) -> list[dict]:
    return srv.get("/models/_status").json()["workers"]


def test_kill_during_an_upload_leaves_no_partial_archive(chain, built):
    b = chain.b
    before_files = store_files(chain.store)
    if b.count > 1:
        # the front end that receives the upload dies; the supervisor starts another, B goes on serving
        pids = {w["worker"]: w["pid"] for w in workers_of(b)}
        folder = upload_slowly_then_kill(b, built["big"].path, spool_dirs(b), kill_the_front_end_spooling)
        index = int(folder.name.split("-")[1])
        deadline = time.monotonic() + 120
        while not ((w := workers_of(b)[index])["state"] == "serving" and w["pid"] != pids[index]):
            assert b.proc.poll() is None and time.monotonic() < deadline, "the front end never came back"
            time.sleep(0.2)
        assert not folder.exists()  # the dead front end's spool folder went with it
        assert store_files(chain.store) == before_files
        assert_serves_the_same(served_through_each(b, built), chain.before)
        # (the model host's kill -9 and its replacement: test_workers.py, under 8 clients)
        # then the supervisor itself: its host and front ends stop on their own
        family = psutil.Process(b.proc.pid).children(recursive=True)  # with front end 0's dashboard kernel
        assert sum("yyai_kernel" in " ".join(p.cmdline()) for p in family) == 3, family  # host, 2 front ends
        spool_dir = upload_slowly_then_kill(b, built["big"].path, spool_dirs(b), kill_server(b)).parent
        _gone, alive = psutil.wait_procs(family, timeout=60)
        assert not alive, f"left running after the supervisor died: {alive}"
    else:
        spool_dir = upload_slowly_then_kill(b, built["big"].path, spool_dirs(b), kill_server(b))
    assert b.proc.returncode == -9
    assert store_files(chain.store) == before_files  # nothing of the upload reached the store

    # what a kill during the store's own atomic copy leaves: a partial .tmp- file in the store
    partial = built["big"].path.read_bytes()[: 300 * KiB]
    stale, fresh = chain.store / f"{TEMP_PREFIX}stale.yyar", chain.store / f"{TEMP_PREFIX}fresh.yyar"
    stale.write_bytes(partial)
    fresh.write_bytes(partial)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))

    c = chain.start()
    chain.c = c
    assert not spool_dir.exists()  # the dead server's spool folder is swept at start
    assert not stale.exists() and fresh.exists()  # a young temp file may be a write in progress
    assert [m["versions"] for m in c.get("/models").json() if m["name"] == "alpha"] == [[1, 2]]
    assert c.get("/models/_status").json()["problems"] == []
    assert_serves_the_same(served_through_each(c, built), chain.before)
    fresh.unlink()
    assert store_files(chain.store) == before_files


def test_deleting_a_version_under_load_answers_cleanly(chain, built):
    """Threads predict on delta v2 (image and v2 endpoints) and on the default while v2
    (the default) is unloaded and loaded twice, purged, uploaded again and purged again,
    and then v1 is purged too, so that the model is gone.

    With workers, half the threads reach each front end; each front end sees every phase,
    and answers as cleanly as one process does."""
    c = chain.c
    managed(c, c.request("PUT", "/models/delta/default", json={"version": 2}))
    refs = {v: expected(built, "delta", v) for v in (1, 2)}
    v2_body = json.dumps({"inputs": [{"name": "input", "shape": [1, 4, 4, 1], "datatype": "FP32",
                                      "data": X.ravel().tolist()}]})
    targets = [("POST", "/predictions/delta/2", PNG, "image/png", 2),
               ("POST", "/predictions/delta", PNG, "image/png", None),
               ("POST", "/v2/models/delta/versions/2/infer", v2_body, "application/json", 2),
               ("POST", "/v2/models/delta/infer", v2_body, "application/json", None)]
    results: list[tuple] = []
    lock = threading.Lock()
    stop = threading.Event()
    workers = [str(i) for i in range(c.count)]

    def client(index: int) -> None:
        worker = workers[index % len(workers)]
        session = c.session_to(worker)
        for i in range(2000):
            if stop.is_set():
                break
            method, path, data, media, _version = targets[(index + i) % len(targets)]
            try:
                reply = session.request(method, c.url + path, data=data, timeout=30,
                                        headers={**c.headers, "Content-Type": media}, params={"raw": "true"})
                outcome = (worker, path, reply.status_code, reply.headers.get("Content-Type", ""), reply.text,
                           reply.headers.get(WORKER), reply.headers.get("Retry-After"))
            except requests.RequestException as error:
                outcome = (worker, path, "connection error", "", repr(error), None, None)
            with lock:
                results.append(outcome)
        session.close()

    def answered() -> Counter:
        with lock:
            return Counter(outcome[0] for outcome in results)

    def settle(count: int = 12) -> None:
        """Let each front end's clients finish `count` more requests (bounded in time)."""
        target = answered()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = answered()
            if all(now[w] >= target[w] + count for w in workers):
                return
            time.sleep(0.02)
        raise AssertionError("the clients stalled")

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        settle()
        unload = ("DELETE", "/models/delta/versions/2", {})  # the default: 503 until loaded again
        load = ("POST", "/models/delta/load", {"json": {"version": 2}})
        purge2 = ("DELETE", "/models/delta/versions/2", {"params": {"purge": "true"}})  # v1 takes over
        upload2 = ("POST", "/models", {"data": built["delta2"].path.read_bytes(),
                                       "headers": {"Content-Type": "application/octet-stream"}})
        purge1 = ("DELETE", "/models/delta/versions/1", {"params": {"purge": "true"}})  # all 404 then
        for method, path, kwargs in [unload, load, unload, load, purge2, upload2, purge2, purge1]:
            managed(c, c.request(method, path, **kwargs), 200, 201)
            settle()
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not any(thread.is_alive() for thread in threads)

    codes: dict[str, Counter] = {w: Counter() for w in workers}
    for worker, path, code, media, text, answered_by, retry_after in results:
        codes[worker][code] += 1
        assert code in (200, 404, 503), (worker, path, code, text[:500])
        assert answered_by == worker, (worker, path, answered_by)  # the connection stayed on its front end
        assert media.startswith("application/json"), (path, code, media, text[:200])
        body = json.loads(text)
        if code != 200:
            assert isinstance(body.get("error"), str) and body["error"], (path, code, text[:500])
        if code == 503:  # a version unloaded (waiting does not help), or one loading (retry in a moment)
            assert "restarting" not in body["error"], (worker, path, text[:500])
            assert ("loading" in body["error"]) == (retry_after is not None), (worker, path, retry_after, text)
        elif code == 200 and path.startswith("/predictions"):  # a right answer from the version it names
            row = body["predictions"][0]["raw"]["combined"]
            np.testing.assert_allclose(row, refs[body["version"]], atol=1e-5)
            if path.endswith("/2"):
                assert body["version"] == 2
    for worker in workers:
        assert {200, 404, 503} <= set(codes[worker]), (worker, codes)  # each phase was seen through it
    assert not (chain.store / "delta-1.yyar").exists() and not (chain.store / "delta-2.yyar").exists()
    for end in front_ends(c, c.count):  # the final state, through each front end
        assert "delta" not in [m["name"] for m in end.get("/models").json()]
        gone = end.get("/models/delta")
        assert gone.status_code == 404, (end.worker, gone.status_code, gone.text[:1000])
        assert predict(end, "gamma")[0] == 2  # the other models still serve
        end.session.close()
    assert "Traceback" not in c.log() and "Uncaught exception" not in c.log()
