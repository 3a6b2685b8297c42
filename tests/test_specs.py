"""The manifest's typed specs: they read and write the manifest's JSON exactly, hold the format's
defaults in one place, and are what every layer reads (no manifest dict read by string key)."""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from builders import DEMO, INPUT_SPEC, LABELS, pack_models
from conftest import manifest_for

import yyai_kernel
from yyai_kernel.archive import Manifest, read_manifest
from yyai_kernel.errors import InvalidInputError
from yyai_kernel.types import (
    Color,
    Combine,
    ExplainMethod,
    FileRole,
    FileSpec,
    ImageSpec,
    InputSpec,
    Layout,
    MemberSpec,
    OutputKind,
    OutputSpec,
    Prediction,
    ServerStatus,
    StoreProblemKind,
    VersionDescription,
    check_explain,
)

BUNDLED = sorted(DEMO.glob("*.yyar"))


def _round_trip(data: dict, *, packed: bool = True) -> None:
    """Every part of a manifest written back by its spec is the JSON it was read from (and, for a
    manifest that pack wrote, in the same key order)."""
    parts = [(InputSpec, data["input"]), (OutputSpec, data["output"])]
    parts += [(MemberSpec, m) for m in data["members"]] + [(FileSpec, f) for f in data.get("files", ())]
    for spec, part in parts:
        written = spec.from_json(part).to_json()
        assert written == part, spec.__name__
        assert not packed or json.dumps(written) == json.dumps(part), spec.__name__


@pytest.mark.parametrize("path", BUNDLED, ids=[p.name for p in BUNDLED])
def test_every_bundled_archive_round_trips(path):
    data = json.loads(zipfile.ZipFile(path).read("MANIFEST.json"))
    _round_trip(data)
    manifest = read_manifest(path)
    assert manifest.input.to_json() == data["input"]  # pack wrote the defaults out: nothing to fill
    assert manifest.files and all(isinstance(f.role, FileRole) for f in manifest.files)


def test_a_packed_archive_and_a_crafted_manifest_round_trip(tmp_path):
    archive, _ = pack_models(tmp_path, "toy", 1, [1, 2])
    _round_trip(read_manifest(archive).data)
    crafted = manifest_for({"models/m.h5": b"abc"}, {"notes.txt": b"x"})  # no name, resize or keras_version
    _round_trip(crafted, packed=False)
    assert "name" not in InputSpec.from_json(crafted["input"]).to_json()
    assert "keras_version" not in MemberSpec.from_json(crafted["members"][0]).to_json()
    source = {"name": "m", "path": "models/m.keras", "sha256": "0" * 64, "size": 3, "keras_version": None,
              "source": {"path": "models/m.h5", "sha256": "1" * 64, "size": 4, "keras_version": "2.2.4"}}
    assert MemberSpec.from_json(source).to_json() == source
    regression = {"kind": "regression", "names": ["y"]}
    assert OutputSpec.from_json(regression).to_json() == regression  # rounding stays unsaid
    assert OutputSpec.from_json(regression).rounding == 4


def test_pack_writes_the_input_as_it_always_has(tmp_path):
    """The archive's input: the caller's keys after name, resize, scale and offset, byte for byte."""
    archive, _ = pack_models(tmp_path, "toy", 1, [1])
    text = zipfile.ZipFile(archive).read("MANIFEST.json").decode()
    before = {"name": "input", "resize": "stretch", "scale": 1.0, "offset": 0.0, **INPUT_SPEC}
    written = json.loads(text)
    assert json.dumps(written["input"]) == json.dumps(before)
    assert json.dumps(written["output"]) == json.dumps({"kind": "classification", "labels": LABELS})
    assert list(written["members"][0]) == ["name", "path", "sha256", "size", "keras_version"]


def test_the_defaults_live_in_the_specs():
    spec = InputSpec.from_json({"shape": [8, 8, 1], "dtype": "float32", "color": "grayscale"})
    assert (spec.name, spec.image.layout, spec.image.resize, spec.image.scale, spec.image.offset) == \
        ("input", Layout.CHANNELS_LAST, "stretch", 1.0, 0.0)
    assert InputSpec.from_json({"shape": [4], "dtype": "uint8", "color": "rgb"}).dtype == "uint8"
    assert spec == InputSpec((8, 8, 1), image=ImageSpec(Color.GRAYSCALE))
    # made in code, a spec writes what pack writes; read from JSON, what the JSON said
    assert InputSpec((8, 8, 1)).to_json() == {"name": "input", "resize": "stretch", "scale": 1.0, "offset": 0.0,
                                             "shape": [8, 8, 1], "dtype": "float32", "color": "rgb"}
    assert spec.to_json() == {"shape": [8, 8, 1], "dtype": "float32", "color": "grayscale"}
    assert spec.filled().to_json() == {"name": "input", "resize": "stretch", "scale": 1.0, "offset": 0.0,
                                       "shape": [8, 8, 1], "dtype": "float32", "color": "grayscale"}
    assert Manifest.from_dict(manifest_for({"models/m.h5": b"abc"})).combine is Combine.MEAN


def test_derived_properties():
    first = InputSpec.from_json({"shape": [3, 32, 24], "dtype": "float32", "color": "bgr",
                                 "layout": "channels_first", "scale": 0.5, "offset": -1})
    assert first.image_grid() == (32, 24, 3) and first.image.channels == 3 and first.image.channels_first
    assert first.preprocessing() == "x = pixel * 0.5 + -1, bgr, shape [3, 32, 24] float32"
    assert InputSpec((10,)).image_grid() is None and InputSpec((6, 5)).image_grid() == (6, 5, 1)
    classes, values = OutputSpec.classes(["a", "b"]), OutputSpec.values(["x", "y", "z"], rounding=2)
    assert classes.classification and classes.labels == ("a", "b") and classes.names == () and classes.width == 2
    assert values.kind is OutputKind.REGRESSION and values.labels == () and values.width == 3
    assert values.to_json() == {"kind": "regression", "names": ["x", "y", "z"], "rounding": 2}


def test_specs_read_like_their_json_for_scripts():
    spec = InputSpec((8, 8, 1))
    assert spec["shape"] == [8, 8, 1] and spec.get("scale") == 1.0 and "layout" not in spec
    assert OutputSpec.classes(["a"])["labels"] == ["a"]


def test_a_description_keeps_its_json_shape():
    spec = InputSpec.from_json({"shape": [4, 4, 1], "dtype": "float32", "color": "grayscale"}).filled()
    described = VersionDescription("toy", 2, spec, OutputSpec.classes(LABELS), ("a", "b"), Combine.EACH)
    body = described.to_json()
    assert body["input"] == spec.to_json() and body["output"] == {"kind": "classification", "labels": LABELS}
    assert body["combine"] == "each" and body["has_combined"] is False and body["output_width"] == 3
    again = VersionDescription.from_json(json.loads(json.dumps(body)))
    assert again == described and again.to_json() == body
    assert described.preprocessing() == "x = pixel * 1 + 0, grayscale, shape [4, 4, 1] float32"


def test_a_prediction_reads_its_output_spec():
    raw = {"model": "toy", "version": 1, "predictions": [{"raw": {"members": {"m": [0.2, 0.8]}, "combined": None}}]}
    for output in ({"kind": "classification", "labels": ["a", "b"]}, OutputSpec.classes(["a", "b"])):
        prediction = Prediction.from_json(raw, output)
        assert prediction.top(0) == ("b", pytest.approx(0.8)) and prediction.output == OutputSpec.classes(["a", "b"])
    regression = Prediction("toy", 1, {"m": np.array([[1.23456]])}, None, OutputSpec.values(["y"], 2))
    assert regression.rows()[0]["members"]["m"] == {"y": 1.23}


def test_explain_methods_and_store_problem_kinds_are_enums():
    assert check_explain("gradcam") is ExplainMethod.GRADCAM and check_explain("") is None
    with pytest.raises(InvalidInputError, match="yyai explains with: gradcam"):
        check_explain("lime")
    status = ServerStatus.from_json({"models": {}, "problems": [{"path": "x.yyar", "kind": "duplicate", "error": "e"}]})
    assert status.problems[0].kind is StoreProblemKind.DUPLICATE
    assert status.to_json()["problems"] == [{"path": "x.yyar", "kind": "duplicate", "error": "e"}]


# The manifest's keys and vocabularies, read or compared as strings: each belongs to types/specs.py.
_STRINGLY = re.compile(
    r'\.get\("(scale|offset|color|layout|resize|rounding|role)"|\["role"\]'
    r'|\b(input|output)(_spec)?\["|\bspec(\.get\(|\[")'
    r'|[=!]= "(classification|regression|mean|each|sample|eval|gradcam|unreadable|duplicate|grayscale|rgb|bgr)"'
    r'|"(unreadable|duplicate)",')
# where the manifest's JSON is still read by key: the caller's own JSON, before pack's schema check
_EDGES = {"types/specs.py", "archive/packmodel.py"}


def test_no_manifest_dict_is_read_by_string_key():
    package = Path(yyai_kernel.__file__).parent
    found = []
    for path in sorted(package.rglob("*.py")):
        where = path.relative_to(package).as_posix()
        if where in _EDGES:
            continue
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            if _STRINGLY.search(line):
                found.append(f"{where}:{number}: {line.strip()}")
    assert found == []
