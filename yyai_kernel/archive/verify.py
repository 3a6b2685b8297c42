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
from yyai_kernel.types.specs import InputSpec, OutputSpec


@dataclass
class VerifyReport:
    """The result of `verify`: the manifest and what each member turned out to be."""

    manifest: Manifest
    members: list[dict[str, Any]] = field(default_factory=list)
    ok: bool = True


def check_model_fits(model: Any, member_name: str, input_spec: InputSpec, output_spec: OutputSpec) -> None:
    """Refuse a loaded model whose input or output does not match the manifest specs."""
    inputs, outputs = list(getattr(model, "inputs", None) or []), list(getattr(model, "outputs", None) or [])
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelLoadError(
            f"member {member_name!r} has {len(inputs)} inputs and {len(outputs)} outputs; yyai serves "
            "models with exactly one input and one output"
        )
    got = tuple(inputs[0].shape)[1:]
    want = input_spec.shape
    if len(got) != len(want) or any(g is not None and g != w for g, w in zip(got, want)):
        raise ManifestError(
            f"member {member_name!r} expects input shape {got} but input.shape is {list(want)}",
            field="input.shape",
        )
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

