"""The v2 gRPC codec, without a server: ModelInferRequest in, ModelInferResponse out.

Requests are built by tritonclient.grpc's own request builder (raw_input_contents) or as
real ``service_pb2`` messages with typed contents, then sent through their wire bytes;
responses are read back by tritonclient's ``InferResult``. Refusals must carry the same
messages as the REST codec, which owns the checks.
"""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.grpc import service_pb2
from tritonclient.grpc._utils import _get_inference_request

from yyai_kernel import errors
from yyai_kernel.errors import InvalidInputError
from yyai_kernel.protocol import v2codec, v2grpc
from yyai_kernel.types import InputSpec

SPEC = InputSpec.from_json({"name": "input", "shape": [2, 2, 1], "dtype": "float32", "color": "grayscale"})
TRITON_TYPES = {np.float32: "FP32", np.float64: "FP64", np.int32: "INT32", np.uint8: "UINT8", np.float16: "FP16"}


def _wire(message):
    """The message as the server receives it: serialized and parsed again."""
    return type(message).FromString(message.SerializeToString())


def _triton_request(array, *, outputs=None, request_id="r1", parameters=None):
    """The exact ModelInferRequest tritonclient.grpc sends for one input."""
    tensor = grpcclient.InferInput("input", list(array.shape), TRITON_TYPES[array.dtype.type])
    tensor.set_data_from_numpy(array)
    request = _get_inference_request(
        model_name="digits", inputs=[tensor], model_version="2", request_id=request_id, outputs=outputs,
        sequence_id=0, sequence_start=False, sequence_end=False, priority=0, timeout=None, parameters=parameters,
    )
    return _wire(request)


def _typed_request(datatype, shape, field, values, name="input"):
    request = service_pb2.ModelInferRequest(model_name="digits")
    tensor = request.inputs.add(name=name, datatype=datatype, shape=list(shape))
    getattr(tensor.contents, field).extend(values)
    return _wire(request)


def _raw_request(datatype, shape, raw: bytes, name="input"):
    request = service_pb2.ModelInferRequest(model_name="digits")
    request.inputs.add(name=name, datatype=datatype, shape=list(shape))
    request.raw_input_contents.append(raw)
    return _wire(request)


def _rest_error(datatype, shape, data) -> str:
    body = {"inputs": [{"name": "input", "datatype": datatype, "shape": list(shape), "data": data}]}
    with pytest.raises(InvalidInputError) as info:
        v2codec.parse_infer_request(json.dumps(body).encode())
    return info.value.message


# --- requests ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint8, np.float16])
def test_tritonclient_raw_requests_decode_and_cast_to_the_model_dtype(dtype):
    x = (np.arange(12).reshape(3, 2, 2, 1) % 7).astype(dtype)
    request = v2grpc.parse_model_infer_request(_triton_request(x))
    assert request.id == "r1" and request.outputs is None
    [tensor] = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("input", TRITON_TYPES[dtype], [3, 2, 2, 1])
    got = v2codec.model_input(request, SPEC)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, x.astype(np.float32))


@pytest.mark.parametrize(
    "datatype,field,values",
    [
        ("FP32", "fp32_contents", [0.5, -1.25, 3.0, 1e-3]),
        ("FP64", "fp64_contents", [0.1, 0.2, 0.3, 0.4]),
        ("INT8", "int_contents", [-128, 0, 5, 127]),
        ("INT32", "int_contents", [1, -2, 3, 2**31 - 1]),
        ("INT64", "int64_contents", [1, 2, -3, 4]),
        ("UINT8", "uint_contents", [0, 1, 254, 255]),
        ("UINT16", "uint_contents", [0, 1, 2, 65535]),
        ("UINT64", "uint64_contents", [0, 1, 2, 3]),
    ],
)
def test_typed_contents_decode_like_the_same_values_sent_raw(datatype, field, values):
    typed = v2grpc.parse_model_infer_request(_typed_request(datatype, [1, 2, 2, 1], field, values))
    raw_bytes = np.asarray(values, dtype=v2codec.DATATYPES[datatype]).tobytes()
    raw = v2grpc.parse_model_infer_request(_raw_request(datatype, [1, 2, 2, 1], raw_bytes))
    assert typed.inputs[0].array.dtype == raw.inputs[0].array.dtype == v2codec.DATATYPES[datatype]
    np.testing.assert_array_equal(typed.inputs[0].array, raw.inputs[0].array)
    np.testing.assert_array_equal(
        v2codec.model_input(typed, SPEC),
        np.asarray(values, dtype=v2codec.DATATYPES[datatype]).astype(np.float32).reshape(1, 2, 2, 1),
    )


def test_raw_decode_does_not_copy_and_matches_the_rest_binary_path():
    x = np.random.default_rng(0).random((4, 2, 2, 1), dtype=np.float32)
    grpc_request = v2grpc.parse_model_infer_request(_triton_request(x))
    header = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [4, 2, 2, 1],
                          "parameters": {"binary_data_size": x.nbytes}}]}
    head = json.dumps(header).encode()
    rest_request = v2codec.parse_infer_request(head + x.tobytes(), str(len(head)))
    np.testing.assert_array_equal(grpc_request.inputs[0].array, rest_request.inputs[0].array)
    assert not grpc_request.inputs[0].array.flags.owndata  # a view of the message's bytes


def test_requested_outputs_and_parameters_are_read():
    x = np.zeros((1, 2, 2, 1), np.float32)
    outputs = [grpcclient.InferRequestedOutput("output"), grpcclient.InferRequestedOutput("cnn_a")]
    request = v2grpc.parse_model_infer_request(
        _triton_request(x, outputs=outputs, request_id="", parameters={"note": "hi", "n": 3, "flag": True})
    )
    assert request.id is None
    assert request.outputs == [v2codec.RequestedOutput("output"), v2codec.RequestedOutput("cnn_a")]
    assert request.parameters == {"note": "hi", "n": 3, "flag": True}
    chosen = v2codec.select_outputs({"cnn_a": np.ones((1, 2)), "output": np.zeros((1, 2))}, request)
    assert [name for name, *_ in chosen] == ["output", "cnn_a"]


def test_input_parameters_from_kserves_client_are_ignored():
    # KServe's InferRequest.to_grpc() leaves binary_data_size in each input's parameters.
    x = np.arange(4, dtype=np.float32)
    request = service_pb2.ModelInferRequest(model_name="digits")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, 2, 2, 1])
    tensor.parameters["binary_data_size"].int64_param = x.nbytes
    request.raw_input_contents.append(x.tobytes())
    parsed = v2grpc.parse_model_infer_request(_wire(request))
    np.testing.assert_array_equal(parsed.inputs[0].array.reshape(-1), x)


# --- refusals ------------------------------------------------------------------------


def _refused(request) -> str:
    with pytest.raises(InvalidInputError) as info:
        v2grpc.parse_model_infer_request(request)
    return info.value.message


def test_bad_headers_get_the_rest_codecs_messages():
    cases = [
        ("FP8", [1, 4], "has unknown datatype 'FP8'"),
        ("BYTES", [1, 4], "yyai models take numbers"),
        ("BOOL", [1, 4], "yyai models take numbers"),
        ("FP32", [], "needs a 'shape'"),
        ("FP32", [1, -4], "needs a 'shape'"),
        ("FP32", [1, 3], "has 4 values but shape [1, 3] needs 3"),
    ]
    for datatype, shape, expected in cases:
        grpc_message = _refused(_typed_request(datatype, shape, "fp32_contents", [1.0, 2.0, 3.0, 4.0]))
        assert expected in grpc_message, (datatype, shape, grpc_message)
        assert grpc_message == _rest_error(datatype, shape, [1.0, 2.0, 3.0, 4.0])


def test_typed_values_out_of_range_or_fractional_are_refused():
    assert "out of range for INT8" in _refused(_typed_request("INT8", [1, 2], "int_contents", [1, 300]))
    assert "out of range for UINT8" in _refused(_typed_request("UINT8", [1, 2], "uint_contents", [1, 256]))


def test_contents_must_use_the_datatypes_field():
    message = _refused(_typed_request("FP32", [1, 2], "int_contents", [1, 2]))
    assert "contents.fp32_contents" in message and "contents.int_contents" in message
    message = _refused(_typed_request("FP16", [1, 2], "fp32_contents", [1.0, 2.0]))
    assert "FP16 has no typed contents field" in message


def test_raw_size_mismatch_names_raw_input_contents():
    message = _refused(_raw_request("FP32", [1, 2, 2, 1], b"\0" * 12))
    assert message == "inputs[0] (input): raw_input_contents[0] has 12 bytes but shape [1, 2, 2, 1] of FP32 needs 16."
    # A header v2codec refuses is named as v2codec names it, not as a size problem.
    assert "unknown datatype" in _refused(_raw_request("FP8", [1, 2], b"\0" * 3))


def test_raw_and_typed_contents_do_not_mix():
    request = service_pb2.ModelInferRequest(model_name="digits")
    tensor = request.inputs.add(name="input", datatype="FP32", shape=[1, 1])
    tensor.contents.fp32_contents.append(1.0)
    request.raw_input_contents.append(np.float32(1).tobytes())
    assert "both typed contents and a raw_input_contents entry" in _refused(_wire(request))


def test_raw_input_contents_needs_one_entry_per_input():
    request = service_pb2.ModelInferRequest(model_name="digits")
    request.inputs.add(name="a", datatype="FP32", shape=[1, 1])
    request.inputs.add(name="b", datatype="FP32", shape=[1, 1])
    request.raw_input_contents.append(np.float32(1).tobytes())
    assert "raw_input_contents has 1 entries but the request has 2 inputs" in _refused(_wire(request))


def test_empty_requests_duplicate_names_and_missing_data_are_refused():
    assert "non-empty 'inputs'" in _refused(service_pb2.ModelInferRequest(model_name="digits"))
    request = service_pb2.ModelInferRequest(model_name="digits")
    for _ in range(2):
        request.inputs.add(name="input", datatype="FP32", shape=[1, 1]).contents.fp32_contents.append(1.0)
    assert "only once" in _refused(_wire(request))
    request = service_pb2.ModelInferRequest(model_name="digits")
    request.inputs.add(name="input", datatype="FP32", shape=[1, 2])
    assert "has 0 values but shape [1, 2] needs 2" in _refused(_wire(request))


def test_classification_outputs_are_refused_as_over_rest():
    x = np.zeros((1, 2, 2, 1), np.float32)
    message = _refused(_triton_request(x, outputs=[grpcclient.InferRequestedOutput("output", class_count=3)]))
    assert "classification extension is not supported" in message


def test_model_input_checks_apply_to_grpc_requests():
    nan = _typed_request("FP32", [1, 2, 2, 1], "fp32_contents", [0.0, float("nan"), 1.0, 2.0])
    with pytest.raises(InvalidInputError, match="NaN or infinite"):
        v2codec.model_input(v2grpc.parse_model_infer_request(nan), SPEC)
    wrong_shape = v2grpc.parse_model_infer_request(_triton_request(np.zeros((1, 3, 2, 1), np.float32)))
    with pytest.raises(InvalidInputError, match=r"expected \[batch, 2, 2, 1\]"):
        v2codec.model_input(wrong_shape, SPEC)


# --- responses -----------------------------------------------------------------------


def test_response_round_trips_through_tritonclients_result():
    combined = np.random.default_rng(1).random((3, 10), dtype=np.float32)
    member = np.arange(30, dtype=np.float64).reshape(3, 10)
    chosen = [("output", combined, False), ("cnn_a", member, True)]
    response = _wire(v2grpc.encode_model_infer_response(
        "digits", 2, chosen, request_id="r9", parameters={"combined": "output", "members": 2, "skip": None},
    ))
    assert (response.model_name, response.model_version, response.id) == ("digits", "2", "r9")
    assert [o.name for o in response.outputs] == ["output", "cnn_a"]
    assert [o.datatype for o in response.outputs] == ["FP32", "FP64"]
    assert not any(o.HasField("contents") for o in response.outputs)
    result = grpcclient.InferResult(response)
    np.testing.assert_array_equal(result.as_numpy("output"), combined)
    np.testing.assert_array_equal(result.as_numpy("cnn_a"), member)
    assert v2grpc.parameters_to_dict(response.parameters) == {"combined": "output", "members": 2}


def test_response_outputs_are_little_endian_and_contiguous():
    big_endian = np.arange(6, dtype=">f4").reshape(2, 3)
    transposed = np.arange(6, dtype=np.float32).reshape(3, 2).T
    response = v2grpc.encode_model_infer_response("m", 1, [("a", big_endian, True), ("b", transposed, True)])
    result = grpcclient.InferResult(_wire(response))
    np.testing.assert_array_equal(result.as_numpy("a"), big_endian)
    np.testing.assert_array_equal(result.as_numpy("b"), transposed)
    assert response.raw_output_contents[0] == big_endian.astype("<f4").tobytes()


def test_parameters_keep_their_types_and_refuse_non_scalars():
    message = service_pb2.ModelInferResponse()
    values = {"b": False, "i": -3, "u": 2**64 - 1, "f": 0.25, "s": "x"}
    v2grpc.parameters_to_proto(values, message.parameters)
    assert v2grpc.parameters_to_dict(_wire(message).parameters) == values
    assert message.parameters["b"].WhichOneof("parameter_choice") == "bool_param"
    assert message.parameters["u"].WhichOneof("parameter_choice") == "uint64_param"
    with pytest.raises(TypeError, match="'members' is a list"):
        v2grpc.parameters_to_proto({"members": ["a", "b"]}, message.parameters)
    assert "members" not in message.parameters


# --- status codes --------------------------------------------------------------------


def _error_classes():
    found = [errors.YyaiError]
    for cls in found:
        found.extend(cls.__subclasses__())
    return found


def test_every_yyai_error_maps_to_tritons_grpc_code():
    expected = {
        errors.InvalidInputError: grpc.StatusCode.INVALID_ARGUMENT,
        errors.ArchiveError: grpc.StatusCode.INVALID_ARGUMENT,
        errors.ModelNotFoundError: grpc.StatusCode.NOT_FOUND,
        errors.ModelNotReadyError: grpc.StatusCode.UNAVAILABLE,
        errors.ServerUnavailableError: grpc.StatusCode.UNAVAILABLE,
        errors.AuthError: grpc.StatusCode.UNAUTHENTICATED,
        errors.ConflictError: grpc.StatusCode.ALREADY_EXISTS,
        errors.PayloadTooLargeError: grpc.StatusCode.RESOURCE_EXHAUSTED,
        errors.ArchiveLimitError: grpc.StatusCode.RESOURCE_EXHAUSTED,
        errors.StoreWriteError: grpc.StatusCode.RESOURCE_EXHAUSTED,
        errors.UnsupportedMediaError: grpc.StatusCode.INVALID_ARGUMENT,
        errors.NotSupportedError: grpc.StatusCode.UNIMPLEMENTED,
        errors.TooManyRequestsError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
    for cls, code in expected.items():
        assert v2grpc.grpc_status(cls("x")) is code, cls
    for cls in _error_classes():  # every status yyai uses has an entry of its own
        assert cls.status in v2grpc.GRPC_STATUS, cls


def test_statuses_without_an_entry_fall_back_by_class():
    teapot = type("Teapot", (errors.YyaiError,), {"status": 418})
    gateway = type("Gateway", (errors.YyaiError,), {"status": 502})
    assert v2grpc.grpc_status(teapot("x")) is grpc.StatusCode.INVALID_ARGUMENT
    assert v2grpc.grpc_status(gateway("x")) is grpc.StatusCode.INTERNAL
