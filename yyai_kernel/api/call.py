"""A request as an endpoint sees it, and the reply it gives: no web framework in sight.

An adapter (Tornado's in ``server/rest/``, the ASGI one in ``api/asgi.py``) reads a request
its own way and hands the endpoint a :class:`Call`: the method, the path parameters, the
query arguments, the headers and the body (in memory, or spooled to a file for an archive
upload). The endpoint answers with a :class:`Reply` (bytes, status, media type, headers)
or raises a typed :class:`~yyai_kernel.errors.YyaiError`, which the adapter turns into the
JSON error of its status (:func:`error_body`). JSON is encoded once, here (orjson).

A Call also carries the labels the request metrics give it: the model and version the
request named, counted under that name only once the registry knew the model
(:meth:`Call.confirm`), so names that clients invent never become label values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.client import responses
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from yyai_kernel.errors import INTERNAL_ERROR, YyaiError
from yyai_kernel.types import COLD_START_HEADER

if TYPE_CHECKING:
    from yyai_kernel.plane.operations import Managed

JSON_TYPE = "application/json"
_DUMPS_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


class Query:
    """A request's query arguments: the last value of a name, or all of them."""

    def __init__(self, values: Mapping[str, list[str]]):
        self._values = values

    def get(self, name: str, default: str | None = None) -> str | None:
        found = self._values.get(name)
        return found[-1] if found else default

    def get_all(self, name: str) -> list[str]:
        return list(self._values.get(name) or ())

    def names(self) -> set[str]:
        return set(self._values)


@dataclass
class Call:
    """One request, read by an adapter. ``headers`` is case-insensitive (the adapter's own mapping)."""

    method: str
    path: Mapping[str, str]
    query: Query
    headers: Mapping[str, str]
    body: bytes = b""
    body_file: str | None = None  # the spooled body of an upload (the adapter removes it afterwards)
    base_url: str = "/"
    tmp_dir: str = ""
    metric_model: str = ""
    metric_version: str = ""
    model_confirmed: bool = False

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")

    @property
    def media_type(self) -> str:
        """The media type, lower case, without parameters."""
        return self.content_type.split(";", 1)[0].strip().lower()

    def label(self, name: str | None, version: int | str | None = None) -> None:
        """Name the model and version of this request's metrics (used once confirmed)."""
        if name:
            self.metric_model = name
            self.metric_version = "" if version is None else str(version)

    def confirm(self, version: int | str | None = None) -> None:
        """The registry knows the labelled model: the metrics may name it (and the version served)."""
        self.model_confirmed = bool(self.metric_model)
        if version is not None:
            self.metric_version = str(version)

    @property
    def spooled(self) -> str:
        """The spooled body's file, for an endpoint that reads its body with ``Body.SPOOL``."""
        if self.body_file is None:
            raise RuntimeError("this endpoint's body is not spooled")
        return self.body_file

    def metric_labels(self) -> tuple[str, str]:
        """(model, version) for the request metrics: empty unless the model was confirmed."""
        return (self.metric_model, self.metric_version) if self.model_confirmed else ("", "")


@dataclass
class Reply:
    """What an endpoint answers: the body's bytes, the status, the media type and extra headers."""

    body: bytes
    status: int = 200
    media_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def dumps(body: Any) -> bytes:
    """A reply body as JSON bytes: numpy arrays and scalars, sets and paths included."""
    return orjson.dumps(body, default=_json_default, option=_DUMPS_OPTIONS)


def _json_default(value: object) -> Any:
    if isinstance(value, (np.ndarray, np.generic)):  # what orjson's numpy option leaves (non-contiguous)
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(dumps(body), status, JSON_TYPE, dict(headers or {}))


def cold_start_headers(waited_s: float | None) -> dict[str, str]:
    """``X-Yyai-Cold-Start: <seconds>`` when the version was not loaded and the request waited for its load."""
    return {} if waited_s is None else {COLD_START_HEADER: f"{waited_s:.3f}"}


def reply_managed(managed: Managed, status: int = 200) -> Reply:
    """A management call's result, with headers that say which workers apply it.

    ``X-Yyai-Applied: 2/2`` counts the workers that serve the new state;
    ``X-Yyai-Not-Applied`` names every one that does not, and why.
    """
    report = managed.report
    headers = {"X-Yyai-Applied": report.summary()}
    if report.not_applied():
        headers["X-Yyai-Not-Applied"] = report.problems()
    result: Any = managed.result  # a status, a removal or, for a rescan, {name: status or error}
    if isinstance(result, dict):  # a rescan: {name: status or error}
        return reply({name: r.to_json() for name, r in result.items()}, status, headers)
    return reply(result.to_json(), status, headers)


def error_body(status: int, error: BaseException | None, message: str | None = None) -> dict[str, Any]:
    """The JSON body of an error reply: ``{"error": message, ...}``, never a traceback.

    A :class:`YyaiError` writes its own; a framework's HTTP error gives its ``message``;
    anything else is a bare 500.
    """
    if isinstance(error, YyaiError):
        return error.to_dict()
    if message:
        return {"error": message}
    if status >= 500:
        return {"error": INTERNAL_ERROR}
    return {"error": responses.get(status, "Error")}


def error_headers(error: BaseException | None) -> dict[str, str]:
    """Headers an error reply carries: ``Retry-After`` when waiting helps."""
    retry = getattr(error, "retry_after", None)
    return {"Retry-After": str(retry)} if retry else {}
