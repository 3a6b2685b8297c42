"""Evaluation jobs: an evaluation run in the background, with its progress, kept for a while.

What: :class:`EvaluationJobs` runs ``evaluate()`` (evaluation.py) on a thread of its own
over a backend (the data plane's own Backend methods, so a job measures exactly what is
served), and hands out :class:`EvaluationJob` snapshots: the id, the state, the items done
out of the total and, at the end, the typed ``Evaluation`` or the typed error. A large set
takes minutes, so the REST API answers ``202`` with the job's id and the client polls.

Kept: at most ``max_jobs`` jobs. A new job evicts the oldest finished one; when every slot
holds a queued or running job, it is refused with ``TooManyJobsError`` (503, retry later).
At most ``max_running`` jobs run at once; the others wait in the order they came.

Files: with a ``folder`` (the server's temporary folder), an uploaded set is written there
(or a file the caller hands over is moved there) and deleted when its job ends, and every
job writes its snapshot to ``<folder>/<id>.json`` (atomically, at most every
``SNAPSHOT_EVERY_S`` while it runs, and when it ends). :meth:`EvaluationJobs.get` answers
from memory for its own jobs and from that file for jobs another process runs: worker
processes that share the folder find each other's jobs. Without a folder (a notebook),
everything stays in memory.

Framework-free: no Tornado, no ipywidgets. Locking: ``_lock`` guards the job table and each
job's mutable progress; snapshots are frozen dataclasses built under it, and file writes
happen outside it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path

from yyai_kernel import errors
from yyai_kernel.errors import (
    JobNotFinishedError,
    JobNotFoundError,
    TooManyJobsError,
    YyaiError,
)
from yyai_kernel.evaluation.results import Evaluation
from yyai_kernel.evaluation.run import DEFAULT_BATCH_SIZE, evaluate
from yyai_kernel.evaluation.sets import LabelledSet, set_from_zip

log = logging.getLogger("yyai.evaljobs")

DEFAULT_MAX_JOBS = 16
DEFAULT_MAX_RUNNING = 1
SNAPSHOT_EVERY_S = 0.5
JOB_ID = re.compile(r"^[0-9a-f]{16}$")  # what new_id makes; anything else is never looked up on disk


class JobState(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED)


@dataclass(frozen=True)
class JobError:
    """Why a job failed: the typed error's message, class name and HTTP status."""

    message: str
    type: str
    status: int

    @classmethod
    def of(cls, error: BaseException) -> JobError:
        if isinstance(error, YyaiError):
            return cls(error.message, type(error).__name__, error.status)
        return cls(f"The evaluation failed: {error}", "YyaiError", 500)

    def exception(self) -> YyaiError:
        """The typed error again (the client and the CLI raise it)."""
        cls = getattr(errors, self.type, None)
        if not (isinstance(cls, type) and issubclass(cls, YyaiError)):
            cls = YyaiError
        error = cls(self.message)
        error.status = self.status
        return error

    def to_json(self) -> dict:
        return {"error": self.message, "type": self.type, "status": self.status}


@dataclass(frozen=True)
class EvaluationJob:
    """A snapshot of one job. ``done`` of ``total`` set items are handled so far."""

    id: str
    model: str
    versions: tuple[int, ...]
    dataset: str
    state: JobState
    done: int
    total: int
    created: float
    finished: float | None = None
    error: JobError | None = None
    result: Evaluation | None = None

    @property
    def progress(self) -> float:
        return self.done / self.total if self.total else (1.0 if self.state.finished else 0.0)

    def evaluation(self) -> Evaluation:
        """The result; JobNotFinishedError (409) while it runs or when it failed (then
        ``error.exception()`` is the typed error it failed with)."""
        if self.error is not None:
            raise JobNotFinishedError(f"Evaluation {self.id} failed: {self.error.message}")
        if self.result is None:
            raise JobNotFinishedError(f"Evaluation {self.id} is {self.state.value} ({self.done} of {self.total} "
                                      "items); its results come when it is done.")
        return self.result

    def to_json(self, *, with_result: bool = True) -> dict:
        body = {"id": self.id, "model": self.model, "versions": list(self.versions), "dataset": self.dataset,
                "state": self.state.value, "done": self.done, "total": self.total, "created": self.created,
                "finished": self.finished, "error": None if self.error is None else self.error.to_json()}
        if with_result:
            body["result"] = None if self.result is None else self.result.to_json()
        return body

    @classmethod
    def from_json(cls, body: dict) -> EvaluationJob:
        error = body.get("error")
        result = body.get("result")
        return cls(
            body["id"], body["model"], tuple(int(v) for v in body["versions"]), body["dataset"],
            JobState(body["state"]), int(body["done"]), int(body["total"]), float(body["created"]),
            body.get("finished"),
            None if error is None else JobError(error["error"], error.get("type", "YyaiError"),
                                                int(error.get("status", 500))),
            None if result is None else Evaluation.from_json(result),
        )


def new_id() -> str:
    return secrets.token_hex(8)


def wait_for(backend, job: EvaluationJob, *, progress: Callable[[int, int], None] | None = None,
             interval: float = 0.5) -> Evaluation:
    """Follow a job through ``backend.evaluation`` until it ends: its result, or its typed error.

    ``progress(done, total)`` is called after every poll.
    """
    while True:
        job = backend.evaluation(job.id)
        if progress is not None:
            progress(job.done, job.total)
        if job.error is not None:
            raise job.error.exception()
        if job.state.finished:
            return job.evaluation()
        time.sleep(interval)


class EvaluationJobs:
    """Evaluation jobs over one backend: submit, follow, evict (see the module docstring)."""

    def __init__(self, backend, folder: str | os.PathLike | None = None, *, max_jobs: int = DEFAULT_MAX_JOBS,
                 max_running: int = DEFAULT_MAX_RUNNING, batch_size: int = DEFAULT_BATCH_SIZE):
        self.backend = backend
        self.folder = None if folder is None else Path(folder)  # made by the first job
        self.max_jobs = max_jobs
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._jobs: dict[str, EvaluationJob] = {}  # insertion order: oldest first
        self._written: dict[str, float] = {}  # when each job's file was last written
        self._pool = ThreadPoolExecutor(max_running, thread_name_prefix="yyai-eval")

    # --- submitting -----------------------------------------------------------------------

    def upload_path(self, job_id: str) -> Path | None:
        """Where an uploaded set of job ``job_id`` is kept (None without a folder)."""
        return None if self.folder is None else self.folder / f"{job_id}.zip"

    def submit(self, name: str, dataset: LabelledSet | bytes | os.PathLike,
               check: Callable[[LabelledSet], list[int]], *, handover: bool = False) -> EvaluationJob:
        """Queue an evaluation of model ``name`` on ``dataset``; ``check(set)`` gives the versions.

        ``dataset`` is a LabelledSet, a zip's bytes or a zip file. The bytes, or a copy of
        the file, are kept in the folder until the job ends. With ``handover`` the file is
        this object's: it is moved there instead (or, without a folder, read in place),
        and deleted when the job ends or at once when the job is refused. Without a folder
        and without ``handover`` the file is read in place and left alone. ``check``
        resolves and checks the versions against the set (its kind, the versions'
        readiness) and raises to refuse the job. Raises TooManyJobsError when every slot
        is busy, and the set's errors for a bad zip.
        """
        job_id = new_id()
        upload = None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        try:
            if not isinstance(dataset, LabelledSet):
                upload, dataset = self._keep_upload(job_id, dataset, handover)
            versions = check(dataset)
            job = EvaluationJob(job_id, name, tuple(versions), dataset.description, JobState.QUEUED, 0,
                                len(dataset.items), time.time())
            with self._lock:
                self._make_room()
                self._jobs[job_id] = job
        except BaseException:
            _unlink(upload)
            raise
        self._write(job, force=True)
        self._pool.submit(self._run, job_id, dataset, upload)
        return job

    def _keep_upload(self, job_id: str, data: bytes | os.PathLike,
                     handover: bool) -> tuple[Path | None, LabelledSet]:
        """(the file to delete when the job ends, or None; the set) of an uploaded zip."""
        target = self.upload_path(job_id)
        if isinstance(data, (bytes, bytearray, memoryview)):
            if target is None:
                return None, set_from_zip(bytes(data), description="the uploaded zip")
            target.write_bytes(bytes(data))
        elif target is None:
            if not handover:
                return None, set_from_zip(Path(data), description=Path(data).name)
            target = Path(data)
        elif handover:
            os.replace(data, target)
        else:
            shutil.copyfile(data, target)
        try:
            return target, set_from_zip(target, description="the uploaded zip")
        except BaseException:
            _unlink(target)
            raise

    def _make_room(self) -> None:
        """Evict the oldest finished jobs until a slot is free (called under the lock)."""
        while len(self._jobs) >= self.max_jobs:
            oldest = next((j for j in self._jobs.values() if j.state.finished), None)
            if oldest is None:
                raise TooManyJobsError(f"{len(self._jobs)} evaluations are queued or running, the most this "
                                       "server keeps; try again when one has finished.")
            del self._jobs[oldest.id]
            self._written.pop(oldest.id, None)
            if self.folder is not None:
                _unlink(self.folder / f"{oldest.id}.json")

    # --- running --------------------------------------------------------------------------

    def _run(self, job_id: str, dataset: LabelledSet, upload: Path | None) -> None:
        job = self._update(job_id, state=JobState.RUNNING)
        try:
            result = evaluate(self.backend, job.model, list(job.versions), dataset, batch_size=self.batch_size,
                              progress=lambda done, total: self._update(job_id, done=done, total=total))
        except BaseException as error:  # any failure ends the job with its reason
            if not isinstance(error, YyaiError):
                log.exception("evaluation %s failed", job_id)
            self._update(job_id, state=JobState.FAILED, error=JobError.of(error), finished=time.time())
        else:
            self._update(job_id, state=JobState.DONE, done=job.total, result=result, finished=time.time())
        finally:
            _unlink(upload)

    def _update(self, job_id: str, **changes) -> EvaluationJob:
        # Only the job's own thread changes a job, and a job is never evicted before it
        # finished. The file comes first, so that whoever saw the change here finds it there too.
        with self._lock:
            job = replace(self._jobs[job_id], **changes)
        self._write(job, force=job.state is not JobState.RUNNING or "state" in changes)
        with self._lock:
            self._jobs[job_id] = job
        return job

    def _write(self, job: EvaluationJob, *, force: bool) -> None:
        """The job's snapshot file, replaced atomically (throttled while it runs)."""
        if self.folder is None:
            return
        now = time.monotonic()
        if not force and now - self._written.get(job.id, 0.0) < SNAPSHOT_EVERY_S:
            return
        self._written[job.id] = now
        try:
            fd, part = tempfile.mkstemp(prefix=f".{job.id}-", suffix=".part", dir=self.folder)
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(job.to_json(), f)
                os.replace(part, self.folder / f"{job.id}.json")
            except BaseException:
                _unlink(Path(part))
                raise
        except OSError as error:  # a full disk: this process still answers from memory
            log.warning("could not write the snapshot of evaluation %s: %s", job.id, error)

    # --- following ------------------------------------------------------------------------

    def get(self, job_id: str) -> EvaluationJob:
        """The job's latest snapshot: this process's own, or the file another process wrote."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is not None:
            return job
        if self.folder is not None and JOB_ID.match(job_id):
            try:
                return EvaluationJob.from_json(json.loads((self.folder / f"{job_id}.json").read_text()))
            except FileNotFoundError:
                pass
        raise JobNotFoundError(f"No evaluation job {job_id!r} here; it may have finished long ago and been "
                               f"evicted (the server keeps the last {self.max_jobs}).")

    def list(self) -> list[EvaluationJob]:
        """This process's jobs, oldest first."""
        with self._lock:
            return list(self._jobs.values())

    def close(self) -> None:
        """Stop taking work; queued jobs are dropped and running ones finish on their own."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def _unlink(path: Path | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
