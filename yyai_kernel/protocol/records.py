"""Reading what a person sends a table or tensor model: JSON records or arrays, CSV, ``.npy``.

Each reader turns bytes into a :class:`~yyai_kernel.types.Records` or
:class:`~yyai_kernel.types.Numbers` and refuses anything else with an ``InvalidInputError``
(400) that says what to send instead, or a ``PayloadTooLargeError`` (413) past the row limit.
Which features a row must hold is the version's business (``runtime/tabular.py``), not the
reader's. Used by ``POST /predictions`` (both front ends), the HTTP client's checks, the
dashboard's and the CLI's files, and labelled CSV sets, so a CSV reads the same everywhere.

Why these rules:

- JSON: an object is one record, a list of objects several; a number or a (nested) list of
  numbers is a tensor. A ragged list or one that mixes objects and numbers is refused
  rather than guessed at.
- CSV: UTF-8 (a BOM is dropped), a header row naming every column once; a line with more
  cells than the header is refused, a blank line skipped. Values stay text until a
  version reads them as its features say.
- ``.npy``: read with ``allow_pickle=False``, so an object array (which would unpickle
  code) is refused; the body limit bounds its size.

Pure functions, no state: safe from any thread. Imports only the standard library, numpy,
the errors and the types.
"""

from __future__ import annotations

import csv
import io
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from yyai_kernel.errors import InvalidInputError, PayloadTooLargeError
from yyai_kernel.protocol import jsonparse
from yyai_kernel.types.given import Given, Numbers, Records

JSON_TYPES = {"application/json"}
CSV_TYPES = {"text/csv", "application/csv"}
NPY_TYPES = {"application/x-npy", "application/npy", "application/octet-stream"}
NPY_MAGIC = b"\x93NUMPY"
RECORD_EXAMPLE = '{"feature": 1.5, "other": "a"} (one record) or a list of them'


def given_of(media: str, body: bytes, *, max_rows: int) -> Given:
    """A prediction body for a model that takes no image: JSON, CSV or ``.npy`` by its media type."""
    if not body.strip():
        raise InvalidInputError("The request body is empty; send JSON records, a CSV with a header, or numbers.")
    if media in CSV_TYPES:
        return read_csv(body, max_rows=max_rows, what="The CSV body")
    if media in NPY_TYPES:
        return Numbers(read_npy(body))
    value = jsonparse.loads(body, what="The body", max_bytes=None)
    return given_of_json(value, max_rows=max_rows)


def given_of_file(name: str, data: bytes, *, max_rows: int) -> Given:
    """A file as a model that takes no image reads it, by its suffix: a CSV's rows, a JSON record or
    array, a ``.npy`` (the CLI's and Preview's uploads, and bundled samples)."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix == ".npy":
        return Numbers(read_npy(data))
    if suffix == ".json":
        return given_of_json(jsonparse.loads(data, what=name, max_bytes=None), max_rows=max_rows)
    if suffix == ".csv":
        return read_csv(data, max_rows=max_rows, what=name)
    raise InvalidInputError(f"{name}: a model that takes no image reads a .csv of rows, a .json record or array, "
                            "or a .npy.")


def given_of_json(value: Any, *, max_rows: int) -> Given:
    """JSON records (an object, or a list of objects) or numbers (a number, or nested lists of them)."""
    if isinstance(value, dict):
        return Records((value,))
    if isinstance(value, list) and value and any(isinstance(item, dict) for item in value):
        if not all(isinstance(item, dict) for item in value):
            raise InvalidInputError(f"A list of records holds only JSON objects: send {RECORD_EXAMPLE}.")
        _count(len(value), max_rows, "records")
        return Records(tuple(value))
    if isinstance(value, list) and not value:
        raise InvalidInputError(f"The list is empty: send {RECORD_EXAMPLE}, or numbers.")
    array = numbers_of(value, "The body")
    if array.ndim:
        _count(len(array), max_rows, "rows")
    return Numbers(array)


def numbers_of(value: Any, what: str) -> np.ndarray:
    """A JSON number or (nested, rectangular) list of numbers as an array; 400 for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        raise InvalidInputError(f"{what} must be a number or a list of numbers, not {_type_name(value)}.")
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError):
        raise InvalidInputError(f"{what} is ragged: every row of a tensor has the same length.") from None
    if array.dtype.kind not in "iuf":
        kind = "ragged" if array.dtype.kind == "O" else f"not numbers ({_type_name(array.flat[0])})"
        raise InvalidInputError(f"{what} is {kind}: a tensor is a list of numbers (or of lists of numbers).")
    return array


def read_csv(data: bytes, *, max_rows: int, what: str = "The CSV") -> Records:
    """The rows of a CSV with a header, as text (see the module docstring for the rules)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInputError(f"{what} is not UTF-8 text.") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [cell.strip() for cell in next(reader)]
    except StopIteration:
        raise InvalidInputError(f"{what} is empty: it needs a header row naming its columns.") from None
    except csv.Error as error:
        raise InvalidInputError(f"{what} cannot be read: {error}.") from None
    if not any(header):
        raise InvalidInputError(f"{what} needs a header row naming its columns.")
    seen: set[str] = set()
    for name in header:
        if not name:
            raise InvalidInputError(f"{what}'s header has an empty column name.")
        if name in seen:
            raise InvalidInputError(f"{what}'s header names {name!r} twice.", field=name)
        seen.add(name)
    rows: list[dict[str, str]] = []
    lines: list[int] = []
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            line = reader.line_num
            if len(cells) > len(header):
                raise InvalidInputError(f"{what}, line {line}: {len(cells)} cells, but the header names "
                                        f"{len(header)} columns.")
            rows.append(dict(zip(header, cells)))
            lines.append(line)
            _count(len(rows), max_rows, "rows")
    except csv.Error as error:
        raise InvalidInputError(f"{what}, line {reader.line_num}: {error}.") from None
    if not rows:
        raise InvalidInputError(f"{what} has a header but no rows.")
    return Records(tuple(rows), text=True, lines=tuple(lines))


def read_npy(data: bytes) -> np.ndarray:
    """A ``.npy`` file's array (numbers only, no pickles)."""
    if not data.startswith(NPY_MAGIC):
        raise InvalidInputError("The body is not a .npy file (numpy.save writes one); send JSON, a CSV, "
                                "or image bytes with Content-Type image/*.")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InvalidInputError(f"The .npy file cannot be read: {error}.") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise InvalidInputError("The .npy file must hold numbers.")
    return array


def _count(rows: int, max_rows: int, what: str) -> None:
    if rows > max_rows:
        raise PayloadTooLargeError(f"The request holds more than {max_rows:,} {what}; send at most "
                                   f"{max_rows:,} per request.")


def _type_name(value: Any) -> str:
    return {str: "text", dict: "an object", bool: "true or false", type(None): "null"}.get(type(value),
                                                                                          type(value).__name__)
