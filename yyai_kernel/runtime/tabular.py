"""Fit records and numbers to a version's input, exactly as its manifest says.

The twin of ``images.py`` for inputs that are not images: :func:`fit` turns what a person
sent (:class:`~yyai_kernel.types.Records` or :class:`~yyai_kernel.types.Numbers`) into the
one array the runtime takes, ``[batch, *input.shape]`` (for several inputs, the packed row,
see ``InputSpec.slices``). A table's features become their columns here and nowhere else:
a numeric value ``(value - mean) / std`` when the manifest records the normalisation, a
category its index or its one-hot columns. Every refusal is an ``InvalidInputError`` (400)
whose ``field`` names the feature or input at fault and whose message names the row
("record 2", "line 7") and says what the model takes; nothing here guesses (a string for a
number, a category outside the vocabulary, a shape that only fits after a reshape).

Pure numpy, no state, no locks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from yyai_kernel.errors import InvalidInputError
from yyai_kernel.types.given import Given, Numbers, Records
from yyai_kernel.types.specs import Encoding, Feature, InputKind, InputSpec

SHOWN_NAMES = 12  # names listed at most in a message


def fit(given: Given, spec: InputSpec) -> np.ndarray:
    """The model's input batch for ``given``, ``[batch, *spec.shape]`` of ``spec.dtype``."""
    kind = spec.kind
    if kind is InputKind.IMAGE:
        raise InvalidInputError("This model takes images: send image bytes (Content-Type image/png, image/jpeg...) "
                                "or a multipart upload of image files.")
    if isinstance(given, Numbers):
        if kind is not InputKind.TENSOR:
            raise InvalidInputError(f"This model takes named {'features' if kind is InputKind.TABLE else 'inputs'}, "
                                    f"not bare numbers: send JSON records such as {example_record(spec)} "
                                    "(or a list of them), or a CSV whose header names the features.")
        return _cast(_batched(given.array, spec, "The input"), spec, spec.name)
    if not len(given):
        raise InvalidInputError("Send at least one record.")
    _check_keys(given, spec.record_keys())
    if kind is InputKind.TENSOR:
        arrays = [_tensor_value(row, spec, given, i) for i, row in enumerate(given.rows)]
        return _cast(np.stack(arrays), spec, spec.name)
    return _records_batch(given, spec)


def example_record(spec: InputSpec) -> str:
    """A JSON record this input takes, for messages: its first features with a plausible value."""
    parts = []
    for key in spec.record_keys()[:3]:
        feature = next((f for f in spec.features() if f.name == key), None)
        value = ("0.0" if feature is None or not feature.categorical_kind else f'"{feature.vocabulary[0]}"')
        parts.append(f'"{key}": {value}' if feature is not None else f'"{key}": [...]')
    more = ", ..." if len(spec.record_keys()) > 3 else ""
    return "{" + ", ".join(parts) + more + "}"


def _names(names: tuple[str, ...] | list[str]) -> str:
    shown = ", ".join(names[:SHOWN_NAMES])
    return shown + (f" and {len(names) - SHOWN_NAMES} more" if len(names) > SHOWN_NAMES else "")


def _check_keys(given: Records, keys: tuple[str, ...]) -> None:
    """Every row names exactly ``keys``: an unknown or a missing one is refused, by name."""
    known = set(keys)
    for i, row in enumerate(given.rows):
        unknown = [key for key in row if key not in known]
        if unknown:
            raise InvalidInputError(f"{given.where(i)}: unknown feature {unknown[0]!r}; the model takes "
                                    f"{_names(keys)}.", field=str(unknown[0]))
        missing = [key for key in keys if key not in row]
        if missing:
            raise InvalidInputError(f"{given.where(i)}: feature {missing[0]!r} is missing; the model takes "
                                    f"{_names(keys)}.", field=missing[0])


def _records_batch(given: Records, spec: InputSpec) -> np.ndarray:
    """A table's (or several inputs') packed batch from records whose keys were checked."""
    batch = np.zeros((len(given), spec.size), dtype=np.float64)
    for part, start, _stop in spec.slices():
        if part.table is None:  # a tensor among several inputs: each row names it
            values = np.stack([_tensor_value(row, part, given, i) for i, row in enumerate(given.rows)])
            batch[:, start:start + part.size] = _cast(values, part, part.name).reshape(len(given), -1)
            continue
        for feature, first, stop in part.table.columns():
            batch[:, start + first:start + stop] = _feature_columns(given, feature)
    return _cast(batch, spec, spec.name if spec.kind is not InputKind.SEVERAL else "input")


def _feature_columns(given: Records, feature: Feature) -> np.ndarray:
    """One feature's columns over every row: ``[rows, feature.width]``."""
    out = np.zeros((len(given), feature.width), dtype=np.float64)
    if feature.categorical_kind:
        index = {category: j for j, category in enumerate(feature.vocabulary)}
        for i, row in enumerate(given.rows):
            j = index.get(_category(row[feature.name], feature, given, i), -1)
            if j < 0:
                raise InvalidInputError(f"{given.where(i)}: feature {feature.name!r} is {row[feature.name]!r}, not "
                                        f"one of its categories: {_names(list(feature.vocabulary))}.",
                                        field=feature.name)
            if feature.encoding is Encoding.ONEHOT:
                out[i, j] = 1.0
            else:
                out[i, 0] = j
        return out
    for i, row in enumerate(given.rows):
        out[i, 0] = _number(row[feature.name], feature, given, i)
    if feature.normalised:
        assert feature.mean is not None and feature.std is not None  # normalised says both are there
        out = (out - feature.mean) / feature.std
    return out


def _number(value: Any, feature: Feature, given: Records, i: int) -> float:
    """A numeric feature's value: a JSON number, or a CSV cell's text read as one; finite."""
    where = given.where(i)
    if given.text and isinstance(value, str):
        text = value.strip()
        if not text:
            raise InvalidInputError(f"{where}: feature {feature.name!r} is empty; it takes a number.",
                                    field=feature.name)
        try:
            number = float(text)
        except ValueError:
            raise InvalidInputError(f"{where}: feature {feature.name!r} is {text!r}, not a number.",
                                    field=feature.name) from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    else:
        raise InvalidInputError(f"{where}: feature {feature.name!r} must be a number, not {_what(value)}.",
                                field=feature.name)
    if not math.isfinite(number):
        raise InvalidInputError(f"{where}: feature {feature.name!r} is {number}; it takes a finite number.",
                                field=feature.name)
    return number


def _category(value: Any, feature: Feature, given: Records, i: int) -> str:
    """A categorical feature's value as the text its vocabulary lists (a whole JSON number reads as its digits)."""
    if isinstance(value, str):
        return value.strip() if given.text else value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise InvalidInputError(f"{given.where(i)}: feature {feature.name!r} must be one of its categories "
                            f"({_names(list(feature.vocabulary))}), not {_what(value)}.", field=feature.name)


def _tensor_value(row: Mapping[str, Any], part: InputSpec, given: Records, i: int) -> np.ndarray:
    """One row's value of a tensor input named in a record: an array of the input's shape."""
    where = given.where(i)
    value = row[part.name]
    if given.text:
        raise InvalidInputError(f"{where}: input {part.name!r} is a tensor of shape {list(part.shape)}; a CSV "
                                "cannot hold it: send JSON.", field=part.name)
    if isinstance(value, bool) or not isinstance(value, (int, float, list)):
        raise InvalidInputError(f"{where}: input {part.name!r} must be numbers of shape {list(part.shape)}, not "
                                f"{_what(value)}.", field=part.name)
    try:
        array = np.asarray(value)
    except (ValueError, OverflowError):
        array = np.asarray(0, dtype=object)
    if array.dtype.kind not in "iuf":
        raise InvalidInputError(f"{where}: input {part.name!r} must be a rectangular list of numbers of shape "
                                f"{list(part.shape)}.", field=part.name)
    if array.shape != part.shape:
        raise InvalidInputError(f"{where}: input {part.name!r} has shape {list(array.shape)}; it takes "
                                f"{list(part.shape)}.", field=part.name)
    return array


def _batched(array: np.ndarray, spec: InputSpec, what: str) -> np.ndarray:
    """Numbers of the input's shape (one row, given a batch axis) or ``[n, *shape]``; 400 otherwise."""
    if array.shape == spec.shape:
        return array[None]
    if array.ndim == len(spec.shape) + 1 and array.shape[1:] == spec.shape:
        if not len(array):
            raise InvalidInputError(f"{what} is an empty batch.", field=spec.name)
        return array
    shape = ", ".join(map(str, spec.shape))
    raise InvalidInputError(f"{what} has shape {list(array.shape)}; input {spec.name!r} takes [{shape}] (one) or "
                            f"[batch, {shape}].", field=spec.name)


def _cast(array: np.ndarray, spec: InputSpec, name: str) -> np.ndarray:
    """``array`` in the input's dtype, refused when a value does not survive the cast (NaN, too large)."""
    if array.dtype.kind not in "biuf" or array.dtype.kind == "b":
        raise InvalidInputError(f"Input {name!r} takes numbers, not {array.dtype}.", field=name)
    dtype = np.dtype(spec.dtype)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInputError(f"Input {name!r} holds NaN or infinite values.", field=name)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise InvalidInputError(f"Input {name!r} holds values outside {dtype}'s range.", field=name)
        if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
            raise InvalidInputError(f"Input {name!r} takes whole numbers ({dtype}).", field=name)
    with np.errstate(over="ignore", invalid="ignore"):
        cast = array.astype(dtype)
    if cast.dtype.kind == "f" and not np.isfinite(cast).all():
        raise InvalidInputError(f"Input {name!r} holds values too large for {dtype}.", field=name)
    return cast


def _what(value: Any) -> str:
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, bool):
        return str(value).lower()
    return {type(None): "null", dict: "an object", list: "a list"}.get(type(value), type(value).__name__)
