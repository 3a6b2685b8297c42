"""Keras 2.0-2.2 era `.h5` files load through yyai_kernel.archive.kerasload (issue 8).

The fixtures in tests/fixtures/legacy are written by scripts/make_legacy_fixtures.py.
tf_keras 2.21, which reads those files unchanged, is the reference: yyai's outputs must
equal its outputs within 1e-5. tf_keras cannot run a channels_first convolution on the
CPU either, so the reference runs under XLA (jit_compile), which can.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from yyai_kernel.archive.kerasload import (
    convert_to_keras,
    load_member,
    member_info,
    normalize_config,
)
from yyai_kernel.errors import LegacyFormatError, ModelLoadError, UnsafeModelError

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "legacy"

_spec = importlib.util.spec_from_file_location("make_legacy_fixtures",
                                               ROOT / "scripts" / "make_legacy_fixtures.py")
make = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make)

VERSIONS = {
    "keras1.2_cnn.h5": "1.2.2",
    "keras2.0_functional.h5": "2.0.8",
    "keras2.0_sequential_cnn.h5": "2.0.8",
    "keras2.1_bn_dropout.h5": "2.1.6",
    "keras2.1_channels_first_cnn.h5": "2.1.2",
    "keras2.1_channels_first_theano.h5": "2.1.2",
    "keras2.1_lambda.h5": "2.1.6",
    "keras2.2_functional_channels_first.h5": "2.2.0",
    "keras2.2_sequential_dict.h5": "2.2.4",
}
LOADABLE = [
    "keras2.0_functional.h5",
    "keras2.0_sequential_cnn.h5",
    "keras2.1_bn_dropout.h5",
    "keras2.1_channels_first_cnn.h5",
    "keras2.2_functional_channels_first.h5",
    "keras2.2_sequential_dict.h5",
]


def _input(model) -> np.ndarray:
    shape = model.input_shape[1:]
    return np.random.default_rng(1234).uniform(0, 1, (3, *shape)).astype("float32")


def _reference(path: Path, x: np.ndarray) -> np.ndarray:
    """tf_keras's output for the file at `path` (trusted: it runs Lambda code)."""
    import tensorflow as tf
    import tf_keras

    model = tf_keras.models.load_model(path, compile=False)
    return np.asarray(tf.function(model, jit_compile=True)(x))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _content(path: Path) -> dict:
    """Every attribute and dataset of an HDF5 file, comparable across h5py versions."""
    items = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            attrs = {k: np.asarray(v).tolist() for k, v in obj.attrs.items()}
            data = obj[()].tolist() if isinstance(obj, h5py.Dataset) else None
            items[name] = (attrs, data)
        visit("/", f)
        f.visititems(visit)
    return items


def test_fixtures_are_reproducible(tmp_path):
    written = make.main(tmp_path)
    assert sorted(p.name for p in written) == sorted(VERSIONS)
    for path in written:
        assert _content(path) == _content(FIXTURES / path.name), path.name
        assert path.stat().st_size < 100_000


@pytest.mark.parametrize("name", sorted(VERSIONS))
def test_member_info_reports_keras_version(name):
    info = member_info(FIXTURES / name)
    assert info["format"] == "h5"
    assert info["keras_version"] == VERSIONS[name]


@pytest.mark.parametrize("name", LOADABLE)
def test_fixture_equals_tf_keras_and_converts(name, tmp_path):
    path = FIXTURES / name
    before = _sha(path)
    model = load_member(path)
    x = _input(model)
    reference = _reference(path, x)
    np.testing.assert_allclose(np.asarray(model(x)), reference, atol=1e-5, rtol=0)
    assert _sha(path) == before  # the original file is never written

    converted = convert_to_keras(path, tmp_path / "model.keras")
    assert member_info(converted)["format"] == "keras"
    again = load_member(converted)
    np.testing.assert_allclose(np.asarray(again(x)), reference, atol=1e-5, rtol=0)


def test_theano_kernels_are_flipped():
    """A Theano-written file computes what the same model written under TensorFlow does."""
    model = load_member(FIXTURES / "keras2.1_channels_first_theano.h5")
    x = _input(model)
    reference = _reference(FIXTURES / "keras2.1_channels_first_cnn.h5", x)
    np.testing.assert_allclose(np.asarray(model(x)), reference, atol=1e-5, rtol=0)


def test_lambda_is_refused_unless_trusted(tmp_path):
    path = FIXTURES / "keras2.1_lambda.h5"
    with pytest.raises(UnsafeModelError, match=r"keras2\.1_lambda\.h5"):
        load_member(path)
    with pytest.raises(UnsafeModelError):
        convert_to_keras(path, tmp_path / "lambda.keras")
    assert not (tmp_path / "lambda.keras").exists()

    model = load_member(path, trusted=True)
    x = _input(model)
    reference = _reference(path, x)
    np.testing.assert_allclose(np.asarray(model(x)), reference, atol=1e-5, rtol=0)

    converted = convert_to_keras(path, tmp_path / "lambda.keras", trusted=True)
    with pytest.raises(UnsafeModelError):
        load_member(converted)
    again = load_member(converted, trusted=True)
    np.testing.assert_allclose(np.asarray(again(x)), reference, atol=1e-5, rtol=0)


def test_keras1_is_refused_with_its_version(tmp_path):
    with pytest.raises(LegacyFormatError, match=r"Keras 1\.2\.2"):
        load_member(FIXTURES / "keras1.2_cnn.h5")

    unversioned = tmp_path / "old.h5"  # Keras 1.0/1.1 recorded no version at all
    shutil.copyfile(FIXTURES / "keras1.2_cnn.h5", unversioned)
    with h5py.File(unversioned, "r+") as f:
        del f.attrs["keras_version"]
        del f["model_weights"].attrs["keras_version"]
    assert member_info(unversioned)["keras_version"] is None
    with pytest.raises(LegacyFormatError, match=r"Keras 1\.x.*nb_filter"):
        load_member(unversioned)


def test_not_a_model_is_a_model_load_error(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(np.random.default_rng(0).bytes(2048))
    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as f:
        f.attrs["keras_version"] = "2.2.4"
    weights_only = tmp_path / "weights.h5"
    shutil.copyfile(FIXTURES / "keras2.0_sequential_cnn.h5", weights_only)
    with h5py.File(weights_only, "r+") as f:
        del f.attrs["model_config"]
    fake_keras = tmp_path / "junk.keras"
    fake_keras.write_bytes(b"not a zip")
    other = tmp_path / "model.pkl"
    other.write_bytes(b"x")
    for path in (junk, empty, weights_only, fake_keras, other, tmp_path / "missing.h5"):
        with pytest.raises(ModelLoadError, match=path.name):
            load_member(path)


@pytest.mark.parametrize("kind", ["external", "soft", "virtual"])
def test_keras_hdf5_hardening_still_applies(tmp_path, kind):
    """A legacy file goes through the rewrite, and Keras 3 still refuses hostile HDF5."""
    path = tmp_path / "hostile.h5"
    shutil.copyfile(FIXTURES / "keras2.0_sequential_cnn.h5", path)
    outside = tmp_path / "outside.h5"
    with h5py.File(outside, "w") as f:
        f.create_dataset("kernel", data=np.zeros((36, 10), "float32"))
    with h5py.File(path, "r+") as f:
        group = f["model_weights/dense_1/dense_1"]
        del group["kernel:0"]
        if kind == "external":
            group["kernel:0"] = h5py.ExternalLink(str(outside), "kernel")
        elif kind == "soft":
            group["kernel:0"] = h5py.SoftLink("/model_weights/dense_1/dense_1/bias:0")
        else:
            layout = h5py.VirtualLayout(shape=(36, 10), dtype="float32")
            layout[...] = h5py.VirtualSource(str(outside), "kernel", shape=(36, 10))
            group.create_virtual_dataset("kernel:0", layout)
    with pytest.raises(ModelLoadError, match=r"hostile\.h5"):
        load_member(path)


def test_config_too_big_for_the_old_header_is_rebuilt(tmp_path):
    """Normalizing can outgrow the 64 KiB attribute space of an old file: still loads."""
    long = "n" * 900  # long layer names: few layers, yet a config that outgrows the header
    layers = [make.conv2d(f"conv_{i}_{long}", 2, 1, "tanh", data_format="channels_first",
                          input_shape=[2, 2, 2] if i == 0 else None) for i in range(20)]
    weights = make.make_weights(np.random.default_rng(5), layers, 2)
    config = {"class_name": "Sequential", "config": layers}
    path = tmp_path / "deep.h5"
    make.write_h5(path, keras_version="2.1.6", model_config=config,
                  layer_names=[layer["config"]["name"] for layer in layers], weights=weights)
    grown = json.dumps(normalize_config(config), separators=(",", ":"))
    assert len(json.dumps(config)) < 64_000 < len(grown)

    model = load_member(path)
    x = _input(model)
    np.testing.assert_allclose(np.asarray(model(x)), _reference(path, x), atol=1e-5, rtol=0)


def test_normalize_config_shapes():
    """The rewrite Keras 3 needs, on a list-form Sequential config."""
    config = {"class_name": "Sequential", "config": [
        make.conv2d("conv2d_1", 2, 3, data_format="channels_first", input_shape=[3, 8, 8]),
        make.flatten("flatten_1"),
    ]}
    fixed = normalize_config(config)
    assert isinstance(config["config"], list)  # the argument is left alone
    layers = fixed["config"]["layers"]
    assert [layer["class_name"] for layer in layers] == ["InputLayer", "Sequential", "Flatten"]
    assert layers[0]["config"]["batch_shape"] == [None, 3, 8, 8]
    wrapped = layers[1]["config"]
    assert wrapped["name"] == "conv2d_1"
    assert [layer["class_name"] for layer in wrapped["layers"]] == ["Permute", "Conv2D", "Permute"]
    permute_in, conv, permute_out = (layer["config"] for layer in wrapped["layers"])
    assert conv["data_format"] == "channels_last" and "batch_input_shape" not in conv
    assert [permute_in["dims"], permute_out["dims"]] == [[2, 3, 1], [3, 1, 2]]


def test_keras3_files_take_the_direct_path(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.save(tmp_path / "plain.keras")
    model.save(tmp_path / "plain.h5")
    x = np.ones((1, 4), "float32")
    for name in ("plain.keras", "plain.h5"):
        np.testing.assert_allclose(np.asarray(load_member(tmp_path / name)(x)),
                                   np.asarray(model(x)), atol=1e-6)
    assert member_info(tmp_path / "plain.keras")["keras_version"] == keras.__version__

    unsafe = keras.Sequential([keras.Input((4,)), keras.layers.Lambda(lambda t: t + 1.0)])
    unsafe.save(tmp_path / "unsafe.keras")
    with pytest.raises(UnsafeModelError, match=r"unsafe\.keras"):
        load_member(tmp_path / "unsafe.keras")


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
def test_tf_keras_written_h5_with_shared_channels_first_conv(tmp_path):
    """A tf.keras 2.x file: a channels_first conv shared by two inputs, two outputs."""
    import tensorflow as tf
    import tf_keras

    layers = tf_keras.layers
    a, b = tf_keras.Input((3, 6, 6)), tf_keras.Input((3, 6, 6))
    shared = layers.Conv2D(2, 3, data_format="channels_first")
    joined = layers.Flatten()(layers.Add()([shared(a), shared(b)]))
    side = layers.Dense(2)(layers.Flatten()(a))  # as deep as the conv: weights load by order
    both = layers.Concatenate()([layers.Dense(2)(joined), side])
    model = tf_keras.Model([a, b], [both, layers.Dense(1)(joined)])
    path = tmp_path / "tfkeras.h5"
    model.save(path)
    rng = np.random.default_rng(3)
    x = [rng.uniform(0, 1, (2, 3, 6, 6)).astype("float32") for _ in range(2)]
    reference = tf.function(model, jit_compile=True)(x)

    ours = load_member(path)(x)
    assert member_info(path)["keras_version"].startswith("2.")
    for got, want in zip(ours, reference):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5, rtol=0)
