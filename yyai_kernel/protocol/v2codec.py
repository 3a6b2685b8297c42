"""Open Inference Protocol (KServe v2 / Triton): its typed messages and their HTTP encoding.

Pure types and functions, no server: the data plane speaks in these types, the REST
handlers encode and decode them here, the gRPC adapter maps them to protobuf, and tests
drive them directly.
They cover the JSON tensor form (``data`` flattened row-major; nested lists are accepted
too) and the binary tensor data extension: a JSON header whose length the
``Inference-Header-Content-Length`` HTTP header gives, followed by each binary tensor's
little-endian bytes in input order (``parameters.binary_data_size``). Outputs go back as
JSON or binary per ``parameters.binary_data_output`` on the request, or per output's own
``parameters.binary_data``; binary outputs are what ``tritonclient`` asks for by default.

Every refusal is an ``InvalidInputError`` (HTTP 400) whose message says what to change.
"""

from __future__ import annotations

import array
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from yyai_kernel.errors import InvalidInputError, PayloadTooLargeError
from yyai_kernel.protocol import jsonparse
from yyai_kernel.types.specs import InputSpec

# v2 datatype -> numpy dtype (little-endian, as the binary extension requires)
DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
# Datatypes a yyai model input accepts: numbers, cast to the model's dtype.
NUMERIC = {k for k in DATATYPES if k != "BOOL"}
KNOWN = set(DATATYPES) | {"BYTES", "BF16"}

_NUMPY_TO_V2 = {np.dtype(v).newbyteorder("="): k for k, v in DATATYPES.items()}


def datatype_of(dtype: npt.DTypeLike) -> str:
    """The v2 datatype name of a numpy dtype (``float32`` -> ``FP32``)."""
    try:
        return _NUMPY_TO_V2[np.dtype(dtype).newbyteorder("=")]
    except KeyError:
        raise InvalidInputError(f"dtype {dtype} has no v2 datatype") from None


@dataclass
class RequestInput:
    """One decoded input tensor: its name, declared datatype and shape, and the array."""

    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray


@dataclass
class RequestedOutput:
    """One entry of the request's ``outputs``: a name and, if given, its binary_data flag."""

    name: str
    binary: bool | None = None


@dataclass
class InferRequest:
    """A decoded inference request."""

    id: str | None
    inputs: list[RequestInput]
    outputs: list[RequestedOutput] | None
    binary_data_output: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferResult:
    """A decoded inference response: the outputs chosen by the request, in order.

    ``outputs`` holds ``(name, array, binary)`` triples; ``binary`` says whether the
    HTTP encoding sends that output as binary data (gRPC always does).
    """

    model_name: str
    model_version: int
    outputs: list[tuple[str, np.ndarray, bool]]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    cold_start_s: float | None = None  # the wait for its version's load (a header, not the body)


@dataclass(frozen=True)
class TensorMetadata:
    """One input or output of a model: name, v2 datatype, shape (-1 for the batch axis)."""

    name: str
    datatype: str
    shape: list[int]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class ModelMetadata:
    """The v2 model metadata object."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "versions": list(self.versions), "platform": self.platform,
                "inputs": [t.to_json() for t in self.inputs], "outputs": [t.to_json() for t in self.outputs]}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


@dataclass(frozen=True)
class ServerMetadata:
    """The v2 server metadata object."""

    name: str
    version: str
    extensions: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "extensions": list(self.extensions)}


@dataclass(frozen=True)
class RepositoryEntry:
    """One model version in the repository index, with Triton's state and a reason for people."""

    name: str
    version: str
    state: str
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "state": self.state, "reason": self.reason}


# --- health ---------------------------------------------------------------------------

INLINE_BODY_BYTES = 16 * 1024  # a v2 request up to this size is decoded on the event loop


def decode_inline(batching: bool, size: int, encoded: bool = False) -> bool:
    """Whether a v2 request is decoded, queued and answered on the event loop (REST and gRPC).

    A small request for a batching version costs less there than two thread hops would;
    a large one, a compressed one or one for a version that runs unbatched (its call
    blocks) goes to a thread pool.
    """
    return batching and size <= INLINE_BODY_BYTES and not encoded


LIVE = {"live": True}
"""The body of ``GET /v2/health/live`` (KServe's REST client reads it; Triton's clients read only the status)."""
READY = {"ready": True}
"""The body of ``GET /v2/health/ready`` once the server is ready."""


def model_ready_body(name: str) -> dict[str, Any]:
    """The body of ``GET /v2/models/{name}[/versions/{v}]/ready`` when that version serves."""
    return {"name": name, "ready": True}


# --- request -------------------------------------------------------------------------


def decode_content(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding: gzip|deflate`` with a cap on the inflated size."""
    encoding = (encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        inflater = zlib.decompressobj()
    else:
        raise InvalidInputError(f"Content-Encoding {encoding!r} is not supported; use gzip, deflate or none.")
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise InvalidInputError(f"The {encoding} body could not be decompressed: {exc}.") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise PayloadTooLargeError(f"The decompressed body exceeds the limit of {max_bytes:,} bytes.")
    return out


def read_http_request(body: bytes, encoding: str | None, header_length: str | None,
                      max_bytes: int) -> InferRequest:
    """An HTTP request's inference request: its ``Content-Encoding`` undone (inflated size capped
    at ``max_bytes``), then parsed as JSON or JSON plus binary tensors."""
    return parse_infer_request(decode_content(body, encoding, max_bytes), header_length)


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """Split a request body into its JSON header and the binary data after it.

    The binary part is a view of ``body``: tensors are read straight from the request's
    buffer, never copied out of it.
    """
    if header_length is None or header_length == "":
        json_part, rest = body, memoryview(b"")
    else:
        try:
            n = int(header_length)
        except ValueError:
            raise InvalidInputError("Inference-Header-Content-Length must be an integer.") from None
        if n < 0 or n > len(body):
            raise InvalidInputError(
                f"Inference-Header-Content-Length is {n} but the body has only {len(body)} bytes."
            )
        view = memoryview(body)
        json_part, rest = bytes(view[:n]), view[n:]
    if not json_part.strip():
        raise InvalidInputError("The request body is empty; send a JSON inference request.")
    header = _loads(json_part)
    if not isinstance(header, dict):
        raise InvalidInputError("The inference request must be a JSON object.")
    return header, rest


def _loads(text: bytes) -> Any:
    """Parse the JSON header with the shared bounded parser (orjson first, see ``jsonparse``).

    NaN and Infinity parse to floats here, so that the value check names them; the size
    was capped by the server's body limit already.
    """
    return jsonparse.loads(text, what="The inference request", max_bytes=None)


def parse_infer_request(body: bytes, header_length: str | None = None) -> InferRequest:
    """Decode a v2 inference request (JSON, or JSON plus binary tensors) into arrays.

    Checks every input's datatype, shape and element count, and that binary sizes add up
    exactly to the bytes that follow the JSON header.
    """
    header, rest = split_body(body, header_length)
    params = _parameters(header.get("parameters"), "parameters")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInputError("The request must have a non-empty 'inputs' list.")
    offset = 0
    inputs = []
    for i, raw in enumerate(raw_inputs):
        tensor, used = parse_input(raw, i, rest[offset:])
        offset += used
        inputs.append(tensor)
    if offset != len(rest):
        raise InvalidInputError(
            f"The body has {len(rest) - offset} bytes after the tensors that no input's "
            "binary_data_size accounts for."
        )
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise InvalidInputError("Each input name may appear only once.")
    outputs = None
    if "outputs" in header and header["outputs"] is not None:
        raw_outputs = header["outputs"]
        if not isinstance(raw_outputs, list):
            raise InvalidInputError("'outputs' must be a list.")
        outputs = [parse_requested_output(o, i) for i, o in enumerate(raw_outputs)]
    request_id = header.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInputError("'id' must be a string.")
    return InferRequest(
        id=request_id,
        inputs=inputs,
        outputs=outputs,
        binary_data_output=_flag(params.get("binary_data_output", False), "parameters.binary_data_output"),
        parameters=params,
    )


def _parameters(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"'{where}' must be an object.")
    return value


def _flag(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInputError(f"'{where}' must be true or false.")
    return value


def parse_input(raw: object, index: int, rest: memoryview) -> tuple[RequestInput, int]:
    """One entry of ``inputs`` (a dict) and the bytes it used of ``rest`` (binary data), checked."""
    where = f"inputs[{index}]"
    if not isinstance(raw, dict):
        raise InvalidInputError(f"{where} must be an object with name, datatype, shape and data.")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{where} needs a 'name'.")
    datatype = raw.get("datatype")
    if not isinstance(datatype, str) or datatype not in KNOWN:
        raise InvalidInputError(f"{where} ({name}) has unknown datatype {datatype!r}; use one of {sorted(KNOWN)}.")
    if datatype not in NUMERIC:
        raise InvalidInputError(
            f"{where} ({name}) has datatype {datatype}; yyai models take numbers: use FP32 "
            "(other integer and float types are cast)."
        )
    shape = raw.get("shape")
    if (
        not isinstance(shape, list)
        or not shape
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise InvalidInputError(f"{where} ({name}) needs a 'shape': a list of non-negative integers.")
    count = math.prod(shape)
    dtype = DATATYPES[datatype]
    params = _parameters(raw.get("parameters"), f"{where}.parameters")
    size = params.get("binary_data_size")
    if size is not None:
        if "data" in raw:
            raise InvalidInputError(f"{where} ({name}) has both 'data' and binary_data_size; send one.")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidInputError(f"{where} ({name}): binary_data_size must be a non-negative integer.")
        if size != count * dtype.itemsize:
            raise InvalidInputError(
                f"{where} ({name}): binary_data_size is {size} bytes but shape {shape} of {datatype} "
                f"needs {count * dtype.itemsize}."
            )
        if size > len(rest):
            raise InvalidInputError(
                f"{where} ({name}): binary_data_size is {size} bytes but only {len(rest)} remain in the body."
            )
        array = np.frombuffer(rest[:size], dtype=dtype).reshape(shape)
        return RequestInput(name, datatype, list(shape), array), size
    if "data" not in raw:
        raise InvalidInputError(f"{where} ({name}) has no 'data' and no binary_data_size parameter.")
    array = _json_array(raw["data"], datatype, where, name)
    if array.size != count:
        raise InvalidInputError(
            f"{where} ({name}) has {array.size} values but shape {shape} needs {count}."
        )
    return RequestInput(name, datatype, list(shape), array.reshape(shape)), 0


# Typecodes of ``array.array`` for the float datatypes: it converts a flat list of JSON
# numbers in one C loop straight to the tensor's dtype, and refuses strings, null and
# nested lists (TypeError), so NumPy's slower type discovery runs only for those.
_ARRAY_TYPECODES = {"FP32": "f", "FP64": "d"}


def _json_array(data: object, datatype: str, where: str, name: str) -> np.ndarray:
    if not isinstance(data, list):
        raise InvalidInputError(f"{where} ({name}): 'data' must be a list of numbers (row-major).")
    typecode = _ARRAY_TYPECODES.get(datatype)
    if typecode is not None:
        try:
            return np.frombuffer(array.array(typecode, data), dtype=DATATYPES[datatype])
        except (TypeError, OverflowError):
            pass  # nested lists, or not numbers: the general path reads them or says what is wrong
    try:
        values = np.asarray(data)
    except ValueError:
        raise InvalidInputError(f"{where} ({name}): 'data' is a ragged nested list.") from None
    if values.size == 0:
        values = values.astype(np.float64)
    if values.dtype.kind not in "iuf":
        raise InvalidInputError(f"{where} ({name}): 'data' must hold only numbers.")
    dtype = DATATYPES[datatype]
    if dtype.kind in "iu":
        if values.dtype.kind == "f" and (not np.isfinite(values).all() or not (values == np.round(values)).all()):
            raise InvalidInputError(f"{where} ({name}): {datatype} data must be whole numbers.")
        if values.size:
            info = np.iinfo(dtype)
            if values.min() < info.min or values.max() > info.max:
                raise InvalidInputError(f"{where} ({name}): a value is out of range for {datatype}.")
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(dtype, copy=False)


def parse_requested_output(raw: object, index: int) -> RequestedOutput:
    """One entry of ``outputs``: a name and its optional binary_data flag."""
    where = f"outputs[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise InvalidInputError(f"{where} must be an object with a 'name'.")
    params = _parameters(raw.get("parameters"), f"{where}.parameters")
    if "classification" in params:
        raise InvalidInputError(
            f"{where}: the classification extension is not supported; the labels are in the model metadata "
            "and in POST /predictions replies."
        )
    binary = params.get("binary_data")
    if binary is not None:
        binary = _flag(binary, f"{where}.parameters.binary_data")
    return RequestedOutput(raw["name"], binary)


def model_input(request: InferRequest, input_spec: InputSpec) -> np.ndarray:
    """The model input of a request, cast to the model dtype, shape ``[B, *input.shape]``.

    A model with several inputs takes one tensor per input, by name, with the same batch;
    they are packed into the one array the runtime takes (``InputSpec.slices``). Values are
    checked finite here, once, after the cast (so that an FP64 value too large for float32 is
    caught too); the data plane tells the runtime not to check again.
    """
    parts = input_spec.inputs()
    names = ", ".join(repr(part.name) for part in parts)
    if len(request.inputs) != len(parts):
        takes = f"one input named {names}" if len(parts) == 1 else f"{len(parts)} inputs named {names}"
        raise InvalidInputError(f"The model takes {takes}; the request has {len(request.inputs)}.")
    given = {tensor.name: tensor for tensor in request.inputs}
    arrays = []
    for part in parts:
        tensor = given.get(part.name)
        if tensor is None:
            unexpected = next(name for name in given if name not in {p.name for p in parts})
            what = "input is" if len(parts) == 1 else "inputs are"
            raise InvalidInputError(f"Unexpected input {unexpected!r}; the model's {what} named {names}.")
        arrays.append(_input_array(tensor, part))
    if len(arrays) == 1:
        return arrays[0]
    if len({len(array) for array in arrays}) != 1:
        raise InvalidInputError(f"The inputs {names} have different batch sizes {[len(a) for a in arrays]}.")
    return np.concatenate([array.reshape(len(array), -1).astype(input_spec.dtype) for array in arrays], axis=1)


def _input_array(tensor: RequestInput, input_spec: InputSpec) -> np.ndarray:
    """One named input tensor, checked against its spec and cast to its dtype."""
    expected = input_spec.name
    want = list(input_spec.shape)
    if len(tensor.shape) != len(want) + 1 or tensor.shape[1:] != want:
        raise InvalidInputError(
            f"Input {expected!r} has shape {tensor.shape}; expected [batch, {', '.join(map(str, want))}]."
        )
    if tensor.shape[0] < 1:
        raise InvalidInputError(f"Input {expected!r} has an empty batch.")
    dtype = np.dtype(input_spec.dtype)
    values = tensor.array
    with np.errstate(over="ignore", invalid="ignore"):
        cast = values.astype(dtype, copy=False)  # FP32 data for a float32 model: no copy
    if cast.dtype.kind == "f" and not np.isfinite(cast).all():  # the one finiteness check
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise InvalidInputError(f"Input {expected!r} holds NaN or infinite values.")
        raise InvalidInputError(f"Input {expected!r} holds values too large for {dtype}.")
    return cast


# --- response ------------------------------------------------------------------------


def select_outputs(available: dict[str, np.ndarray], request: InferRequest) -> list[tuple[str, np.ndarray, bool]]:
    """The outputs to send, in order, each with whether it goes as binary data."""
    if request.outputs is None:
        return [(name, array, request.binary_data_output) for name, array in available.items()]
    chosen = []
    for out in request.outputs:
        if out.name not in available:
            raise InvalidInputError(f"Unknown output {out.name!r}; the model's outputs are {list(available)}.")
        binary = request.binary_data_output if out.binary is None else out.binary
        chosen.append((out.name, available[out.name], binary))
    return chosen


def encode_infer_response(
    model_name: str,
    model_version: int | str,
    outputs: list[tuple[str, np.ndarray, bool]],
    *,
    request_id: str | None = None,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int | None]:
    """Encode a v2 inference response; returns (body, JSON header length or None).

    The header length is None when every output is JSON, and then the body is the JSON
    alone; otherwise binary outputs follow the JSON header, as the extension says.
    """
    reply: dict[str, Any] = {"model_name": model_name, "model_version": str(model_version)}
    if request_id:
        reply["id"] = request_id
    if parameters:
        reply["parameters"] = parameters
    blobs: list[memoryview] = []
    encoded: list[dict[str, Any]] = []
    for name, output, binary in outputs:
        datatype = datatype_of(output.dtype)
        values = np.ascontiguousarray(output, dtype=DATATYPES[datatype])  # little-endian, C order
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(values.shape)}
        if binary:
            entry["parameters"] = {"binary_data_size": values.nbytes}
            blobs.append(values.data)
        else:
            entry["data"] = values.reshape(-1)  # orjson writes the numbers straight from the array
        encoded.append(entry)
    reply["outputs"] = encoded
    header = orjson.dumps(reply, option=orjson.OPT_SERIALIZE_NUMPY, default=_tolist)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)  # the reply, copied once


def _tolist(value: object) -> Any:
    """What orjson's numpy support leaves to us (float16, say): plain lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_result(result: InferResult) -> tuple[bytes, int | None]:
    """:func:`encode_infer_response` of a data-plane :class:`InferResult`."""
    return encode_infer_response(result.model_name, result.model_version, result.outputs,
                                 request_id=result.id, parameters=result.parameters)
