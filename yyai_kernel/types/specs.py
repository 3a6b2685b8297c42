"""The manifest's specs: what a version takes, what it gives, what it is made of.

:class:`InputSpec` (with its :class:`ImageSpec`), :class:`OutputSpec`, :class:`MemberSpec`
and :class:`FileSpec` are MANIFEST.json's ``input``, ``output``, ``members[]`` and
``files[]`` as frozen dataclasses; :class:`OutputKind`, :class:`Combine`, :class:`FileRole`,
:class:`Color` and :class:`Layout` are its closed vocabularies. Every default of the format
(name "input", dtype "float32", colour "rgb", scale 1.0, offset 0.0, resize "stretch",
channels last, rounding 4, combine "mean") is a field default here and nowhere else.

Why in ``types/`` and not in ``archive/``: the archive reads and writes them, but
:class:`~yyai_kernel.types.description.VersionDescription` and
:class:`~yyai_kernel.types.prediction.Prediction` carry them through every layer, and
``types/`` is the bottom layer, which imports no other yyai package. So the specs live here
and ``archive/manifest.py`` builds them from the validated MANIFEST.json.

JSON: ``from_json(d)`` reads a dict the schema has checked (``archive.Manifest``) or a
server's reply (the client); ``to_json()`` writes the manifest's own form back. A spec
remembers which optional keys its JSON stated (``stated``), so a key that was absent stays
absent and ``to_json(from_json(d)) == d``; a spec made in code states what ``pack`` has
always written. The specs read like their JSON too (``spec["shape"]``, see ``JsonView``),
for scripts and notebooks; yyai itself uses the attributes.

Room to grow: an input is a named tensor (``name``, ``shape``, ``dtype``), and an image
input also says how pixels become that tensor (``image``). Other kinds of input (tensors
given as numbers, tables of named features) add their own part beside ``image``, and
:attr:`InputSpec.image` is None for them; code that turns images into tensors asks
:meth:`InputSpec.image_grid` and refuses the rest.

Everything here is immutable, so it needs no lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from yyai_kernel.types.jsonview import JsonView


class OutputKind(StrEnum):
    """What a version's output means: class probabilities, or named real values."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class Combine(StrEnum):
    """How an ensemble's members make one answer: their mean, or each answers alone."""

    MEAN = "mean"
    EACH = "each"


class FileRole(StrEnum):
    """What a file listed in the manifest is for."""

    SAMPLE = "sample"  # an input to try the model on (the dashboard's samples)
    LABELS = "labels"  # the labels file the classification labels came from
    EVAL = "eval"  # a labelled set (a zip) to evaluate the model on
    OTHER = "other"


class Color(StrEnum):
    """The pixels' colour as the model was trained on them."""

    GRAYSCALE = "grayscale"
    RGB = "rgb"
    BGR = "bgr"


class Layout(StrEnum):
    """Where the channel axis of a 3-D image input is."""

    CHANNELS_LAST = "channels_last"
    CHANNELS_FIRST = "channels_first"


DEFAULT_ROUNDING = 4  # decimals of a regression output, unless the manifest says otherwise


def _stated(d: dict[str, Any], optional: tuple[str, ...]) -> frozenset[str]:
    return frozenset(key for key in optional if key in d)


def _written(body: dict[str, Any], optional: dict[str, Any], stated: frozenset[str],
             defaults: dict[str, Any]) -> dict[str, Any]:
    """``body`` plus each optional key that was stated or differs from its default, in ``optional``'s order."""
    body.update({key: value for key, value in optional.items() if key in stated or value != defaults[key]})
    return body


@dataclass(frozen=True)
class ImageSpec:
    """How an image becomes the model's input: colour, channel axis, resize, ``x = pixel * scale + offset``."""

    color: Color = Color.RGB
    layout: Layout = Layout.CHANNELS_LAST
    resize: str = "stretch"  # each axis scaled on its own (the only way today)
    scale: float = 1.0
    offset: float = 0.0

    @property
    def channels(self) -> int:
        """The channels the model's pixels have: 1 for grayscale, else 3."""
        return 1 if self.color is Color.GRAYSCALE else 3

    @property
    def channels_first(self) -> bool:
        return self.layout is Layout.CHANNELS_FIRST


_IMAGE_DEFAULTS = {f.name: f.default for f in fields(ImageSpec)}
_INPUT_OPTIONAL = ("name", "layout", "resize", "scale", "offset")  # the input keys a manifest may leave out
_PACK_WRITES = frozenset({"name", "resize", "scale", "offset"})  # ... of which pack always writes these


@dataclass(frozen=True)
class InputSpec(JsonView):
    """The manifest's ``input``: one named tensor of ``shape`` (without the batch axis) and ``dtype``.

    ``image`` says how an image becomes that tensor (every input is an image input today).
    ``stated`` names the optional keys its JSON held; it takes no part in equality.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    name: str = "input"
    image: ImageSpec | None = field(default_factory=ImageSpec)
    stated: frozenset[str] = field(default=_PACK_WRITES, compare=False, repr=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InputSpec:
        """An input spec from its JSON; every input is an image input today (``color`` says how)."""
        image = ImageSpec(Color(d.get("color", _IMAGE_DEFAULTS["color"])),
                          Layout(d.get("layout", _IMAGE_DEFAULTS["layout"])),
                          *(d.get(key, _IMAGE_DEFAULTS[key]) for key in ("resize", "scale", "offset")))
        return cls(tuple(int(n) for n in d["shape"]), d.get("dtype", _INPUT_DEFAULTS["dtype"]),
                   d.get("name", _INPUT_DEFAULTS["name"]), image, _stated(d, _INPUT_OPTIONAL))

    def to_json(self) -> dict[str, Any]:
        """The manifest's form: name, resize, scale, offset (when stated), shape, dtype, color, layout."""
        body = _written({}, {"name": self.name}, self.stated, _INPUT_DEFAULTS)
        image = self.image
        if image is not None:
            _written(body, {"resize": image.resize, "scale": image.scale, "offset": image.offset},
                     self.stated, _IMAGE_DEFAULTS)
        body.update({"shape": list(self.shape), "dtype": self.dtype})
        if image is not None:
            body["color"] = image.color.value
            _written(body, {"layout": image.layout.value}, self.stated, {"layout": Layout.CHANNELS_LAST.value})
        return body

    def filled(self) -> InputSpec:
        """This spec stating its name, resize, scale and offset: the form ``pack`` writes and a description shows."""
        return replace(self, stated=self.stated | _PACK_WRITES)

    def image_grid(self) -> tuple[int, int, int] | None:
        """(height, width, channels) of the image this input takes, or None when it is not an image.

        An image input has a 2-D shape (one channel) or a 3-D one whose channel axis ``layout`` places.
        """
        if self.image is None or len(self.shape) not in (2, 3):
            return None
        if len(self.shape) == 2:
            return self.shape[0], self.shape[1], 1
        if self.image.channels_first:
            return self.shape[1], self.shape[2], self.shape[0]
        return self.shape[0], self.shape[1], self.shape[2]

    def preprocessing(self) -> str:
        """How image pixels become the model's input, in one line."""
        image, tensor = self.image, f"shape {list(self.shape)} {self.dtype}"
        if image is None:
            return tensor
        return f"x = pixel * {image.scale:g} + {image.offset:g}, {image.color.value}, {tensor}"


_INPUT_DEFAULTS = {f.name: f.default for f in fields(InputSpec)}


@dataclass(frozen=True)
class OutputSpec(JsonView):
    """The manifest's ``output``: class probabilities over ``labels``, or regression values named ``names``.

    ``columns`` holds one name per output column, whichever the kind; ``rounding`` (decimals)
    is the regression outputs' and is written only where the manifest stated it.
    """

    kind: OutputKind
    columns: tuple[str, ...]
    rounding: int = DEFAULT_ROUNDING
    stated: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> OutputSpec:
        kind = OutputKind(d["kind"])
        key = "labels" if kind is OutputKind.CLASSIFICATION else "names"
        return cls(kind, tuple(str(c) for c in d.get(key) or ()), d.get("rounding", DEFAULT_ROUNDING),
                   _stated(d, ("rounding",)))

    @classmethod
    def classes(cls, labels: Iterable[object]) -> OutputSpec:
        return cls(OutputKind.CLASSIFICATION, tuple(str(label) for label in labels))

    @classmethod
    def values(cls, names: Iterable[object], rounding: int | None = None) -> OutputSpec:
        texts = tuple(str(n) for n in names)
        if rounding is None:
            return cls(OutputKind.REGRESSION, texts)
        return cls(OutputKind.REGRESSION, texts, int(rounding), frozenset({"rounding"}))

    def to_json(self) -> dict[str, Any]:
        if self.classification:
            return {"kind": self.kind.value, "labels": list(self.columns)}
        return _written({"kind": self.kind.value, "names": list(self.columns)}, {"rounding": self.rounding},
                        self.stated, {"rounding": DEFAULT_ROUNDING})

    @property
    def classification(self) -> bool:
        return self.kind is OutputKind.CLASSIFICATION

    @property
    def labels(self) -> tuple[str, ...]:
        """The class labels (empty for regression)."""
        return self.columns if self.classification else ()

    @property
    def names(self) -> tuple[str, ...]:
        """The regression output names (empty for classification)."""
        return () if self.classification else self.columns

    @property
    def width(self) -> int:
        """How many numbers each row of output holds."""
        return len(self.columns)


@dataclass(frozen=True)
class MemberSource(JsonView):
    """The file a member was converted from (``yyai archive --convert``), as it was."""

    path: str
    sha256: str
    size: int
    keras_version: str | None = None
    stated: frozenset[str] = field(default=frozenset({"keras_version"}), compare=False, repr=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MemberSource:
        return cls(d["path"], d["sha256"], int(d["size"]), d.get("keras_version"), _stated(d, ("keras_version",)))

    def to_json(self) -> dict[str, Any]:
        return _written({"path": self.path, "sha256": self.sha256, "size": self.size},
                        {"keras_version": self.keras_version}, self.stated, {"keras_version": None})


@dataclass(frozen=True)
class MemberSpec(JsonView):
    """One Keras model of the archive: its name, file (``path`` under models/), checksum and size."""

    name: str
    path: str
    sha256: str
    size: int
    keras_version: str | None = None
    source: MemberSource | None = None
    stated: frozenset[str] = field(default=frozenset({"keras_version"}), compare=False, repr=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MemberSpec:
        source = d.get("source")
        return cls(d["name"], d["path"], d["sha256"], int(d["size"]), d.get("keras_version"),
                   MemberSource.from_json(source) if source is not None else None,
                   _stated(d, ("keras_version",)))

    def to_json(self) -> dict[str, Any]:
        body = _written({"name": self.name, "path": self.path, "sha256": self.sha256, "size": self.size},
                        {"keras_version": self.keras_version}, self.stated, {"keras_version": None})
        if self.source is not None:
            body["source"] = self.source.to_json()
        return body


@dataclass(frozen=True)
class FileSpec(JsonView):
    """One other file the archive holds (a sample input, a labels file, a labelled set) and its role."""

    path: str
    sha256: str
    size: int
    role: FileRole

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FileSpec:
        return cls(d["path"], d["sha256"], int(d["size"]), FileRole(d["role"]))

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size, "role": self.role.value}
