"""The files of a ``multipart/form-data`` body, read with python-multipart's streaming parser.

One parser for every upload: image predictions (small files, kept in memory) and archive
uploads (spooled to disk, copied part by part into a temporary file, never held in memory).
python-multipart is the parser Starlette and FastAPI use, so the Ray replicas read
uploads the same way. A part is a file when its Content-Disposition names a filename;
other fields are ignored. Malformed bodies are an ``InvalidInputError`` (400).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol, cast

from python_multipart.multipart import (
    MultipartParser,
    MultipartState,
    parse_options_header,
)

from yyai_kernel.errors import InvalidInputError

CHUNK = 1024 * 1024


class Sink(Protocol):
    """Where a file part's bytes go: a file, memory, or nowhere."""

    def write(self, data: bytes, /) -> object: ...


@dataclass
class UploadedFile:
    """One file part: its client-side name (never used as a path) and where its bytes went."""

    filename: str
    sink: Sink
    size: int = 0

    def data(self) -> bytes:
        """The bytes of an in-memory part."""
        return cast(io.BytesIO, self.sink).getvalue()


def boundary_of(content_type: str) -> bytes:
    media, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if media != b"multipart/form-data" or not boundary:
        raise InvalidInputError("The multipart Content-Type has no boundary.")
    return boundary


def read_files(content_type: str, chunks: Iterable[bytes], *,
               open_sink: Callable[[str], Sink] | None = None, max_files: int | None = None) -> list[UploadedFile]:
    """The file parts of a multipart body fed as ``chunks``, in order.

    ``open_sink(filename)`` gives each file's destination (default: memory). With
    ``max_files``, parsing stops after that many files have begun: the rest is not read.
    """
    open_sink = open_sink or (lambda _name: io.BytesIO())
    files: list[UploadedFile] = []
    part: dict[str, Any] = {"headers": {}, "field": b"", "value": b"", "file": None}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"][part["field"].lower()] = part["value"]
        part["field"], part["value"] = b"", b""

    def on_headers_finished() -> None:
        _, options = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if b"filename" in options:
            name = options[b"filename"].decode("utf-8", "replace")
            part["file"] = UploadedFile(name, open_sink(name))
            files.append(part["file"])

    def on_part_data(data: bytes, start: int, end: int) -> None:
        upload = part["file"]
        if upload is not None:
            upload.sink.write(data[start:end])
            upload.size += end - start

    def on_part_end() -> None:
        part.update(headers={}, file=None)

    parser = MultipartParser(boundary_of(content_type), {
        "on_header_field": on_header_field, "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data, "on_part_end": on_part_end,
    })
    try:
        for chunk in chunks:
            parser.write(chunk)
            if max_files is not None and len(files) > max_files:
                return files
    except Exception as exc:  # noqa: BLE001 - python-multipart raises its own errors and ValueError for bad bytes
        raise InvalidInputError(f"The multipart upload is malformed: {exc}.") from None
    if parser.state != MultipartState.END:
        raise InvalidInputError("The multipart body is truncated: its closing boundary is missing.")
    return files


def file_chunks(handle: BinaryIO) -> Iterable[bytes]:
    """A file's bytes, a chunk at a time."""
    while chunk := handle.read(CHUNK):
        yield chunk


class _Discard:
    """A sink for the file parts after the first: an upload carries one archive."""

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


def extract_archive_part(path: str, content_type: str, out_dir: str, *, what: str = "the .yyar archive",
                         suffix: str = ".yyar") -> str:
    """Copy the first file part of a spooled multipart body (``what``: an archive, a labelled
    set) into its own temporary file."""
    if os.path.getsize(path) == 0:
        raise InvalidInputError(f"The upload is empty; attach {what}.")
    created: list[str] = []
    sinks: list[BinaryIO | _Discard] = []

    def open_sink(_filename: str) -> Sink:
        if created:
            sinks.append(_Discard())
        else:
            fd, out_path = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=out_dir)
            created.append(out_path)
            sinks.append(os.fdopen(fd, "wb"))
        return sinks[-1]

    try:
        with open(path, "rb") as body:
            files = read_files(content_type, file_chunks(body), open_sink=open_sink, max_files=1)
    except BaseException:
        for out_path in created:
            os.unlink(out_path)
        raise
    finally:
        for sink in sinks:
            sink.close()
    if not files:
        raise InvalidInputError(f"The multipart upload holds no file; attach {what} as a file field.")
    return created[0]
