"""Build the bundled demo archives in ``model_archives/``, reproducibly.

Everything comes from data that ships inside scikit-learn (``load_digits``,
``load_sample_images`` and ``load_wine``); nothing is downloaded. Seeds are fixed and TensorFlow runs with
deterministic ops on the CPU, so a rebuild on the same machine gives the same weights.
Other machines may differ in the last bits, which is why the committed archives are the
reference and ``--check`` compares outputs with a tolerance instead of bytes.

Archives written (through ``yyai_kernel.archive.pack``):

* ``digits-1.yyar``: one small CNN saved as legacy ``.h5`` (exercises the h5 path).
* ``digits-2.yyar``: an ensemble of three ``.keras`` members (CNN, MLP, wider CNN), combine mean.
* ``colorfulness-1.yyar``: a CNN regressing the Hasler-Suesstrunk colorfulness of a 32x32
  RGB patch (the model expects RGB, so the BGR decode of OpenCV must be converted).
* ``wine-1.yyar`` and ``wine-2.yyar``: a table model over the 13 named features of the wine
  data, each normalised with ``(value - mean) / std`` as the manifest records (the training
  split's mean and std): v1 a multinomial logistic regression trained on six rows, v2 a
  small MLP trained on the whole training split. Their sample
  is a CSV of held-out rows, their labelled set a CSV with a ``label`` column.

Each archive bundles its sample images (role ``sample``); the same files are written to
``model_archives/samples/`` with ``expected.json`` (their outputs through the real
preprocessing in ``yyai_kernel.runtime.images``) and ``model_archives/README.md`` holds the
held-out scores. Each also bundles a small held-out labelled set (role ``eval``): one zip,
``eval/<model>-eval.zip``, in the form a user uploads (``labels.csv`` + ``images/``). One
zip rather than one manifest entry per image, because an archive holds at most 64 entries.
The sets need no training, so ``--add-eval`` adds them to the committed archives while
their member files stay byte-identical (a rebuild may not reproduce the weights exactly).

Usage::

    python scripts/make_demo_archives.py              # rebuild model_archives/
    python scripts/make_demo_archives.py --check      # rebuild in a temp dir, compare outputs
    python scripts/make_demo_archives.py --add-eval   # only (re)add the eval sets
    python scripts/make_demo_archives.py --only wine  # only (re)build the wine archives
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Train on the CPU whatever the machine: same numbers everywhere (as far as floats allow).
os.environ["CUDA_VISIBLE_DEVICES"] = "-1"

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "model_archives"
SEED = 20261125
TOLERANCE = 1e-4
SCALE = 1.0 / 255.0
DIGIT_LABELS = [str(i) for i in range(10)]

DIGITS_INPUT = {
    "name": "input",
    "shape": [8, 8, 1],
    "dtype": "float32",
    "color": "grayscale",
    "resize": "stretch",
    "scale": SCALE,
    "offset": 0.0,
}
DIGITS_OUTPUT = {"kind": "classification", "labels": DIGIT_LABELS}
COLOR_INPUT = {
    "name": "input",
    "shape": [32, 32, 3],
    "dtype": "float32",
    "color": "rgb",
    "resize": "stretch",
    "scale": SCALE,
    "offset": 0.0,
}
COLOR_OUTPUT = {"kind": "regression", "names": ["colorfulness"], "rounding": 2}


def _tf():
    """Import TensorFlow and Keras once, with fixed seeds and deterministic ops."""
    import keras
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    return tf, keras


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow through Keras before building or training a model."""
    _, keras = _tf()
    keras.utils.set_random_seed(seed)


def to_input(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels -> float32 model input, exactly as ``images.preprocess`` scales them."""
    x = pixels.astype(np.float32) * float(SCALE) + 0.0
    return x.astype(np.float32)


# --- digits ---------------------------------------------------------------------------


def digits_data():
    """Digits rendered as 8-bit images (round(value * 255 / 16)), split 75/25 with a fixed state."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    pixels = np.rint(d.images * 255.0 / 16.0).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    idx = np.arange(len(pixels))
    train, test = train_test_split(idx, test_size=0.25, random_state=0, stratify=d.target)
    return pixels, d.target.astype(np.int64), train, test


def digits_cnn(seed: int, filters: tuple[int, int], dense: int, name: str):
    """A small convolutional digits classifier."""
    _, keras = _tf()
    seed_everything(seed)
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((8, 8, 1), name="input"),
            L.Conv2D(filters[0], 3, padding="same", activation="relu"),
            L.Conv2D(filters[1], 3, padding="same", activation="relu"),
            L.MaxPooling2D(2),
            L.Flatten(),
            L.Dense(dense, activation="relu"),
            L.Dense(10, activation="softmax"),
        ],
        name=name,
    )


def digits_mlp(seed: int, name: str):
    """A plain multi-layer perceptron on the flattened 8x8 image."""
    _, keras = _tf()
    seed_everything(seed)
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((8, 8, 1), name="input"),
            L.Flatten(),
            L.Dense(64, activation="relu"),
            L.Dense(32, activation="relu"),
            L.Dense(10, activation="softmax"),
        ],
        name=name,
    )


def fit_classifier(model, x, y, *, seed: int, epochs: int, lr: float = 3e-3):
    """Train a classifier with Adam and sparse cross-entropy, fixed seed, no shuffling noise."""
    _, keras = _tf()
    seed_everything(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0, shuffle=True)
    return model


def save_weights_only_model(model, path: Path) -> None:
    """Save an uncompiled copy (architecture + weights, no optimizer state): a third of the size."""
    _, keras = _tf()
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    path.parent.mkdir(parents=True, exist_ok=True)
    clone.save(path)


def predict(model, x: np.ndarray) -> np.ndarray:
    """Offline evaluation (training script, not the serving path)."""
    return np.asarray(model(x, training=False))


# --- colorfulness ---------------------------------------------------------------------


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Suesstrunk (2003) colorfulness of an RGB image with values in 0..255."""
    rgb = rgb.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    sigma = np.sqrt(rg.std() ** 2 + yb.std() ** 2)
    mu = np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    return float(sigma + 0.3 * mu)


# Columns [0, TRAIN_END) of each sample image train the model; [EVAL_START, 640) evaluate it.
TRAIN_END = 480
EVAL_START = 496


def sample_images() -> list[tuple[str, np.ndarray]]:
    """The two RGB photos that ship with scikit-learn: ('china', array), ('flower', array)."""
    from sklearn.datasets import load_sample_images

    data = load_sample_images()
    return [(Path(f).stem, img) for f, img in zip(data.filenames, data.images)]


def resize_to(img: np.ndarray, size: int) -> np.ndarray:
    """Resize like ``images.py``: INTER_AREA when shrinking, INTER_LINEAR when enlarging."""
    if img.shape[0] == size and img.shape[1] == size:
        return img
    shrinking = img.shape[0] > size or img.shape[1] > size
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def random_patch(rng: np.random.Generator, img: np.ndarray, x0: int, x1: int) -> np.ndarray:
    """A random 32x32 patch from columns [x0, x1): random crop size (rescale), flips, rot90, desaturation."""
    size = int(rng.integers(16, 97))
    size = min(size, x1 - x0, img.shape[0])
    top = int(rng.integers(0, img.shape[0] - size + 1))
    left = int(rng.integers(x0, x1 - size + 1))
    patch = resize_to(img[top : top + size, left : left + size], 32)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rng.random() < 0.5:
        patch = patch[::-1]
    patch = np.rot90(patch, int(rng.integers(0, 4)))
    if rng.random() < 0.3:  # pull towards gray: low-colorfulness examples
        gray = patch.astype(np.float64).mean(axis=2, keepdims=True)
        a = rng.random()
        patch = np.rint(a * patch + (1 - a) * gray)
    return np.ascontiguousarray(np.clip(patch, 0, 255).astype(np.uint8))


def color_patches(seed: int, n: int, train: bool) -> tuple[np.ndarray, list[float]]:
    """n augmented patches (from the training or the held-out columns) and their colorfulness."""
    rng = np.random.default_rng(seed)
    photos = [img for _, img in sample_images()]
    x0, x1 = (0, TRAIN_END) if train else (EVAL_START, photos[0].shape[1])
    patches = [random_patch(rng, photos[i % len(photos)], x0, x1) for i in range(n)]
    return np.stack(patches), [colorfulness(p) for p in patches]


def color_data(n_train: int = 4000, n_eval: int = 800):
    """Augmented patches and their colorfulness labels: train from the left, eval from the right."""
    xtr, ytr = color_patches(SEED, n_train, train=True)
    xev, yev = color_patches(SEED + 1, n_eval, train=False)
    return xtr, np.asarray(ytr, dtype=np.float32), xev, np.asarray(yev, dtype=np.float32)


def color_model(seed: int):
    """A small CNN regressor; the output is rescaled so that it reads in colorfulness units."""
    _, keras = _tf()
    seed_everything(seed)
    L = keras.layers
    return keras.Sequential(
        [
            keras.Input((32, 32, 3), name="input"),
            L.Conv2D(16, 1, activation="relu"),
            L.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            L.Conv2D(32, 1, activation="relu"),
            L.GlobalAveragePooling2D(),
            L.Dense(32, activation="relu"),
            L.Dense(1),
            L.Rescaling(50.0, name="to_colorfulness"),
        ],
        name="colorfulness_cnn",
    )


# --- wine (a table model) ------------------------------------------------------------

WINE_SAMPLE_ROWS = 2  # held-out rows per class in the sample CSV
WINE_V1_ROWS = 2  # training rows per class that version 1 saw (an early model, before more rows were labelled)


def wine_data():
    """The wine data (178 rows, 13 numeric features, 3 cultivars), split 75/25 stratified with a fixed state."""
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    d = load_wine()
    idx = np.arange(len(d.target))
    train, test = train_test_split(idx, test_size=0.25, random_state=0, stratify=d.target)
    return d.data.astype(np.float64), d.target.astype(np.int64), list(d.feature_names), list(d.target_names), \
        train, test


def wine_features(x_train: np.ndarray, names: list[str]) -> list[dict]:
    """Each feature with the training split's mean and std (6 significant digits), as the manifest records them."""
    return [{"name": n, "kind": "numeric", "mean": float(f"{m:.6g}"), "std": float(f"{s:.6g}")}
            for n, m, s in zip(names, x_train.mean(axis=0), x_train.std(axis=0))]


def wine_input(x: np.ndarray, features: list[dict]) -> np.ndarray:
    """Raw feature values -> the model input, exactly as ``runtime/tabular.py`` normalises them."""
    mean = np.array([f["mean"] for f in features])
    std = np.array([f["std"] for f in features])
    return ((x - mean) / std).astype(np.float32)


def wine_model(seed: int, hidden: tuple[int, ...], name: str):
    """A softmax classifier over the 13 normalised features (no hidden layer: logistic regression)."""
    _, keras = _tf()
    seed_everything(seed)
    L = keras.layers
    return keras.Sequential([keras.Input((13,), name="features"), *(L.Dense(n, activation="relu") for n in hidden),
                             L.Dense(3, activation="softmax")], name=name)


def csv_text(header: list[str], rows: list[list]) -> str:
    """A CSV with a header; numbers written as they are (``repr``-exact floats)."""
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def build_wine(work: Path, out_dir: Path, scores: dict) -> tuple[list[Path], list[Path]]:
    """Train both wine versions and pack them into ``out_dir``; (archives, sample files)."""
    x, y, names, labels, train, test = wine_data()
    features = wine_features(x[train], names)
    xtr, xte = wine_input(x[train], features), wine_input(x[test], features)
    first = np.concatenate([np.random.default_rng(SEED + 7).choice([j for j in train if y[j] == c], WINE_V1_ROWS,
                                                                    replace=False) for c in range(3)])
    v1 = fit_classifier(wine_model(SEED + 50, (), "linear"), wine_input(x[first], features), y[first],
                        seed=SEED + 50, epochs=60, lr=1e-2)
    v2 = fit_classifier(wine_model(SEED + 60, (16, 8), "mlp"), xtr, y[train], seed=SEED + 60, epochs=150)
    p1, p2 = predict(v1, xte), predict(v2, xte)
    scores["wine"] = {"v1 linear": float((p1.argmax(1) == y[test]).mean()),
                      "v2 mlp": float((p2.argmax(1) == y[test]).mean()),
                      "disagree": int((p1.argmax(1) != p2.argmax(1)).sum()),
                      "train": len(train), "test": len(test)}
    paths = []
    for version, model in ((1, v1), (2, v2)):
        path = work / f"wine-v{version}" / f"{model.name}.keras"
        save_weights_only_model(model, path)
        paths.append(path)
    rng = np.random.default_rng(SEED + 5)
    picked = [int(j) for c in range(3) for j in sorted(rng.choice([j for j in test if y[j] == c], WINE_SAMPLE_ROWS,
                                                                      replace=False))]
    samples = work / "wine-samples" / "wine-rows.csv"
    samples.parent.mkdir(parents=True, exist_ok=True)
    samples.write_text(csv_text(names, [[float(v) for v in x[j]] for j in picked]))
    eval_csv = work / "wine-eval" / "wine-eval.csv"
    eval_csv.parent.mkdir(parents=True, exist_ok=True)
    eval_csv.write_text(csv_text(names + ["label"], [[float(v) for v in x[j]] + [labels[y[j]]] for j in test]))
    extras = [(samples, "samples/wine-rows.csv", "sample"), (eval_csv, "eval/wine-eval.csv", "eval")]
    described = {1: f"a multinomial logistic regression trained on the first {3 * WINE_V1_ROWS} labelled rows",
                 2: "an MLP (16 and 8 ReLU units) trained on the whole training split"}
    accuracy = {1: scores["wine"]["v1 linear"], 2: scores["wine"]["v2 mlp"]}
    archives = [
        pack_archive(out_dir, name="wine", version=version, models=[path],
                     input_spec={"kind": "table", "name": "features", "dtype": "float32", "features": features},
                     output_spec={"kind": "classification", "labels": labels},
                     description=f"Wine cultivar from 13 chemical measurements (sklearn load_wine), each normalised "
                     f"with the training mean and std: {described[version]}. Held-out accuracy "
                     f"{accuracy[version]:.3f}.", combine="mean", extra_files=extras)
        for version, path in ((1, paths[0]), (2, paths[1]))
    ]
    return archives, [samples]


def wine_readme(w: dict) -> str:
    """The README section on the wine archives."""
    return f"""## wine (versions 1 and 2)

A table model: the 13 chemical measurements of `load_wine` (alcohol, malic_acid, ...,
proline), named in the manifest's `input.features` in the model's column order, each
normalised with `(value - mean) / std`, the mean and std of the training split as the
manifest records them (so a client sends raw measurements). Labels `class_0`..`class_2`
(three cultivars). Split 75/25 stratified with `random_state=0` ({w['train']} train /
{w['test']} test rows). Version 1 is a multinomial logistic regression trained on only
{3 * WINE_V1_ROWS} rows ({WINE_V1_ROWS} per cultivar, an early model), version 2 an MLP trained on the whole
training split; they pick different classes on {w['disagree']} test rows.

| model | held-out accuracy |
|---|---|
| v1 linear | {w['v1 linear']:.4f} |
| v2 mlp | {w['v2 mlp']:.4f} |

The sample (`samples/wine-rows.csv`, role `sample`) holds {WINE_SAMPLE_ROWS} held-out rows per
class; the labelled set (`eval/wine-eval.csv`, role `eval`) is the whole test split with a
`label` column.

"""


# --- samples --------------------------------------------------------------------------


def encode_image(image: np.ndarray, *, rgb: bool = False, ext: str = ".png") -> bytes:
    """Encode uint8 pixels (gray, or RGB when ``rgb``) with OpenCV, deterministically."""
    if image.ndim == 3 and image.shape[2] == 3 and rgb:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise RuntimeError(f"could not encode an image as {ext}")
    return buf.tobytes()


def write_png(path: Path, image: np.ndarray, *, rgb: bool = False, ext: str = ".png") -> None:
    """Write uint8 pixels (gray, or RGB when ``rgb``) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_image(image, rgb=rgb, ext=ext))


def digit_samples(pixels, target, test, probs_v1, probs_v2, stage: Path) -> list[Path]:
    """One held-out 8x8 PNG per class, two 64x64 upscales, and one image where v1 and v2 disagree."""
    out = []
    for c in range(10):
        i = next(j for j in test if target[j] == c)
        p = stage / f"digit-{c}.png"
        write_png(p, pixels[i])
        out.append(p)
    for c in (3, 8):
        i = next(j for j in test if target[j] == c)
        big = cv2.resize(pixels[i][:, :, 0], (64, 64), interpolation=cv2.INTER_NEAREST)
        p = stage / f"digit-{c}-64.png"
        if c == 8:  # a 3-channel file: the grayscale conversion runs too
            big = np.repeat(big[:, :, None], 3, axis=2)
            p = stage / f"digit-{c}-64rgb.png"
        write_png(p, big)
        out.append(p)
    # A held-out image where the two versions pick different classes: useful for swap tests.
    a1, a2 = probs_v1.argmax(1), probs_v2.argmax(1)
    gap = np.abs(probs_v1 - probs_v2).max(1)
    disagree = [k for k in range(len(test)) if a1[k] != a2[k]]
    if disagree:
        k = max(disagree, key=lambda k: gap[k])
        p = stage / f"digit-{target[test[k]]}-disputed.png"
        write_png(p, pixels[test[k]])
        out.append(p)
    return out


def color_samples(stage: Path) -> list[Path]:
    """64x64 crops from the held-out region of each photo (PNG and JPEG), plus a gray one."""
    rng = np.random.default_rng(SEED + 2)
    out = []
    for name, img in sample_images():
        for k, ext in enumerate((".png", ".jpg")):
            top = int(rng.integers(0, img.shape[0] - 64))
            left = int(rng.integers(EVAL_START, img.shape[1] - 64))
            crop = img[top : top + 64, left : left + 64]
            p = stage / f"{name}-{k + 1}{ext}"
            write_png(p, crop, rgb=True, ext=ext)
            out.append(p)
            if name == "flower" and k == 0:
                gray = np.repeat(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[:, :, None], 3, axis=2)
                p = stage / f"{name}-gray.png"
                write_png(p, gray, rgb=True)
                out.append(p)
    return out


# --- labelled evaluation sets (manifest role "eval") ------------------------------------

EVAL_DIGITS_PER_CLASS = 20
EVAL_COLOR_ITEMS = 150
SUMMARY = ("n", "accuracy", "top_k", "macro_f1", "mae", "rmse", "r2")  # the scores the README shows


def write_set_zip(path: Path, column: str, rows: list[tuple[str, bytes, str]]) -> Path:
    """A labelled-set zip: labels.csv (file,<column>) and images/<name>; the same bytes every run."""
    lines = [f"file,{column}"] + [f"images/{name},{value}" for name, _, value in rows]
    entries = [("labels.csv", ("\n".join(lines) + "\n").encode())]
    entries += [(f"images/{name}", data) for name, data, _ in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for arcname, data in entries:
            info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return path


def digits_eval_set(stage: Path) -> Path:
    """20 test-split images per class, drawn with a fixed seed, as PNG with their labels."""
    pixels, target, _, test = digits_data()
    rng = np.random.default_rng(SEED + 3)
    chosen = []
    for c in range(10):
        of_class = [int(j) for j in test if target[j] == c]
        chosen += sorted(int(j) for j in rng.choice(of_class, EVAL_DIGITS_PER_CLASS, replace=False))
    rows = [(f"digit-{j:04d}.png", encode_image(pixels[j]), str(int(target[j]))) for j in chosen]
    return write_set_zip(stage / "digits-eval.zip", "label", rows)


def color_eval_set(stage: Path) -> Path:
    """The first held-out patches (the same as the README's held-out scores start with), as RGB PNG."""
    patches, labels = color_patches(SEED + 1, EVAL_COLOR_ITEMS, train=False)
    rows = [(f"patch-{i:03d}.png", encode_image(p, rgb=True), f"{y:.6f}")
            for i, (p, y) in enumerate(zip(patches, labels))]
    return write_set_zip(stage / "colorfulness-eval.zip", "target", rows)


def eval_sets(stage: Path) -> dict[str, Path]:
    """Each demo model's labelled set, by model name."""
    return {"digits": digits_eval_set(stage), "colorfulness": color_eval_set(stage)}


def eval_scores(out_dir: Path) -> dict:
    """Every version of every archive in ``out_dir`` evaluated on its bundled set, through a Registry."""
    from yyai_kernel.evaluation.run import evaluate
    from yyai_kernel.evaluation.sets import set_from_archive
    from yyai_kernel.plane.local import LocalBackend
    from yyai_kernel.registry.registry import Registry
    from yyai_kernel.store.store import ModelStore

    registry = Registry(ModelStore(out_dir), batching=False)
    backend = LocalBackend.over(registry)
    scores = {}
    try:
        for name in registry.names():
            versions = registry.store.versions(name)
            for v in versions:
                registry.load(name, v)
            dataset = set_from_archive(registry.store.record(name, versions[-1]).path)
            result = evaluate(backend, name, versions, dataset)
            scores[name] = {
                "set": dataset.description.split(":", 1)[1], "n": len(result.items),
                "versions": {r.version: {k: v for k, v in r.scores.to_json().items() if k in SUMMARY}
                             for r in result.versions},
                "disagree": {f"v{p.a}/v{p.b}": len(p.disagreements) for p in result.pairs},
            }
    finally:
        backend.close()
    return scores


def repack_with_eval(path: Path, eval_zip: Path, out_dir: Path) -> Path:
    """``path`` re-packed into ``out_dir`` with ``eval_zip`` as its eval set; members and samples unchanged."""
    from yyai_kernel import archive
    from yyai_kernel.types import FileRole

    with archive.open_archive(path) as opened:
        m = opened.manifest
        kept = [(opened.member_path(f), f.path, f.role) for f in m.files if f.role is not FileRole.EVAL]
        new = archive.pack(
            name=m.name, version=m.version, models=[opened.member_path(x) for x in m.members],
            input_spec=m.input, output_spec=m.output, description=m.description, combine=m.combine,
            batching=m.batching, extra_files=kept + [(eval_zip, f"eval/{eval_zip.name}", FileRole.EVAL)],
            out_dir=out_dir,
        )
    if archive.read_manifest(new).members != m.members:
        raise RuntimeError(f"{path.name}: re-packing changed a member; refusing to replace it")
    return new


def add_eval(out_dir: Path) -> dict:
    """Add (or replace) the bundled eval sets of the archives in ``out_dir`` without retraining."""
    work = Path(tempfile.mkdtemp(prefix="yyai-eval-"))
    try:
        sets = eval_sets(work / "sets")
        staged = [repack_with_eval(p, sets[p.name.rsplit("-", 1)[0]], work / "out")
                  for p in sorted(out_dir.glob("*.yyar")) if p.name.rsplit("-", 1)[0] in sets]
        for new in staged:
            os.replace(new, out_dir / new.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    scores = eval_scores(out_dir)
    readme_path = out_dir / "README.md"
    readme_path.write_text(patch_readme(readme_path.read_text(), scores, sorted(out_dir.glob("*.yyar"))))
    return scores


def add_only(out_dir: Path) -> dict:
    """(Re)build the wine archives in ``out_dir``; samples, expected.json and the README follow."""
    tf, _ = _tf()
    tf.config.threading.set_inter_op_parallelism_threads(2)
    work = Path(tempfile.mkdtemp(prefix="yyai-wine-"))
    scores: dict = {}
    try:
        archives, samples = build_wine(work, work / "out", scores)
        for path in archives:
            os.replace(path, out_dir / path.name)
        for path in samples:
            shutil.copy2(path, out_dir / "samples" / path.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    archives = [out_dir / a.name for a in archives]
    expected_path = out_dir / "samples" / "expected.json"
    expected = json.loads(expected_path.read_text())
    expected.update({a.name: archive_outputs(a) for a in archives})
    expected_path.write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    scores["eval"] = eval_scores(out_dir)
    readme_path = out_dir / "README.md"
    text = readme_path.read_text()
    for a in archives:  # a new archive's size row, after the last one
        if f"| `{a.name}` |" not in text:
            rows = re.findall(r"^\| `[^`]+\.yyar` \| \d+ KiB \|$", text, flags=re.M)
            text = text.replace(rows[-1], rows[-1] + f"\n| `{a.name}` | 0 KiB |", 1)
    section = wine_readme(scores["wine"])
    if "## wine" in text:
        text = re.sub(r"## wine .*?(?=\n## )", lambda _: section.rstrip("\n") + "\n", text, flags=re.S)
    else:
        text = text.replace("## Evaluation sets", section + "## Evaluation sets", 1)
    readme_path.write_text(patch_readme(text, scores["eval"], sorted(out_dir.glob("*.yyar"))))
    return scores


# --- build ----------------------------------------------------------------------------


def pack_archive(out_dir: Path, **kwargs) -> Path:
    """``archive.pack`` into ``out_dir``."""
    from yyai_kernel import archive

    return archive.pack(out_dir=out_dir, **kwargs)


def build(out_dir: Path) -> dict:
    """Train every model, write samples, pack the archives into ``out_dir``; return the scores."""
    t0 = time.time()
    tf, keras = _tf()
    tf.config.threading.set_inter_op_parallelism_threads(2)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="yyai-demo-"))
    scores: dict = {"digits": {}, "colorfulness": {}}
    try:
        # digits ------------------------------------------------------------------
        pixels, target, train, test = digits_data()
        x = to_input(pixels)
        xtr, ytr, xte, yte = x[train], target[train], x[test], target[test]

        v1 = fit_classifier(digits_cnn(SEED, (8, 16), 32, "cnn"), xtr, ytr, seed=SEED, epochs=8)
        p1 = predict(v1, xte)
        scores["digits"]["v1 cnn"] = float((p1.argmax(1) == yte).mean())
        v1_path = work / "v1" / "cnn.h5"
        save_weights_only_model(v1, v1_path)

        members = {
            "cnn_a": fit_classifier(digits_cnn(SEED + 10, (16, 32), 64, "cnn_a"), xtr, ytr, seed=SEED + 10, epochs=20),
            "mlp": fit_classifier(digits_mlp(SEED + 20, "mlp"), xtr, ytr, seed=SEED + 20, epochs=40),
            "cnn_wide": fit_classifier(digits_cnn(SEED + 30, (32, 64), 64, "cnn_wide"), xtr, ytr, seed=SEED + 30,
                                       epochs=15),
        }
        v2_paths, probs = [], []
        for name, m in members.items():
            p = predict(m, xte)
            probs.append(p)
            scores["digits"][f"v2 {name}"] = float((p.argmax(1) == yte).mean())
            path = work / "v2" / f"{name}.keras"
            save_weights_only_model(m, path)
            v2_paths.append(path)
        p2 = np.mean(probs, axis=0)
        scores["digits"]["v2 ensemble (mean)"] = float((p2.argmax(1) == yte).mean())
        scores["digits_disagree"] = int((p1.argmax(1) != p2.argmax(1)).sum())
        scores["digits_max_prob_gap"] = float(np.abs(p1 - p2).max())
        scores["digits_test_size"] = len(test)
        scores["digits_train_size"] = len(train)

        dsamples = digit_samples(pixels, target, test, p1, p2, work / "samples")

        # colorfulness -------------------------------------------------------------
        cxtr, cytr, cxev, cyev = color_data()
        cm = color_model(SEED + 40)
        seed_everything(SEED + 40)
        epochs, batch = 25, 64
        decay = keras.optimizers.schedules.CosineDecay(3e-3, epochs * -(-len(cytr) // batch))
        cm.compile(optimizer=keras.optimizers.Adam(decay), loss="huber")
        cm.fit(to_input(cxtr), cytr, batch_size=batch, epochs=epochs, verbose=0, shuffle=True)
        pred = predict(cm, to_input(cxev))[:, 0]
        err = pred - cyev
        scores["colorfulness"] = {
            "mae": float(np.abs(err).mean()),
            "rmse": float(np.sqrt((err**2).mean())),
            "r2": float(1 - (err**2).sum() / ((cyev - cyev.mean()) ** 2).sum()),
            "baseline_mae": float(np.abs(cyev - cytr.mean()).mean()),
            "label_range": [float(cyev.min()), float(cyev.max())],
            "n_train": len(cytr),
            "n_eval": len(cyev),
        }
        cpath = work / "colorfulness" / "cnn.keras"
        save_weights_only_model(cm, cpath)
        csamples = color_samples(work / "samples")
        scores["colorfulness_truth"] = {}
        for p in csamples:
            rgb = cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            scores["colorfulness_truth"][p.name] = round(colorfulness(resize_to(rgb, 32)), 2)
        scores["train_seconds"] = round(time.time() - t0, 1)

        # pack ---------------------------------------------------------------------
        sets = eval_sets(work / "eval")

        def extras(paths, model):
            return [(p, f"samples/{p.name}", "sample") for p in paths] + [
                (sets[model], f"eval/{sets[model].name}", "eval")]

        archives = [
            pack_archive(
                out_dir,
                name="digits",
                version=1,
                models=[v1_path],
                input_spec=DIGITS_INPUT,
                output_spec=DIGITS_OUTPUT,
                description="Handwritten digits (sklearn load_digits, 8x8 gray): one small CNN saved as legacy .h5. "
                f"Held-out accuracy {scores['digits']['v1 cnn']:.3f}.",
                combine="mean",
                extra_files=extras(dsamples, "digits"),
            ),
            pack_archive(
                out_dir,
                name="digits",
                version=2,
                models=v2_paths,
                input_spec=DIGITS_INPUT,
                output_spec=DIGITS_OUTPUT,
                description="Handwritten digits: ensemble of a CNN, an MLP and a wider CNN (.keras), mean of "
                f"probabilities. Held-out accuracy {scores['digits']['v2 ensemble (mean)']:.3f}.",
                combine="mean",
                extra_files=extras(dsamples, "digits"),
            ),
            pack_archive(
                out_dir,
                name="colorfulness",
                version=1,
                models=[cpath],
                input_spec=COLOR_INPUT,
                output_spec=COLOR_OUTPUT,
                description="Hasler-Suesstrunk colorfulness of a 32x32 RGB patch (sklearn sample photos). "
                f"Held-out MAE {scores['colorfulness']['mae']:.2f}, R^2 {scores['colorfulness']['r2']:.3f}.",
                combine="mean",
                extra_files=extras(csamples, "colorfulness"),
            ),
        ]
        wine_archives, wsamples = build_wine(work, out_dir, scores)
        archives += wine_archives
        scores["archives"] = [str(a) for a in archives]

        samples_dir = out_dir / "samples"
        if samples_dir.exists():
            shutil.rmtree(samples_dir)
        samples_dir.mkdir()
        for p in dsamples + csamples + wsamples:
            shutil.copy2(p, samples_dir / p.name)
        expected = {a.name: archive_outputs(a) for a in archives}
        (samples_dir / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
        scores["eval"] = eval_scores(out_dir)
        scores["total_seconds"] = round(time.time() - t0, 1)
        (out_dir / "README.md").write_text(readme(scores, archives, out_dir))
        return scores
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- outputs on the samples (used by expected.json and --check) -------------------------


def _load_member(path: Path):
    try:
        from yyai_kernel.archive import kerasload

        return kerasload.load_member(path)
    except ImportError:  # pragma: no cover - kerasload not there yet
        import keras

        return keras.saving.load_model(path, compile=False)


def archive_outputs(path: Path) -> dict:
    """Every member's (and the mean's) outputs on the archive's own samples, via images.preprocess
    (a CSV sample of a table model: each row, via ``runtime/tabular.py``, keyed "file:line N")."""
    from yyai_kernel import archive
    from yyai_kernel.protocol.records import read_csv
    from yyai_kernel.runtime import images, tabular
    from yyai_kernel.types import FileRole

    with archive.open_archive(path) as opened:
        m = opened.manifest
        keys, rows = [], []
        for sample in sorted(f.path for f in m.files if f.role is FileRole.SAMPLE):
            data = (opened.root / sample).read_bytes()
            if sample.endswith(".csv"):
                records = read_csv(data, max_rows=10_000)
                rows.extend(tabular.fit(records, m.input))
                keys += [f"{Path(sample).name}:{records.where(i)}" for i in range(len(records))]
            else:
                rows.append(images.preprocess(data, m.input))
                keys.append(Path(sample).name)
        x = np.stack(rows)
        members = {}
        for member in m.members:
            model = _load_member(opened.member_path(member))
            members[member.name] = predict(model, x)
    mean = np.mean(list(members.values()), axis=0)
    result = {}
    for i, s in enumerate(keys):
        result[s] = {
            "members": {k: [round(float(v), 6) for v in out[i]] for k, out in members.items()},
            "combined": [round(float(v), 6) for v in mean[i]],
        }
    return result


def compare(reference: Path, rebuilt: Path) -> tuple[float, list[str]]:
    """Largest |difference| of member outputs on the samples, and the mismatches past TOLERANCE."""
    worst, bad = 0.0, []
    for new in sorted(rebuilt.glob("*.yyar")):
        old = reference / new.name
        if not old.exists():
            bad.append(f"{new.name}: missing from {reference}")
            continue
        a, b = archive_outputs(old), archive_outputs(new)
        if a.keys() != b.keys():
            bad.append(f"{new.name}: sample sets differ")
            continue
        for s in a:
            if a[s]["members"].keys() != b[s]["members"].keys():
                bad.append(f"{new.name}: member names differ")
                break
            for k in a[s]["members"]:
                d = float(np.max(np.abs(np.subtract(a[s]["members"][k], b[s]["members"][k]))))
                worst = max(worst, d)
                if d > TOLERANCE:
                    bad.append(f"{new.name} {s} {k}: max |diff| {d:.3g}")
    return worst, bad


def check(reference: Path) -> int:
    """Rebuild into a temp dir and compare sample outputs with the committed archives."""
    tmp = Path(tempfile.mkdtemp(prefix="yyai-check-"))
    try:
        build(tmp)
        worst, bad = compare(reference, tmp)
        print(f"largest difference on any sample output: {worst:.3g} (tolerance {TOLERANCE})")
        for line in bad:
            print("MISMATCH", line)
        print("check: OK" if not bad else "check: FAILED")
        return 0 if not bad else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- report ---------------------------------------------------------------------------


def readme(scores: dict, archives: list[Path], out_dir: Path) -> str:
    """The short model_archives/README.md: what each archive is and its held-out score."""
    d, c = scores["digits"], scores["colorfulness"]
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in d.items())
    sizes = "\n".join(f"| `{a.name}` | {a.stat().st_size / 1024:.0f} KiB |" for a in archives)
    truth = ", ".join(f"`{k}` {v}" for k, v in scores["colorfulness_truth"].items())
    return f"""# Bundled demo archives

Built by `scripts/make_demo_archives.py` from data that ships with scikit-learn
(`load_digits`, `load_sample_images`, `load_wine`), with fixed seeds, on the CPU. Rebuild with
`python scripts/make_demo_archives.py`; `--check` rebuilds in a temporary folder and
compares the outputs on the bundled samples with these archives (tolerance {TOLERANCE}).

| archive | size |
|---|---|
{sizes}

## digits (versions 1 and 2)

8x8 grayscale digits rendered as PNG with pixel = round(value * 255 / 16), bright ink on black;
input `[8, 8, 1]` float32, scale 1/255. Labels "0".."9". Split 75/25 stratified with
`random_state=0` ({scores['digits_train_size']} train / {scores['digits_test_size']} test images).
Version 1 is one CNN saved as legacy `.h5`; version 2 is an ensemble of three `.keras`
members whose probabilities are averaged. On {scores['digits_disagree']} test images the two
versions pick different classes (largest probability gap {scores['digits_max_prob_gap']:.2f}).

| model | held-out accuracy |
|---|---|
{rows}

## colorfulness (version 1)

Regresses the Hasler & Suesstrunk (2003) colorfulness of a 32x32 RGB patch (`color: rgb`,
scale 1/255). Trained on {c['n_train']} augmented patches (random crop size 16-96 px resized to
32, flips, 90-degree turns, partial desaturation) from columns 0-{TRAIN_END - 1} of `china.jpg`
and `flower.jpg`; evaluated on {c['n_eval']} patches from columns {EVAL_START}-639.

| metric | held-out |
|---|---|
| MAE | {c['mae']:.2f} |
| RMSE | {c['rmse']:.2f} |
| R^2 | {c['r2']:.3f} |
| MAE of predicting the training mean | {c['baseline_mae']:.2f} |

Labels on the held-out set range from {c['label_range'][0]:.1f} to {c['label_range'][1]:.1f}.

{wine_readme(scores["wine"])}{eval_readme(scores["eval"])}
## samples/

The sample images bundled in the archives (role `sample`), as plain files for curl examples
and tests: `digit-N.png` (held-out 8x8 images, one per class), `digit-3-64.png` and
`digit-8-64rgb.png` (64x64 upscales, the second with three channels), `digit-*-disputed.png`
(a held-out image on which versions 1 and 2 disagree), and 64x64 photo crops from the
held-out region, and `wine-rows.csv` (held-out wine rows, the features' raw values). True
colorfulness of the crops as the model sees them (32x32): {truth}.
`expected.json` holds every member's and the combined output on each sample, computed
through `yyai_kernel.runtime.images.preprocess`.
"""


def eval_readme(scores: dict) -> str:
    """The README section on the bundled labelled sets and the scores they give."""
    rows = []
    for name, s in scores.items():
        for v, sc in s["versions"].items():
            score = (f"accuracy {sc['accuracy']:.3f}, top-2 {sc['top_k']['2']:.3f}, macro F1 {sc['macro_f1']:.3f}"
                     if "accuracy" in sc else f"MAE {sc['mae']:.2f}, RMSE {sc['rmse']:.2f}, R^2 {sc['r2']:.3f}")
            rows.append(f"| {name} v{v} | `{s['set']}` | {s['n']} | {score} |")
    disagree = "; ".join(f"{name} {pair}: {n} items" for name, s in scores.items() for pair, n in s["disagree"].items())
    return f"""## Evaluation sets

Each archive bundles a small held-out labelled set (manifest role `eval`): a zip holding
`labels.csv` (`file,label`, or `file,target` for regression) and `images/*.png`, the same
form a user uploads. The digits set is {EVAL_DIGITS_PER_CLASS} test-split images per class
drawn with a fixed seed; the colorfulness set is the first {EVAL_COLOR_ITEMS} held-out patches.
Scores through `yyai_kernel.evaluate` over an in-process Registry:

| model | set | items | scores |
|---|---|---|---|
{chr(10).join(rows)}

Disagreements between versions on these sets: {disagree or "none"}.
`python scripts/make_demo_archives.py --add-eval` re-adds the sets to the archives
without retraining (the member files stay byte-identical).
"""


def patch_readme(text: str, scores: dict, archives: list[Path]) -> str:
    """The README with fresh archive sizes and evaluation-set section (for --add-eval)."""
    for a in archives:
        text = re.sub(rf"^\| `{re.escape(a.name)}` \| \d+ KiB \|$",
                      f"| `{a.name}` | {a.stat().st_size / 1024:.0f} KiB |", text, flags=re.M)
    section = eval_readme(scores)
    if "## Evaluation sets" in text:
        return re.sub(r"## Evaluation sets\n.*?(?=\n## )", lambda _: section.rstrip("\n") + "\n", text, flags=re.S)
    return text.replace("## samples/", section + "\n## samples/", 1)


def main(argv=None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default model_archives/)")
    ap.add_argument("--check", action="store_true", help="rebuild in a temp dir and compare with --out")
    ap.add_argument("--add-eval", action="store_true",
                    help="only (re)add the bundled eval sets to the archives in --out, without retraining")
    ap.add_argument("--only", choices=["wine"],
                    help="only (re)build this model's archives in --out, leaving the others as they are")
    args = ap.parse_args(argv)
    if args.check:
        return check(args.out)
    if args.add_eval:
        print(eval_readme(add_eval(args.out)))
        return 0
    if args.only:
        print(json.dumps(add_only(args.out), indent=1))
        return 0
    # Build beside the target, then swap in: a failed run leaves the old archives alone.
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=args.out))
    try:
        scores = build(tmp)
        for stale in list(args.out.glob("*.yyar")) + [args.out / "README.md"]:
            stale.unlink(missing_ok=True)
        shutil.rmtree(args.out / "samples", ignore_errors=True)
        for item in tmp.iterdir():
            os.replace(item, args.out / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    scores["archives"] = sorted(str(p) for p in args.out.glob("*.yyar"))
    print(json.dumps(scores, indent=1))
    print(f"total {scores['total_seconds']} s; folder size "
          f"{sum(p.stat().st_size for p in args.out.rglob('*') if p.is_file()) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
