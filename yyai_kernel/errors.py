"""Typed errors for every refusal yyai makes.

Each class carries the HTTP status the server answers with, so the library raises
meaningful exceptions and the server maps them to JSON errors in one place, with no
knowledge of the individual cases. Messages are written for a person: they say what was
wrong. What to do about it, where the raiser knows, is a typed :class:`~yyai_kernel.hints.Hint`
(``hint=``), never words of one interface in the message: the CLI renders it as a command,
the REST API (``to_dict``) as a route, ``str()`` as a Python call, the dashboard as its own
control.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from yyai_kernel.hints import PYTHON_WORDS, REST_WORDS, Hint, Words, with_hints

INTERNAL_ERROR = "Internal server error; the server log has the details."
"""The whole reply to a failure that is not a YyaiError: the traceback goes to the log, never to the client."""


class YyaiError(Exception):
    """Base class of every error yyai raises on purpose."""

    status = 400

    def __init__(self, message: str, *, field: str | None = None, hint: Hint | Sequence[Hint] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.hints: tuple[Hint, ...] = (hint,) if isinstance(hint, Hint) else tuple(hint or ())

    def say(self, words: Words) -> str:
        """The message with its next steps in an interface's words."""
        return with_hints(self.message, self.hints, words)

    def __str__(self) -> str:
        """The message with its next steps as Python calls (a traceback in a notebook)."""
        return self.say(PYTHON_WORDS)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body the server sends for this error: ``error`` in the REST API's words;
        with hints, also the bare ``message`` and the ``hints`` as data, for clients to word."""
        body: dict[str, Any] = {"error": self.say(REST_WORDS), "type": type(self).__name__}
        if self.field:
            body["field"] = self.field
        if self.hints:
            body["message"] = self.message
            body["hints"] = [hint.to_json() for hint in self.hints]
        return body


# --- archives -------------------------------------------------------------------------


class ArchiveError(YyaiError):
    """An archive is unreadable, unsafe or inconsistent with its manifest."""


class NotAnArchiveError(ArchiveError):
    """The file is not a zip file, or it is truncated."""


class UnsafeMemberError(ArchiveError):
    """A zip member has a traversal or absolute name, or is a link."""


class ArchiveLimitError(ArchiveError):
    """A member or the whole archive exceeds a size, count or compression-ratio limit."""

    status = 413


class ZipBombError(ArchiveLimitError):
    """A member's compression ratio is fit for a zip bomb."""


class MissingMemberError(ArchiveError):
    """A file that the manifest lists is not in the archive."""


class UnexpectedMemberError(ArchiveError):
    """The archive holds a file that the manifest does not list."""


class ChecksumError(ArchiveError):
    """A member's sha256 or size differs from the manifest."""


class ManifestError(ArchiveError):
    """MANIFEST.json is missing, not JSON, or does not match the schema."""


class FormatVersionError(ManifestError):
    """The manifest names a format or format version this yyai does not read."""


class ModelLoadError(ArchiveError):
    """A member is not a Keras model that this Keras can load."""


class UnsafeModelError(ModelLoadError):
    """A member needs code execution to load (a Lambda layer) and the archive is not trusted."""


class LegacyFormatError(ModelLoadError):
    """A member was written by a Keras version that cannot be read (Keras 1.x)."""


# --- store and registry -----------------------------------------------------------------


class ConflictError(YyaiError):
    """The store already holds this name and version, or two archives claim it."""

    status = 409


class StaleModelIdError(ConflictError):
    """A model id (``name:version:sha256``, the Ray model deployment's) names content that the
    store no longer holds for that name and version; the caller resolves the id again."""


class StoreWriteError(YyaiError):
    """Writing to the store failed (disk full, permissions); nothing was changed."""

    status = 507


class ModelNotFoundError(YyaiError):
    """No model of that name, or no such version of it."""

    status = 404


class ModelNotReadyError(YyaiError):
    """The model exists but no runtime is ready to answer (loading, failed or unloaded).

    ``retry_after`` (seconds) is set when waiting will help, as while a version loads;
    HTTP replies carry it as a ``Retry-After`` header.
    """

    status = 503
    retry_after: int | None = None


# --- requests -------------------------------------------------------------------------


class InvalidInputError(YyaiError):
    """A request's input tensor or parameters are malformed."""


class ImageError(InvalidInputError):
    """An image cannot be decoded, or is not an image."""


class ImageTooLargeError(ImageError):
    """An image declares more pixels than the configured limit."""

    status = 413


class PayloadTooLargeError(YyaiError):
    """A request body exceeds the configured limit."""

    status = 413


class TooManyRequestsError(YyaiError):
    """Too many expensive calls (explanations) at once; ``retry_after`` says when to try again."""

    status = 429
    retry_after: int | None = None


class UnsupportedMediaError(YyaiError):
    """The request's Content-Type is not one this endpoint accepts."""

    status = 415


# --- evaluation jobs --------------------------------------------------------------------


class NotSupportedError(YyaiError):
    """The request is valid, but this kind of server does not offer it (such as Grad-CAM on Ray)."""

    status = 501


class JobNotFoundError(YyaiError):
    """No evaluation job has that id: it never existed, or it finished long ago and was evicted."""

    status = 404


class JobNotFinishedError(ConflictError):
    """The job's results were asked for before it finished (or it failed and has none)."""


class TooManyJobsError(YyaiError):
    """Every job slot holds a queued or running evaluation; ``retry_after`` says when to try again."""

    status = 503
    retry_after: int | None = 10


# --- client side ----------------------------------------------------------------------


class AuthError(YyaiError):
    """The server refused the request's credentials: no token or a wrong one (401), or 403."""

    status = 401


class ServerUnavailableError(YyaiError):
    """The HTTP client cannot reach the yyai server, or it did not answer in time."""

    status = 503
