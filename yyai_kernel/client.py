"""HTTP client with the Registry's read, predict and manage methods.

The dashboard kernel uses it to reach the one registry in the server process (so a page
visit costs no TensorFlow import and no model load), and ``yyai predict`` uses it from
the command line. It needs only ``requests`` and ``numpy``: importing it never imports
TensorFlow or Keras (a test checks this).

``YyaiClient()`` reads ``YYAI_URL`` and ``YYAI_TOKEN`` from the environment, which the
server puts into its dashboard kernels. Errors come back as the same typed exceptions
the Registry raises (``ModelNotFoundError``, ``ModelNotReadyError``, ...), rebuilt from
the reply's ``type`` field or, failing that, from the HTTP status.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable
from urllib.parse import quote

import numpy as np
import requests

from . import errors

DEFAULT_URL = "http://127.0.0.1:8866"

_BY_STATUS = {
    400: errors.InvalidInputError,
    401: errors.AuthError,
    403: errors.AuthError,
    404: errors.ModelNotFoundError,
    409: errors.ConflictError,
    413: errors.PayloadTooLargeError,
    415: errors.UnsupportedMediaError,
    503: errors.ModelNotReadyError,
    507: errors.StoreWriteError,
}
_DTYPES = {"FP32": "<f4", "FP64": "<f8", "FP16": "<f2", "INT32": "<i4", "INT64": "<i8", "UINT8": "<u1"}
_V2_TYPES = {np.dtype("float32"): "FP32", np.dtype("float64"): "FP64", np.dtype("float16"): "FP16",
             np.dtype("int32"): "INT32", np.dtype("int64"): "INT64", np.dtype("uint8"): "UINT8"}


@dataclass
class RemotePrediction:
    """A prediction answered by the server; the same fields as ``registry.Prediction``.

    ``members`` maps each member to its ``[B, K]`` output, ``combined`` is ``[B, K]`` or
    None; ``replies`` holds the server's labelled rows when the call was an image call.
    """

    name: str
    version: int
    members: dict[str, np.ndarray]
    combined: np.ndarray | None
    output_spec: dict = field(default_factory=dict)
    replies: list[dict] = field(default_factory=list)

    def rows(self) -> list[dict]:
        """Per input row, each member's output and the combined one, labelled for people."""
        if self.replies:
            return [{"members": r["members"], "combined": r["combined"]} for r in self.replies]
        return [
            {
                "members": {m: _label(out[i], self.output_spec) for m, out in self.members.items()},
                "combined": None if self.combined is None else _label(self.combined[i], self.output_spec),
            }
            for i in range(len(next(iter(self.members.values()))))
        ]


def _label(row: np.ndarray, spec: dict):
    if spec.get("kind") == "classification":
        labels = spec["labels"]
        order = np.argsort(-row, kind="stable")
        return [{"label": labels[j], "probability": round(float(row[j]), 6)} for j in order]
    names = spec.get("names") or [f"y{j}" for j in range(len(row))]
    return {n: round(float(v), spec.get("rounding", 4)) for n, v in zip(names, row)}


class YyaiClient:
    """A yyai server over HTTP, with the Registry's methods.

    ``url`` and ``token`` default to ``YYAI_URL`` / ``YYAI_TOKEN`` (then to
    http://127.0.0.1:8866 and no token). ``timeout`` is in seconds per request.
    """

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 120.0):
        self.url = (url or os.environ.get("YYAI_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("YYAI_TOKEN", "")
        self.timeout = timeout
        self.session = requests.Session()
        if self.token:
            self.session.headers["Authorization"] = f"token {self.token}"

    def __repr__(self) -> str:
        return f"YyaiClient({self.url!r})"

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    def __enter__(self) -> "YyaiClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- transport ------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.session.request(method, self.url + path, **kwargs)
        except requests.ConnectionError as error:
            raise errors.ServerUnavailableError(f"Cannot reach the yyai server at {self.url}: {error}") from None
        except requests.Timeout:
            raise errors.ServerUnavailableError(f"The yyai server at {self.url} did not answer in time.") from None
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, **kwargs):
        return self._request(method, path, **kwargs).json()

    # --- reading ----------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every model name."""
        return [m["name"] for m in self.list()]

    def list(self) -> list[dict]:
        """A short line per model: versions, default, loaded versions."""
        return self._json("GET", "/models")

    def status(self, name: str | None = None) -> dict:
        """One model's status, or ``{"models": {name: status}, "problems", "state_error"}``."""
        if name is not None:
            return self._json("GET", f"/models/{_q(name)}")
        return self._json("GET", "/models/_status")

    def samples(self, name: str, version: int | None = None) -> list[str]:
        """Names of the sample inputs a version bundles."""
        params = {} if version is None else {"version": int(version)}
        return self._json("GET", f"/models/{_q(name)}/samples", params=params)["samples"]

    def sample(self, name: str, sample: str, version: int | None = None) -> bytes:
        """The bytes of one bundled sample, by its name in :meth:`samples`."""
        params = {} if version is None else {"version": int(version)}
        return self._request("GET", f"/models/{_q(name)}/samples/{_q(sample)}", params=params).content

    def describe(self, name: str, version: int | None = None) -> dict:
        """What a version (default: the default) takes and gives."""
        if version is None:
            version = self.resolve_version(name)
        return self._json("GET", f"/models/{_q(name)}/versions/{int(version)}")

    def resolve_version(self, name: str, version: int | None = None) -> int:
        """The given version, or the model's current default."""
        if version is not None:
            return int(version)
        default = self.status(name).get("default")
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

    def predict(self, name: str, inputs, version: int | None = None) -> RemotePrediction:
        """Run ``inputs`` (``[B, *input.shape]``) through the v2 infer endpoint (binary tensors)."""
        array = np.ascontiguousarray(inputs)
        if array.dtype not in _V2_TYPES:
            array = array.astype(np.float32)
        datatype = _V2_TYPES[array.dtype]
        data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        input_name = self._input_name(name, version)
        header = json.dumps({
            "inputs": [{"name": input_name, "datatype": datatype, "shape": list(array.shape),
                        "parameters": {"binary_data_size": len(data)}}],
            "parameters": {"binary_data_output": True},
        }).encode()
        path = f"/v2/models/{_q(name)}" + (f"/versions/{int(version)}" if version is not None else "") + "/infer"
        response = self._request(
            "POST", path, data=header + data,
            headers={"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"},
        )
        reply, outputs = _decode_infer(response)
        params = reply.get("parameters") or {}
        combined_name = params.get("combined")
        members = {m: outputs[m] for m in params.get("members", []) if m in outputs}
        return RemotePrediction(
            name=name,
            version=int(reply["model_version"]),
            members=members,
            combined=outputs.get(combined_name) if combined_name else None,
        )

    def _input_name(self, name: str, version: int | None) -> str:
        path = f"/v2/models/{_q(name)}" + (f"/versions/{int(version)}" if version is not None else "")
        return self._json("GET", path)["inputs"][0]["name"]

    def predict_images(self, name: str, images: Iterable[bytes] | bytes, version: int | None = None) -> RemotePrediction:
        """Send image bytes (one, or several in one multipart upload); labelled and raw outputs."""
        if isinstance(images, (bytes, bytearray, memoryview)):
            images = [bytes(images)]
        files = [("file", (f"image-{i}", bytes(data), "application/octet-stream")) for i, data in enumerate(images)]
        if not files:
            raise errors.InvalidInputError("predict_images needs at least one image.")
        path = f"/predictions/{_q(name)}" + (f"/{int(version)}" if version is not None else "")
        reply = self._json("POST", path, files=files, params={"raw": "true"})
        rows = reply["predictions"]
        members = {m: np.array([r["raw"]["members"][m] for r in rows], dtype=np.float32) for m in rows[0]["raw"]["members"]}
        combined = None
        if rows[0]["raw"]["combined"] is not None:
            combined = np.array([r["raw"]["combined"] for r in rows], dtype=np.float32)
        for row in rows:
            row.pop("raw", None)
        return RemotePrediction(reply["model"], int(reply["version"]), members, combined, replies=rows)

    def predict_image_files(self, name: str, paths: Iterable[str | Path], version: int | None = None) -> dict:
        """Send local image files (read here, on the client side); the server's labelled reply."""
        files = [("file", (Path(p).name, Path(p).read_bytes(), "application/octet-stream")) for p in paths]
        path = f"/predictions/{_q(name)}" + (f"/{int(version)}" if version is not None else "")
        return self._json("POST", path, files=files)

    # --- managing -------------------------------------------------------------------------

    def load(self, name: str, version: int | None = None) -> dict:
        """Load a version (default: the default); returns the model's status."""
        body = {} if version is None else {"version": int(version)}
        return self._json("POST", f"/models/{_q(name)}/load", json=body)

    def reload(self, name: str | None = None, *, force: bool = True) -> dict:
        """Re-read the store and reload one model, or every model when ``name`` is None."""
        if name is None:
            return self._json("POST", "/models/_rescan", data=b"")
        return self._json("POST", f"/models/{_q(name)}/reload", params={"force": str(force).lower()}, data=b"")

    def set_default(self, name: str, version: int) -> dict:
        """Make a version the default (persisted by the server)."""
        return self._json("PUT", f"/models/{_q(name)}/default", json={"version": int(version)})

    def unload(self, name: str, version: int | None = None) -> dict:
        """Stop serving a version, or every version; archives stay in the store."""
        if version is None:
            return self._json("POST", f"/v2/repository/models/{_q(name)}/unload", json={})
        return self._json("DELETE", f"/models/{_q(name)}/versions/{int(version)}")

    def remove(self, name: str, version: int, *, purge: bool = False) -> dict:
        """Unload a version and, with ``purge``, delete its archive from the server's store."""
        return self._json("DELETE", f"/models/{_q(name)}/versions/{int(version)}",
                          params={"purge": str(purge).lower()})

    def add_archive(self, archive: bytes | str | Path) -> dict:
        """Upload an archive (bytes, or a path on THIS machine, read here); the server stores and loads it.

        Returns ``{"name", "version", "model": status}``.
        """
        if isinstance(archive, (str, Path)):
            with open(archive, "rb") as f:
                return self._json("POST", "/models", data=f,
                                  headers={"Content-Type": "application/octet-stream"})
        return self._json("POST", "/models", data=bytes(archive),
                          headers={"Content-Type": "application/octet-stream"})


def _q(name: str) -> str:
    return quote(str(name), safe="")


def _decode_infer(response: requests.Response) -> tuple[dict, dict[str, np.ndarray]]:
    body = response.content
    header_length = response.headers.get("Inference-Header-Content-Length")
    n = int(header_length) if header_length is not None else len(body)
    reply = json.loads(body[:n])
    offset = n
    outputs = {}
    for out in reply.get("outputs", []):
        dtype = np.dtype(_DTYPES.get(out["datatype"], "<f4"))
        size = (out.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            array = np.frombuffer(body[offset:offset + size], dtype=dtype).reshape(out["shape"])
            offset += size
        else:
            array = np.asarray(out["data"], dtype=dtype).reshape(out["shape"])
        outputs[out["name"]] = array.astype(dtype.newbyteorder("="))
    return reply, outputs


def _error_from(response: requests.Response) -> errors.YyaiError:
    """The typed error a reply stands for: by its ``type`` field, else by status."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    message = body.get("error") if isinstance(body, dict) else None
    message = message or f"HTTP {response.status_code} from {response.url}"
    cls = getattr(errors, str(body.get("type", "")) if isinstance(body, dict) else "", None)
    if not (isinstance(cls, type) and issubclass(cls, errors.YyaiError)):
        cls = _BY_STATUS.get(response.status_code, errors.YyaiError)
    error = cls(message, field=body.get("field") if isinstance(body, dict) else None)
    if cls is errors.YyaiError:
        error.status = response.status_code
    return error
