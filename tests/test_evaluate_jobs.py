"""Evaluation as a job over REST, and `yyai evaluate`: the same scores as Keras run directly.

One real server over a copy of the demo archives. The reference (tests/evalref.py) reads
the bundled digits set with zipfile and runs each member with Keras directly; the REST
job, the CLI (on the server and on a store) and the library must all report its accuracy,
confusion matrix and disagreements. Uploaded sets with a corrupt image and an unknown
label complete and list them; bad requests get typed JSON errors; a job runner keeps a
bounded number of jobs, and a second runner over the same folder (as another worker
process would) finds a job by its file.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import tempfile
import threading
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import clirun
import evalref
import pytest
from evalref import (
    COLOR_SET,
    DEMO,
    DIGITS_SET,
    check_classification,
    expected_disagreements,
)
from serving import start_server

from yyai_kernel.client import YyaiClient
from yyai_kernel.errors import JobNotFoundError, ModelNotFoundError, ModelNotReadyError, TooManyJobsError
from yyai_kernel.evaluation.jobs import (
    EvaluationJob,
    EvaluationJobs,
    JobState,
    wait_for,
)
from yyai_kernel.evaluation.results import Evaluation
from yyai_kernel.server.startup import TMP_PREFIX
from yyai_kernel.types import ModelRef


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jobs-store")
    for name in ("digits-1.yyar", "digits-2.yyar", "colorfulness-1.yyar"):
        shutil.copyfile(DEMO / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def ref(store):
    return evalref.digits_reference(store)


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    running = start_server(store, tmp_path_factory.mktemp("jobs-work"))
    try:
        with YyaiClient(running.url, running.token) as client:
            client.load("digits", 1)
        yield running
    finally:
        assert running.stop() == 0


def follow(server, location: str) -> dict:
    """GET the job until it ends; returns its last JSON."""
    for _ in range(600):
        reply = server.get(location)
        assert reply.status_code == 200, reply.text
        job = reply.json()
        assert 0 <= job["done"] <= job["total"]
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"the job never ended: {job}")


def check_digits(result: Evaluation, ref: dict, versions=(1, 2)) -> None:
    assert [v.version for v in result.versions] == list(versions)
    assert [item.key for item in result.items] == ref["files"]
    for version in versions:
        check_classification(result.version(version).scores, ref["truth"], ref[version]["combined"])
    pair = result.pair(1, 2)
    assert {d.key: (d.a, d.b) for d in pair.disagreements} == expected_disagreements(ref)


def bad_zip(ref: dict) -> bytes:
    """30 good digits in class folders, a corrupt image, an unknown label and a stray file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for f, t in zip(ref["files"][:30], ref["truth"]):
            zf.writestr(f"set/{t}/{Path(f).name}", ref["data"][f])
        zf.writestr("set/4/corrupt.png", ref["data"][ref["files"][0]][:60])
        zf.writestr("set/x/unknown.png", ref["data"][ref["files"][1]])
    return buffer.getvalue()


def test_rest_job_on_the_bundled_set_equals_keras(server, ref):
    reply = server.post("/models/digits/evaluate", params={"versions": "1,2", "set": DIGITS_SET})
    assert reply.status_code == 202, reply.text
    job = reply.json()
    assert reply.headers["Location"] == f"/evaluations/{job['id']}"
    assert job["state"] in ("queued", "running", "done") and job["total"] == 200 and job["versions"] == [1, 2]
    final = follow(server, reply.headers["Location"])
    assert final["state"] == "done" and final["done"] == 200 and final["error"] is None
    result = Evaluation.from_json(final["result"])
    check_digits(result, ref)
    assert result.bad_items == ()

    csv_reply = server.get(f"/evaluations/{job['id']}/predictions.csv")
    assert csv_reply.status_code == 200 and csv_reply.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in csv_reply.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(csv_reply.text)))
    assert [r["file"] for r in rows] == ref["files"]
    assert [r["v1"] for r in rows] == [str(i) for i in ref[1]["combined"].argmax(axis=1)]
    assert [r["v2"] for r in rows] == [str(i) for i in ref[2]["combined"].argmax(axis=1)]
    # a classification has no residual plot: a typed 400
    png = server.get(f"/evaluations/{job['id']}/residuals.png")
    assert png.status_code == 400 and png.json()["type"] == "InvalidInputError"

    # the bundled set's list and bytes, as the dashboard and the CLI fetch them
    sets = server.get("/models/digits/evalsets", params={"version": 1}).json()
    assert sets == {"name": "digits", "version": 1, "source": 1, "sets": [DIGITS_SET]}
    bundled = server.get(f"/models/digits/evalsets/{DIGITS_SET.replace('/', '%2F')}")
    with zipfile.ZipFile(io.BytesIO(bundled.content)) as zf:
        assert "labels.csv" in zf.namelist()


@pytest.mark.parametrize("form", ["raw", "multipart"])
def test_an_uploaded_zip_with_bad_items_completes_and_lists_them(server, ref, form):
    body = bad_zip(ref)
    if form == "raw":
        reply = server.post("/models/digits/evaluate?versions=2", data=body,
                            headers={"Content-Type": "application/zip"})
    else:
        reply = server.post("/models/digits/evaluate", params={"versions": "2"},
                            files={"set": ("my-set.zip", body, "application/zip")})
    assert reply.status_code == 202, reply.text
    final = follow(server, reply.headers["Location"])
    assert final["state"] == "done", final
    result = Evaluation.from_json(final["result"])
    reasons = {b.key: b.reason for b in result.bad_items}
    assert set(reasons) == {"4/corrupt.png", "x/unknown.png"}
    assert "not a usable image" in reasons["4/corrupt.png"] and "unknown label 'x'" in reasons["x/unknown.png"]
    assert sorted(Path(i.key).name for i in result.items) == sorted(Path(f).name for f in ref["files"][:30])
    by_name = {Path(f).name: i for i, f in enumerate(ref["files"][:30])}
    order = [by_name[Path(i.key).name] for i in result.items]
    check_classification(result.version(2).scores, ref["truth"][order], ref[2]["combined"][order])
    # the upload was spooled to the server's temporary folder and is gone now
    temp = Path(tempfile.gettempdir())
    leftovers = [p for p in temp.glob(f"{TMP_PREFIX}{server.proc.pid}-*/**/*") if p.suffix in (".zip", ".part")]
    assert leftovers == []


def test_the_client_and_wait_for_give_the_same_result(server, ref, tmp_path):
    progress = []
    with YyaiClient(server.url, server.token) as client:
        job = client.start_evaluation("digits", [1, 2], client.eval_set("digits", DIGITS_SET))
        result = wait_for(client, job, progress=lambda done, total: progress.append((done, total)), interval=0.1)
        check_digits(result, ref)
        assert progress[-1] == (200, 200) and all(total == 200 for _, total in progress)
        assert client.evaluation(job.id).state is JobState.DONE
        # regression: a residual plot over REST
        job = client.start_evaluation("colorfulness", None, bundled=COLOR_SET)
        assert wait_for(client, job, interval=0.1).kind == "regression"
    png = server.get(f"/evaluations/{job.id}/residuals.png")
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG") and png.headers["Content-Type"] == "image/png"


def test_bad_requests_get_typed_json_errors(server, ref):
    def refused(reply, status: int, kind: str, words: str) -> None:
        assert reply.status_code == status, reply.text
        body = reply.json()
        assert body["type"] == kind and words in body["error"], body

    zipped = {"headers": {"Content-Type": "application/zip"}}
    refused(server.post("/models/digits/evaluate", data=b"not a zip", **zipped), 400, "NotAnArchiveError", "zip")
    refused(server.post("/models/digits/evaluate?versions=7", data=bad_zip(ref), **zipped), 404,
            "ModelNotFoundError", "7")
    refused(server.post("/models/nosuch/evaluate", data=bad_zip(ref), **zipped), 404, "ModelNotFoundError", "nosuch")
    refused(server.post("/models/digits/evaluate", params={"set": "eval/other.zip"}), 404, "ModelNotFoundError",
            "no labelled set")
    refused(server.post("/models/digits/evaluate", params={"set": DIGITS_SET}, data=bad_zip(ref), **zipped), 400,
            "InvalidInputError", "not both")
    refused(server.post("/models/digits/evaluate", data=b""), 415, "UnsupportedMediaError", "Content-Type")
    refused(server.post("/models/digits/evaluate", data=b"", **zipped), 400, "InvalidInputError", "empty")
    refused(server.post("/models/digits/evaluate?path=/etc", data=bad_zip(ref), **zipped), 400,
            "InvalidInputError", "'path'")
    refused(server.post("/models/colorfulness/evaluate", data=bad_zip(ref), **zipped), 400, "InvalidInputError",
            "regression model")
    refused(server.get("/evaluations/0123456789abcdef"), 404, "JobNotFoundError", "0123456789abcdef")
    refused(server.get("/evaluations/..%2F..%2Fetc"), 404, "JobNotFoundError", "evaluation job")
    refused(server.get("/evaluations/0123456789abcdef/predictions.csv"), 404, "JobNotFoundError", "evaluation")
    with YyaiClient(server.url, server.token) as client:
        client.unload("digits", 1)
        try:
            with pytest.raises(ModelNotReadyError, match="not ready"):
                client.start_evaluation("digits", [1], bad_zip(ref))
        finally:
            client.load("digits", 1)
        with pytest.raises(JobNotFoundError):
            client.evaluation("fedcba9876543210")
    assert server.get("/evaluations/x", auth=False).status_code == 401
    spec = server.get("/openapi.json").json()
    assert "202" in spec["paths"]["/models/{name}/evaluate"]["post"]["responses"]
    assert {"/evaluations/{job}", "/evaluations/{job}/predictions.csv"} <= set(spec["paths"])


def yyai(*args) -> subprocess.CompletedProcess:
    """``yyai evaluate ARGS``, in-process (``clirun.py``)."""
    return clirun.yyai("evaluate", *args, check=False)


def test_cli_on_a_server_reports_the_reference_and_gates(server, ref, tmp_path):
    out = tmp_path / "result.json"
    run = yyai("digits:1", "digits:2", "--data", "bundled", "--server", server.url, "--token", server.token,
               "--json", out, "--csv", tmp_path / "p.csv", "--min-accuracy", "0.9")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "v1 and v2 disagree on" in run.stdout and "accuracy" in run.stdout
    check_digits(Evaluation.from_json(json.loads(out.read_text())), ref)
    assert len(list(csv.DictReader((tmp_path / "p.csv").read_text().splitlines()))) == 200
    v1 = float(ref[1]["combined"].argmax(axis=1).__eq__(ref["truth"]).mean())
    strict = yyai("digits:1", "digits:2", "--data", "bundled:" + DIGITS_SET, "--server", server.url,
                  "--token", server.token, "--min-accuracy", f"{v1 + 0.001:.4f}")
    assert strict.returncode == 3 and f"v1: accuracy {v1:.4f} is below" in strict.stderr, strict.stderr
    # a local zip with bad items: listed, and the run completes
    (tmp_path / "bad.zip").write_bytes(bad_zip(ref))
    listed = yyai("digits:2", "--data", tmp_path / "bad.zip", "--server", server.url, "--token", server.token)
    assert listed.returncode == 0 and "2 item(s) left out" in listed.stdout
    assert "4/corrupt.png: not a usable image" in listed.stdout and "x/unknown.png: unknown label" in listed.stdout
    wrong = yyai("digits:1", "colorfulness", "--data", "bundled", "--server", server.url, "--token", server.token)
    assert wrong.returncode == 1 and "one model" in wrong.stderr


def test_cli_on_a_store_reports_the_reference(store, ref, tmp_path):
    out = tmp_path / "result.json"
    run = yyai("digits:1", "digits:2", "--data", "bundled", "--store", store, "--json", out, "--min-accuracy", "0.999")
    assert run.returncode == 3, run.stdout + run.stderr
    check_digits(Evaluation.from_json(json.loads(out.read_text())), ref)


class Held:
    """The real data plane, whose predictions wait until the test lets them through."""

    def __init__(self, backend):
        self.backend = backend
        self.gate = threading.Event()

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def predict_images(self, *args, **kwargs):
        self.gate.wait(60)
        return self.backend.predict_images(*args, **kwargs)


@pytest.fixture(scope="module")
def dataplane(store):
    from yyai_kernel.plane.local import LocalBackend
    from yyai_kernel.registry.registry import Registry
    from yyai_kernel.store.store import ModelStore

    plane = LocalBackend.over(Registry(ModelStore(store)))
    plane.load("digits", 2)
    yield plane
    plane.close()


def test_jobs_are_bounded_and_found_from_another_runner(dataplane, ref, tmp_path):
    from yyai_kernel.evaluation.sets import set_from_zip

    held = Held(dataplane)
    jobs = EvaluationJobs(held, tmp_path / "jobs", max_jobs=2)
    follow = SimpleNamespace(evaluation=jobs.get)  # what wait_for polls
    dataset = set_from_zip(bad_zip(ref))
    first = jobs.submit("digits", bad_zip(ref), lambda _set: [2])
    assert (tmp_path / "jobs" / f"{first.id}.zip").exists()  # the upload, kept while the job runs
    second = jobs.submit("digits", dataset, lambda _set: [2])
    with pytest.raises(TooManyJobsError, match="queued or running"):
        jobs.submit("digits", dataset, lambda _set: [2])
    other = EvaluationJobs(dataplane, tmp_path / "jobs")  # another worker over the same folder
    assert other.get(first.id).state in (JobState.QUEUED, JobState.RUNNING)
    held.gate.set()
    result = wait_for(follow, second, interval=0.05)
    wait_for(follow, first, interval=0.05)
    assert not (tmp_path / "jobs" / f"{first.id}.zip").exists()  # deleted once the job ended
    assert other.get(second.id) == jobs.get(second.id) and other.get(second.id).result == result
    third = jobs.submit("digits", dataset, lambda _set: [2])  # evicts the oldest finished job
    with pytest.raises(JobNotFoundError):
        jobs.get(first.id)
    with pytest.raises(JobNotFoundError):
        other.get(first.id)
    assert wait_for(follow, third, interval=0.05) == result
    refused = list((tmp_path / "jobs").glob("*.zip"))
    with pytest.raises(ModelNotReadyError):
        jobs.submit("digits", bad_zip(ref),
                    lambda _set: dataplane.data.model_ready(dataplane.data.resolve(ModelRef("digits", 1))) and [1])
    assert list((tmp_path / "jobs").glob("*.zip")) == refused == []  # a refused upload is deleted at once
    assert EvaluationJob.from_json(jobs.get(third.id).to_json()) == jobs.get(third.id)
    jobs.close()


def test_a_failed_job_carries_its_typed_error(dataplane, ref, tmp_path):
    jobs = EvaluationJobs(dataplane)  # no folder, as in a notebook: a file is read in place and left alone
    mine = tmp_path / "mine.zip"
    mine.write_bytes(body := bad_zip(ref))
    job = jobs.submit("digits", mine, lambda _set: [9])  # the store holds no v9 (v1 would load on demand)
    with pytest.raises(ModelNotFoundError):
        wait_for(SimpleNamespace(evaluation=jobs.get), job, interval=0.05)
    failed = jobs.get(job.id)
    assert failed.state is JobState.FAILED and failed.error.status == 404 and failed.result is None
    assert mine.read_bytes() == body
    jobs.close()


def test_the_evaluate_tab_over_the_in_process_data_plane(dataplane, ref):
    """The notebook dashboard (a DataPlane, no server): run the bundled set, a cell's images, promote."""
    from yyai_kernel.dashboard import Dashboard

    dashboard = Dashboard(dataplane, refresh_interval=None)
    try:
        tab = dashboard.evaluate
        tab.model.value = "digits"
        tab.shown()
        assert tab.bundled.value == DIGITS_SET and tab.versions.value == (2,)  # v2 is the only one serving
        tab.run()
        deadline = time.monotonic() + 300
        while tab._job is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        check_classification(tab.result.version(2).scores, ref["truth"], ref[2]["combined"])
        assert "v2 scored best (accuracy" in tab.message.value
        predicted = ref[2]["combined"].argmax(axis=1)
        t, p = next((str(t), str(p)) for t, p in zip(ref["truth"], predicted) if t != p)
        tab.show_cell(t, p)
        expected = sum(1 for a, b in zip(ref["truth"], predicted) if (str(a), str(b)) == (t, p))
        gallery = tab.cell_box.children[0].children[1]
        assert len(gallery.children) == expected
        assert all(thumb.children[0].value for thumb in gallery.children)  # the images themselves
        assert "data:text/csv;base64," in tab.download.value
        tab.promote()
        assert dataplane.status("digits").pinned and dataplane.status("digits").default == 2
        assert tab.promote_button.disabled
    finally:
        dashboard.close()
        dataplane.follow_latest("digits")
