"""The data plane: every operation a front end offers, once, with no framework types.

Front ends (the Tornado REST handlers, the dashboard's in-process backend, and the
worker, gRPC and Ray adapters) are thin: they read bytes and headers, call one method
here, and write the reply. They never re-derive a version, a label or an error. In the
manner of MLServer's ``handlers/dataplane.py``, the logic lives here and the front ends
only translate. This module imports no Tornado, jupyter_server, ipywidgets or Ray.

Calls that run a model return a ``concurrent.futures.Future`` completed by the version's
batcher thread (or, with batching off, already done), so an event loop awaits it without
parking a thread. Which thread parses and decodes is the front end's choice; everything
here is safe to call from any thread (the registry does the locking).

Requests that name no version follow the model's traffic policy (canary and shadow, see
``rollout/traffic.py``); wherever a version is accepted, a label is too, and the registry
resolves it. A front end passes a request's sticky key (the ``X-Yyai-Sticky`` header)
and gets the routing without knowing of it.

Results are typed (``yyai_kernel.types``, ``yyai_kernel.protocol.v2codec``, ``yyai_kernel.types.rollout``);
errors are the typed errors of ``yyai_kernel.errors``, each with its HTTP status.
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from dataclasses import replace
from typing import Callable

from yyai_kernel.archive import read_listed_file
from yyai_kernel.config import ServingConfig
from yyai_kernel.errors import (
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    PayloadTooLargeError,
    YyaiError,
)
from yyai_kernel.evaluation.jobs import EvaluationJob, EvaluationJobs
from yyai_kernel.evaluation.run import DEFAULT_BATCH_SIZE, resolve_versions
from yyai_kernel.evaluation.sets import EVAL_ROLE, set_from_zip
from yyai_kernel.plane.explanations import Explainer
from yyai_kernel.plane.management import ManagedPlane, Peers
from yyai_kernel.plane.operations import Operation, OpKind
from yyai_kernel.protocol import v2codec
from yyai_kernel.protocol.v2codec import (
    InferRequest,
    InferResult,
    ModelMetadata,
    RepositoryEntry,
    ServerMetadata,
    TensorMetadata,
)
from yyai_kernel.registry.protocol import ModelRegistry
from yyai_kernel.rollout.traffic import Plan
from yyai_kernel.runtime.images import preprocess_batch
from yyai_kernel.types import (
    COMBINED_OUTPUT,
    ModelStatus,
    ModelSummary,
    Prediction,
    ServerStatus,
    VersionDescription,
    VersionState,
    check_explain,
    check_name,
    parse_version_ref,
)

SERVER_NAME = "yyai"
EXTENSIONS = ["binary_tensor_data", "model_repository"]
SAMPLE_ROLE = "sample"


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("yyai")
    except Exception:  # pragma: no cover - a bare checkout without metadata
        return "0.0.0"


class DataPlane(ManagedPlane):
    """The operations of yyai over one registry: any :class:`~yyai_kernel.registry.protocol.ModelRegistry`
    (the in-process :class:`~yyai_kernel.registry.registry.Registry`, or ``RayRegistry`` on a Ray cluster).
    Reading and inference are here; the changes (management, labels, traffic) come from
    :class:`~yyai_kernel.plane.management.ManagedPlane`.

    ``ready`` turns true once the server's start-up load finished (``mark_ready``); until
    then the server answers not-ready, and requests for a model still loading are told
    to retry.
    """

    def __init__(self, registry: ModelRegistry, config: ServingConfig | None = None, *, peers: Peers | None = None,
                 worker: int = 0, jobs_dir: str | os.PathLike | None = None):
        super().__init__(registry, config, peers=peers, worker=worker)
        # evaluations run through this data plane's own Backend methods; jobs_dir: see evaljobs
        self.jobs = EvaluationJobs(self, jobs_dir,
                                   batch_size=min(DEFAULT_BATCH_SIZE, self.config.max_images_per_request))
        self.version = _version()
        self.explainer = Explainer(registry, self.config)

    # --- health and server metadata --------------------------------------------------------

    def mark_ready(self) -> None:
        self._ready = True

    @property
    def ready(self) -> bool:
        return self._ready

    def check_ready(self) -> None:
        """Raise ModelNotReadyError (503) until the start-up load finished."""
        if not self._ready:
            error = ModelNotReadyError("The server is still loading its models.")
            error.retry_after = 2
            raise error

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(SERVER_NAME, self.version, list(EXTENSIONS))

    # --- reading ------------------------------------------------------------------------------

    def list(self) -> list[ModelSummary]:
        return self.registry.list()

    def status(self, name: str | None = None) -> ModelStatus | ServerStatus:
        """A model's status (with its rollout figures), or every model's."""
        if name is not None:
            return self._with_rollout(self.registry.status(check_name(name)))
        status = self.registry.status()
        return replace(status, models={n: self._with_rollout(m) for n, m in status.models.items()})

    def describe(self, name: str, version=None) -> VersionDescription:
        """What a version takes and gives, with its status (``GET /models/{m}/versions/{v}``)."""
        described = self._describe(name, version)
        return described.with_status(self._version_status(described.name, described.version))

    def _version_status(self, name: str, version: int | None):
        resolved = self.registry.resolve_version(name, version)
        return self.registry.status(name).versions[resolved]

    def _describe(self, name: str, version) -> VersionDescription:
        """What a version takes and gives (the request path: no status to compute)."""
        return self.registry.describe(check_name(name), parse_version_ref(version))

    def bundled(self, name: str, version=None, role: str = SAMPLE_ROLE) -> tuple[int, list[str]]:
        """(the version, the names of the files it bundles with ``role``: "sample" or "eval")."""
        record = self.registry.record(check_name(name), parse_version_ref(version))
        return record.version, [f["path"] for f in record.manifest.files if f.get("role") == role]

    def bundled_file(self, name: str, file: str, version=None, role: str = SAMPLE_ROLE) -> bytes:
        """One bundled file's bytes, by its manifest name (never a path on the server's disk)."""
        resolved, names = self.bundled(name, version, role)
        if file not in names:
            what = "labelled set" if role == EVAL_ROLE else role
            raise ModelNotFoundError(f"Model {name!r} v{resolved} bundles no {what} named {file!r}.")
        return read_listed_file(self.registry.record(name, resolved).path, file)

    def sample_list(self, name: str, version=None) -> tuple[int, list[str]]:
        """(the version, the names of the sample inputs it bundles: files with role "sample")."""
        return self.bundled(name, version, SAMPLE_ROLE)

    def samples(self, name: str, version=None) -> list[str]:
        """The names of the sample inputs a version bundles."""
        return self.sample_list(name, version)[1]

    def sample(self, name: str, sample: str, version=None) -> bytes:
        """One bundled sample's bytes, by its manifest name."""
        return self.bundled_file(name, sample, version, SAMPLE_ROLE)

    def eval_sets(self, name: str, version=None) -> list[str]:
        """The names of the labelled sets a version bundles (files with role "eval": zips)."""
        return self.bundled(name, version, EVAL_ROLE)[1]

    def eval_set(self, name: str, set_name: str, version=None) -> bytes:
        """One bundled labelled set (a zip's bytes), by its manifest name."""
        return self.bundled_file(name, set_name, version, EVAL_ROLE)

    # --- Open Inference Protocol ---------------------------------------------------------------

    def model_metadata(self, name: str, version=None) -> ModelMetadata:
        """The v2 metadata: one input (the model's tensor after preprocessing) and the outputs."""
        named = parse_version_ref(version)
        described = self._describe(name, named)
        if named is None:
            summary = [m for m in self.registry.list() if m.name == described.name]
            versions = list(summary[0].versions) if summary else [described.version]
        else:
            versions = [described.version]
        spec = described.input
        tensor_input = TensorMetadata(described.input_name, v2codec.datatype_of(spec.get("dtype", "float32")),
                                      [-1, *[int(d) for d in spec["shape"]]])
        outputs = [TensorMetadata(n, "FP32", [-1, described.output_width]) for n in described.output_names]
        return ModelMetadata(described.name, [str(v) for v in versions], "keras", [tensor_input], outputs,
                             parameters=_preprocessing(spec))

    def model_ready(self, name: str, version=None) -> int:
        """The resolved version when it serves; ModelNotReadyError (503) with the reason otherwise."""
        status = self._version_status(check_name(name), parse_version_ref(version))
        if not status.ready:
            error = ModelNotReadyError(f"Model {name!r} version {status.version} is not ready: {status.reason}.")
            if status.state is VersionState.LOADING:
                error.retry_after = 2
            raise error
        return status.version

    def batches(self, name: str, version=None) -> bool:
        """Whether the version answers through a batcher, so that :meth:`infer` never blocks."""
        return self.registry.batches(check_name(name), parse_version_ref(version))

    def infer(self, name: str, version, request: InferRequest, *, sticky: str | None = None) -> Future:
        """Queue a v2 inference request; a Future of its :class:`InferResult`.

        With no version named, the traffic policy places it; its sticky key is ``sticky``,
        else the request's ``id``.
        """
        plan = self.traffic.plan(check_name(name), parse_version_ref(version), sticky or request.id)

        def make(described: VersionDescription):
            return v2codec.model_input(request, described.input)

        def attempt(version):
            described = self._describe(name, version)
            x = make(described)
            outputs = described.output_names
            unknown = [o.name for o in request.outputs or () if o.name not in outputs]
            if unknown:
                raise InvalidInputError(f"Unknown output {unknown[0]!r}; the model's outputs are {outputs}.")
            return described, x, self.registry.submit(described.name, x, described.version, finite=True)  # model_input checked

        described, pending = self._routed(plan, attempt, make)
        return _then(pending, lambda prediction: _infer_result(prediction, described, request))

    def _routed(self, plan: Plan, attempt: Callable, make: Callable, filenames=None):
        """Serve a plan: ``attempt(version)`` -> (description, input, Future); a canary that
        cannot take the request hands it to the default. Queues the plan's shadow run."""
        if plan.canary:
            try:
                described, x, pending = attempt(plan.version)
            except YyaiError:
                self.traffic.fell_back(plan)
                described, x, pending = attempt(plan.fallback)
        else:
            described, x, pending = attempt(plan.version)
        self.traffic.shadow(plan, described, x, pending, make, filenames)
        return described, pending

    def repository_index(self, ready_only: bool = False) -> list[RepositoryEntry]:
        """Every version of every model with its Triton state and the reason it is not ready."""
        index = []
        for name in self.registry.names():
            try:
                status = self.registry.status(name)
            except ModelNotFoundError:  # removed meanwhile
                continue
            for version, info in sorted(status.versions.items()):
                state = info.state.triton
                if ready_only and state != "READY":
                    continue
                index.append(RepositoryEntry(name, str(version), state, info.reason))
        return index

    def repository_load(self, name: str, parameters: dict | None = None) -> ModelStatus:
        """Triton's load: the default version. Config and file overrides are refused."""
        return self.manage(self.repository_load_op(name, parameters)).result

    @staticmethod
    def repository_load_op(name: str, parameters: dict | None = None) -> Operation:
        """The operation of Triton's load; config and file overrides are refused (400)."""
        if parameters and any(k == "config" or k.startswith("file:") for k in parameters):
            raise InvalidInputError(
                "Model config and file overrides are not accepted; upload an archive with POST /models."
            )
        return Operation(OpKind.LOAD, name)

    # --- images --------------------------------------------------------------------------------

    def submit_images(self, name: str, version, images: list[bytes],
                      filenames: list[str | None] | None = None, *, sticky: str | None = None,
                      explain: str | None = None) -> Future:
        """Decode and preprocess images as the version's manifest says, then queue them.

        The decoding runs in the calling thread; the Future completes with a
        :class:`Prediction` that carries the file names. With no version named, the
        traffic policy places the request (``sticky``: its sticky key).
        ``explain="gradcam"`` (``?explain=``) also explains each member's answer (see
        ``explanations.Explainer``); such a request is a person's question about one version, so
        it goes to the version (or label) named, else the default, and no policy places it.
        """
        explain = check_explain(explain)
        if not images:
            raise InvalidInputError("Send at least one image.")
        if len(images) > self.config.max_images_per_request:
            raise PayloadTooLargeError(
                f"The upload holds {len(images)} images; the limit is {self.config.max_images_per_request}."
            )
        if explain:
            return self.explainer.submit(explain, self._describe(name, version), images, filenames)
        plan = self.traffic.plan(check_name(name), parse_version_ref(version), sticky)
        pixels = self.config.max_image_pixels

        def make(described: VersionDescription):
            return preprocess_batch(images, described.input, max_pixels=pixels, names=filenames)

        def attempt(version):
            described = self._describe(name, version)
            batch = make(described)
            return described, batch, self.registry.submit(described.name, batch, described.version)

        _, pending = self._routed(plan, attempt, make, filenames)
        if not filenames:
            return pending
        return _then(pending, lambda p: Prediction(p.name, p.version, p.members, p.combined, p.output,
                                                   tuple(filenames)))

    def predict_images(self, name: str, images: list[bytes], version=None, filenames: list[str] | None = None, *,
                       explain: str | None = None) -> Prediction:
        """:meth:`submit_images`, waited for (the dashboard's backend contract, as ``YyaiClient``'s)."""
        return self.submit_images(name, version, list(images), filenames, explain=explain).result()

    def predict(self, name: str, inputs, version=None) -> Prediction:
        """Run an input tensor ``[B, *input.shape]`` (already preprocessed) through a version."""
        return self.registry.predict(check_name(name), inputs, parse_version_ref(version))

    def close(self) -> None:
        """Stop the shadow runner, drop queued evaluations (running ones end with the process)
        and close the registry."""
        self.traffic.close()
        self.jobs.close()
        self.registry.close()

    # --- evaluation jobs --------------------------------------------------------------------------

    def start_evaluation(self, name: str, versions, data: bytes | os.PathLike | None = None, *,
                         bundled: str | None = None, set_version=None, handover: bool = False) -> EvaluationJob:
        """Start evaluating ``versions`` (None: the default) of ``name`` on a labelled set.

        The set is ``data`` (a zip's bytes or file: see ``EvaluationJobs.submit``; with
        ``handover``, as the REST handler does with its spooled upload, the file is moved to
        the jobs' folder and deleted when the job ends), or ``bundled``, the name of a set
        that version ``set_version`` (default: the default) of the model bundles. Checks
        everything it can before the job is queued: a bad zip or a set of the wrong kind
        is a 400, an unknown version a 404, a version that does not serve a 503.
        """
        name = check_name(name)
        if (data is None) == (bundled is None):
            raise InvalidInputError("Send a labelled set as a zip, or name a set the model's archive bundles "
                                    "(one of the two).")
        if bundled is not None:
            resolved = self.bundled(name, set_version, EVAL_ROLE)[0]
            data = set_from_zip(self.eval_set(name, bundled, resolved), description=f"{name} v{resolved}: {bundled}")
        versions = [None] if versions is None or len(versions) == 0 else [parse_version_ref(v) for v in versions]

        def check(dataset) -> list[int]:
            resolved = resolve_versions(self, name, versions, dataset.kind)
            for version in resolved:
                self.model_ready(name, version)
            return resolved

        return self.jobs.submit(name, data, check, handover=handover)

    def evaluation(self, job_id: str) -> EvaluationJob:
        """An evaluation job's progress and, once done, its result (JobNotFoundError: 404)."""
        return self.jobs.get(job_id)

def _preprocessing(spec: dict) -> dict:
    """What v2 clients must know: the input is the tensor after preprocessing, and how images become it."""
    return {
        "preprocessed": True,
        "scale": float(spec.get("scale", 1.0)),
        "offset": float(spec.get("offset", 0.0)),
        "color": spec.get("color", "rgb"),
        "description": (
            "v2 takes the model's input tensor after preprocessing: x = pixel * scale + offset, "
            "in the colour order and shape given. POST /predictions/{model} takes image bytes and "
            "preprocesses them for you."
        ),
    }


def _infer_result(prediction: Prediction, described: VersionDescription, request: InferRequest) -> InferResult:
    available = {}
    if described.has_combined and prediction.combined is not None:
        available[COMBINED_OUTPUT] = prediction.combined
    for member, array in prediction.members.items():
        available.setdefault(member, array)
    return InferResult(
        model_name=described.name,
        model_version=prediction.version,
        outputs=v2codec.select_outputs(available, request),
        id=request.id,
        parameters={"combined": COMBINED_OUTPUT if COMBINED_OUTPUT in available else None,
                    "members": list(prediction.members)},
    )


def _then(pending: Future, transform) -> Future:
    """A Future of ``transform(result)``, completed in the thread that completes ``pending``
    (at once, here, when it is already done)."""
    chained: Future = Future()

    def finish(source: Future) -> None:
        error = source.exception()
        if error is not None:
            chained.set_exception(error)
            return
        try:
            chained.set_result(transform(source.result()))
        except BaseException as failure:  # a transform bug must reach the caller, not the batcher
            chained.set_exception(failure)

    pending.add_done_callback(finish)
    return chained
