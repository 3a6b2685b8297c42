"""Evaluations: scoring served versions on labelled sets, as bounded background jobs.

The third object over the registry, beside the data plane (reading, inference) and the
model repository (changes). It checks a request for an evaluation (the set, its kind, the
versions and their readiness) before a job is queued, then hands the job to
:class:`~yyai_kernel.evaluation.jobs.EvaluationJobs`, which runs ``evaluate()`` through the
data plane, so a job measures exactly what is served. No framework types.
"""

from __future__ import annotations

import os

from yyai_kernel.errors import InvalidInputError, PayloadTooLargeError
from yyai_kernel.evaluation.jobs import EvaluationJob, EvaluationJobs
from yyai_kernel.evaluation.run import DEFAULT_BATCH_SIZE, resolve_versions
from yyai_kernel.evaluation.sets import MAX_CSV_BYTES, ZIP_MAGIC, LabelledSet, set_from_bytes, table_set
from yyai_kernel.plane.dataplane import DataPlane
from yyai_kernel.registry.protocol import ref_of
from yyai_kernel.types import FileRole, Given, ModelRef, Prediction, VersionDescription


class Evaluations:
    """Evaluation jobs over one data plane; ``jobs_dir``: see ``EvaluationJobs`` (None: in memory)."""

    def __init__(self, data: DataPlane, jobs_dir: str | os.PathLike[str] | None = None):
        self.data = data
        self.jobs = EvaluationJobs(_Scoring(data), jobs_dir,
                                   batch_size=min(DEFAULT_BATCH_SIZE, data.config.max_images_per_request))

    def start(self, name: str, versions: list[int | str | None], data: bytes | os.PathLike[str] | None = None, *,
              bundled: str | None = None, set_ref: ModelRef | None = None, handover: bool = False,
              target: str | None = None, csv: bool | None = None) -> EvaluationJob:
        """Start evaluating ``versions`` (checked numbers or labels; empty: the default) of ``name``.

        The set is ``data`` (a zip's bytes or file: see ``EvaluationJobs.submit``; with
        ``handover``, as the REST endpoint does with its spooled upload, the file is moved to
        the jobs' folder and deleted when the job ends; or a table set's CSV, read at once),
        or ``bundled``, the name of a set that the version ``set_ref`` names (default: the
        default) bundles. ``csv`` says whether ``data`` is a table set's CSV (as a REST
        upload's Content-Type says) or a zip; None: a zip when it starts like one. ``target``
        names a table set's truth column (default: label or target). Checks everything it
        can before the job is queued: a bad zip or CSV, or a set of the wrong kind is a 400,
        an unknown version a 404, a version that does not serve a 503.
        """
        if (data is None) == (bundled is None):
            raise InvalidInputError("Send a labelled set (a zip, or a CSV for a table model), or name a set the "
                                    "model's archive bundles (one of the two).")
        source: LabelledSet | bytes | os.PathLike[str] | None = data
        if bundled is not None:
            where = self.data.resolve(set_ref or ModelRef(name))
            source = set_from_bytes(self.data.bundled_file(where, bundled, FileRole.EVAL),
                                    description=f"{name} v{where.version}: {bundled}", target=target)
        elif data is not None and (csv if csv is not None else not _zipped(data)):
            source = _table_upload(data, target, handover)
        elif target is not None:
            raise InvalidInputError("A target column names the truth of a table set (a CSV); this upload is a zip "
                                    "of images.", field="target")
        wanted = list(versions) or [None]

        def check(dataset: LabelledSet) -> list[int]:
            resolved = resolve_versions(self.jobs.backend, name, wanted, dataset)
            for version in resolved:
                self.data.model_ready(self.data.resolve(ModelRef(name, version)))
            return resolved

        assert source is not None  # checked above: a zip, or a bundled set
        return self.jobs.submit(name, source, check, handover=handover)

    def get(self, job_id: str) -> EvaluationJob:
        """An evaluation job's progress and, once done, its result (JobNotFoundError: 404)."""
        return self.jobs.get(job_id)

    def close(self) -> None:
        """Drop queued evaluations (running ones end with the process)."""
        self.jobs.close()


class _Scoring:
    """What ``evaluate()`` calls, by name and version, answered by the data plane."""

    def __init__(self, data: DataPlane):
        self.data = data

    def describe(self, name: str, version: int | str | None = None) -> VersionDescription:
        return self.data.resolve(ref_of(name, version)).description

    def predict_images(self, name: str, images: list[bytes], version: int | str | None = None) -> Prediction:
        return self.data.submit_images(self.data.resolve(ref_of(name, version)), list(images)).result()

    def predict_inputs(self, name: str, given: Given, version: int | str | None = None) -> Prediction:
        return self.data.submit_inputs(self.data.resolve(ref_of(name, version)), given).result()


def _zipped(data: bytes | os.PathLike[str]) -> bool:
    """Whether an uploaded set is a zip (of images) rather than a table set's CSV."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data[:2]) == ZIP_MAGIC
    with open(data, "rb") as file:
        return file.read(2) == ZIP_MAGIC


def _table_upload(data: bytes | os.PathLike[str], target: str | None, handover: bool) -> LabelledSet:
    """The table set of an uploaded CSV, read now (a handed-over file is deleted once read)."""
    try:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            size = os.path.getsize(data)
            if size > MAX_CSV_BYTES:
                raise PayloadTooLargeError(f"The CSV is {size:,} bytes; a table set holds at most {MAX_CSV_BYTES:,}.")
            with open(data, "rb") as file:
                data = file.read()
        return table_set(bytes(data), description="the uploaded CSV", target=target)
    finally:
        if handover and not isinstance(data, (bytes, bytearray, memoryview)):
            os.unlink(data)
