"""Open Inference Protocol v2 over gRPC: protobuf messages to and from the REST path's types.

Pure functions, no server: the gRPC servicer (``inference.GRPCInferenceService``) calls
them, and tests drive them with real protobuf messages. The messages are tritonclient's
generated ``service_pb2`` (the protocol's own definition, as Triton ships it), so nothing
here is written from a copy of the ``.proto``.

A ``ModelInferRequest`` becomes the same ``InferRequest`` that a REST body does, through
the REST codec's own per-input parser: the datatype table, the shape, element-count and
size checks and their ``InvalidInputError`` messages live in ``v2codec`` alone. An input's
data comes either from ``raw_input_contents`` (one entry per input, in input order, as
the binary tensor extension does over HTTP) or from its typed ``contents`` field
(``fp32_contents``, ``int_contents``...), never both. Outputs always go back as
``raw_output_contents``, little-endian, which is what tritonclient and KServe's client read.
Parameters in protobuf are scalars (``InferParameter``), so a list-valued parameter of a
reply (the REST reply's ``members``) goes as one comma-separated string; member names
cannot hold a comma (the manifest schema's name pattern).

Errors: every yyai error carries its HTTP status; ``grpc_status`` turns it into the gRPC
status code that Triton uses for the same case.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import service_pb2

from yyai_kernel.errors import InvalidInputError, YyaiError
from yyai_kernel.protocol import v2codec
from yyai_kernel.protocol.v2codec import (
    DATATYPES,
    InferRequest,
    InferResult,
    ModelMetadata,
    RepositoryEntry,
    RequestInput,
    ServerMetadata,
)

# The typed field of InferTensorContents that carries each numeric datatype (the
# protocol's table). FP16 has none: it travels only in raw_input_contents. BOOL and
# BYTES (bool_contents, bytes_contents) are refused by v2codec before data is read.
CONTENTS_FIELD = {
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}

# HTTP status of a yyai error -> the gRPC code Triton answers for that case (Triton:
# src/grpc/grpc_utils.cc, GrpcStatusUtil::CodeToStatus; what it has no code for, such as
# 415, is INVALID_ARGUMENT there). Statuses not listed fall back by class in grpc_status.
GRPC_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    # gRPC itself refuses a message over max_receive_message_length with
    # RESOURCE_EXHAUSTED, so a body over yyai's limit answers the same way.
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,  # gRPC's code for a rate or quota limit
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
    # The store could not be written (disk full): gRPC's RESOURCE_EXHAUSTED names that case.
    507: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

_INT64_MAX = 2**63 - 1


def grpc_status(error: YyaiError) -> grpc.StatusCode:
    """The gRPC status code for a yyai error (unlisted 4xx: INVALID_ARGUMENT, else INTERNAL)."""
    code = GRPC_STATUS.get(error.status)
    if code is not None:
        return code
    return grpc.StatusCode.INVALID_ARGUMENT if 400 <= error.status < 500 else grpc.StatusCode.INTERNAL


# --- request -------------------------------------------------------------------------


def parse_model_infer_request(request: service_pb2.ModelInferRequest) -> InferRequest:
    """Decode a ``ModelInferRequest`` into the REST path's ``InferRequest``.

    The model name and version stay on the message: the caller resolves them as it does
    for a URL. Input parameters are not read (KServe's client sends binary_data_size there).
    """
    if not request.inputs:
        raise InvalidInputError("The request must have a non-empty 'inputs' list.")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidInputError(
            f"raw_input_contents has {len(raw)} entries but the request has {len(request.inputs)} inputs; "
            "send one entry per input, in input order, or none."
        )
    inputs = [_parse_input(tensor, i, raw[i] if raw else None) for i, tensor in enumerate(request.inputs)]
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise InvalidInputError("Each input name may appear only once.")
    outputs = None
    if request.outputs:
        outputs = [
            v2codec.parse_requested_output({"name": out.name, "parameters": parameters_to_dict(out.parameters)}, i)
            for i, out in enumerate(request.outputs)
        ]
    return InferRequest(
        id=request.id or None,
        inputs=inputs,
        outputs=outputs,
        parameters=parameters_to_dict(request.parameters),
    )


def payload_bytes(request: service_pb2.ModelInferRequest) -> int:
    """About how many bytes of tensor data a request carries, without serializing it again:
    what decides whether decoding it is worth a thread hop. A typed value counts 8 bytes
    (each becomes a Python number on the way to numpy, which costs more than its bytes)."""
    size = sum(len(raw) for raw in request.raw_input_contents)
    for tensor in request.inputs:
        size += sum(8 * len(values) for _, values in tensor.contents.ListFields())
    return size


def _parse_input(tensor: service_pb2.ModelInferRequest.InferInputTensor, index: int,
                 raw: bytes | None) -> RequestInput:
    """One input, through v2codec's parser: raw bytes as a binary input, typed contents as data."""
    header: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
    where = f"inputs[{index}] ({tensor.name})"
    if raw is not None:
        if tensor.contents.ListFields():
            raise InvalidInputError(
                f"{where} has both typed contents and a raw_input_contents entry; send one of them."
            )
        _check_raw_size(header, where, index, len(raw))
        header["parameters"] = {"binary_data_size": len(raw)}
        parsed, _ = v2codec.parse_input(header, index, memoryview(raw))
        return parsed
    header["data"] = _typed_values(tensor, where) if tensor.datatype in v2codec.NUMERIC else []
    parsed, _ = v2codec.parse_input(header, index, memoryview(b""))
    return parsed


def _typed_values(tensor: service_pb2.ModelInferRequest.InferInputTensor, where: str) -> list[Any]:
    """The values of a numeric input's typed contents field, which must be its datatype's."""
    field = CONTENTS_FIELD.get(tensor.datatype)
    if field is None:
        raise InvalidInputError(
            f"{where}: {tensor.datatype} has no typed contents field; send it in raw_input_contents.")
    present = [f.name for f, _ in tensor.contents.ListFields()]
    if present and present != [field]:
        raise InvalidInputError(
            f"{where} has datatype {tensor.datatype}, whose values go in contents.{field}; "
            f"the request set contents.{', contents.'.join(present)}."
        )
    return list(getattr(tensor.contents, field))


def _check_raw_size(header: dict[str, Any], where: str, index: int, size: int) -> None:
    """Name raw_input_contents (not REST's binary_data_size) when the byte count is wrong.

    Only a header that v2codec would accept is checked here; anything else is left to
    v2codec's parser, which names what is wrong with it.
    """
    datatype, shape = header["datatype"], header["shape"]
    if datatype not in v2codec.NUMERIC or not shape or min(shape) < 0:
        return
    needed = math.prod(shape) * DATATYPES[datatype].itemsize
    if size != needed:
        raise InvalidInputError(
            f"{where}: raw_input_contents[{index}] has {size} bytes but shape {shape} of {datatype} needs {needed}."
        )


# --- response ------------------------------------------------------------------------


def encode_model_infer_response(
    model_name: str,
    model_version: int | str,
    outputs: list[tuple[str, np.ndarray, bool]],
    *,
    request_id: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> service_pb2.ModelInferResponse:
    """A ``ModelInferResponse`` with every output in ``raw_output_contents`` (little-endian).

    ``outputs`` is what ``v2codec.select_outputs`` returns: (name, array, binary) tuples;
    the binary flag is REST's choice and is ignored, since gRPC always sends raw bytes.
    """
    response = service_pb2.ModelInferResponse(
        model_name=model_name, model_version=str(model_version), id=request_id or ""
    )
    parameters_to_proto(parameters or {}, response.parameters)
    for name, array, *_ in outputs:
        array = np.ascontiguousarray(array)
        datatype = v2codec.datatype_of(array.dtype)
        response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        response.raw_output_contents.append(array.astype(DATATYPES[datatype], copy=False).tobytes())
    return response


def encode_result(result: InferResult) -> service_pb2.ModelInferResponse:
    """:func:`encode_model_infer_response` of a data-plane :class:`InferResult`."""
    return encode_model_infer_response(result.model_name, result.model_version, result.outputs,
                                       request_id=result.id, parameters=scalar_parameters(result.parameters))


def scalar_parameters(values: dict[str, Any]) -> dict[str, Any]:
    """Parameters with each list or tuple joined into one comma-separated string."""
    return {key: ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
            for key, value in values.items()}


# --- metadata and the repository --------------------------------------------------


def encode_server_metadata(metadata: ServerMetadata) -> service_pb2.ServerMetadataResponse:
    return service_pb2.ServerMetadataResponse(name=metadata.name, version=metadata.version,
                                              extensions=list(metadata.extensions))


def encode_model_metadata(metadata: ModelMetadata) -> service_pb2.ModelMetadataResponse:
    """The v2 model metadata. The protobuf message has no parameters field, so the
    preprocessing note that REST replies carry is left out."""
    tensor = service_pb2.ModelMetadataResponse.TensorMetadata
    return service_pb2.ModelMetadataResponse(
        name=metadata.name, versions=list(metadata.versions), platform=metadata.platform,
        inputs=[tensor(name=t.name, datatype=t.datatype, shape=list(t.shape)) for t in metadata.inputs],
        outputs=[tensor(name=t.name, datatype=t.datatype, shape=list(t.shape)) for t in metadata.outputs],
    )


def encode_repository_index(entries: list[RepositoryEntry]) -> service_pb2.RepositoryIndexResponse:
    index = service_pb2.RepositoryIndexResponse.ModelIndex
    return service_pb2.RepositoryIndexResponse(
        models=[index(name=e.name, version=e.version, state=e.state, reason=e.reason) for e in entries]
    )


# --- parameters ----------------------------------------------------------------------


def parameters_to_dict(parameters: Mapping[str, service_pb2.InferParameter]) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as a plain dict of Python scalars."""
    out: dict[str, Any] = {}
    for key, value in parameters.items():
        choice = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, choice) if choice else None
    return out


def parameters_to_proto(values: dict[str, Any], target: MutableMapping[str, service_pb2.InferParameter]) -> None:
    """Fill a protobuf ``map<string, InferParameter>`` from scalars; None values are left out."""
    for key, value in values.items():
        if value is not None:
            field = _parameter_field(key, value)  # before target[key], which adds the entry
            setattr(target[key], field, value)


def _parameter_field(key: str, value: object) -> str:
    """The InferParameter field that holds ``value`` (bool before int: bool is an int)."""
    if isinstance(value, bool):
        return "bool_param"
    if isinstance(value, int):
        return "uint64_param" if value > _INT64_MAX else "int64_param"
    if isinstance(value, float):
        return "double_param"
    if isinstance(value, str):
        return "string_param"
    raise TypeError(f"parameter {key!r} is a {type(value).__name__}; an InferParameter holds a scalar")
