"""The one JSON parser for every document that comes from outside: bounded in depth and size.

What: ``loads`` parses a request body, a v2 inference header, an archive's MANIFEST.json
or the store's state file. It refuses a document nested deeper than ``MAX_DEPTH`` (64)
levels of arrays and objects, or larger than ``max_bytes``, and every refusal is a typed
yyai error whose message names the document (``what``): the caller picks the class
(``InvalidInputError`` for a request, ``ManifestError`` for a manifest), so the HTTP
status and the error type stay the caller's.

Why: Python's ``json`` recurses once per nesting level, so 5,000 ``[`` raise
``RecursionError`` (a 500 on the server); orjson stops at 1,024 levels, deeper than any
yyai document needs and deep enough to strain code that walks the result (jsonschema
recurses too). 64 levels is far above any real request or manifest (a v2 tensor nests at
most its rank plus three). The depth is measured without recursion on the text itself.

How, and why it stays fast: orjson parses first (a large v2 tensor parses about 8x
faster than with ``json``). A document with at most ``max_depth`` opening brackets
cannot nest deeper, so the common case costs a few ``bytes.find`` calls (memchr, ~3 us
for a 96 KB v2 body); only a document with more brackets is measured (~150 us for a
96 KB nested-list tensor, against ~450 us for orjson itself). orjson refuses NaN and Infinity (and anything else that
is not strict JSON); only then does ``json`` read the text again, after the same depth
check, so that NaN reaches the caller's value check (which names it) or, with
``finite=True``, is refused here as "NaN is not a JSON number", and any other mistake gets
``json``'s message with its position. Text must be UTF-8 (RFC 8259, section 8.1).

No state, no locks: pure functions, safe from any thread. Imports only the standard
library, orjson and ``yyai_kernel.errors``, so every layer (archive upward) may use it.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

import orjson

from yyai_kernel.errors import InvalidInputError, PayloadTooLargeError, YyaiError

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted (``[]`` is 1 level, ``[[]]`` is 2)."""

MAX_BYTES = 1024 * 1024
"""Default size cap: control bodies, manifests and state files are a few KB."""

# A JSON string, escapes included. One left open runs to the end, as json reads it (json stops
# there with an error): without that, each later quote would rescan the rest, quadratic time.
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_SAME_BRACKETS = bytes.maketrans(b"{}", b"[]")


def loads(data: bytes | str, *, what: str, error: type[YyaiError] = InvalidInputError,
          max_bytes: int | None = MAX_BYTES, max_depth: int = MAX_DEPTH, finite: bool = False) -> Any:
    """Parse ``data`` (UTF-8 bytes or str) as JSON; refuse it as ``error`` when it is not.

    ``what`` names the document in messages ("The body", "a.yyar: MANIFEST.json").
    ``max_bytes=None`` leaves the size to the caller, which then has capped it already.
    ``finite=True`` refuses NaN and Infinity here; otherwise they parse to floats.
    Raises ``error`` (not JSON, nested too deep) or PayloadTooLargeError (over ``max_bytes``).
    """
    if max_bytes is not None and len(data) > max_bytes:
        raise PayloadTooLargeError(f"{what} is {len(data):,} bytes; the limit for JSON is {max_bytes:,} bytes.")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _reread(data, what, error, max_depth, finite)
    if _more_openers(data, max_depth) and nests_deeper(data, max_depth):
        raise error(_too_deep(what, max_depth))
    return value


def nests_deeper(text: bytes | str, limit: int) -> bool:
    """Whether ``text`` may nest arrays and objects deeper than ``limit`` (no recursion).

    Strings are removed, then only the brackets are kept, all written as ``[]``. Each pass
    of ``replace(b"[]", b"")`` removes the innermost level, so valid JSON empties after as
    many passes as it nests deep. Broken text stops shrinking with ``]]..[[`` left over;
    then ``json`` could nest at most (passes + leftover ``[``) deep, and that is judged.
    Works on the UTF-8 bytes: no byte of a multi-byte character is a quote or a bracket.
    """
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    if b"\\" in text:  # an escaped quote may hide in a string: the regex reads escapes
        outside = [_STRING.sub(b"", text)]
    else:  # no escapes, so every other quote opens a string: split is much faster than the regex
        outside = text.split(b'"')[::2]
    brackets = b"".join(part.translate(None, _NOT_BRACKETS) for part in outside).translate(_SAME_BRACKETS)
    passes = 0
    while brackets:
        inner = brackets.replace(b"[]", b"")
        if inner == brackets:
            break
        brackets, passes = inner, passes + 1
        if passes > limit:
            return True
    return passes + brackets.count(b"[") > limit


def _reread(data: bytes | str, what: str, error: type[YyaiError], max_depth: int, finite: bool) -> Any:
    """orjson refused ``data``: read it with ``json`` for NaN and for a message with a position."""
    text = _text(data, what, error)
    if nests_deeper(data, max_depth):
        raise error(_too_deep(what, max_depth))
    try:
        return json.loads(text, parse_constant=_not_a_number if finite else None)
    except ValueError as exc:
        raise error(f"{what} is not valid JSON: {exc}.") from None


def _more_openers(data: bytes | str, limit: int) -> bool:
    """Whether ``data`` holds more than ``limit`` of ``[`` and ``{``: a cheap bound on its depth.

    ``find`` is memchr, several times faster than ``count``; a typical body has a handful
    of brackets, so this costs a few microseconds for 100 KB, and stops at ``limit + 1``.
    """
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    found = 0
    for opener in (b"[", b"{"):
        at = data.find(opener)
        while at >= 0:
            found += 1
            if found > limit:
                return True
            at = data.find(opener, at + 1)
    return False


def _text(data: bytes | str, what: str, error: type[YyaiError]) -> str:
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{what} is not valid JSON: it is not UTF-8 text ({exc}).") from None


def _too_deep(what: str, limit: int) -> str:
    return f"{what} nests deeper than {limit} levels of JSON arrays and objects."


def _not_a_number(token: str) -> NoReturn:
    # json reads NaN, Infinity and -Infinity; a caller that wants finite numbers refuses them here.
    raise ValueError(f"{token} is not a JSON number")
