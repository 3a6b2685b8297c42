"""verify: open an archive, check everything, and load each member with Keras to prove it fits.

Keras is imported inside :func:`verify` only (through ``kerasload``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from yyai_kernel.archive.manifest import Limits, Manifest
from yyai_kernel.archive.reader import open_archive
from yyai_kernel.errors import (
    ManifestError,
    ModelLoadError,
)
from yyai_kernel.types.specs import InputKind, InputSpec, OutputSpec


def input_names(model: Any) -> list[str]:
    """The names of a Keras model's inputs, in its order (what a part of an input of kind
    ``several`` names)."""
    return [str(getattr(t, "name", "") or "").split(":")[0] for t in getattr(model, "inputs", None) or []]


@dataclass
class VerifyReport:
    """The result of `verify`: the manifest and what each member turned out to be."""

    manifest: Manifest
    members: list[dict[str, Any]] = field(default_factory=list)
    ok: bool = True


def check_model_fits(model: Any, member_name: str, input_spec: InputSpec, output_spec: OutputSpec) -> None:
    """Refuse a loaded model whose inputs or output do not match the manifest specs.

    A model with several inputs matches an input of kind ``several`` whose parts carry its
    inputs' names (in any order: the runtime passes them by name); each part's shape (a
    table's: its columns) must be the shape the model fixes.
    """
    inputs, outputs = list(getattr(model, "inputs", None) or []), list(getattr(model, "outputs", None) or [])
    if len(outputs) != 1:
        raise ModelLoadError(f"member {member_name!r} has {len(outputs)} outputs; yyai serves models with one output")
    several = input_spec.kind is InputKind.SEVERAL
    parts = input_spec.inputs()
    if len(inputs) != len(parts):
        said = f"input.inputs lists {len(parts)}" if several else "input describes one"
        raise ManifestError(
            f"member {member_name!r} has {len(inputs)} inputs ({', '.join(map(repr, input_names(model)))}) but "
            f"{said}; a model with several inputs needs an input of kind 'several' naming each",
            field="input.inputs" if several else "input")
    pairs = [(input_spec, inputs[0], "input")] if not several else []
    names = input_names(model)
    for i, part in enumerate(parts if several else ()):
        if part.name not in names:
            raise ManifestError(f"member {member_name!r} has no input named {part.name!r}; its inputs are "
                                f"{', '.join(map(repr, names))}", field=f"input.inputs[{i}].name")
        pairs.append((part, inputs[names.index(part.name)], f"input.inputs[{i}]"))
    for part, tensor, where in pairs:
        got = tuple(tensor.shape)[1:]
        want = part.shape
        if len(got) != len(want) or any(g is not None and g != w for g, w in zip(got, want)):
            if part.table is not None:
                raise ManifestError(f"member {member_name!r} expects input shape {got} but the features of {where} "
                                    f"make {list(want)} columns", field=f"{where}.features")
            raise ManifestError(f"member {member_name!r} expects input shape {got} but {where}.shape is {list(want)}",
                                field=f"{where}.shape")
    key = "labels" if output_spec.classification else "names"
    width = tuple(outputs[0].shape)[-1]
    if len(outputs[0].shape) != 2 or width != output_spec.width:
        raise ManifestError(
            f"member {member_name!r} outputs shape {tuple(outputs[0].shape)} but output.{key} has "
            f"{output_spec.width} entries",
            field=f"output.{key}",
        )


def verify(path: str | os.PathLike[str], *, trusted: bool = False, load_models: bool = True,
           limits: Limits | None = None) -> VerifyReport:
    """Open an archive, check everything, and (load_models) load each member with Keras.

    Returns a VerifyReport whose members are {name, path, format, keras_version, params}
    (format/keras_version/params are None when load_models is False). Raises the typed
    error of the first problem found; `trusted` allows Lambda layers with Python code.
    """
    with open_archive(path, limits) as opened:
        manifest = opened.manifest
        members = []
        for m in manifest.members:
            row: dict[str, Any] = {"name": m.name, "path": m.path, "format": None, "keras_version": m.keras_version,
                                   "params": None}
            if load_models:
                from yyai_kernel.archive import kerasload

                file = opened.member_path(m)
                info = kerasload.member_info(file)
                model = kerasload.load_member(file, trusted=trusted, model_name=manifest.name)
                check_model_fits(model, m.name, manifest.input, manifest.output)
                row.update(format=info["format"], keras_version=info["keras_version"] or row["keras_version"],
                           params=int(model.count_params()))
                del model
            members.append(row)
        return VerifyReport(manifest=manifest, members=members, ok=True)

