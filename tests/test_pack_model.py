"""pack_model: in-memory Keras models become a .yyar that verifies and answers as they do."""

from __future__ import annotations

import tempfile

import keras
import numpy as np
import pytest

import yyai_kernel
from yyai_kernel.archive import read_manifest, verify
from yyai_kernel.errors import ManifestError, UnsafeModelError
from yyai_kernel.runtime.runtime import ArchiveRuntime

GRAY = {"scale": 1 / 255}
LABELS = ["a", "b", "c"]


def classifier(seed: int, name: str) -> keras.Model:
    keras.utils.set_random_seed(seed)
    L = keras.layers
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                             L.Dense(3, activation="softmax")], name=name)


@pytest.fixture(autouse=True)
def private_tmp(tmp_path, monkeypatch):
    """A private temporary folder, so the test can see that pack_model leaves nothing in it."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    assert not [p for p in folder.iterdir() if p.name.startswith("yyai-pack")]


def batch(shape, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).random((5, *shape), dtype=np.float32)


def test_one_model_packs_verifies_and_answers_as_in_memory(tmp_path):
    model = classifier(1, "Digits-CNN")
    path = yyai_kernel.pack_model(model, name="toy", version=3, input=GRAY, labels=LABELS, out=tmp_path,
                                  description="from a notebook")
    assert path == tmp_path / "toy-3.yyar"
    report = verify(path)
    assert report.ok and [m["name"] for m in report.members] == ["digits-cnn"]
    manifest = read_manifest(path)
    assert manifest.input["shape"] == [8, 8, 1] and manifest.input["color"] == "grayscale"
    assert manifest.input["dtype"] == "float32" and manifest.output["labels"] == LABELS
    assert manifest.description == "from a notebook"
    x = batch((8, 8, 1))
    out = ArchiveRuntime.load(path)(x)
    np.testing.assert_allclose(out.members["digits-cnn"], np.asarray(model(x, training=False)), atol=1e-6)
    np.testing.assert_allclose(out.combined, np.asarray(model(x, training=False)), atol=1e-6)


def test_an_ensemble_by_name_and_its_mean(tmp_path):
    models = {"first": classifier(1, "m"), "second": classifier(2, "m")}
    path = yyai_kernel.pack_model(models, name="toy", version=1, input=GRAY, labels=LABELS, out=tmp_path)
    assert verify(path).ok
    x = batch((8, 8, 1), seed=1)
    out = ArchiveRuntime.load(path)(x)
    expected = {name: np.asarray(m(x, training=False)) for name, m in models.items()}
    assert list(out.members) == ["first", "second"]
    for name in models:
        np.testing.assert_allclose(out.members[name], expected[name], atol=1e-6)
    np.testing.assert_allclose(out.combined, (expected["first"] + expected["second"]) / 2, atol=1e-6)
    same_names = yyai_kernel.pack_model([classifier(1, "m"), classifier(2, "m")], name="toy", version=2,
                                        input=GRAY, labels=LABELS, out=tmp_path)
    assert [m["name"] for m in read_manifest(same_names).members] == ["m", "m_2"]


def test_a_regression_model_on_rgb_input(tmp_path):
    keras.utils.set_random_seed(3)
    L = keras.layers
    model = keras.Sequential([keras.Input((16, 16, 3)), L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(2)])
    with pytest.raises(ManifestError, match="channel order"):
        yyai_kernel.pack_model(model, name="reg", version=1, input={}, regression=["x", "y"], out=tmp_path)
    path = yyai_kernel.pack_model(model, name="reg", version=1, input={"color": "rgb", "scale": 1 / 255},
                                  regression=["x", "y"], rounding=3, out=tmp_path)
    assert read_manifest(path).output.to_json() == {"kind": "regression", "names": ["x", "y"], "rounding": 3}
    x = batch((16, 16, 3), seed=2)
    np.testing.assert_allclose(ArchiveRuntime.load(path)(x).combined, np.asarray(model(x, training=False)),
                               atol=1e-6)


def test_mistakes_are_refused_before_anything_is_written(tmp_path):
    model = classifier(1, "m")
    with pytest.raises(ManifestError, match="not both or neither"):
        yyai_kernel.pack_model(model, name="toy", version=1, input=GRAY, out=tmp_path)
    with pytest.raises(ManifestError, match=r"output\.labels"):
        yyai_kernel.pack_model(model, name="toy", version=1, input=GRAY, labels=["a", "b"], out=tmp_path)
    with pytest.raises(ManifestError):
        yyai_kernel.pack_model(model, name="Bad Name", version=1, input=GRAY, labels=LABELS, out=tmp_path)
    assert not list(tmp_path.glob("*.yyar"))


def test_code_in_a_lambda_layer_needs_trust(tmp_path):
    L = keras.layers
    model = keras.Sequential([keras.Input((8, 8, 1)), L.Flatten(), L.Lambda(lambda t: t * 2.0),
                              L.Dense(3, activation="softmax")], name="lam")
    with pytest.raises(UnsafeModelError):
        yyai_kernel.pack_model(model, name="lam", version=1, input=GRAY, labels=LABELS, out=tmp_path)
    path = yyai_kernel.pack_model(model, name="lam", version=1, input=GRAY, labels=LABELS, out=tmp_path,
                                  trusted=True)
    x = batch((8, 8, 1), seed=4)
    np.testing.assert_allclose(ArchiveRuntime.load(path, trusted=True)(x).combined,
                               np.asarray(model(x, training=False)), atol=1e-6)
