"""The .yyar manifest: its format constants, the schema check, the rules JSON Schema cannot say.

A `.yyar` file is a zip holding `MANIFEST.json` at its root, one or more Keras members
under `models/` (`.h5` or `.keras`) and any other file the manifest lists (labels,
sample inputs). :class:`Manifest` is a validated MANIFEST.json: its parts are typed specs
(``types/specs.py``, where the format's defaults live) and ``.data`` is the dict as
written. Reading the zip is ``reader.py``'s, verifying it ``verify.py``'s and writing one
``pack.py``'s.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, cast

from yyai_kernel.errors import (
    FormatVersionError,
    ManifestError,
    UnsafeMemberError,
)
from yyai_kernel.types.specs import (
    Color,
    Combine,
    FileSpec,
    InputKind,
    InputSpec,
    MemberSpec,
    OutputSpec,
)

if TYPE_CHECKING:
    import jsonschema

FORMAT = "yyar"
FORMAT_VERSION = 1
MANIFEST_NAME = "MANIFEST.json"
SUFFIX = ".yyar"


MiB = 1024 * 1024


@dataclass
class Limits:
    """Bounds applied while reading an archive; the defaults suit any sane model archive.

    `max_ratio` (uncompressed / compressed size) is only judged for entries larger than
    `ratio_min_bytes` uncompressed, since tiny files compress arbitrarily well.
    """

    max_members: int = 64
    max_member_bytes: int = 512 * MiB
    max_total_bytes: int = 1024 * MiB
    max_ratio: float = 200.0
    max_manifest_bytes: int = 1 * MiB
    ratio_min_bytes: int = 1 * MiB


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema

    text = resources.files("yyai_kernel.archive").joinpath("schemas/manifest.schema.json").read_text("utf-8")
    return jsonschema.Draft202012Validator(json.loads(text))


def _field_of(error: jsonschema.ValidationError) -> str:
    """The JSON path of a schema error, e.g. "input.shape" or "members[0].sha256"."""
    parts = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [k for k in cast(list[str], error.validator_value) if k not in error.instance]
        parts += missing[:1]
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = cast(dict[str, Any], error.schema).get("properties", {})
        extra = [k for k in error.instance if k not in allowed]
        parts += extra[:1]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(root)"


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Manifest:
    """A validated MANIFEST.json: typed specs of its parts, and `.data`, the dict as written.

    Build it with :meth:`from_dict`, which checks the dict first.
    """

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.input: InputSpec = InputSpec.from_json(data["input"]).filled()
        self.output: OutputSpec = OutputSpec.from_json(data["output"])
        self.members: tuple[MemberSpec, ...] = tuple(MemberSpec.from_json(m) for m in data["members"])
        self.files: tuple[FileSpec, ...] = tuple(FileSpec.from_json(f) for f in data.get("files", ()))
        self.combine: Combine = Combine(data.get("combine", Combine.MEAN))

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Validate `d` against the schema and the rules JSON Schema cannot say.

        Raises FormatVersionError for an unknown format or format_version, and
        ManifestError (with `.field` set to the JSON path at fault) for anything else.
        """
        if not isinstance(d, dict):
            raise ManifestError("MANIFEST.json must hold a JSON object")
        if d.get("format") != FORMAT:
            raise FormatVersionError(
                f"format {d.get('format')!r} is not a yyai archive format (expected {FORMAT!r})",
                field="format",
            )
        if type(d.get("format_version")) is not int or d["format_version"] != FORMAT_VERSION:
            raise FormatVersionError(
                f"format_version {d.get('format_version')!r} is not supported: this yyai reads "
                f"format_version {FORMAT_VERSION}; upgrade yyai or re-pack the archive",
                field="format_version",
            )
        from jsonschema.exceptions import best_match

        err = best_match(_validator().iter_errors(d))
        if err is not None:
            where = _field_of(err)
            raise ManifestError(f"invalid manifest: {where}: {_short(err.message)}", field=where)
        d = copy.deepcopy(d)
        d["version"] = int(d["version"])
        for part in d["input"].get("inputs") or [d["input"]]:
            if "shape" in part:
                part["shape"] = [int(n) for n in part["shape"]]
        manifest = cls(d)
        _check_rules(manifest)
        return manifest

    @property
    def name(self) -> str:
        return cast(str, self.data["name"])

    @property
    def version(self) -> int:
        return cast(int, self.data["version"])

    @property
    def description(self) -> str:
        return cast(str, self.data.get("description", ""))

    @property
    def created(self) -> str | None:
        return self.data.get("created")

    @property
    def batching(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.data.get("batching", {}))

    def entries(self) -> tuple[MemberSpec | FileSpec, ...]:
        """Every file the archive must hold besides the manifest: members, then files."""
        return self.members + self.files

    def to_json(self) -> str:
        """The manifest as written into an archive."""
        return json.dumps(self.data, indent=2, sort_keys=False) + "\n"

    def __repr__(self) -> str:
        return f"Manifest({self.name!r}, version={self.version})"


def _check_rules(m: Manifest) -> None:
    if ".." in m.name:
        raise ManifestError(f"invalid manifest: name: {m.name!r} must not contain '..'", field="name")
    seen_names: set[str] = set()
    for i, member in enumerate(m.members):
        if member.name in seen_names:
            where = f"members[{i}].name"
            raise ManifestError(f"invalid manifest: {where}: member name {member.name!r} is used twice", field=where)
        seen_names.add(member.name)
    seen_paths: set[str] = set()
    groups: tuple[tuple[str, tuple[MemberSpec | FileSpec, ...]], ...] = (("members", m.members), ("files", m.files))
    for key, entries in groups:
        for i, entry in enumerate(entries):
            where = f"{key}[{i}].path"
            path = entry.path
            if ".." in path.split("/") or path == MANIFEST_NAME:
                raise ManifestError(f"invalid manifest: {where}: {path!r} is not allowed", field=where)
            if path in seen_paths:
                raise ManifestError(f"invalid manifest: {where}: {path!r} is listed twice", field=where)
            seen_paths.add(path)
    _check_channels(m.input)
    _check_inputs(m.input)
    names = m.output.names
    if len(set(names)) != len(names):
        raise ManifestError("invalid manifest: output.names: names must be unique", field="output.names")


def _check_inputs(spec: InputSpec) -> None:
    """Names a record uses are unique (features, and tensor inputs among several); a vocabulary
    lists each category once; a numeric feature has both mean and std or neither, and is
    normalised only in a float table (an integer one would cut the result to whole numbers)."""
    several = spec.kind is InputKind.SEVERAL
    seen: dict[str, str] = {}
    parts: set[str] = set()
    for i, part in enumerate(spec.inputs()):
        where = f"input.inputs[{i}]" if several else "input"
        if part.name in parts:
            raise ManifestError(f"invalid manifest: {where}.name: {part.name!r} names two inputs",
                                field=f"{where}.name")
        parts.add(part.name)
        if part.table is None:
            keys = [(part.name, f"{where}.name")]
        else:
            keys = [(f.name, f"{where}.features[{j}].name") for j, f in enumerate(part.table.features)]
        for key, at in keys:
            if key in seen:
                raise ManifestError(f"invalid manifest: {at}: {key!r} is already the name of {seen[key]}; a record "
                                    "names each feature and tensor input once", field=at)
            seen[key] = "a feature" if part.table is not None else "an input"
        if part.table is None:
            continue
        integer = not part.dtype.startswith("float")
        for j, feature in enumerate(part.table.features):
            at = f"{where}.features[{j}]"
            if len(set(feature.vocabulary)) != len(feature.vocabulary):
                raise ManifestError(f"invalid manifest: {at}.vocabulary: {feature.name!r} lists a category twice",
                                    field=f"{at}.vocabulary")
            if (feature.mean is None) != (feature.std is None):
                missing = "std" if feature.std is None else "mean"
                raise ManifestError(f"invalid manifest: {at}.{missing}: {feature.name!r} is normalised with "
                                    "(value - mean) / std: give both, or neither", field=f"{at}.{missing}")
            if integer and feature.normalised:
                raise ManifestError(f"invalid manifest: {at}.mean: the table's dtype {part.dtype} cannot hold "
                                    f"({feature.name} - mean) / std; use a float dtype", field=f"{at}.mean")


def _check_channels(spec: InputSpec) -> None:
    """An image input's colour must match its channel axis (1 channel for grayscale, else 3)."""
    shape, image = list(spec.shape), spec.image
    if image is None:
        return
    color = image.color.value
    if len(shape) == 3:
        want = image.channels
        if shape[0 if image.channels_first else -1] != want:
            axis = "first" if image.channels_first else "last"
            raise ManifestError(
                f"invalid manifest: input.color: {color!r} needs {want} channel(s) but input.shape is {shape} "
                f"(channels {axis}; input.layout says where the channel axis is)",
                field="input.color",
            )
    elif len(shape) == 2 and image.color is not Color.GRAYSCALE:
        raise ManifestError(
            f"invalid manifest: input.color: a 2-D input shape {shape} must be 'grayscale'", field="input.color"
        )


def _check_name(name: str) -> None:
    """Refuse any zip entry name that could land outside the extraction folder."""
    bad = None
    if not name or "\x00" in name or any(ord(c) < 32 for c in name):
        bad = "has an empty name or control characters"
    elif "\\" in name:
        bad = "contains a backslash"
    elif name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        bad = "is an absolute path"
    else:
        parts = name.rstrip("/").split("/")
        if ".." in parts:
            bad = "climbs out of the archive with '..'"
        elif any(p in ("", ".") for p in parts):
            bad = "has an empty or '.' path component"
    if bad:
        raise UnsafeMemberError(f"unsafe archive member {name!r}: it {bad}; refusing to extract")


