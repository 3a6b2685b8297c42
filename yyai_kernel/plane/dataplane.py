"""The data plane: reading and inference, once, with no framework types.

In the manner of MLServer's ``handlers/dataplane.py``: front ends (the REST endpoints, the
gRPC servicer, the dashboard's in-process backend, the Ray replicas) read bytes and headers,
parse the model reference once (:class:`~yyai_kernel.types.ModelRef`), call :meth:`resolve`
once, and hand the resolved :class:`~yyai_kernel.registry.protocol.Target` to the method they
serve. Nothing here checks a name or resolves a version again. Changing what serves is the
:class:`~yyai_kernel.plane.repository.ModelRepository`'s, over the same registry; evaluation
jobs are :class:`~yyai_kernel.plane.evaluations.Evaluations`'. This module imports no
Tornado, jupyter_server, ipywidgets or Ray.

Calls that run a model return a ``concurrent.futures.Future`` completed by the version's
batcher thread (or, with batching off, already done), so an event loop awaits it without
parking a thread. Which thread parses and decodes is the front end's choice; everything
here is safe to call from any thread (the registry does the locking, and resolving takes
no lock that a disk write can hold).

Requests that name no version follow the model's traffic policy (canary and shadow, see
``rollout/traffic.py``), read from the view the request was resolved in. A front end
passes a request's sticky key (the ``X-Yyai-Sticky`` header) and gets the routing without
knowing of it. Results are typed; errors are the typed errors of ``yyai_kernel.errors``,
each with its HTTP status.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any, TypeVar, overload

import numpy as np

from yyai_kernel.archive import read_listed_file
from yyai_kernel.config import ServingConfig
from yyai_kernel.errors import (
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    PayloadTooLargeError,
    YyaiError,
)
from yyai_kernel.plane.explanations import Explainer
from yyai_kernel.protocol import v2codec
from yyai_kernel.protocol.v2codec import (
    InferRequest,
    InferResult,
    ModelMetadata,
    RepositoryEntry,
    ServerMetadata,
    TensorMetadata,
)
from yyai_kernel.registry.protocol import ModelRegistry, Target
from yyai_kernel.rollout.traffic import Plan, TrafficRouter
from yyai_kernel.runtime.images import preprocess_batch
from yyai_kernel.runtime.tabular import fit
from yyai_kernel.types import (
    COMBINED_OUTPUT,
    BundledFiles,
    FileRole,
    Given,
    InputSpec,
    ModelRef,
    ModelStatus,
    ModelSummary,
    Prediction,
    ServerStatus,
    VersionDescription,
    VersionState,
    VersionStatus,
    check_explain,
)

SERVER_NAME = "yyai"
EXTENSIONS = ["binary_tensor_data", "model_repository"]
READY_RETRY_S = 2  # what a client is told to wait while the server or a version loads

_In = TypeVar("_In")
_Out = TypeVar("_Out")
# a version the request may go to -> (its description, the input made for it, the Future of its answer)
Attempt = Callable[[Target], tuple[VersionDescription, np.ndarray, Future[Prediction]]]
Make = Callable[[VersionDescription], np.ndarray]  # the input, made for a version's description


def yyai_version() -> str:
    try:
        return package_version("yyai")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout without metadata
        return "0.0.0"


class Readiness:
    """Whether the server's start-up load finished; until then it answers not-ready (503).

    ``probe`` (a front end of ``--workers N``) says whether the model host is connected and
    loaded its warm set; the server is ready only while it does.
    """

    def __init__(self, probe: Callable[[], bool] | None = None) -> None:
        self._ready = False
        self.probe = probe

    @property
    def ready(self) -> bool:
        if self.probe is not None:
            return self.probe()
        return self._ready

    def mark_ready(self) -> None:
        self._ready = True

    def check(self) -> None:
        """Raise ModelNotReadyError (503, retry later) until the start-up load finished."""
        if not self.ready:
            error = ModelNotReadyError("The server is still loading its models.")
            error.retry_after = READY_RETRY_S
            raise error


class DataPlane:
    """Reading and inference over one registry: any :class:`~yyai_kernel.registry.protocol.ModelRegistry`
    (the in-process :class:`~yyai_kernel.registry.registry.Registry`, or ``RayRegistry`` on a Ray
    cluster). ``traffic`` places the requests that name no version; ``health`` says whether
    the server's start-up load finished."""

    def __init__(self, registry: ModelRegistry, traffic: TrafficRouter, config: ServingConfig | None = None, *,
                 health: Readiness | None = None):
        self.registry = registry
        self.traffic = traffic
        self.config = config or registry.config
        self.health = health or Readiness()
        self.version = yyai_version()
        self.explainer = Explainer(registry, self.config)

    # --- health and server metadata --------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.health.ready

    def mark_ready(self) -> None:
        self.health.mark_ready()

    def check_ready(self) -> None:
        self.health.check()

    def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(SERVER_NAME, self.version, list(EXTENSIONS))

    # --- reading ------------------------------------------------------------------------------

    def resolve(self, ref: ModelRef) -> Target:
        """The one resolution of a request: its version, record and description (404, 503)."""
        return self.registry.resolve(ref)

    def list(self) -> list[ModelSummary]:
        return self.registry.list()

    @overload
    def status(self, name: None = None) -> ServerStatus: ...
    @overload
    def status(self, name: str) -> ModelStatus: ...
    def status(self, name: str | None = None) -> ModelStatus | ServerStatus:
        """A model's status (with its rollout figures), or every model's."""
        if name is not None:
            return self.traffic.with_rollout(self.registry.status(name))
        status = self.registry.status()
        return replace(status, models={n: self.traffic.with_rollout(m) for n, m in status.models.items()})

    def version_status(self, target: Target) -> VersionStatus:
        return self.registry.status(target.name).versions[target.version]

    def describe(self, target: Target) -> VersionDescription:
        """What a version takes and gives, with its status (``GET /models/{m}/versions/{v}``)."""
        return target.description.with_status(self.version_status(target))

    def bundled(self, target: Target, role: FileRole = FileRole.SAMPLE) -> BundledFiles:
        """The files with ``role`` (samples, labelled sets) that go with a version: its own, else
        those of the newest version that bundles any (``BundledFiles.source`` says which)."""
        records = target.model.records
        for version in [target.version, *sorted((v for v in records if v != target.version), reverse=True)]:
            files = tuple(f.path for f in records[version].manifest.files if f.role is role)
            if files:
                return BundledFiles(target.name, target.version, version, role, files)
        return BundledFiles(target.name, target.version, None, role)

    def bundled_file(self, target: Target, file: str, role: FileRole = FileRole.SAMPLE) -> bytes:
        """One bundled file's bytes, by its manifest name (never a path on the server's disk), from
        the archive :meth:`bundled` finds it in."""
        found = self.bundled(target, role)
        if found.source is None or file not in found.files:
            what = "labelled set" if role is FileRole.EVAL else role.value
            others = "" if found.source is None else f" (the {what}s of v{found.source} are {', '.join(found.files)})"
            raise ModelNotFoundError(f"Model {target.name!r} v{target.version} has no {what} named {file!r}{others}.")
        return read_listed_file(target.model.records[found.source].path, file)

    # --- Open Inference Protocol ---------------------------------------------------------------

    def model_metadata(self, target: Target) -> ModelMetadata:
        """The v2 metadata: the model's input tensors (after preprocessing; one per ``Input`` of a
        model with several) and the outputs."""
        described = target.description
        versions = sorted(target.model.records) if not target.named else [target.version]
        spec = described.input
        tensor_inputs = [TensorMetadata(part.name, v2codec.datatype_of(part.dtype), [-1, *part.shape])
                         for part in spec.inputs()]
        outputs = [TensorMetadata(n, "FP32", [-1, described.output_width]) for n in described.output_names]
        return ModelMetadata(described.name, [str(v) for v in versions], "keras", tensor_inputs, outputs,
                             parameters=_preprocessing(spec))

    def model_ready(self, target: Target) -> int:
        """The version when it serves; ModelNotReadyError (503) with the reason otherwise."""
        status = self.version_status(target)
        if not status.ready:
            error = ModelNotReadyError(f"Model {target.name!r} version {status.version} is not ready: "
                                       f"{status.reason}.")
            if status.state is VersionState.LOADING:
                error.retry_after = READY_RETRY_S
            raise error
        return status.version

    def batches(self, target: Target) -> bool:
        """Whether the version answers through a batcher, so that :meth:`infer` never blocks."""
        return self.registry.batches(target)

    def infer(self, target: Target, request: InferRequest, *, sticky: str | None = None) -> Future[InferResult]:
        """Queue a v2 inference request; a Future of its :class:`InferResult`.

        With no version named, the traffic policy places it; its sticky key is ``sticky``,
        else the request's ``id``.
        """
        plan = self.traffic.plan(target, sticky or request.id)

        def make(described: VersionDescription) -> np.ndarray:
            return v2codec.model_input(request, described.input)

        def attempt(chosen: Target) -> tuple[VersionDescription, np.ndarray, Future[Prediction]]:
            described = chosen.description
            x = make(described)
            outputs = described.output_names
            unknown = [o.name for o in request.outputs or () if o.name not in outputs]
            if unknown:
                raise InvalidInputError(f"Unknown output {unknown[0]!r}; the model's outputs are {outputs}.")
            return described, x, self.registry.submit(chosen, x, finite=True)  # model_input checked

        described, pending = self._routed(plan, attempt, make)
        return _then(pending, lambda prediction: _infer_result(prediction, described, request))

    def _routed(self, plan: Plan, attempt: Attempt, make: Make,
                filenames: builtins.list[str | None] | None = None) -> tuple[VersionDescription, Future[Prediction]]:
        """Serve a plan: ``attempt(target)`` -> (description, input, Future); a canary that
        cannot take the request hands it to the default. Queues the plan's shadow run."""
        if plan.canary is not None:
            try:
                described, x, pending = attempt(plan.target.model.target(plan.canary))
            except YyaiError:
                self.traffic.fell_back(plan)
                described, x, pending = attempt(plan.target)
        else:
            described, x, pending = attempt(plan.target)
        self.traffic.shadow(plan, described, x, pending, make, filenames)
        return described, pending

    def repository_index(self, ready_only: bool = False) -> builtins.list[RepositoryEntry]:
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

    # --- images, records and tensors ---------------------------------------------------------------

    def submit_images(self, target: Target, images: builtins.list[bytes],
                      filenames: builtins.list[str | None] | None = None, *, sticky: str | None = None,
                      explain: str | None = None) -> Future[Prediction]:
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
            return self.explainer.submit(explain, target, images, filenames)
        plan = self.traffic.plan(target, sticky)
        pixels = self.config.max_image_pixels

        def make(described: VersionDescription) -> np.ndarray:
            return preprocess_batch(images, described.input, max_pixels=pixels, names=filenames)

        def attempt(chosen: Target) -> tuple[VersionDescription, np.ndarray, Future[Prediction]]:
            described = chosen.description
            batch = make(described)
            return described, batch, self.registry.submit(chosen, batch)

        _, pending = self._routed(plan, attempt, make, filenames)
        if not filenames:
            return pending
        return _then(pending, lambda p: replace(p, filenames=tuple(filenames)))

    def submit_inputs(self, target: Target, given: Given, *, sticky: str | None = None,
                      explain: str | None = None) -> Future[Prediction]:
        """Fit records or numbers to the version's input (``runtime/tabular.py``: features, their
        normalisation and vocabularies, shapes), then queue them; a Future of the :class:`Prediction`.

        Each version that answers (the default, a canary, a shadow) fits them to its own input.
        ``explain="integrated_gradients"`` also explains each member's answer per feature (a
        table model; see ``explanations.Explainer``), from the version named, else the default.
        """
        method = check_explain(explain)
        if method is not None:
            return self.explainer.submit_given(method, target, given)
        plan = self.traffic.plan(target, sticky)
        most = self.config.max_rows_per_request

        def make(described: VersionDescription) -> np.ndarray:
            batch = fit(given, described.input)
            if len(batch) > most:
                raise PayloadTooLargeError(f"The request holds {len(batch):,} rows; the limit is {most:,}.")
            return batch

        def attempt(chosen: Target) -> tuple[VersionDescription, np.ndarray, Future[Prediction]]:
            described = chosen.description
            batch = make(described)
            return described, batch, self.registry.submit(chosen, batch, finite=True)  # fit checked the values

        _, pending = self._routed(plan, attempt, make)
        return pending

    def predict(self, target: Target, inputs: np.ndarray) -> Prediction:
        """Run an input tensor ``[B, *input.shape]`` (already preprocessed) through a version, waiting."""
        return self.registry.submit(target, inputs).result()

    def close(self) -> None:
        """Stop the shadow runner."""
        self.traffic.close()


def _preprocessing(spec: InputSpec) -> dict[str, Any]:
    """What v2 clients must know: the input is the tensor after preprocessing, and how images (or
    a table's features) become it."""
    if spec.image is None:
        return {"preprocessed": True, "kind": spec.kind.value, "description": (
            f"v2 takes the model's input tensors as the model receives them: {spec.preprocessing()}. "
            "POST /predictions/{model} takes JSON records, a CSV or .npy and prepares them for you.")}
    image = spec.image
    return {
        "preprocessed": True,
        "scale": float(image.scale),
        "offset": float(image.offset),
        "color": image.color.value,
        "description": (
            "v2 takes the model's input tensor after preprocessing: x = pixel * scale + offset, "
            "in the colour order and shape given. POST /predictions/{model} takes image bytes and "
            "preprocesses them for you."
        ),
    }


def _infer_result(prediction: Prediction, described: VersionDescription, request: InferRequest) -> InferResult:
    available: dict[str, np.ndarray] = {}
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
        cold_start_s=prediction.cold_start_s,
    )


def _then(pending: Future[_In], transform: Callable[[_In], _Out]) -> Future[_Out]:
    """A Future of ``transform(result)``, completed in the thread that completes ``pending``
    (at once, here, when it is already done)."""
    chained: Future[_Out] = Future()

    def finish(source: Future[_In]) -> None:
        error = source.exception()
        if error is not None:
            chained.set_exception(error)
            return
        try:
            chained.set_result(transform(source.result()))
        except BaseException as failure:  # noqa: BLE001 - a transform bug must reach the caller, not the batcher
            chained.set_exception(failure)

    pending.add_done_callback(finish)
    return chained
