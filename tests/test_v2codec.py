"""The Open Inference Protocol v2 codec, without a server: JSON and binary tensors, outputs.

The binary form is produced by tritonclient's own request builder, so the codec is
checked against the real client's bytes, not against a copy of the spec.
"""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest

from yyai_kernel.errors import InvalidInputError, PayloadTooLargeError
from yyai_kernel.protocol import v2codec
from yyai_kernel.types import InputSpec

SPEC = InputSpec.from_json({"name": "input", "shape": [2, 2, 1], "dtype": "float32", "color": "grayscale"})


def _request(data, datatype="FP32", shape=(1, 2, 2, 1), name="input", **extra):
    body = {"inputs": [{"name": name, "datatype": datatype, "shape": list(shape), "data": data}], **extra}
    return json.dumps(body).encode()


def _triton_body(array, *, binary=True, outputs=None):
    """The exact body and header length tritonclient.http sends."""
    from tritonclient.http import InferInput, InferRequestedOutput
    from tritonclient.http._utils import _get_inference_request

    tensor = InferInput("input", list(array.shape), {np.float32: "FP32", np.float64: "FP64",
                                                     np.int32: "INT32", np.uint8: "UINT8"}[array.dtype.type])
    tensor.set_data_from_numpy(array, binary_data=binary)
    requested = [InferRequestedOutput(n, binary_data=b) for n, b in outputs] if outputs else None
    body, json_size = _get_inference_request(
        inputs=[tensor], request_id="r1", outputs=requested, sequence_id=0, sequence_start=False,
        sequence_end=False, priority=0, timeout=None, custom_parameters=None,
    )
    return body, None if json_size is None else str(json_size)


def test_json_flat_and_nested_data_decode_row_major():
    x = np.arange(8, dtype=np.float32).reshape(2, 2, 2, 1)
    flat = v2codec.parse_infer_request(_request(x.reshape(-1).tolist(), shape=x.shape))
    nested = v2codec.parse_infer_request(_request(x.tolist(), shape=x.shape))
    for request in (flat, nested):
        np.testing.assert_array_equal(v2codec.model_input(request, SPEC), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint8])
@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_bodies_decode_and_cast_to_the_model_dtype(dtype, binary):
    x = (np.arange(12).reshape(3, 2, 2, 1) % 7).astype(dtype)
    body, header_length = _triton_body(x, binary=binary)
    request = v2codec.parse_infer_request(body, header_length)
    assert request.id == "r1" and request.binary_data_output  # tritonclient asks for binary outputs
    got = v2codec.model_input(request, SPEC)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x.astype(np.float32))


def test_binary_outputs_round_trip_through_tritonclient_result():
    from tritonclient.http import InferResult

    x = np.random.default_rng(0).random((3, 2, 2, 1), dtype=np.float32)
    body, header_length = _triton_body(x, outputs=[("output", True), ("m1", False)])
    request = v2codec.parse_infer_request(body, header_length)
    combined = np.random.default_rng(1).random((3, 4), dtype=np.float32)
    member = np.random.default_rng(2).random((3, 4), dtype=np.float32)
    chosen = v2codec.select_outputs({"output": combined, "m1": member, "m2": member}, request)
    assert [(n, b) for n, _, b in chosen] == [("output", True), ("m1", False)]
    payload, length = v2codec.encode_infer_response("alpha", 2, chosen, request_id=request.id)
    result = InferResult.from_response_body(payload, header_length=length)
    np.testing.assert_array_equal(result.as_numpy("output"), combined)
    np.testing.assert_array_equal(result.as_numpy("m1"), member)
    reply = result.get_response()
    assert reply["model_name"] == "alpha" and reply["model_version"] == "2" and reply["id"] == "r1"


def test_all_json_outputs_have_no_header_length():
    request = v2codec.parse_infer_request(_request([0, 0, 0, 0]))
    out = np.ones((1, 3), dtype=np.float32)
    payload, length = v2codec.encode_infer_response("m", 1, v2codec.select_outputs({"output": out}, request))
    assert length is None
    assert json.loads(payload)["outputs"][0] == {"name": "output", "datatype": "FP32", "shape": [1, 3],
                                                 "data": [1.0, 1.0, 1.0]}


def test_per_output_binary_flag_overrides_the_request_parameter():
    body = _request([0, 0, 0, 0], outputs=[{"name": "a", "parameters": {"binary_data": False}}, {"name": "b"}],
                    parameters={"binary_data_output": True})
    request = v2codec.parse_infer_request(body)
    arrays = {"a": np.zeros((1, 2), np.float32), "b": np.zeros((1, 2), np.float32)}
    assert [b for _, _, b in v2codec.select_outputs(arrays, request)] == [False, True]


@pytest.mark.parametrize(
    "body, header_length, words",
    [
        (b"", None, "empty"),
        (b"{not json", None, "not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, None, "nests deeper than 64 levels"),
        (b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", None, "nests deeper than 64 levels"),
        (b'{"inputs": ' + b"[" * 5000, None, "nests deeper than 64 levels"),
        (b'{"inputs": ' + b"[" * 64 + b"]" * 64 + b"}", None, "nests deeper than 64 levels"),
        (b"[" * 5000 + b"]" * 5000 + bytes(16), "10000", "nests deeper than 64 levels"),
        (b"[]", None, "JSON object"),
        (json.dumps({"inputs": []}).encode(), None, "non-empty 'inputs'"),
        (_request([1, 2, 3]), None, "3 values but shape"),
        (_request([[1, 2], [3]]), None, "ragged"),
        (_request(["1", "2", "3", "4"]), None, "only numbers"),
        (_request([1, 2, 3, 4], datatype="BYTES"), None, "take numbers"),
        (_request([True, False, True, True], datatype="BOOL"), None, "take numbers"),
        (_request([1, 2, 3, 4], datatype="FP8"), None, "unknown datatype"),
        (_request([1, 2, 3, 300], datatype="UINT8"), None, "out of range"),
        (_request([1, 2, 3, 4.5], datatype="INT32"), None, "whole numbers"),
        (_request([1, 2, 3, 4], shape=(1, -2, 2, 1)), None, "non-negative"),
        (_request([1, 2, 3, 4]), "9999", "only"),
        (_request([1, 2, 3, 4]), "abc", "integer"),
        (_request([1, 2, 3, 4]) + b"junk", str(len(_request([1, 2, 3, 4]))), "bytes after the tensors"),
        (_request([1, 2, 3, 4], outputs=[{"name": "o", "parameters": {"classification": 2}}]), None, "classification"),
        (_request([1, 2, 3, 4], parameters={"binary_data_output": "yes"}), None, "true or false"),
    ],
)
def test_malformed_requests_are_400_with_a_reason(body, header_length, words):
    with pytest.raises(InvalidInputError, match=words):
        v2codec.parse_infer_request(body, header_length)


def test_binary_size_must_match_shape_and_body():
    header = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2, 2, 1],
                                     "parameters": {"binary_data_size": 12}}]}).encode()
    with pytest.raises(InvalidInputError, match="needs 16"):
        v2codec.parse_infer_request(header + bytes(12), str(len(header)))
    header = header.replace(b"12", b"16")
    with pytest.raises(InvalidInputError, match="only 8 remain"):
        v2codec.parse_infer_request(header + bytes(8), str(len(header)))


@pytest.mark.parametrize(
    "data, spec_change, words",
    [
        ([float("nan"), 0, 0, 0], {}, "NaN or infinite"),
        ([float("inf"), 0, 0, 0], {}, "NaN or infinite"),
        ([1e300, 0, 0, 0], {}, "too large"),
        ([0, 0, 0, 0], {"name": "pixels"}, "named 'pixels'"),
        ([0, 0, 0, 0], {"shape": [4, 1]}, "expected \\[batch, 4, 1\\]"),
    ],
)
def test_model_input_checks_values_name_and_shape(data, spec_change, words):
    request = v2codec.parse_infer_request(_request(data, datatype="FP64"))
    with pytest.raises(InvalidInputError, match=words):
        v2codec.model_input(request, InputSpec.from_json({**SPEC.to_json(), **spec_change}))


def test_nan_tokens_in_json_are_read_then_refused():
    body = b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 2, 2, 1], "data": [NaN, 0, 0, 0]}]}'
    with pytest.raises(InvalidInputError, match="NaN"):
        v2codec.model_input(v2codec.parse_infer_request(body), SPEC)


def test_unknown_requested_output_is_400():
    request = v2codec.parse_infer_request(_request([0, 0, 0, 0], outputs=[{"name": "nope"}]))
    with pytest.raises(InvalidInputError, match="Unknown output 'nope'"):
        v2codec.select_outputs({"output": np.zeros((1, 2), np.float32)}, request)


def test_content_encoding_is_undone_within_the_cap():
    raw = _request([0, 0, 0, 0])
    assert v2codec.decode_content(gzip.compress(raw), "gzip", 1000) == raw
    assert v2codec.decode_content(zlib.compress(raw), "deflate", 1000) == raw
    with pytest.raises(PayloadTooLargeError):
        v2codec.decode_content(gzip.compress(bytes(10_000)), "gzip", 1000)
    with pytest.raises(InvalidInputError, match="not supported"):
        v2codec.decode_content(raw, "br", 1000)
    with pytest.raises(InvalidInputError, match="decompressed"):
        v2codec.decode_content(b"not gzip", "gzip", 1000)
