"""Shared test fixtures: tiny real Keras models (built once per session) and crafted zips.

The models have a few hundred parameters so that building, saving and loading them costs
little. Crafted archives are written byte by byte with `zipfile`, so each refusal test
controls exactly what the hostile archive holds.
"""

from __future__ import annotations

import hashlib
import json
import stat
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from xdist.scheduler import LoadScopeScheduling

INPUT_SPEC = {"shape": [8, 8, 1], "dtype": "float32", "color": "grayscale", "scale": 1 / 255, "offset": 0.0}
OUTPUT_SPEC = {"kind": "classification", "labels": ["a", "b", "c"]}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_for(members: dict, files: dict | None = None, **fields) -> dict:
    """A schema-valid manifest describing `members` ({arcname: bytes}) and `files`."""
    data = {
        "format": "yyar", "format_version": 1, "name": "toy", "version": 1,
        "created": "2026-01-01T00:00:00Z", "description": "crafted",
        "members": [{"name": Path(p).stem, "path": p, "sha256": sha256(b), "size": len(b)} for p, b in members.items()],
        "input": dict(INPUT_SPEC), "output": dict(OUTPUT_SPEC), "combine": "mean", "batching": {},
        "files": [{"path": p, "sha256": sha256(b), "size": len(b), "role": "other"} for p, b in (files or {}).items()],
    }
    data.update(fields)
    return data


def write_zip(path, entries) -> Path:
    """Write a zip from (name | ZipInfo, bytes) pairs, exactly as given."""
    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return path


def craft_archive(path, members=None, files=None, manifest=None, extra=(), omit=()) -> Path:
    """Write an archive: MANIFEST.json (given, or describing members/files), the members and
    files (minus the names in `omit`), then the `extra` (name | ZipInfo, bytes) entries."""
    members = {"models/m.h5": b"not really a model"} if members is None else members
    files = files or {}
    manifest = manifest_for(members, files) if manifest is None else manifest
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    entries = [("MANIFEST.json", raw)]
    entries += [(n, b) for n, b in {**members, **files}.items() if n not in omit]
    return write_zip(path, entries + list(extra))


def symlink_info(name: str) -> zipfile.ZipInfo:
    """A ZipInfo that marks its entry as a Unix symbolic link."""
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.fixture(scope="session")
def zips():
    """The crafted-archive helpers, for tests that build hostile archives."""
    return SimpleNamespace(manifest_for=manifest_for, write_zip=write_zip, craft_archive=craft_archive,
                           symlink_info=symlink_info, sha256=sha256)


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Tiny real models saved once: .keras/.h5 twins, Lambda models, junk, a tf_keras .h5.

    `x` is a fixed input batch; `expected` the source model's outputs on it, and
    `tfk_expected` the tf_keras model's outputs.
    """
    import keras

    d = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((4, 8, 8, 1), dtype=np.float32)
    tiny = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                             keras.layers.Dense(3, activation="softmax")])
    tiny.save(d / "tiny.keras")
    tiny.save(d / "tiny.h5")
    inp = keras.Input((8, 8, 1))
    out = keras.layers.Dense(3)(keras.layers.Flatten()(keras.layers.Lambda(lambda t: t * 2)(inp)))
    lam = keras.Model(inp, out)
    lam.save(d / "lambda.keras")
    lam.save(d / "lambda.h5")
    (d / "junk.h5").write_bytes(np.random.default_rng(1).bytes(512))

    import tf_keras  # test oracle only: a Keras 2 (tf.keras) writer of .h5 files

    tf_keras.utils.set_random_seed(0)
    tfk = tf_keras.Sequential([tf_keras.layers.InputLayer(input_shape=(8, 8, 1)), tf_keras.layers.Flatten(),
                               tf_keras.layers.Dense(5, activation="relu"), tf_keras.layers.Dense(3)])
    tfk.save(d / "tfk.h5", save_format="h5")
    return SimpleNamespace(
        dir=d, x=x, expected=tiny(x).numpy(), tfk_expected=tfk(x).numpy(),
        tiny_keras=d / "tiny.keras", tiny_h5=d / "tiny.h5", lambda_keras=d / "lambda.keras",
        lambda_h5=d / "lambda.h5", junk_h5=d / "junk.h5", tfk_h5=d / "tfk.h5",
    )


@pytest.fixture(scope="session")
def packed(models, tmp_path_factory):
    """A real archive packed from the tiny model's .keras and .h5 twins (version 1)."""
    from yyai_kernel.archive import pack

    return pack(name="toy", version=1, models=[models.tiny_keras, models.tiny_h5], input_spec=INPUT_SPEC,
                output_spec=OUTPUT_SPEC, description="tiny test model",
                out_dir=tmp_path_factory.mktemp("packed"))


import raycluster  # noqa: E402,F401 - sets Ray's environment before any test imports ray

GROUPS = ("on_ray", "browser")  # test packages whose modules share one worker, in this order
# The longest modules after the groups (measured 2026-12-08, 30 to 100 s each on two cores): a
# long module handed out last would leave the other workers idle while it ends.
LONG_MODULES = ("test_faults", "test_workers", "test_cli", "test_notebooks", "test_registry",
                "test_rollout_server", "test_server", "test_bad_input", "test_devices", "test_v2_tritonclient")


class ModuleScheduling(LoadScopeScheduling):
    """Under ``pytest -n N --dist loadgroup`` (``make test``), each test module runs in one worker, so
    that its module-scoped servers start once, and each package of :data:`GROUPS` runs in one
    worker, so that its package-scoped fixtures start once: ``tests/on_ray/`` shares one local
    Ray cluster, ``tests/browser/`` one Chromium and one dashboard server.

    A scheduler, not ``xdist_group`` marks: xdist groups marked tests by renaming their node ids,
    which pytest 9 no longer lets a plugin do (the marks are read and then ignored).

    Scopes are handed out in collection order, where the groups come first and the long modules
    next (see ``pytest_collection_modifyitems``)."""

    def __init__(self, config, log=None):
        config.option.loadscopereorder = False  # xdist would order scopes by test count instead
        super().__init__(config, log)

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return group_of(path) or path


def group_of(path: str) -> str | None:
    """The group of :data:`GROUPS` that the test file ``path`` belongs to, if any."""
    package = Path(path).parent.name
    return package if package in GROUPS else None


def pytest_collection_modifyitems(items):
    """The groups first, in their order, then :data:`LONG_MODULES` in theirs (see ``ModuleScheduling``);
    the rest keep their order."""
    rank = {name: index for index, name in enumerate(GROUPS + LONG_MODULES)}

    def order(item) -> int:
        path = str(item.fspath)
        return rank.get(group_of(path) or Path(path).stem, len(rank))

    items.sort(key=order)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") == "loadgroup":
        return ModuleScheduling(config, log)
    return None
