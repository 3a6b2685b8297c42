"""The one body reader: a request body received chunk by chunk, within a limit.

Both adapters feed a :class:`BodySink` with the chunks their server hands them, so the
rules exist once: the declared ``Content-Length`` is judged before any byte is read, a
chunked body is counted while it arrives, and an archive upload is spooled to a temporary
file outside the store (never held in memory). A body over the limit is drained up to
:attr:`BodySink.drain_cap` and then answered with a clean 413, rather than cut off with a
reset; a declared size past that cap is refused at once. A temporary folder that fills up
while spooling is a 507 once the body is read, with nothing written to the store.

Not thread-safe: one sink belongs to one request, fed from one thread.
"""

from __future__ import annotations

import os
import tempfile

from yyai_kernel.config import MiB
from yyai_kernel.errors import InvalidInputError, PayloadTooLargeError, StoreWriteError
from yyai_kernel.protocol.restparse import too_large

DRAIN_EXTRA = 64 * MiB  # at most this much past the limit is read (and dropped) before a 413


class BodySink:
    """One request's body: ``spool_dir`` set spools it to a file there, else it stays in memory."""

    def __init__(self, limit: int, *, spool_dir: str | None = None, what: str | None = None):
        self.limit = limit
        self.what = what or ("archive" if spool_dir else "request body")
        self.size = 0
        self.declared_size = 0
        self.too_large = False
        self._chunks: list[bytes] = []
        self._file = None
        self.path: str | None = None
        self._error: str | None = None
        self.spooling = spool_dir is not None
        if spool_dir is not None:
            fd, self.path = tempfile.mkstemp(prefix="upload-", suffix=".part", dir=spool_dir)
            self._file = os.fdopen(fd, "wb")

    @property
    def drain_cap(self) -> int:
        return self.limit + min(self.limit, DRAIN_EXTRA)

    def declared(self, content_length: str | None) -> None:
        """Judge the declared length: 400 when it is not a number, 413 past the drain cap."""
        if content_length is None:
            return
        try:
            size = int(content_length)
        except ValueError:
            self.discard()
            raise InvalidInputError("Content-Length is not a number.") from None
        self.declared_size = size
        if size > self.drain_cap:
            self.discard()
            raise too_large(self.what, size, self.limit)
        if size > self.limit:
            self.too_large = True
            self.discard()

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.too_large:
            return
        if self.size > self.limit:
            self.too_large = True
            self.discard()
            return
        if not self.spooling:
            self._chunks.append(chunk)
        elif self._file is not None:
            try:
                self._file.write(chunk)
            except OSError as exc:  # the temp folder is full: a 507 once the body is read
                self._error = exc.strerror or str(exc)
                self.discard()

    def error(self) -> PayloadTooLargeError:
        return too_large(self.what, max(self.size, self.declared_size), self.limit)

    def body(self) -> bytes:
        """The whole body in memory (413 when it went over the limit); one chunk is not copied."""
        if self.too_large:
            raise self.error()
        if len(self._chunks) == 1:
            return self._chunks[0]
        return b"".join(self._chunks)

    def spooled(self) -> str:
        """The path of the spooled body, closed and complete (413 over the limit, 507 on a full disk)."""
        if self._error is None and self._file is not None:
            try:
                self._file.close()
            except OSError as exc:
                self._error = exc.strerror or str(exc)
                self.discard()
            self._file = None
        if self._error is not None:
            raise StoreWriteError(f"The upload could not be saved to a temporary file ({self._error}); "
                                  "nothing was changed.")
        if self.too_large or self.path is None:
            raise self.error()
        return self.path

    def discard(self) -> None:
        """Drop what was received: the chunks, and the spool file if any."""
        self._chunks.clear()
        if self._file is not None:
            try:
                self._file.close()
            except OSError:  # flushing into a full disk: the file goes anyway
                pass
            self._file = None
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None
