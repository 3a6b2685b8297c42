"""Small real Keras models packed into real archives, for registry and server tests.

Every model is tiny (a few hundred weights) and seeded, so a test builds what it needs
in well under a second and compares against the same Keras model called directly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

INPUT_SPEC = {"name": "input", "shape": [4, 4, 1], "dtype": "float32", "color": "grayscale",
              "resize": "stretch", "scale": 1 / 255, "offset": 0.0}
LABELS = ["cat", "dog", "eel"]
DEMO = Path(__file__).resolve().parent.parent / "model_archives"  # the bundled demo archives


def tiny_classifier(seed: int, units: int = 8):
    """A seeded softmax classifier over 4x4x1 inputs with three classes."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(4, 4, 1), name="input")
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(units, activation="relu")(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax")(x)
    return keras.Model(inputs, outputs, name=f"tiny_{seed}")


def pack_models(out_dir: Path, name: str, version: int, seeds: list[int], *, fmt: str = "keras",
                batching: dict | None = None, combine: str = "mean") -> tuple[Path, list]:
    """Build one seeded member per seed, pack them as ``name`` ``version``; return (path, models)."""
    from yyai_kernel.archive import pack

    work = Path(out_dir) / f".build-{name}-{version}-{'-'.join(map(str, seeds))}"
    work.mkdir(parents=True, exist_ok=True)
    models, files = [], []
    for seed in seeds:
        model = tiny_classifier(seed)
        path = work / f"m{seed}.{fmt}"
        model.save(path)
        models.append(model)
        files.append(path)
    archive = pack(
        name=name, version=version, models=files, input_spec=INPUT_SPEC,
        output_spec={"kind": "classification", "labels": LABELS},
        combine=combine, batching=batching or {"max_batch_size": 8, "max_delay_ms": 2.0},
        out_dir=work,
    )
    return archive, models


def reference(models: list, x: np.ndarray) -> dict:
    """Each member's output and their mean, from the Keras models called directly."""
    outputs = [np.asarray(m(x, training=False)) for m in models]
    return {"members": outputs, "combined": np.mean(outputs, axis=0)}


def install(archive: Path, store_dir: Path, filename: str | None = None) -> Path:
    """Copy an archive into a store folder atomically (copy to a hidden temp, then rename)."""
    target = Path(store_dir) / (filename or archive.name)
    temp = target.with_name(f".tmp-{target.name}")
    shutil.copyfile(archive, temp)
    temp.replace(target)
    return target


def sample_inputs(n: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 4, 4, 1), dtype=np.float32)


def pack_raising(out_dir: Path, name: str, version: int) -> Path:
    """A trusted archive whose model raises on any input value over 0.5 (zeros, its warm-up, pass).

    Its Lambda layer runs ``tf.debugging.check_numerics`` on ``log(0.5 - x)``: a real
    model that fails at run time, for tests of versions that raise while serving.
    """
    import keras

    from yyai_kernel.archive import pack

    work = Path(out_dir) / f".build-{name}-{version}-raising"
    work.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4, 4, 1), name="input")
    x = keras.layers.Lambda(lambda t: t + 0.0 * __import__("tensorflow").debugging.check_numerics(
        __import__("tensorflow").math.log(0.5 - t), "refuses inputs over 0.5"))(inputs)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax")(keras.layers.Flatten()(x))
    path = work / "raising.keras"
    keras.Model(inputs, outputs).save(path)
    return pack(name=name, version=version, models=[path], input_spec=INPUT_SPEC,
                output_spec={"kind": "classification", "labels": LABELS}, out_dir=work, trusted=True)


def clear_cut(*outputs: np.ndarray, margin: float = 1e-3) -> np.ndarray:
    """The rows on which every ``[B, K]`` output's top label leads the next by more than ``margin``:
    inputs where float noise (a batch of another size) cannot flip a top-1 comparison."""
    keep = np.ones(len(outputs[0]), dtype=bool)
    for output in outputs:
        top = np.sort(output, axis=1)
        keep &= top[:, -1] - top[:, -2] > margin
    return np.flatnonzero(keep)


def demo_store(store: Path, names: tuple[str, ...] | None = None) -> Path:
    """``store`` holding a copy of every bundled demo archive (or of the ones ``names`` lists)."""
    for archive in DEMO.glob("*.yyar") if names is None else (DEMO / name for name in names):
        shutil.copyfile(archive, store / archive.name)
    return store


def demo_registry(store: Path):
    """A Registry over a copy of the demo archives, every default loaded (close it when done)."""
    from yyai_kernel.registry.registry import Registry
    from yyai_kernel.store.store import ModelStore

    registry = Registry(ModelStore(demo_store(store)))
    assert registry.load_all() == {}
    return registry


# --- models that take no image: a table, tensors, several inputs ---------------------------

CHURN_FEATURES = [
    {"name": "age", "kind": "numeric", "mean": 40.0, "std": 10.0},
    {"name": "income", "kind": "numeric"},
    {"name": "plan", "kind": "categorical", "vocabulary": ["free", "pro", "team"], "encoding": "onehot"},
    {"name": "region", "kind": "categorical", "vocabulary": ["north", "south"], "encoding": "index"},
]
CHURN_LABELS = ["stays", "leaves"]
CHURN_ROWS = "age,income,plan,region\n41,3.5,pro,north\n23,1.25,free,south\n67,0.5,team,north\n"


def churn_columns(record: dict) -> list[float]:
    """A churn record as the model's columns, written out by hand (the reference for runtime/tabular.py)."""
    plan = [1.0 if record["plan"] == p else 0.0 for p in ("free", "pro", "team")]
    return [(float(record["age"]) - 40.0) / 10.0, float(record["income"]), *plan,
            float(["north", "south"].index(record["region"]))]


def table_models(out_dir: Path) -> dict:
    """Seeded Keras models that take no image, each packed with ``pack_model`` into ``out_dir``:
    ``churn`` (a table: normalised numbers, a one-hot and an index category), ``signal`` (a
    1-D tensor [16], regression), ``grid`` (a 2-D tensor [4, 4]) and ``multi`` (several inputs:
    a table, an int32 category index into an Embedding, a tensor). Returns {name: (path, model)}."""
    import keras

    from yyai_kernel.archive.packmodel import pack_model

    L = keras.layers
    built = {}
    keras.utils.set_random_seed(11)
    churn = keras.Sequential([keras.Input((6,), name="row"), L.Dense(8, activation="tanh"),
                              L.Dense(2, activation="softmax")], name="churn_mlp")
    built["churn"] = (pack_model(churn, name="churn", version=1, labels=CHURN_LABELS, out=out_dir,
                                 input={"features": CHURN_FEATURES}, batching={"max_batch_size": 8}), churn)
    keras.utils.set_random_seed(12)
    signal = keras.Sequential([keras.Input((16,), name="window"), L.Dense(4, activation="relu"), L.Dense(1)],
                              name="signal_net")
    built["signal"] = (pack_model(signal, name="signal", version=1, regression="level", out=out_dir,
                                  input={"kind": "tensor", "name": "window"}), signal)
    keras.utils.set_random_seed(13)
    grid = keras.Sequential([keras.Input((4, 4), name="grid"), L.Flatten(), L.Dense(3, activation="softmax")],
                            name="grid_net")
    built["grid"] = (pack_model(grid, name="grid", version=1, labels=["low", "mid", "high"], out=out_dir,
                                input={"kind": "tensor", "name": "grid"}), grid)
    keras.utils.set_random_seed(14)
    numeric = keras.Input((2,), name="numeric")
    plan = keras.Input((1,), name="plan", dtype="int32")
    history = keras.Input((3,), name="history")
    embedded = L.Flatten()(L.Embedding(3, 2)(plan))
    joined = L.Concatenate()([numeric, embedded, history])
    multi = keras.Model([numeric, plan, history], L.Dense(2, activation="softmax")(L.Dense(6, activation="relu")(
        joined)), name="multi_net")
    built["multi"] = (pack_model(multi, name="multi", version=1, labels=CHURN_LABELS, out=out_dir, input=[
        {"features": [{"name": "age", "kind": "numeric", "mean": 40.0, "std": 10.0},
                      {"name": "income", "kind": "numeric"}]},
        {"features": [{"name": "plan", "kind": "categorical", "vocabulary": ["free", "pro", "team"],
                       "encoding": "index"}], "dtype": "int32"},
        {"kind": "tensor"},
    ]), multi)
    return built
