"""Load a Keras model member, including the `.h5` files Keras 2.0-2.2 wrote.

Why: yyai's users hold `.h5` files from the Keras 2.0-2.2 era (the original service ran
TF 1.9 with Keras 2.2), and Keras 3 cannot read most of them as they are. This module
reads such a file's `model_config` with h5py, rewrites what Keras 3 cannot read, puts the
rewritten config into a temporary copy of the file and loads that copy through
`keras.saving.load_model(compile=False)`. Weights are therefore read by Keras 3 itself,
so its `safe_mode` (no Lambda code unless trusted) and its HDF5 hardening (no external
or soft links, no virtual datasets, no shape bombs) stay in force.

What the rewrite does, and why:
- A Sequential config stored as a bare list (Keras <= 2.2.2) becomes {"name", "layers"}.
- The first layer's `batch_input_shape` becomes a leading InputLayer with `batch_shape`:
  Keras 3 would otherwise read it as an input shape and add a second batch axis.
- A Conv1D / Conv2D / Conv2DTranspose with `channels_first` becomes a small Sequential of
  the same name: Permute to channels_last, the conv in channels_last, Permute back.
  TensorFlow has no NCHW convolution on the CPU. Kernels have the same layout in both
  formats, so the weights load unchanged, and the model's inputs and outputs stay NCHW.
- Renamed arguments (InputLayer `batch_input_shape`, LeakyReLU `alpha`) and the old
  Lambda layout (`function` as [code, defaults, closure] with `function_type`) are mapped;
  tf.keras 2.x arguments Keras 3 lacks (`time_major`, transposed-conv `groups`) are
  dropped when they hold their default.
- Files written with the Theano backend get their convolution kernels flipped after
  loading, as Keras 2 itself did when it loaded them under TensorFlow.
- `training_config` (old optimizers with `lr`) is never read: nothing is compiled.
Keras 1.x files (`nb_filter`, `border_mode`, ...) are refused with LegacyFormatError.

Native `.keras` files and `.h5` files that Keras 3 wrote take the short direct path.
Nothing here compiles a model, calls `predict` or touches global Keras state.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from yyai_kernel.errors import LegacyFormatError, ModelLoadError, UnsafeModelError
from yyai_kernel.hints import Hint, Step

if TYPE_CHECKING:
    import keras

H5_SUFFIXES = (".h5", ".hdf5")
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a model_config attribute larger than this is refused

# Config keys only Keras 1.x wrote (Keras 2 renamed every one of them).
KERAS1_KEYS = frozenset({
    "nb_filter", "nb_row", "nb_col", "border_mode", "subsample", "dim_ordering", "init",
    "inner_init", "W_regularizer", "b_regularizer", "W_constraint", "b_constraint",
    "input_dtype",
})
KERAS1_CLASSES = frozenset({
    "Convolution1D", "Convolution2D", "Convolution3D", "Deconvolution2D", "AtrousConvolution2D",
    "Merge", "MaxoutDense", "Highway",
})
# channels_first layers that TensorFlow cannot run on a CPU: (rank of the input, including batch).
NCHW_UNSUPPORTED_ON_CPU = {"Conv1D": 3, "Conv2D": 4, "Conv2DTranspose": 4}
# Layers whose kernels Keras 2 flipped when a Theano-written file was loaded under TensorFlow.
THEANO_FLIPPED = frozenset({"Conv1D", "Conv2D", "Conv3D", "Conv2DTranspose"})
MODEL_CLASSES = frozenset({"Sequential", "Model", "Functional"})
# Arguments tf.keras 2.x wrote that Keras 3 does not take, dropped when they hold the default.
DROP_IF_DEFAULT: dict[str, dict[str, object]] = {
    **{cls: {"time_major": False} for cls in ("SimpleRNN", "GRU", "LSTM")},
    **{cls: {"groups": 1} for cls in ("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")},
}


# --- metadata ---------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "decode"):
        return str(value.decode("utf-8"))
    return str(value)


def _major(version: str | None) -> int | None:
    head = (version or "").split(".")[0]
    return int(head) if head.isdigit() else None


def member_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe a member file: {"format": "h5"|"keras", "keras_version", "backend"}.

    Reads metadata only (the HDF5 root attributes, or `metadata.json` of a `.keras` zip);
    cheap enough for listings. Values that the file does not record are None.
    Raises ModelLoadError when the file is not a readable `.h5` or `.keras` file.
    """
    path = Path(path)
    if path.suffix == ".keras":
        try:
            with zipfile.ZipFile(path) as zf:
                if zf.getinfo("metadata.json").file_size > 1024 * 1024:
                    raise ValueError("metadata.json is too large")
                meta = json.loads(zf.read("metadata.json"))
        except Exception as exc:
            raise ModelLoadError(f"{path.name}: not a readable .keras file ({exc})") from exc
        return {"format": "keras", "keras_version": meta.get("keras_version"), "backend": None}
    if path.suffix not in H5_SUFFIXES:
        raise ModelLoadError(f"{path.name}: not a Keras model file (expected .keras, .h5 or .hdf5)")
    if path.is_file() and not h5py.is_hdf5(path):
        raise ModelLoadError(f"{path.name} is not a Keras model: a {path.suffix} file is the HDF5 file that "
                             f"model.save('name{path.suffix}') writes, and this file is not HDF5")
    try:
        with h5py.File(path, "r") as f:
            weights = f.get("model_weights", getlink=True)
            group_attrs = f["model_weights"].attrs if isinstance(weights, h5py.HardLink) else {}
            version = f.attrs.get("keras_version", group_attrs.get("keras_version"))
            backend = f.attrs.get("backend", group_attrs.get("backend"))
            return {"format": "h5", "keras_version": _text(version), "backend": _text(backend)}
    except Exception as exc:
        raise ModelLoadError(f"{path.name}: not a readable HDF5 file ({exc})") from exc


# --- config normalization ---------------------------------------------------------------


class _Keras1Config(Exception):
    """Raised inside normalize_config when a layer uses Keras 1.x names."""


def normalize_config(model_config: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a Keras 2.x `model_config` ({"class_name", "config"}) so Keras 3 reads it.

    Returns a new dict; the argument is not changed. See the module docstring for what
    is rewritten. Raises LegacyFormatError when the config uses Keras 1.x names.
    """
    try:
        return _model(copy.deepcopy(model_config))
    except _Keras1Config as exc:
        raise LegacyFormatError(
            f"the config uses Keras 1.x names ({exc}); Keras 1.x files cannot be loaded"
        ) from None


def _model(entry: dict[str, Any]) -> dict[str, Any]:
    cls: Any = entry.get("class_name")
    config: Any = entry.get("config")  # malformed configs raise here; load_member reports them
    if cls == "Sequential":
        if isinstance(config, list):
            name, layers = "sequential", config
        else:
            name, layers = config.get("name", "sequential"), config.get("layers", [])
        first = layers[0].get("config") if layers else None
        if isinstance(first, dict) and first.get("batch_input_shape") is not None \
                and layers[0].get("class_name") != "InputLayer":
            layers.insert(0, {"class_name": "InputLayer", "config": {
                "batch_shape": first["batch_input_shape"], "dtype": first.get("dtype") or "float32",
                "sparse": False, "name": f"{first.get('name', 'layer')}_input"}})
        _drop_input_shapes(layers)
        layers = [_layer(layer) for layer in layers]
        out = {**(config if isinstance(config, dict) else {}), "name": name, "layers": layers}
        return {**entry, "config": out}
    if cls in ("Model", "Functional"):
        _drop_input_shapes(config.get("layers", []))
        config["layers"] = [{**layer, **_layer(layer)} for layer in config.get("layers", [])]
        for key in ("input_layers", "output_layers"):  # one input/output: a tensor, not a list
            refs = config.get(key)
            if isinstance(refs, list) and len(refs) == 1 and isinstance(refs[0], list):
                config[key] = refs[0]
    return entry


def _drop_input_shapes(layers: list[Any]) -> None:
    """Only InputLayers may carry an input shape: Keras 3 misreads it on other layers."""
    for layer in layers:
        if isinstance(layer.get("config"), dict) and layer.get("class_name") != "InputLayer":
            layer["config"].pop("batch_input_shape", None)


def _layer(entry: dict[str, Any]) -> dict[str, Any]:
    """Normalize one {"class_name", "config"} layer entry (recursing into wrappers)."""
    cls: Any = entry.get("class_name")
    config: Any = entry.get("config")
    if cls in MODEL_CLASSES:
        return _model(entry)
    old = sorted(KERAS1_KEYS & config.keys()) if isinstance(config, dict) else []
    if cls in KERAS1_CLASSES or old:
        raise _Keras1Config(f"{cls}: {', '.join(old)}" if old else cls)
    if not isinstance(config, dict):
        return entry
    if cls == "InputLayer" and "batch_input_shape" in config:
        config["batch_shape"] = config.pop("batch_input_shape")
    if cls == "LeakyReLU" and "alpha" in config:
        config["negative_slope"] = config.pop("alpha")
    for key, default in DROP_IF_DEFAULT.get(cls, {}).items():
        if key in config and config[key] == default:
            del config[key]
    if cls == "Lambda":
        _lambda(config)
    inner = config.get("layer")  # TimeDistributed, Bidirectional
    if isinstance(inner, dict) and "class_name" in inner:
        config["layer"] = _layer(inner)
    if cls in NCHW_UNSUPPORTED_ON_CPU and config.get("data_format") == "channels_first":
        return _channels_last({"class_name": cls, "config": config})
    return {"class_name": cls, "config": config}


def _lambda(config: dict[str, Any]) -> None:
    """Old Lambda layout -> Keras 3's: Python code becomes a `__lambda__` object.

    Keras 3 then refuses it under safe_mode exactly as it refuses a Keras 3 Lambda.
    """
    for key, kind in (("function", "function_type"), ("output_shape", "output_shape_type")):
        if config.pop(kind, None) == "lambda" and isinstance(config.get(key), list):
            code, defaults, closure = config[key]
            config[key] = {"class_name": "__lambda__",
                           "config": {"code": code, "defaults": defaults, "closure": closure}}


def _channels_last(entry: dict[str, Any]) -> dict[str, Any]:
    """A channels_first Conv1D/2D/2DTranspose entry -> a Sequential of the same name.

    The Sequential holds [Permute to channels_last, the conv in channels_last, Permute
    back]. It keeps the conv's name, inbound nodes and weight order, so the rest of the
    graph, the layer order that weights load by, and the weights themselves stay as they
    are (a conv kernel has the same layout in both data formats).
    """
    config = entry["config"]
    name, rank = config["name"], NCHW_UNSUPPORTED_ON_CPU[entry["class_name"]]
    dtype = config.get("dtype") or "float32"

    def permute(suffix: str, dims: list[int]) -> dict[str, Any]:
        return {"class_name": "Permute",
                "config": {"name": f"{name}_{suffix}", "dtype": dtype, "dims": dims}}

    conv = {"class_name": entry["class_name"],
            "config": {**config, "name": f"{name}_conv", "data_format": "channels_last"}}
    conv["config"].pop("batch_input_shape", None)
    layers = [permute("to_channels_last", [*range(2, rank), 1]), conv,
              permute("to_channels_first", [rank - 1, *range(1, rank - 1)])]
    return {**entry, "class_name": "Sequential", "config": {"name": name, "layers": layers}}


# --- loading ----------------------------------------------------------------------------


def _load_keras3(path: Path, name: str, trusted: bool, model_name: str = "") -> keras.Model:
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not trusted)
    except Exception as exc:
        text = str(exc)
        if "safe_mode" in text or "arbitrary code execution" in text:
            raise UnsafeModelError(
                f"{name}: the model has a Lambda layer with Python code, and loading it "
                "would run that code, so it is refused",
                hint=Hint(Step.TRUST, model_name),
            ) from exc
        first = text.strip().splitlines()[0] if text.strip() else ""
        raise ModelLoadError(
            f"{name}: cannot load as a Keras model ({type(exc).__name__}: {first[:300]})"
        ) from exc


def load_member(path: str | os.PathLike[str], *, trusted: bool = False, model_name: str = "") -> keras.Model:
    """Load one member file (`.keras`, `.h5` or `.hdf5`) as an uncompiled keras.Model.

    `trusted=False` keeps Keras safe_mode on: a Lambda layer with Python code raises
    UnsafeModelError, whose hint names `model_name` (the archive's model, whose trust would
    allow it). Keras 1.x files raise LegacyFormatError naming the version found.
    Anything else that is not a loadable Keras model raises ModelLoadError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path.name}: no such file")
    if path.suffix == ".keras":
        if not zipfile.is_zipfile(path):  # Keras itself would say "File not found" of a file that exists
            raise ModelLoadError(f"{path.name} is not a Keras model: a .keras file is the zip archive that "
                                 "model.save('name.keras') writes, and this file is not a zip archive")
        return _load_keras3(path, path.name, trusted, model_name)
    info = member_info(path)
    version = info["keras_version"]
    if (_major(version) or 0) >= 3:
        return _load_keras3(path, path.name, trusted, model_name)  # Keras 3 wrote it: nothing to fix
    if _major(version) == 1:
        raise LegacyFormatError(
            f"{path.name}: written by Keras {version}; Keras 1.x files cannot be loaded. "
            "Re-save the model with Keras 2, or rebuild it and load its weights."
        )
    original = _read_config(path)
    try:
        fixed = normalize_config(original)
    except LegacyFormatError as exc:
        found = f"Keras {version}" if version else "Keras 1.x (no keras_version recorded)"
        raise LegacyFormatError(f"{path.name}: written by {found}: {exc}") from None
    except Exception as exc:
        raise ModelLoadError(f"{path.name}: malformed model_config ({exc})") from exc
    if fixed == original:
        model = _load_keras3(path, path.name, trusted, model_name)
    else:
        model = _load_rewritten(path, fixed, trusted, model_name)
    if info["backend"] == "theano":
        _flip_theano_kernels(model)
    return model


def _read_config(path: Path) -> dict[str, Any]:
    with h5py.File(path, "r") as f:
        if "model_config" not in f.attrs:
            raise ModelLoadError(
                f"{path.name}: the HDF5 file holds no Keras model (no model_config; "
                "a weights-only file cannot be served)"
            )
        if f.attrs.get_id("model_config").get_storage_size() > MAX_CONFIG_BYTES:
            raise ModelLoadError(f"{path.name}: model_config is larger than {MAX_CONFIG_BYTES} bytes")
        raw = _text(f.attrs["model_config"])
    try:
        config = json.loads(raw or "")
    except (ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{path.name}: model_config is not JSON ({exc})") from exc
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelLoadError(f"{path.name}: model_config is not a Keras model config")
    return config


def _load_rewritten(path: Path, config: dict[str, Any], trusted: bool, model_name: str = "") -> keras.Model:
    """Copy the file, replace its model_config attribute, load the copy, delete it."""
    text = np.bytes_(json.dumps(config, separators=(",", ":")).encode("utf-8"))
    tmpdir = tempfile.mkdtemp(prefix="yyai-h5-")
    try:
        copy_path = Path(tmpdir) / "model.h5"
        shutil.copyfile(path, copy_path)
        try:
            with h5py.File(copy_path, "r+") as f:
                f.attrs["model_config"] = text
        except Exception:  # noqa: BLE001 - the copy did not take the config; rebuilt below
            # An old-format file keeps attributes in a 64 KiB object header; a grown
            # config may not fit. Rebuild the copy in the newer format instead.
            _rebuild(path, copy_path, text)
        return _load_keras3(copy_path, path.name, trusted, model_name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _rebuild(src: Path, dst: Path, config_text: np.bytes_) -> None:
    """Write `dst` afresh (HDF5 1.8+ format): root attributes, new config, model_weights.

    Links and datasets inside model_weights are copied as they are (links are not
    followed), so Keras 3 still sees, and refuses, anything hostile in them.
    """
    try:
        with h5py.File(src, "r") as s, h5py.File(dst, "w", libver="latest") as d:
            if not isinstance(s.get("model_weights", getlink=True), h5py.HardLink):
                raise ValueError("model_weights is missing or is a link")
            for key in ("keras_version", "backend"):
                if key in s.attrs:
                    d.attrs[key] = s.attrs[key]
            d.attrs["model_config"] = config_text
            s.copy("model_weights", d, expand_soft=False, expand_external=False)
    except Exception as exc:
        raise ModelLoadError(
            f"{src.name}: cannot write the normalized config into a temporary copy ({exc})"
        ) from exc


def _flip_theano_kernels(model: keras.Model) -> None:
    """Flip the spatial axes of conv kernels, as Keras 2 did for Theano-written files."""
    for layer in _all_layers(model):
        if type(layer).__name__ in THEANO_FLIPPED and getattr(layer, "kernel", None) is not None:
            kernel = np.asarray(layer.kernel.numpy())
            spatial = tuple(range(kernel.ndim - 2))
            layer.kernel.assign(np.flip(kernel, axis=spatial).copy())


def _all_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
        inner = getattr(layer, "layer", None)  # TimeDistributed
        if inner is not None:
            yield inner


def convert_to_keras(src: str | os.PathLike[str], dst: str | os.PathLike[str], *, trusted: bool = False) -> Path:
    """Load `src` as load_member does and save it in the native format at `dst` (.keras).

    The result loads through the plain `.keras` path, with no legacy rewriting. The file
    is written to a temporary name in dst's folder, then renamed into place.
    """
    dst = Path(dst)
    if dst.suffix != ".keras":
        raise ValueError(f"convert_to_keras writes a .keras file, not {dst.name}")
    model = load_member(src, trusted=trusted)
    tmp = dst.with_name(f".tmp-{os.getpid()}-{dst.name}")
    try:
        model.save(tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst
