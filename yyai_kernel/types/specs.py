"""The manifest's specs: what a version takes, what it gives, what it is made of.

:class:`InputSpec` (with its :class:`ImageSpec` or :class:`TableSpec` part), :class:`OutputSpec`,
:class:`MemberSpec` and :class:`FileSpec` are MANIFEST.json's ``input``, ``output``, ``members[]``
and ``files[]`` as frozen dataclasses; :class:`InputKind`, :class:`FeatureKind`, :class:`Encoding`,
:class:`OutputKind`, :class:`Combine`, :class:`FileRole`, :class:`Color` and :class:`Layout` are
its closed vocabularies. Every default of the format (name "input", dtype "float32", colour
"rgb", scale 1.0, offset 0.0, resize "stretch", channels last, rounding 4, combine "mean") is a
field default here and nowhere else.

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

The kinds of input (:class:`InputKind`). An input is a named tensor (``name``, ``shape``
without the batch axis, ``dtype``), and its kind says what a person sends for it:

- ``image`` (the input's JSON has no ``kind``, as in every archive before tables): image
  bytes, which ``image`` (an :class:`ImageSpec`) says how to turn into the tensor;
- ``tensor``: the numbers themselves (a JSON array, a ``.npy``);
- ``table``: named features in order (``table``, a :class:`TableSpec`), each numeric (with
  an optional ``(value - mean) / std``) or categorical (its vocabulary, as an index or
  one-hot); the tensor is ``[width]``, one column per number;
- ``several``: a Keras model with more than one ``Input``: ``parts`` are its inputs in the
  model's order, each a named tensor or table. One request carries them all (a record holds
  every table feature and each tensor input by its name), and through batching and the
  runtime they travel as one *packed* array ``[batch, sum of the parts' sizes]`` in a dtype
  that holds every part exactly (:meth:`InputSpec.slices` says where each part lies); the
  runtime unpacks it for the model. An image cannot be one of several inputs.

Code that turns images into tensors asks :meth:`InputSpec.image_grid` and refuses the rest.

Everything here is immutable, so it needs no lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from math import prod
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


class InputKind(StrEnum):
    """What a person sends for an input: image bytes, numbers, named features, or several of the last two."""

    IMAGE = "image"
    TENSOR = "tensor"
    TABLE = "table"
    SEVERAL = "several"


class FeatureKind(StrEnum):
    """What one feature of a table holds: a number, or one of a closed set of categories."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


class Encoding(StrEnum):
    """How a categorical feature reaches the model: its category's index (one column), or one-hot."""

    INDEX = "index"
    ONEHOT = "onehot"


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
_INPUT_OPTIONAL = ("kind", "name", "layout", "resize", "scale", "offset")  # the input keys a manifest may leave out
_PACK_WRITES = frozenset({"name", "resize", "scale", "offset"})  # ... of which pack always writes these
_NUMBERS_WRITE = frozenset({"name", "dtype"})  # what pack writes of a tensor or a table input


@dataclass(frozen=True)
class Feature(JsonView):
    """One feature of a table, as the model takes it.

    Numeric: one column, ``(value - mean) / std`` when the manifest records both (the
    normalisation the model was trained with), else the value as it is. Categorical: one of
    ``vocabulary``, sent as its index in the vocabulary (one column) or one-hot (one column
    per category), as ``encoding`` says.
    """

    name: str
    kind: FeatureKind = FeatureKind.NUMERIC
    mean: float | None = None
    std: float | None = None
    vocabulary: tuple[str, ...] = ()
    encoding: Encoding = Encoding.ONEHOT

    @classmethod
    def numeric(cls, name: str, mean: float | None = None, std: float | None = None) -> Feature:
        return cls(name, FeatureKind.NUMERIC, None if mean is None else float(mean),
                   None if std is None else float(std))

    @classmethod
    def categorical(cls, name: str, vocabulary: Iterable[object],
                    encoding: Encoding | str = Encoding.ONEHOT) -> Feature:
        return cls(name, FeatureKind.CATEGORICAL, vocabulary=tuple(str(v) for v in vocabulary),
                   encoding=Encoding(encoding))

    @property
    def categorical_kind(self) -> bool:
        return self.kind is FeatureKind.CATEGORICAL

    @property
    def width(self) -> int:
        """The columns it takes in the model's tensor."""
        return len(self.vocabulary) if self.categorical_kind and self.encoding is Encoding.ONEHOT else 1

    @property
    def normalised(self) -> bool:
        return self.mean is not None and self.std is not None

    def describe(self) -> str:
        """The feature in a few words: "numeric, (x - 13) / 0.81", "categorical (one-hot): free, pro"."""
        if self.categorical_kind:
            shown = ", ".join(self.vocabulary[:8]) + (", ..." if len(self.vocabulary) > 8 else "")
            return f"categorical ({self.encoding.value}): {shown}"
        if self.normalised:
            return f"numeric, (x - {self.mean:.6g}) / {self.std:.6g}"
        return "numeric"

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Feature:
        if FeatureKind(d["kind"]) is FeatureKind.CATEGORICAL:
            return cls.categorical(d["name"], d["vocabulary"], d["encoding"])
        return cls.numeric(d["name"], d.get("mean"), d.get("std"))

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, "kind": self.kind.value}
        if self.categorical_kind:
            body.update({"vocabulary": list(self.vocabulary), "encoding": self.encoding.value})
        else:
            body.update({key: value for key, value in (("mean", self.mean), ("std", self.std)) if value is not None})
        return body


@dataclass(frozen=True)
class TableSpec:
    """How named features become the model's input: each feature's columns, in order."""

    features: tuple[Feature, ...]

    @property
    def width(self) -> int:
        return sum(f.width for f in self.features)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def columns(self) -> tuple[tuple[Feature, int, int], ...]:
        """Each feature with the [start, stop) of its columns."""
        spans, start = [], 0
        for feature in self.features:
            spans.append((feature, start, start + feature.width))
            start += feature.width
        return tuple(spans)


@dataclass(frozen=True)
class InputSpec(JsonView):
    """The manifest's ``input``: one named tensor of ``shape`` (without the batch axis) and ``dtype``.

    Its kind (:attr:`kind`, see the module docstring) follows from its parts: ``image`` says
    how an image becomes the tensor, ``table`` how named features do, ``parts`` are the
    inputs of a model with several (``shape`` and ``dtype`` are then the packed array's);
    a tensor input has none of them. Build the last three with :meth:`tensor`,
    :meth:`tabular` and :meth:`several`. ``stated`` names the optional keys its JSON held;
    it takes no part in equality.
    """

    shape: tuple[int, ...]
    dtype: str = "float32"
    name: str = "input"
    image: ImageSpec | None = field(default_factory=ImageSpec)
    table: TableSpec | None = None
    parts: tuple[InputSpec, ...] = ()
    stated: frozenset[str] = field(default=_PACK_WRITES, compare=False, repr=False)

    @classmethod
    def tensor(cls, shape: Iterable[int], dtype: str = "float32", name: str = "input") -> InputSpec:
        """A tensor input: the numbers a client sends are the model's input as they are."""
        return cls(tuple(int(n) for n in shape), dtype, name, None, stated=_NUMBERS_WRITE)

    @classmethod
    def tabular(cls, features: Iterable[Feature], dtype: str = "float32", name: str = "input") -> InputSpec:
        """A table input over ``features``, in the order of the model's columns."""
        table = TableSpec(tuple(features))
        return cls((table.width,), dtype, name, None, table, stated=_NUMBERS_WRITE)

    @classmethod
    def several(cls, parts: Iterable[InputSpec]) -> InputSpec:
        """The inputs of a model with several ``Input`` s, in its order: packed into one array of a
        dtype that holds each part exactly (theirs when they share one, else float64)."""
        parts = tuple(parts)
        dtypes = {part.dtype for part in parts}
        dtype = dtypes.pop() if len(dtypes) == 1 else "float64"
        return cls((sum(part.size for part in parts),), dtype, image=None, parts=parts, stated=frozenset())

    @property
    def kind(self) -> InputKind:
        if self.parts:
            return InputKind.SEVERAL
        if self.table is not None:
            return InputKind.TABLE
        return InputKind.IMAGE if self.image is not None else InputKind.TENSOR

    @property
    def size(self) -> int:
        """How many numbers one row of this input holds."""
        return prod(self.shape)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InputSpec:
        """An input spec from its JSON: its ``kind`` (none: an image) says which keys it has."""
        kind = InputKind(d.get("kind", InputKind.IMAGE))
        name = d.get("name", _INPUT_DEFAULTS["name"])
        if kind is InputKind.SEVERAL:
            return cls.several(cls.from_json(part) for part in d["inputs"])
        if kind is InputKind.TENSOR:
            return replace(cls.tensor(d["shape"], d["dtype"], name), stated=_stated(d, ("name",)))
        if kind is InputKind.TABLE:
            features = (Feature.from_json(f) for f in d["features"])
            return replace(cls.tabular(features, d.get("dtype", _INPUT_DEFAULTS["dtype"]), name),
                           stated=_stated(d, ("name", "dtype")))
        image = ImageSpec(Color(d.get("color", _IMAGE_DEFAULTS["color"])),
                          Layout(d.get("layout", _IMAGE_DEFAULTS["layout"])),
                          *(d.get(key, _IMAGE_DEFAULTS[key]) for key in ("resize", "scale", "offset")))
        return cls(tuple(int(n) for n in d["shape"]), d.get("dtype", _INPUT_DEFAULTS["dtype"]),
                   name, image, stated=_stated(d, _INPUT_OPTIONAL))

    def to_json(self) -> dict[str, Any]:
        """The manifest's form. An image: name, resize, scale, offset (when stated), shape, dtype,
        color, layout. A tensor: kind, name, shape, dtype; a table: kind, name, dtype, features;
        several: kind and the inputs."""
        kind = self.kind
        if kind is InputKind.SEVERAL:
            return {"kind": kind.value, "inputs": [part.to_json() for part in self.parts]}
        body: dict[str, Any] = {"kind": kind.value} if kind is not InputKind.IMAGE or "kind" in self.stated else {}
        _written(body, {"name": self.name}, self.stated, _INPUT_DEFAULTS)
        if self.table is not None:
            _written(body, {"dtype": self.dtype}, self.stated, _INPUT_DEFAULTS)
            body["features"] = [feature.to_json() for feature in self.table.features]
            return body
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
        """This spec stating what ``pack`` writes (an image's name, resize, scale and offset; a tensor's or
        a table's name and dtype): the form ``pack`` writes and a description shows."""
        if self.parts:
            return replace(self, parts=tuple(part.filled() for part in self.parts))
        return replace(self, stated=self.stated | (_PACK_WRITES if self.image is not None else _NUMBERS_WRITE))

    def inputs(self) -> tuple[InputSpec, ...]:
        """The model's inputs, in its order: the parts of several, else this one."""
        return self.parts or (self,)

    def slices(self) -> tuple[tuple[InputSpec, int, int], ...]:
        """Each input with the [start, stop) of its numbers in a packed row (one input: the whole row)."""
        if not self.parts:
            return ((self, 0, self.size),)
        spans, start = [], 0
        for part in self.parts:
            spans.append((part, start, start + part.size))
            start += part.size
        return tuple(spans)

    def features(self) -> tuple[Feature, ...]:
        """Every table feature this input takes, in order, across its parts."""
        return tuple(f for part in self.inputs() if part.table is not None for f in part.table.features)

    def record_keys(self) -> tuple[str, ...]:
        """The keys a record (a JSON object, a CSV header) holds for this input: every table
        feature and every tensor input by name."""
        keys: list[str] = []
        for part in self.inputs():
            keys.extend(part.table.names if part.table is not None else (part.name,))
        return tuple(keys)

    def image_grid(self) -> tuple[int, int, int] | None:
        """(height, width, channels) of the image this input takes, or None when it is not an image.

        An image input has a 2-D shape (one channel) or a 3-D one whose channel axis ``layout`` places.
        """
        if self.image is None or self.kind is not InputKind.IMAGE or len(self.shape) not in (2, 3):
            return None
        if len(self.shape) == 2:
            return self.shape[0], self.shape[1], 1
        if self.image.channels_first:
            return self.shape[1], self.shape[2], self.shape[0]
        return self.shape[0], self.shape[1], self.shape[2]

    def preprocessing(self) -> str:
        """How what a person sends becomes the model's input, in one line."""
        tensor = f"shape {list(self.shape)} {self.dtype}"
        kind = self.kind
        if kind is InputKind.SEVERAL:
            return "; ".join(f"{part.name}: {part.preprocessing()}" for part in self.parts)
        if kind is InputKind.TABLE:
            features = self.features()
            numeric = [f for f in features if not f.categorical_kind]
            normalised = sum(f.normalised for f in numeric)
            counts = [f"{len(numeric)} numeric" + (f" ({normalised} normalised)" if normalised else "")]
            if len(numeric) != len(features):
                counts.append(f"{len(features) - len(numeric)} categorical")
            return f"table of {len(features)} features ({', '.join(counts)}), {tensor}"
        image = self.image
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
