"""pack_model: a `.yyar` archive from Keras models held in memory (a notebook's models).

The Python twin of `yyai archive`: each model is saved as a native `.keras` file into a
private temporary folder, and `archive.pack` does the rest, so a packed model passes
exactly the checks (safe_mode load, input and output shapes, schema) that a packed file
does. The temporary folder is removed whatever happens. Keras is imported by the models'
own `save`, never at import time here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from yyai_kernel.archive import member_name_for, pack
from yyai_kernel.archive.verify import input_names
from yyai_kernel.errors import ManifestError, ModelLoadError
from yyai_kernel.types.specs import (
    Color,
    Combine,
    Feature,
    FileRole,
    InputKind,
    InputSpec,
    Layout,
    OutputSpec,
)


def pack_model(
    model_or_models: Any,
    *,
    name: str,
    version: int,
    input: InputSpec | dict[str, Any] | list[Any],
    labels: Iterable[object] | None = None,
    regression: str | Iterable[object] | None = None,
    rounding: int | None = None,
    out: str | os.PathLike[str],
    description: str = "",
    combine: Combine | str = Combine.MEAN,
    batching: dict[str, Any] | None = None,
    samples: Iterable[str | os.PathLike[str]] = (),
    eval_set: str | os.PathLike[str] | None = None,
    trusted: bool = False,
) -> Path:
    """Write `out/<name>-<version>.yyar` from in-memory Keras models; returns its path.

    `model_or_models` is one model, a list (an ensemble; member names from each model's
    name) or a dict {member name: model}. `input` is the manifest's input spec: an
    :class:`InputSpec`, or its JSON, where `shape` defaults to the first model's input
    shape, `color` to grayscale for one channel, and the rest as the format says. A table
    is ``{"features": [...]}`` (each a :class:`Feature` or its JSON), a tensor
    ``{"kind": "tensor"}``; a model with several inputs takes a list of such specs, one per
    input in the model's order (their names read from the model). Give `labels`
    (classification) or `regression` (output names) and not both. `samples` are files
    stored under samples/ (images, or a CSV of rows for a table), `eval_set` a labelled set
    (a zip, or a CSV for a table) stored as eval/<file name> (role eval). Raises
    ManifestError or ModelLoadError, as `archive.pack` does.

    Examples:
        pack_model(model, name="digits", version=3, input={"scale": 1 / 255},
                   labels=[str(i) for i in range(10)], out="model_archives")

        pack_model(model, name="churn", version=1, labels=["stays", "leaves"], out="model_archives",
                   input={"features": [Feature.numeric("age", mean=41.2, std=12.5),
                                       Feature.categorical("plan", ["free", "pro"], "onehot")]})
    """
    models = _named_models(model_or_models)
    output = _output_spec(labels, regression, rounding)
    input_spec = fill_input_spec(input, next(iter(models.values())))
    extra = [(Path(p), f"samples/{Path(p).name}", FileRole.SAMPLE) for p in samples]
    if eval_set is not None:
        extra.append((Path(eval_set), f"eval/{Path(eval_set).name}", FileRole.EVAL))
    work = Path(tempfile.mkdtemp(prefix="yyai-pack-model-"))
    try:
        files = []
        for member, model in models.items():
            path = work / f"{member}.keras"
            try:
                model.save(path)
            except Exception as error:  # Keras raises many types; the caller needs one
                raise ModelLoadError(f"model {member!r} could not be saved as .keras: {error}") from error
            files.append(path)
        return pack(name=name, version=version, models=files, input_spec=input_spec, output_spec=output,
                    description=description, combine=combine, batching=batching, extra_files=extra,
                    out_dir=Path(out), trusted=trusted)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _named_models(model_or_models: Any) -> dict[str, Any]:
    """{member name: model}, names made valid and unique."""
    if isinstance(model_or_models, dict):
        pairs = list(model_or_models.items())
    elif isinstance(model_or_models, (list, tuple)):
        pairs = [(getattr(m, "name", "model"), m) for m in model_or_models]
    else:
        pairs = [(getattr(model_or_models, "name", "model"), model_or_models)]
    if not pairs:
        raise ManifestError("pack_model needs at least one model", field="members")
    named: dict[str, Any] = {}
    for raw, model in pairs:
        base = member_name_for(str(raw))
        member, k = base, 2
        while member in named:
            member, k = f"{base}_{k}", k + 1
        named[member] = model
    return named


def _output_spec(labels: Iterable[object] | None, regression: str | Iterable[object] | None,
                 rounding: int | None) -> OutputSpec:
    if (labels is None) == (regression is None):
        raise ManifestError("give labels (classification) or regression (output names), not both or neither",
                            field="output")
    if labels is not None:
        return OutputSpec.classes(labels)
    assert regression is not None  # checked above: exactly one of the two
    return OutputSpec.values([regression] if isinstance(regression, str) else regression, rounding)


def model_input_shape(model: Any, index: int = 0) -> list[int] | None:
    """An input's shape (the first, by default) without the batch axis, or None when the model does not fix it.

    The one rule for reading an input shape off a Keras model: ``pack_model`` fills
    ``input['shape']`` with it, and ``yyai archive`` its ``--input-shape``.
    """
    inputs = getattr(model, "inputs", None) or ()
    shape = tuple(inputs[index].shape)[1:] if index < len(inputs) else ()
    if not shape or any(n is None for n in shape):
        return None
    return [int(n) for n in shape]


def default_color(shape: Sequence[int], layout: str | None = None) -> str | None:
    """The colour an input of ``shape`` gets when none is said: grayscale for one channel (or
    no channel axis), None for more, where the channel order must be said (rgb or bgr)."""
    channels = shape[0 if layout == Layout.CHANNELS_FIRST else -1] if len(shape) == 3 else 1
    return Color.GRAYSCALE.value if channels == 1 else None


def fill_input_spec(spec: InputSpec | dict[str, Any] | list[Any], model: Any) -> InputSpec | dict[str, Any]:
    """The input spec's JSON with what the model says filled in: the shape (of an image or a
    tensor), the colour of a one-channel image, and for several inputs (a list, one spec per
    input in the model's order) each input's name.

    The caller's JSON is read here as given and stays a dict, so that ``pack`` checks it against
    the schema and names a bad field. ``pack_model`` and ``yyai archive --features`` use it.
    """
    if isinstance(spec, dict) and spec.get("kind") == InputKind.SEVERAL:
        spec = list(spec.get("inputs") or ())
    if isinstance(spec, InputSpec):
        return spec
    names = input_names(model)
    if isinstance(spec, (list, tuple)):
        if len(spec) != len(names):
            raise ManifestError(f"the model has {len(names)} inputs ({', '.join(map(repr, names))}) but input lists "
                                f"{len(spec)}; give one spec per input, in the model's order", field="input.inputs")
        parts = []
        for i, part in enumerate(spec):
            if isinstance(part, InputSpec):
                parts.append(part.to_json())
                continue
            name = part.get("name", names[i])
            parts.append(_one_input({**part, "name": name}, model, names.index(name) if name in names else i))
        return {"kind": InputKind.SEVERAL.value, "inputs": parts}
    if len(names) > 1 and spec.get("kind") != InputKind.SEVERAL:
        raise ManifestError(f"the model has {len(names)} inputs ({', '.join(map(repr, names))}): give input as a "
                            "list, one spec per input in the model's order", field="input")
    return _one_input(dict(spec), model, 0)


def _one_input(spec: dict[str, Any], model: Any, index: int) -> dict[str, Any]:
    """One input's JSON, its kind guessed from its keys (``features``: a table; ``kind`` says
    otherwise), the shape read from the model's ``index``-th input."""
    if "features" in spec:
        spec.setdefault("kind", InputKind.TABLE.value)
    kind = InputKind(spec.get("kind", InputKind.IMAGE))
    if kind is InputKind.TABLE:
        spec["features"] = [f.to_json() if isinstance(f, Feature) else f for f in spec.get("features", ())]
        return spec
    where = f"input.inputs[{index}]" if len(input_names(model)) > 1 else "input"
    if "shape" not in spec:
        shape = model_input_shape(model, index)
        if shape is None:
            found = tuple(model.inputs[index].shape)[1:] if getattr(model, "inputs", None) else ()
            raise ManifestError(f"the model's input shape {found} is not fixed; give {where}['shape']",
                                field=f"{where}.shape")
        spec["shape"] = shape
    if kind is InputKind.IMAGE and "color" not in spec:
        color = default_color(spec["shape"], spec.get("layout"))
        if color is None:
            raise ManifestError("say which channel order the model expects: input['color'] = 'rgb' or 'bgr'",
                                field="input.color")
        spec["color"] = color
    spec.setdefault("dtype", InputSpec.dtype)
    return spec
