"""HTTP client with the data plane's methods and result types, over a running yyai server.

``Dashboard(YyaiClient(url, token))`` attaches a notebook to a running server; the page
that ``yyai serve`` shows uses it too, so a page visit costs no TensorFlow import and no
model load. It needs only ``requests`` and ``numpy``: importing it never imports
TensorFlow or Keras (a test checks this). Its methods return the same types as the
in-process :class:`~yyai_kernel.plane.dataplane.DataPlane` (``ModelStatus``, ``Prediction``,
``InstallResult``...), so the dashboard works the same over either.

``YyaiClient()`` reads ``YYAI_URL`` and ``YYAI_TOKEN`` from the environment, which the
server puts into its dashboard kernels. Errors come back as the same typed exceptions
the data plane raises (``ModelNotFoundError``, ``ModelNotReadyError``, ...), rebuilt from
the reply's ``type`` field or, failing that, from the HTTP status, with the reply's typed
next steps (``error.hints``) so that the caller says them in its own words.

A prediction or a GET that a gateway in front of yyai failed (a 5xx that yyai did not write:
Ray Serve's proxy answers 500 for a request whose replica died under it) is sent once more;
neither changes anything, so a second try is safe. ``retried`` counts those.

Example::

    from yyai_kernel.client import YyaiClient
    client = YyaiClient("http://127.0.0.1:8866", token="...")
    prediction = client.predict_image_files("digits", ["digit-3.png"])
    prediction.top(0)        # ("3", 0.98)
    client.predict_records("wine", {"alcohol": 13.2, "malic_acid": 1.78, ...}).top(0)
    client.upload(model, name="digits", version=3, input={"scale": 1 / 255}, labels=list("0123456789"))
"""

from __future__ import annotations

import builtins
import csv
import dataclasses
import io
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, overload
from urllib.parse import quote

import numpy as np
import requests

from yyai_kernel import errors
from yyai_kernel.evaluation.jobs import EvaluationJob
from yyai_kernel.hints import Hint
from yyai_kernel.protocol.v2codec import DATATYPES, datatype_of
from yyai_kernel.types import (
    BundledFiles,
    Disagreement,
    FileRole,
    Given,
    InstallResult,
    ModelRemoved,
    ModelStatus,
    ModelSummary,
    Numbers,
    Prediction,
    Records,
    ServerStatus,
    TrafficPolicy,
    TrafficReport,
    VersionDescription,
    VersionLabel,
    parse_version_ref,
)

DEFAULT_URL = "http://127.0.0.1:8866"
GATEWAY_RETRIES = 1  # times a prediction or a GET is sent again after a gateway's own 5xx

_BY_STATUS = {
    400: errors.InvalidInputError,
    401: errors.AuthError,
    403: errors.AuthError,
    404: errors.ModelNotFoundError,
    409: errors.ConflictError,
    413: errors.PayloadTooLargeError,
    415: errors.UnsupportedMediaError,
    429: errors.TooManyRequestsError,
    503: errors.ModelNotReadyError,
    507: errors.StoreWriteError,
}


class YyaiClient:
    """A yyai server over HTTP, with the Registry's methods.

    ``url`` and ``token`` default to ``YYAI_URL`` / ``YYAI_TOKEN`` (then to
    http://127.0.0.1:8866 and no token). ``timeout`` is in seconds per request.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 120.0):
        self.url = (url or os.environ.get("YYAI_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("YYAI_TOKEN", "")
        self.timeout = timeout
        self.retried = 0  # calls sent again after a gateway's own 5xx (see the module docstring)
        self.session = requests.Session()
        if self.token:
            self.session.headers["Authorization"] = f"token {self.token}"

    def __repr__(self) -> str:
        return f"YyaiClient({self.url!r})"

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def __enter__(self) -> YyaiClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- transport ------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, retry_gateway: bool = False, **kwargs) -> requests.Response:
        """One call; a GET, or a call with ``retry_gateway`` (predictions), is sent again after a
        gateway's own 5xx."""
        kwargs.setdefault("timeout", self.timeout)
        retry_gateway = retry_gateway or method == "GET"
        for attempt in range(1 + (GATEWAY_RETRIES if retry_gateway else 0)):
            try:
                response = self.session.request(method, self.url + path, **kwargs)
            except requests.ConnectionError as error:
                raise errors.ServerUnavailableError(f"Cannot reach the yyai server at {self.url}: {error}") from None
            except requests.Timeout:
                raise errors.ServerUnavailableError(f"The yyai server at {self.url} did not answer in time.") from None
            if not (retry_gateway and attempt < GATEWAY_RETRIES and _from_gateway(response)):
                break
            self.retried += 1
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, **kwargs):
        return self._request(method, path, **kwargs).json()

    # --- reading ----------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every model name."""
        return [m.name for m in self.list()]

    def list(self) -> list[ModelSummary]:
        """A short line per model: versions, default, loaded versions."""
        return [ModelSummary.from_json(m) for m in self._json("GET", "/models")]

    @overload
    def status(self, name: None = None) -> ServerStatus: ...
    @overload
    def status(self, name: str) -> ModelStatus: ...
    def status(self, name: str | None = None) -> ModelStatus | ServerStatus:
        """One model's status, or every model's with the store's problems."""
        if name is not None:
            return ModelStatus.from_json(self._json("GET", f"/models/{_q(name)}"))
        return ServerStatus.from_json(self._json("GET", "/models/_status"))

    def samples(self, name: str, version: int | None = None) -> builtins.list[str]:
        """Names of the sample inputs that go with a version (its own, else the newest version's)."""
        return list(self.bundled(name, version).files)

    def bundled(self, name: str, version: int | None = None, role: FileRole = FileRole.SAMPLE) -> BundledFiles:
        """The samples (or, with ``role`` eval, the labelled sets) that go with a version, and
        which version's archive holds them."""
        path = "samples" if role is FileRole.SAMPLE else "evalsets"
        return BundledFiles.from_json(self._json("GET", f"/models/{_q(name)}/{path}", params=_version_param(version)),
                                      role)

    def sample(self, name: str, sample: str, version: int | None = None) -> bytes:
        """The bytes of one bundled sample, by its name in :meth:`samples`."""
        return self._request("GET", f"/models/{_q(name)}/samples/{_q(sample)}", params=_version_param(version)).content

    def describe(self, name: str, version: int | str | None = None) -> VersionDescription:
        """What a version or label (default: the default) takes and gives, with its status."""
        version = self.resolve_version(name, version)
        return VersionDescription.from_json(self._json("GET", f"/models/{_q(name)}/versions/{int(version)}"))

    def resolve_version(self, name: str, version: int | str | None = None) -> int:
        """The given version, the version a label names, or the model's current default."""
        version = parse_version_ref(version)
        if isinstance(version, str):
            return self.label(name, version).version
        if version is not None:
            return version
        default = self.status(name).default
        if default is None:
            raise errors.ModelNotReadyError(f"Model {name!r} has no version in the store.")
        return int(default)

    def ready(self) -> bool:
        """Whether the server finished its start-up load (``/v2/health/ready``)."""
        try:
            self._request("GET", "/v2/health/ready")
            return True
        except errors.ModelNotReadyError:
            return False

    # --- predicting -----------------------------------------------------------------------

    def predict(self, name: str, inputs, version: int | None = None) -> Prediction:
        """Run an input tensor ``[B, *input.shape]`` through the v2 infer endpoint (binary tensors).

        v2 takes the tensor after preprocessing (``x = pixel * scale + offset``); to send
        images, use :meth:`predict_images`.
        """
        array = np.ascontiguousarray(inputs)
        try:
            datatype = datatype_of(array.dtype)
        except errors.InvalidInputError:
            array, datatype = array.astype(np.float32), "FP32"
        data = array.astype(DATATYPES[datatype], copy=False).tobytes()
        described = self.describe(name, version)
        header = json.dumps({
            "inputs": [{"name": described.input_name, "datatype": datatype, "shape": list(array.shape),
                        "parameters": {"binary_data_size": len(data)}}],
            "parameters": {"binary_data_output": True},
        }).encode()
        response = self._request(
            "POST", f"/v2/models/{_q(name)}/versions/{described.version}/infer", data=header + data,
            headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
            retry_gateway=True,
        )
        reply, outputs = _decode_infer(response)
        params = reply.get("parameters") or {}
        combined_name = params.get("combined")
        members = {m: outputs[m] for m in params.get("members", []) if m in outputs}
        combined = outputs.get(combined_name) if combined_name else None
        return Prediction(name, int(reply["model_version"]), members, combined, described.output)

    def predict_images(self, name: str, images: Iterable[bytes] | bytes, version: int | None = None,
                       filenames: builtins.list[str] | None = None, *, explain: str | None = None) -> Prediction:
        """Send image bytes (one, or several in one multipart upload); the server preprocesses them.

        ``explain="gradcam"`` also brings each member's Grad-CAM map (``Prediction.explanations``).
        """
        if isinstance(images, (bytes, bytearray, memoryview)):
            images = [bytes(images)]
        images = [bytes(data) for data in images]
        if not images:
            raise errors.InvalidInputError("predict_images needs at least one image.")
        names = filenames or [f"image-{i}" for i in range(len(images))]
        files = [("file", (n, data, "application/octet-stream")) for n, data in zip(names, images)]
        path = f"/predictions/{_q(name)}" + (f"/{_v(version)}" if version is not None else "")
        params = {"raw": "true", **({"explain": explain} if explain else {})}
        reply = self._json("POST", path, files=files, params=params, retry_gateway=True)
        output = self.describe(name, reply["version"]).output
        prediction = Prediction.from_json(reply, output)
        return prediction if filenames else dataclasses.replace(prediction, filenames=None)

    def predict_inputs(self, name: str, given: Given, version: int | None = None, *,
                       explain: str | None = None) -> Prediction:
        """Send records or numbers to ``POST /predictions`` (JSON records; a CSV's rows as CSV; numbers as
        ``.npy``); the server fits them to the version's input. ``explain="integrated_gradients"`` also
        brings each member's per-feature attributions (a table model)."""
        if isinstance(given, Numbers):
            buffer = io.BytesIO()
            np.save(buffer, np.asarray(given.array), allow_pickle=False)
            body, media = buffer.getvalue(), "application/x-npy"
        elif given.text:
            body, media = _csv_text(given.rows).encode("utf-8"), "text/csv"
        else:
            body, media = json.dumps([dict(row) for row in given.rows]).encode("utf-8"), "application/json"
        return self._predict_body(name, body, media, version, explain)

    def predict_records(self, name: str, records: Mapping[str, Any] | Iterable[Mapping[str, Any]],
                        version: int | None = None, *, explain: str | None = None) -> Prediction:
        """Predict on one record (``{"age": 41, "plan": "pro"}``) or a list of them: a table model's
        named features (a model with several inputs: every feature, and each tensor input by name)."""
        rows = (records,) if isinstance(records, Mapping) else tuple(records)
        return self.predict_inputs(name, Records(rows), version, explain=explain)

    def predict_csv(self, name: str, data: str | bytes | Path, version: int | None = None, *,
                    explain: str | None = None) -> Prediction:
        """Predict on every row of a CSV with a header (its text, its bytes, or a file on THIS machine)."""
        body = data.read_bytes() if isinstance(data, Path) else data.encode("utf-8") if isinstance(data, str) else data
        return self._predict_body(name, bytes(body), "text/csv", version, explain)

    def predict_tensor(self, name: str, array, version: int | None = None) -> Prediction:
        """Predict on a tensor model's numbers: one input of its shape, or a batch ``[n, *shape]`` (sent as .npy)."""
        return self.predict_inputs(name, Numbers(np.asarray(array)), version)

    def _predict_body(self, name: str, body: bytes, media: str, version: int | None, explain: str | None) -> Prediction:
        path = f"/predictions/{_q(name)}" + (f"/{_v(version)}" if version is not None else "")
        params = {"raw": "true", **({"explain": explain} if explain else {})}
        reply = self._json("POST", path, data=body, params=params, headers={"Content-Type": media})
        return Prediction.from_json(reply, self.describe(name, reply["version"]).output)

    def predict_image_files(self, name: str, paths: Iterable[str | Path], version: int | None = None) -> Prediction:
        """Send image files from THIS machine (read here); a Prediction with their file names."""
        files = [Path(p) for p in paths]
        return self.predict_images(name, [p.read_bytes() for p in files], version, filenames=[p.name for p in files])

    # --- managing -------------------------------------------------------------------------

    def load(self, name: str, version: int | None = None) -> ModelStatus:
        """Load a version (default: the default); returns the model's status."""
        body = {} if version is None else {"version": int(version)}
        return ModelStatus.from_json(self._json("POST", f"/models/{_q(name)}/load", json=body))

    def reload(self, name: str | None = None, *, force: bool = True):
        """Re-read the store and reload one model (its status), or every model when ``name`` is None."""
        if name is None:
            return self._json("POST", "/models/_rescan", data=b"")
        return ModelStatus.from_json(
            self._json("POST", f"/models/{_q(name)}/reload", params={"force": str(force).lower()}, data=b""))

    def set_default(self, name: str, version: int) -> ModelStatus:
        """Make a version the default and pin it (persisted by the server)."""
        return ModelStatus.from_json(self._json("PUT", f"/models/{_q(name)}/default", json={"version": int(version)}))

    def follow_latest(self, name: str) -> ModelStatus:
        """Forget the pin: the latest version becomes the default again."""
        return ModelStatus.from_json(self._json("DELETE", f"/models/{_q(name)}/default"))

    def unload(self, name: str, version: int | None = None) -> ModelStatus:
        """Stop serving a version, or every version; archives stay in the store."""
        if version is None:
            return ModelStatus.from_json(self._json("POST", f"/v2/repository/models/{_q(name)}/unload", json={}))
        return ModelStatus.from_json(self._json("DELETE", f"/models/{_q(name)}/versions/{_v(version)}"))

    def remove(self, name: str, version: int, *, purge: bool = False) -> ModelStatus | ModelRemoved:
        """Unload a version and, with ``purge``, delete its archive from the server's store."""
        reply = self._json("DELETE", f"/models/{_q(name)}/versions/{_v(version)}",
                           params={"purge": str(purge).lower()})
        return ModelRemoved(reply["name"]) if reply.get("removed") else ModelStatus.from_json(reply)

    def upload(self, model_or_models, *, name: str, version: int, input: dict, labels=None,
               promote: bool | None = None, label: str | None = None, replace: bool = False,
               **options) -> InstallResult:
        """Pack in-memory Keras models and install them on the server, in one call.

        The arguments are :func:`yyai_kernel.pack_model`'s (``regression=``, ``samples=``,
        ``eval_set=``, ``description=``...) and :meth:`add_archive`'s (``promote``, ``label``,
        ``replace``); the archive is written to a temporary folder here, uploaded and removed.
        Importing Keras is the model's own business: the client imports ``packmodel`` only
        when this is called.
        """
        from yyai_kernel.archive.packmodel import pack_model

        with tempfile.TemporaryDirectory(prefix="yyai-upload-") as folder:
            path = pack_model(model_or_models, name=name, version=version, input=input, labels=labels, out=folder,
                              **options)
            return self.add_archive(path, promote=promote, label=label, replace=replace)

    # --- labels and traffic -----------------------------------------------------------------

    def labels(self, name: str) -> dict[str, int]:
        """A model's labels, ``{label: version}``."""
        return {k: int(v) for k, v in self._json("GET", f"/models/{_q(name)}/labels").items()}

    def label(self, name: str, label: str) -> VersionLabel:
        return VersionLabel.from_json(self._json("GET", f"/models/{_q(name)}/labels/{_q(label)}"))

    def set_label(self, name: str, label: str, version: int) -> ModelStatus:
        """Point a label at a version (the server loads it first and persists the label)."""
        return ModelStatus.from_json(self._json("PUT", f"/models/{_q(name)}/labels/{_q(label)}",
                                                json={"version": int(version)}))

    def delete_label(self, name: str, label: str) -> ModelStatus:
        return ModelStatus.from_json(self._json("DELETE", f"/models/{_q(name)}/labels/{_q(label)}"))

    def traffic_report(self, name: str) -> TrafficReport:
        """The traffic policy and its running figures."""
        return TrafficReport.from_json(self._json("GET", f"/models/{_q(name)}/traffic"))

    def set_traffic(self, name: str, policy: TrafficPolicy | dict) -> ModelStatus:
        """Set the canary and shadow policy (a TrafficPolicy or its JSON document)."""
        body = policy.to_json() if isinstance(policy, TrafficPolicy) else policy
        return ModelStatus.from_json(self._json("PUT", f"/models/{_q(name)}/traffic", json=body))

    def clear_traffic(self, name: str) -> ModelStatus:
        return ModelStatus.from_json(self._json("DELETE", f"/models/{_q(name)}/traffic"))

    def promote(self, name: str) -> ModelStatus:
        """The candidate (canary, else shadow) becomes the default, and the policy is cleared."""
        return ModelStatus.from_json(self._json("POST", f"/models/{_q(name)}/traffic/promote", data=b""))

    def disagreements(self, name: str) -> builtins.list[Disagreement]:
        """The last inputs on which the shadow disagreed with the answer sent, newest first."""
        return [Disagreement.from_json(d) for d in self._json("GET", f"/models/{_q(name)}/traffic/disagreements")]

    def add_archive(self, archive: bytes | str | Path, *, promote: bool | None = None, label: str | None = None,
                    replace: bool = False) -> InstallResult:
        """Upload an archive (bytes, or a path on THIS machine, read here); the server stores and loads it.

        ``promote``: True makes it the default (pinned), False stages it (it serves by its
        number, and ``label``); None leaves it to the server's rule (a new version of a pinned,
        labelled or policy-routed model is staged). ``replace`` lets different content take a
        version's place. The result says which version is the default afterwards, and why.
        """
        headers = {"Content-Type": "application/octet-stream"}
        params = {**({} if promote is None else {"promote": str(bool(promote)).lower()}),
                  **({} if label is None else {"label": label}), **({"replace": "true"} if replace else {})}
        if isinstance(archive, (str, Path)):
            with open(archive, "rb") as f:
                return InstallResult.from_json(self._json("POST", "/models", data=f, headers=headers, params=params))
        return InstallResult.from_json(self._json("POST", "/models", data=bytes(archive), headers=headers,
                                                  params=params))


    # --- evaluating -----------------------------------------------------------------------

    def eval_sets(self, name: str, version: int | None = None) -> builtins.list[str]:
        """Names of the labelled sets a version bundles (manifest role eval)."""
        return list(self.bundled(name, version, FileRole.EVAL).files)

    def eval_set(self, name: str, set_name: str, version: int | None = None) -> bytes:
        """One bundled labelled set, as a zip's bytes (a table set: the CSV's)."""
        return self._request("GET", f"/models/{_q(name)}/evalsets/{_q(set_name)}",
                             params=_version_param(version)).content

    def start_evaluation(self, name: str, versions, data: bytes | str | Path | None = None, *,
                         bundled: str | None = None, set_version: int | None = None,
                         target: str | None = None) -> EvaluationJob:
        """Start an evaluation job on the server: ``data`` is a zip, or for a table model a CSV (bytes,
        or a path on THIS machine, read here), or ``bundled`` names a set the archive bundles;
        ``target`` names a table set's truth column (default: label or target). Follow it with
        :meth:`evaluation` or ``evaljobs.wait_for``."""
        params: dict[str, str | int] = {"versions": ",".join(str(int(v)) for v in versions or () if v is not None)}
        if bundled is not None:
            params["set"] = bundled
            if set_version is not None:
                params["set_version"] = int(set_version)
        if target is not None:
            params["target"] = target
        path = f"/models/{_q(name)}/evaluate"
        if isinstance(data, (str, Path)):
            with open(data, "rb") as f:
                zipped = f.read(2) == b"PK"
                f.seek(0)
                headers = {"Content-Type": "application/zip" if zipped else "text/csv"}
                body = self._json("POST", path, params=params, data=f, headers=headers)
        else:
            data = b"" if data is None else bytes(data)
            headers = {"Content-Type": "application/zip" if not data or data[:2] == b"PK" else "text/csv"}
            body = self._json("POST", path, params=params, data=data, headers=headers)
        return EvaluationJob.from_json(body)

    def evaluation(self, job_id: str) -> EvaluationJob:
        """An evaluation job's progress and, once done, its result."""
        return EvaluationJob.from_json(self._json("GET", f"/evaluations/{_q(job_id)}"))


def _csv_text(rows: Iterable[Mapping[str, Any]]) -> str:
    """Rows of text as a CSV with a header (the first row's keys)."""
    rows = list(rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else [], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _version_param(version: int | None) -> dict:
    return {} if version is None else {"version": parse_version_ref(version)}


def _q(name: str | int) -> str:
    return quote(str(name), safe="")


def _v(version: int | str) -> str:
    """A version or label for a URL path, checked by the server's own rule first."""
    return _q(parse_version_ref(version))


def _decode_infer(response: requests.Response) -> tuple[dict, dict[str, np.ndarray]]:
    body = response.content
    header_length = response.headers.get("Inference-Header-Content-Length")
    n = int(header_length) if header_length is not None else len(body)
    reply = json.loads(body[:n])
    offset = n
    outputs = {}
    for out in reply.get("outputs", []):
        dtype = DATATYPES.get(out["datatype"], DATATYPES["FP32"])
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            array = np.frombuffer(body[offset:offset + size], dtype=dtype).reshape(out["shape"])
            offset += size
        else:
            array = np.asarray(out["data"], dtype=dtype).reshape(out["shape"])
        outputs[out["name"]] = array.astype(dtype.newbyteorder("="))
    return reply, outputs


def _from_gateway(response: requests.Response) -> bool:
    """A 5xx that no yyai server wrote: yyai's errors are JSON objects, a gateway's are not
    (Ray Serve's proxy answers ``Internal Server Error`` as text)."""
    if response.status_code < 500:
        return False
    try:
        return not isinstance(response.json(), dict)
    except ValueError:
        return True


def _error_from(response: requests.Response) -> errors.YyaiError:
    """The typed error a reply stands for: by its ``type`` field, else by status."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    hints = [hint for hint in map(Hint.from_json, body.get("hints") or ()) if hint is not None]
    # with hints, the bare message: the caller words the next steps for its own interface
    message = (body.get("message") if hints else None) or body.get("error")
    message = message or f"HTTP {response.status_code} from {response.url}"
    cls = getattr(errors, str(body.get("type", "")), None)
    if not (isinstance(cls, type) and issubclass(cls, errors.YyaiError)):
        cls = _BY_STATUS.get(response.status_code, errors.YyaiError)
    error = cls(message, field=body.get("field"), hint=hints)
    if cls is errors.YyaiError:
        error.status = response.status_code
    return error
