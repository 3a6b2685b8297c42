"""The shared JSON parser: depth and size bounds, typed refusals, NaN handling.

Every reader of outside JSON (request bodies, v2 headers, manifests, the state file) goes
through ``yyai_kernel.protocol.jsonparse``; these tests pin its limits exactly: depth at the limit
passes and one over fails, whether the text is valid, broken, or hides brackets in strings.
"""

from __future__ import annotations

import json

import pytest

from yyai_kernel.errors import InvalidInputError, ManifestError, PayloadTooLargeError
from yyai_kernel.protocol import jsonparse

LIMIT = jsonparse.MAX_DEPTH


def nested(depth: int, opener: str = "[", closer: str = "]", inner: str = "") -> bytes:
    return (opener * depth + inner + closer * depth).encode()


def objects(depth: int) -> bytes:
    return ('{"a":' * depth + "1" + "}" * depth).encode()


def mixed(depth: int) -> bytes:
    """Arrays and objects alternating, ``depth`` levels in all."""
    text = "1"
    for level in range(depth):
        text = f"[{text}]" if level % 2 else f'{{"k": {text}}}'
    return text.encode()


def depth_of(value) -> int:
    return 1 + max(map(depth_of, value.values() if isinstance(value, dict) else value), default=0) \
        if isinstance(value, (list, dict)) else 0


@pytest.mark.parametrize("make", [nested, objects, mixed], ids=["arrays", "objects", "mixed"])
def test_depth_at_the_limit_parses_and_one_more_is_refused(make):
    assert depth_of(jsonparse.loads(make(LIMIT), what="The body")) == LIMIT
    with pytest.raises(InvalidInputError, match=f"The body nests deeper than {LIMIT} levels"):
        jsonparse.loads(make(LIMIT + 1), what="The body")


@pytest.mark.parametrize("depth", [LIMIT + 1, 1000, 1025, 5000, 100_000])
def test_deep_documents_get_the_depth_message_not_a_recursion_error(depth):
    # 1025+ is past orjson's own limit (then json would recurse); 5000 is the body
    for body in (nested(depth), b'{"inputs": ' + nested(depth) + b"}", nested(depth)[:depth], objects(depth)):
        with pytest.raises(InvalidInputError, match="nests deeper than 64 levels"):
            jsonparse.loads(body, what="The body", max_bytes=None)


def test_broken_deep_text_is_refused_before_json_recurses():
    # unbalanced and mismatched: json would recurse once per "[" before it saw the mistake
    for body in (b"[" * 5000 + b"}", b"[" * 5000 + b"NaN", b'{"a": ' + b"[" * 3000 + b"x"):
        with pytest.raises(InvalidInputError, match="nests deeper"):
            jsonparse.loads(body, what="The body")


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"label": "[" * 500 + "{" * 500, "quote": '\\"[[[', "list": [[["]]]]"]]]})
    assert jsonparse.loads(text.encode(), what="The body")["label"].startswith("[[[")
    # a string among NaNs goes through json's path: strings must not count there either
    assert jsonparse.loads(b'["' + b"[" * 200 + b'", NaN]', what="The body")[0] == "[" * 200


@pytest.mark.parametrize("body", [
    b'"' + b'\\"' * 30_000,  # every quote after the first is escaped: one string, never closed
    b'["' + b'\\"' * 30_000 + b"[" * 100,
    b'"\\' * 30_000,
])
def test_unclosed_strings_are_read_in_one_pass(body):
    # a string regex that retried at every later quote took ~20 s here (quadratic); now it is instant
    with pytest.raises(InvalidInputError, match="Unterminated string"):
        jsonparse.loads(body, what="The body")


def test_escaped_quotes_and_backslashes_in_strings():
    inside = rb'["a \" ' + b"[" * 100 + b'", 1]'  # an escaped quote, then brackets, all in one string
    assert jsonparse.loads(inside, what="The body") == ['a " ' + "[" * 100, 1]
    # an escaped backslash ends the string; closers in strings hide no depth
    for before in (rb'"x\\"', b'"' + b"]" * 100 + b'"', rb'"\"' + b"]" * 100 + b'"'):
        body = b"[" + before + b", " + nested(LIMIT) + b"]"
        with pytest.raises(InvalidInputError, match="nests deeper"):
            jsonparse.loads(body, what="The body")
        assert len(jsonparse.loads(b"[" + before + b", " + nested(LIMIT - 1) + b"]", what="The body")) == 2


def test_wide_documents_are_not_deep():
    wide = json.dumps([[[i] for i in range(2000)] for _ in range(3)]).encode()
    assert len(jsonparse.loads(wide, what="The body")) == 3


def test_size_cap():
    body = json.dumps([0.5] * 100).encode()
    assert jsonparse.loads(body, what="The body", max_bytes=len(body)) == [0.5] * 100
    with pytest.raises(PayloadTooLargeError, match=f"{len(body):,} bytes; the limit for JSON is {len(body) - 1:,}"):
        jsonparse.loads(body, what="The body", max_bytes=len(body) - 1)
    assert PayloadTooLargeError.status == 413
    big = b"[" + b"0," * jsonparse.MAX_BYTES + b"0]"
    with pytest.raises(PayloadTooLargeError):
        jsonparse.loads(big, what="The body")
    assert len(jsonparse.loads(big, what="The body", max_bytes=None)) == jsonparse.MAX_BYTES + 1


def test_nan_and_infinity_parse_to_floats_unless_finite_is_asked():
    assert repr(jsonparse.loads(b"[NaN, Infinity, -Infinity]", what="The body")) == "[nan, inf, -inf]"
    for token in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(ManifestError,
                           match=rf"m\.yyar: MANIFEST\.json is not valid JSON: {token} is not a JSON number"):
            jsonparse.loads(f'{{"offset": {token}}}'.encode(), what="m.yyar: MANIFEST.json", error=ManifestError,
                            finite=True)


@pytest.mark.parametrize("body, words", [
    (b"{not json", "not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2"),
    (b"", "not valid JSON: Expecting value"),
    (b"[1, 2", "not valid JSON"),
    (b"\xff\xfe[]", "not UTF-8 text"),
    (b"[1]]", "not valid JSON: Extra data"),
])
def test_other_mistakes_get_jsons_message_with_a_position(body, words):
    with pytest.raises(InvalidInputError, match=words):
        jsonparse.loads(body, what="The body")


def test_str_input_and_the_callers_error_class():
    assert jsonparse.loads('{"a": [1, 2]}', what="x") == {"a": [1, 2]}
    with pytest.raises(ManifestError, match="nests deeper"):
        jsonparse.loads("[" * 70 + "]" * 70, what="x", error=ManifestError)
    assert jsonparse.loads(nested(3), what="x", max_depth=3) == [[[]]]
    with pytest.raises(InvalidInputError, match="deeper than 2 levels"):
        jsonparse.loads(nested(3), what="x", max_depth=2)


@pytest.mark.parametrize("text, deeper", [
    ("[]", False), ("[[]]", False), ("[[[]]]", True), ("[][][][]", False), ('{"a": [{"b": 1}]}', True),
    ('["[[[[["]', False), ("[[", False), ("[[[", True), ("]]][[", False), ("[[]][[[", True), ("[{]}", False),
])
def test_nests_deeper_judges_valid_and_broken_text(text, deeper):
    assert jsonparse.nests_deeper(text, 2) is deeper
