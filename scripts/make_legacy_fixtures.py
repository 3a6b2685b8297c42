"""Write small Keras 1.x / 2.0-2.2 era `.h5` model files, byte for byte reproducible.

Why: yyai must load the `.h5` files that Keras 2.0-2.2 wrote (see issue 8), but those
Keras versions cannot be installed beside TensorFlow 2.21. So this script writes such
files directly with h5py: the model configs have the shape those versions' `to_json`
gave (a Sequential config as a bare list with `batch_input_shape` on its first layer,
functional models with an explicit `InputLayer`, Lambda code as base64 marshal), the
weights sit in the old `model_weights/<layer>/<layer>/kernel:0` layout with
`layer_names` / `weight_names` attributes, and each file has a `training_config` with an
old-style optimizer (`"lr"`). Weights come from fixed seeds.

    python scripts/make_legacy_fixtures.py [OUT_DIR]     # default tests/fixtures/legacy

The files are checked in; tests/test_legacy.py regenerates them and checks that the
checked-in copies are identical.
"""

from __future__ import annotations

import base64
import itertools
import json
import marshal
import sys
from pathlib import Path

import h5py
import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "legacy"

# --- config pieces, as Keras 2.x get_config() wrote them ------------------------------

GLOROT_UNIFORM = {
    "class_name": "VarianceScaling",
    "config": {"scale": 1.0, "mode": "fan_avg", "distribution": "uniform", "seed": None},
}
HE_NORMAL = {  # 2.0-2.2 wrote "normal", which meant truncated normal
    "class_name": "VarianceScaling",
    "config": {"scale": 2.0, "mode": "fan_in", "distribution": "normal", "seed": None},
}
ZEROS = {"class_name": "Zeros", "config": {}}
ONES = {"class_name": "Ones", "config": {}}
NO_REG = {
    "kernel_regularizer": None,
    "bias_regularizer": None,
    "activity_regularizer": None,
    "kernel_constraint": None,
    "bias_constraint": None,
}


def _base(name, input_shape=None):
    config = {"name": name, "trainable": True}
    if input_shape is not None:  # only the first layer of a Sequential model has these
        config["batch_input_shape"] = [None, *input_shape]
        config["dtype"] = "float32"
    return config


def dense(name, units, activation="linear", *, input_shape=None, init=GLOROT_UNIFORM):
    """A Keras 2 Dense layer entry."""
    return {
        "class_name": "Dense",
        "config": {
            **_base(name, input_shape),
            "units": units,
            "activation": activation,
            "use_bias": True,
            "kernel_initializer": init,
            "bias_initializer": ZEROS,
            **NO_REG,
        },
    }


def conv2d(name, filters, kernel, activation="linear", *, data_format="channels_last",
           padding="valid", input_shape=None, init=GLOROT_UNIFORM):
    """A Keras 2 Conv2D layer entry."""
    return {
        "class_name": "Conv2D",
        "config": {
            **_base(name, input_shape),
            "filters": filters,
            "kernel_size": [kernel, kernel],
            "strides": [1, 1],
            "padding": padding,
            "data_format": data_format,
            "dilation_rate": [1, 1],
            "activation": activation,
            "use_bias": True,
            "kernel_initializer": init,
            "bias_initializer": ZEROS,
            **NO_REG,
        },
    }


def max_pool(name, *, data_format="channels_last"):
    """A Keras 2 MaxPooling2D layer entry (2x2)."""
    return {
        "class_name": "MaxPooling2D",
        "config": {**_base(name), "pool_size": [2, 2], "padding": "valid", "strides": [2, 2],
                   "data_format": data_format},
    }


def dropout(name, rate, *, version="2.2"):
    """A Dropout entry: 2.0.x wrote only the rate; 2.1+ also noise_shape and seed."""
    config = {**_base(name), "rate": rate}
    if not version.startswith("2.0"):
        config.update(noise_shape=None, seed=None)
    return {"class_name": "Dropout", "config": config}


def flatten(name, data_format=None):
    """A Flatten entry: data_format only from Keras 2.2 on."""
    config = _base(name)
    if data_format:
        config["data_format"] = data_format
    return {"class_name": "Flatten", "config": config}


def simple(class_name, name, **extra):
    """Any layer entry with no weights and plain arguments."""
    return {"class_name": class_name, "config": {**_base(name), **extra}}


def batch_norm(name, axis=-1):
    """A Keras 2 BatchNormalization entry."""
    return {
        "class_name": "BatchNormalization",
        "config": {
            **_base(name),
            "axis": axis, "momentum": 0.99, "epsilon": 0.001, "center": True, "scale": True,
            "beta_initializer": ZEROS, "gamma_initializer": ONES,
            "moving_mean_initializer": ZEROS, "moving_variance_initializer": ONES,
            "beta_regularizer": None, "gamma_regularizer": None,
            "beta_constraint": None, "gamma_constraint": None,
        },
    }


def lambda_layer(name, source):
    """A Keras 2.1+ Lambda entry: the function as [base64 marshal code, defaults, closure]."""
    code = compile(source, "<keras-lambda>", "eval").co_consts[0]
    blob = base64.encodebytes(marshal.dumps(code)).decode("ascii")
    return {
        "class_name": "Lambda",
        "config": {
            **_base(name),
            "function": [blob, None, None],
            "function_type": "lambda",
            "output_shape": None,
            "output_shape_type": "raw",
            "arguments": {},
        },
    }


def functional(name, layers, inbound, inputs, outputs):
    """A Keras 2 Model config: every layer with its inbound nodes."""
    entries = []
    for layer in layers:
        lname = layer["config"]["name"]
        nodes = [[[src, 0, 0, {}] for src in inbound[lname]]] if inbound.get(lname) else []
        entries.append({"name": lname, "class_name": layer["class_name"],
                        "config": layer["config"], "inbound_nodes": nodes})
    return {
        "class_name": "Model",
        "config": {"name": name, "layers": entries,
                   "input_layers": [[n, 0, 0] for n in inputs],
                   "output_layers": [[n, 0, 0] for n in outputs]},
    }


def input_layer(name, shape):
    """A Keras 2 InputLayer entry as a functional model lists it."""
    return {"class_name": "InputLayer",
            "config": {"batch_input_shape": [None, *shape], "dtype": "float32",
                       "sparse": False, "name": name}}


def adam(version):
    """training_config with Keras 2's Adam ("lr"; "amsgrad" from 2.1.3 on)."""
    opt = {"lr": 0.0010000000474974513, "beta_1": 0.8999999761581421,
           "beta_2": 0.9990000128746033, "decay": 0.0, "epsilon": 1e-07}
    if version >= "2.1.3":
        opt["amsgrad"] = False
    return _training("Adam", opt, "categorical_crossentropy")


def sgd():
    """training_config with Keras 2's SGD."""
    return _training("SGD", {"lr": 0.009999999776482582, "momentum": 0.0, "decay": 0.0,
                             "nesterov": False}, "categorical_crossentropy")


def rmsprop():
    """training_config with Keras 2's RMSprop."""
    return _training("RMSprop", {"lr": 0.0010000000474974513, "rho": 0.8999999761581421,
                                 "decay": 0.0, "epsilon": 1e-07}, "mse")


def _training(cls, opt, loss):
    return {"optimizer_config": {"class_name": cls, "config": opt}, "loss": loss,
            "metrics": ["accuracy"], "sample_weight_mode": None, "loss_weights": None}


# --- weights ----------------------------------------------------------------------------


def make_weights(rng, layers, input_channels):
    """Seeded weights for a plain chain of layers: {layer name: [(weight name, array)]}.

    `input_channels` is the size of the feature axis the first layer sees; conv layers
    and Dense layers change it, Flatten sets it from `flat` in the layer entry.
    """
    weights = {}
    channels = input_channels
    for layer in layers:
        cls, cfg = layer["class_name"], layer["config"]
        name = cfg["name"]
        if cls == "Conv2D":
            k = cfg["kernel_size"][0]
            w = [("kernel", rng.normal(0, 0.4, (k, k, channels, cfg["filters"]))),
                 ("bias", rng.normal(0, 0.1, (cfg["filters"],)))]
            channels = cfg["filters"]
        elif cls == "Dense":
            fan_in = layer.get("fan_in", channels)
            w = [("kernel", rng.normal(0, 0.4, (fan_in, cfg["units"]))),
                 ("bias", rng.normal(0, 0.1, (cfg["units"],)))]
            channels = cfg["units"]
        elif cls == "BatchNormalization":
            w = [("gamma", 1 + rng.normal(0, 0.1, (channels,))),
                 ("beta", rng.normal(0, 0.1, (channels,))),
                 ("moving_mean", rng.normal(0, 0.2, (channels,))),
                 ("moving_variance", rng.uniform(0.5, 1.5, (channels,)))]
        else:
            w = []
        weights[name] = [(f"{name}/{wname}:0", arr.astype("float32")) for wname, arr in w]
    return weights


def write_h5(path, *, keras_version, model_config, layer_names, weights,
             training_config=None, backend="tensorflow"):
    """Write one file in the Keras 2 `save_model` layout."""
    with h5py.File(path, "w", libver="earliest", track_order=False) as f:
        f.attrs["keras_version"] = np.bytes_(keras_version)
        f.attrs["backend"] = np.bytes_(backend)
        f.attrs["model_config"] = np.bytes_(json.dumps(model_config))
        if training_config is not None:
            f.attrs["training_config"] = np.bytes_(json.dumps(training_config))
        group = f.create_group("model_weights")
        group.attrs["layer_names"] = np.array([n.encode() for n in layer_names])
        group.attrs["backend"] = np.bytes_(backend)
        group.attrs["keras_version"] = np.bytes_(keras_version)
        for name in layer_names:
            sub = group.create_group(name)
            pairs = weights.get(name, [])
            sub.attrs["weight_names"] = np.array([w.encode() for w, _ in pairs], dtype="S")
            for wname, arr in pairs:
                sub.create_dataset(wname, data=arr, track_times=False)
        if training_config is not None:
            opt = f.create_group("optimizer_weights")
            opt.attrs["weight_names"] = np.array([b"training/iterations:0"])
            opt.create_dataset("training/iterations:0", data=np.int64(100), track_times=False)


def _names(layers):
    return [layer["config"]["name"] for layer in layers]


def _flip_kernel(kernel):
    """Theano <-> TensorFlow kernel convention: flip every spatial axis."""
    return np.ascontiguousarray(kernel[::-1, ::-1, :, :])


# --- the fixtures -----------------------------------------------------------------------


def seq_cnn_2_0(out):
    """Keras 2.0.8 Sequential CNN (list config, batch_input_shape), 8x8x1 -> 10."""
    layers = [conv2d("conv2d_1", 4, 3, "relu", input_shape=[8, 8, 1]),
              max_pool("max_pooling2d_1"), dropout("dropout_1", 0.25, version="2.0"),
              flatten("flatten_1"), {**dense("dense_1", 10, "softmax"), "fan_in": 36}]
    weights = make_weights(np.random.default_rng(20), layers, 1)
    config = {"class_name": "Sequential", "config": [_strip(layer) for layer in layers]}
    write_h5(out / "keras2.0_sequential_cnn.h5", keras_version="2.0.8", model_config=config,
             layer_names=_names(layers), weights=weights, training_config=adam("2.0.8"))


def functional_2_0(out):
    """Keras 2.0.8 functional model: explicit InputLayer, two branches joined by Add."""
    layers = [input_layer("input_1", [8, 8, 1]),
              conv2d("conv2d_1", 3, 3, "relu", init=HE_NORMAL), max_pool("max_pooling2d_1"),
              flatten("flatten_1"), {**dense("dense_1", 6), "fan_in": 27},
              flatten("flatten_2"), {**dense("dense_2", 6), "fan_in": 64},
              simple("Add", "add_1"), simple("Activation", "activation_1", activation="softmax")]
    inbound = {"conv2d_1": ["input_1"], "max_pooling2d_1": ["conv2d_1"],
               "flatten_1": ["max_pooling2d_1"], "dense_1": ["flatten_1"],
               "flatten_2": ["input_1"], "dense_2": ["flatten_2"],
               "add_1": ["dense_1", "dense_2"], "activation_1": ["add_1"]}
    rng = np.random.default_rng(21)
    weights = make_weights(rng, layers[:5], 1)
    weights.update(make_weights(rng, layers[5:7], 64))
    config = functional("model_1", [_strip(layer) for layer in layers], inbound,
                        ["input_1"], ["activation_1"])
    write_h5(out / "keras2.0_functional.h5", keras_version="2.0.8", model_config=config,
             layer_names=_names(layers), weights=weights, training_config=adam("2.0.8"))


def _channels_first_2_1_layers():
    return [conv2d("conv2d_1", 4, 3, "relu", data_format="channels_first", input_shape=[3, 8, 8]),
            max_pool("max_pooling2d_1", data_format="channels_first"),
            conv2d("conv2d_2", 5, 3, "tanh", data_format="channels_first", padding="same"),
            flatten("flatten_1"), {**dense("dense_1", 5, "softmax"), "fan_in": 45}]


def channels_first_2_1(out, *, backend="tensorflow"):
    """Keras 2.1.2 Sequential channels_first CNN, 3x8x8 -> 5 (Flatten without data_format).

    With backend="theano" the conv kernels are stored flipped, as Theano used them: the
    loaded model must then compute exactly what the TensorFlow file computes.
    """
    layers = _channels_first_2_1_layers()
    weights = make_weights(np.random.default_rng(22), layers, 3)
    name = "keras2.1_channels_first_cnn.h5"
    if backend == "theano":
        for layer in ("conv2d_1", "conv2d_2"):
            (kname, kernel), bias = weights[layer]
            weights[layer] = [(kname, _flip_kernel(kernel)), bias]
        name = "keras2.1_channels_first_theano.h5"
    config = {"class_name": "Sequential", "config": [_strip(layer) for layer in layers]}
    write_h5(out / name, keras_version="2.1.2", model_config=config, backend=backend,
             layer_names=_names(layers), weights=weights, training_config=sgd())


def bn_dropout_2_1(out):
    """Keras 2.1.6 Sequential regression MLP with BatchNormalization and Dropout, 12 -> 1."""
    layers = [dense("dense_1", 16, input_shape=[12]), batch_norm("batch_normalization_1"),
              simple("Activation", "activation_1", activation="relu"),
              dropout("dropout_1", 0.3, version="2.1"), dense("dense_2", 1)]
    weights = make_weights(np.random.default_rng(23), layers, 12)
    config = {"class_name": "Sequential", "config": [_strip(layer) for layer in layers]}
    write_h5(out / "keras2.1_bn_dropout.h5", keras_version="2.1.6", model_config=config,
             layer_names=_names(layers), weights=weights, training_config=rmsprop())


def lambda_2_1(out):
    """Keras 2.1.6 Sequential with a Lambda layer carrying marshalled Python code."""
    layers = [dense("dense_1", 6, "relu", input_shape=[4]),
              lambda_layer("lambda_1", "lambda x: x * 2.0 + 1.0"), dense("dense_2", 2)]
    weights = make_weights(np.random.default_rng(24), layers, 4)
    config = {"class_name": "Sequential", "config": [_strip(layer) for layer in layers]}
    write_h5(out / "keras2.1_lambda.h5", keras_version="2.1.6", model_config=config,
             layer_names=_names(layers), weights=weights, training_config=adam("2.1.6"))


def functional_channels_first_2_2(out):
    """Keras 2.2.0 functional channels_first CNN with BatchNormalization(axis=1), 3x8x8 -> 4."""
    layers = [input_layer("input_1", [3, 8, 8]),
              conv2d("conv2d_1", 4, 3, data_format="channels_first"),
              batch_norm("batch_normalization_1", axis=1),
              simple("Activation", "activation_1", activation="relu"),
              max_pool("max_pooling2d_1", data_format="channels_first"),
              flatten("flatten_1", data_format="channels_first"),
              {**dense("dense_1", 4, "softmax"), "fan_in": 36}]
    inbound = {b["config"]["name"]: [a["config"]["name"]] for a, b in itertools.pairwise(layers)}
    weights = make_weights(np.random.default_rng(25), layers, 3)
    config = functional("model_1", [_strip(layer) for layer in layers], inbound,
                        ["input_1"], ["dense_1"])
    write_h5(out / "keras2.2_functional_channels_first.h5", keras_version="2.2.0",
             model_config=config, layer_names=_names(layers), weights=weights,
             training_config=adam("2.2.0"))


def sequential_dict_2_2(out):
    """Keras 2.2.4 Sequential ({"name", "layers"} config, batch_input_shape), LeakyReLU(alpha)."""
    layers = [conv2d("conv2d_1", 6, 3, input_shape=[8, 8, 3], padding="same"),
              simple("LeakyReLU", "leaky_re_lu_1", alpha=0.1),
              simple("GlobalAveragePooling2D", "global_average_pooling2d_1",
                     data_format="channels_last"),
              dense("dense_1", 3, "softmax")]
    weights = make_weights(np.random.default_rng(26), layers, 3)
    config = {"class_name": "Sequential",
              "config": {"name": "sequential_1", "layers": [_strip(layer) for layer in layers]}}
    write_h5(out / "keras2.2_sequential_dict.h5", keras_version="2.2.4", model_config=config,
             layer_names=_names(layers), weights=weights, training_config=adam("2.2.4"))


def keras1(out):
    """Keras 1.2.2 Sequential CNN (Convolution2D with nb_filter / border_mode): refused."""
    layers = [
        {"class_name": "Convolution2D", "config": {
            "name": "convolution2d_1", "trainable": True, "batch_input_shape": [None, 1, 8, 8],
            "input_dtype": "float32", "nb_filter": 4, "nb_row": 3, "nb_col": 3,
            "init": "glorot_uniform", "activation": "relu", "border_mode": "valid",
            "subsample": [1, 1], "dim_ordering": "th", "W_regularizer": None,
            "b_regularizer": None, "activity_regularizer": None, "W_constraint": None,
            "b_constraint": None, "bias": True}},
        {"class_name": "Flatten", "config": {"name": "flatten_1", "trainable": True}},
        {"class_name": "Dense", "config": {
            "name": "dense_1", "trainable": True, "output_dim": 3, "init": "glorot_uniform",
            "activation": "softmax", "W_regularizer": None, "b_regularizer": None,
            "activity_regularizer": None, "W_constraint": None, "b_constraint": None,
            "bias": True, "input_dim": 144}},
    ]
    rng = np.random.default_rng(27)
    weights = {
        "convolution2d_1": [("convolution2d_1_W:0", rng.normal(0, 0.4, (4, 1, 3, 3))),
                            ("convolution2d_1_b:0", np.zeros(4))],
        "dense_1": [("dense_1_W:0", rng.normal(0, 0.4, (144, 3))), ("dense_1_b:0", np.zeros(3))],
    }
    weights = {k: [(n, a.astype("float32")) for n, a in v] for k, v in weights.items()}
    training = {"optimizer_config": {"name": "SGD", "lr": 0.01, "momentum": 0.0, "decay": 0.0,
                                     "nesterov": False},
                "loss": "categorical_crossentropy", "metrics": [], "sample_weight_mode": None,
                "loss_weights": None}
    write_h5(out / "keras1.2_cnn.h5", keras_version="1.2.2", backend="theano",
             model_config={"class_name": "Sequential", "config": layers},
             layer_names=["convolution2d_1", "flatten_1", "dense_1"], weights=weights,
             training_config=training)


def _strip(layer):
    """A layer entry without this script's own helper keys."""
    return {"class_name": layer["class_name"], "config": layer["config"]}


BUILDERS = [seq_cnn_2_0, functional_2_0, channels_first_2_1, bn_dropout_2_1, lambda_2_1,
            functional_channels_first_2_2, sequential_dict_2_2, keras1]


def main(out=DEFAULT_OUT) -> list[Path]:
    """Write every fixture into `out`; return the paths written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for build in BUILDERS:
        build(out)
    channels_first_2_1(out, backend="theano")
    return sorted(out.glob("*.h5"))


if __name__ == "__main__":
    for path in main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUT):
        print(f"{path}  {path.stat().st_size} bytes")
