"""The registry's promises under real concurrency: isolation, zero downtime, failed reloads,
coalesced reloads, no leaks, dynamic batching, pins and store watching.

Every model here is a real Keras model; every expected output comes from calling that
model directly. Loops are bounded in count and in time.
"""

from __future__ import annotations

import gc
import os
import threading
import time

import numpy as np
import psutil
import pytest
from builders import install, pack_models, reference, sample_inputs

from yyai_kernel.errors import (
    ArchiveError,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
)
from yyai_kernel.registry.registry import Registry
from yyai_kernel.runtime.runtime import ArchiveRuntime
from yyai_kernel.store.store import ModelStore

X = sample_inputs(3)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Archives: alpha v1 in two variants (different weights), alpha v2, beta v1."""
    root = tmp_path_factory.mktemp("built")
    alpha_a, models_a = pack_models(root, "alpha", 1, [1, 2])
    alpha_b, models_b = pack_models(root, "alpha", 1, [3, 4])
    alpha_v2, models_v2 = pack_models(root, "alpha", 2, [5])
    beta, models_beta = pack_models(root, "beta", 1, [6, 7], fmt="h5")
    return {
        "alpha_a": (alpha_a, reference(models_a, X)),
        "alpha_b": (alpha_b, reference(models_b, X)),
        "alpha_v2": (alpha_v2, reference(models_v2, X)),
        "beta": (beta, reference(models_beta, X)),
    }


@pytest.fixture
def store_dir(tmp_path, built):
    folder = tmp_path / "store"
    folder.mkdir()
    install(built["alpha_a"][0], folder, "alpha-1.yyar")
    install(built["beta"][0], folder, "beta-1.yyar")
    return folder


@pytest.fixture
def registry(store_dir):
    reg = Registry(ModelStore(store_dir))
    assert reg.load_all() == {}
    yield reg
    reg.close()


def assert_matches(prediction, ref, atol=1e-5):
    for got, want in zip(prediction.members.values(), ref["members"]):
        np.testing.assert_allclose(got, want, atol=atol)
    np.testing.assert_allclose(prediction.combined, ref["combined"], atol=atol)


def matches(prediction, ref, atol=1e-5) -> bool:
    try:
        assert_matches(prediction, ref, atol)
        return True
    except AssertionError:
        return False


def hammer(registry, name, stop, results, errors, deadline_s=120):
    """Predict on ``name`` until ``stop`` is set (or the deadline), recording every reply."""
    deadline = time.monotonic() + deadline_s
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            results.append(registry.predict(name, X))
        except Exception as error:  # noqa: BLE001 - every failure is a test failure
            errors.append(error)


def run_threads(target, count, *args):
    threads = [threading.Thread(target=target, args=args) for _ in range(count)]
    for t in threads:
        t.start()
    return threads


def test_runtime_outputs_equal_the_keras_models(built):
    path, ref = built["beta"]
    runtime = ArchiveRuntime.load(path, warmup_sizes=[1, 4])
    out = runtime(runtime.validate(X))
    assert list(out.members) == ["m6", "m7"]
    for got, want in zip(out.members.values(), ref["members"]):
        np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(out.combined, ref["combined"], atol=1e-5)
    assert runtime.warmup_time_s and runtime.load_time_s  # both were measured


def test_predict_default_and_explicit_versions(registry, built):
    prediction = registry.predict("alpha", X)
    assert (prediction.name, prediction.version) == ("alpha", 1)
    assert_matches(prediction, built["alpha_a"][1])
    rows = prediction.rows()
    assert len(rows) == 3 and rows[0]["combined"][0]["label"] in {"cat", "dog", "eel"}
    with pytest.raises(ModelNotFoundError):
        registry.predict("nope", X)
    with pytest.raises(ModelNotFoundError):
        registry.predict("alpha", X, version=9)
    with pytest.raises(InvalidInputError):
        registry.predict("alpha", X, version="One")
    with pytest.raises(ModelNotFoundError, match="no label 'one'"):  # a label's syntax: looked up, not refused
        registry.predict("alpha", X, version="one")
    with pytest.raises(InvalidInputError, match="shape"):
        registry.predict("alpha", np.zeros((1, 5, 5, 1), np.float32))
    with pytest.raises(InvalidInputError, match="NaN"):
        registry.predict("alpha", np.full((1, 4, 4, 1), np.nan, np.float32))


def test_isolation_reloading_a_leaves_b_untouched(registry, built):
    stop, results, errors = threading.Event(), [], []
    threads = run_threads(hammer, 4, registry, "beta", stop, results, errors)
    try:
        for _ in range(20):
            registry.reload("alpha")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert len(results) > 20
    beta_ref = built["beta"][1]
    assert all(matches(p, beta_ref) for p in results)


def test_zero_downtime_swaps_between_two_archives(registry, store_dir, built):
    variants = [built["alpha_a"], built["alpha_b"]]
    stop, results, errors = threading.Event(), [], []
    threads = run_threads(hammer, 8, registry, "alpha", stop, results, errors)
    try:
        for i in range(20):
            install(variants[(i + 1) % 2][0], store_dir, "alpha-1.yyar")
            registry.reload("alpha")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    a_ref, b_ref = variants[0][1], variants[1][1]
    seen = {"a": 0, "b": 0}
    for p in results:
        if matches(p, a_ref):
            seen["a"] += 1
        elif matches(p, b_ref):
            seen["b"] += 1
        else:
            pytest.fail("a reply matched neither archive: a mix of two runtimes")
    assert seen["a"] and seen["b"], seen  # both versions really served


def test_failed_reload_keeps_old_version_serving(registry, store_dir, built):
    before = registry.predict("alpha", X)
    (store_dir / "alpha-1.yyar").write_bytes(b"PK\x03\x04 this is not a complete zip")
    with pytest.raises(ArchiveError):
        registry.reload("alpha")
    assert_matches(registry.predict("alpha", X), built["alpha_a"][1])
    np.testing.assert_allclose(registry.predict("alpha", X).combined, before.combined)
    status = registry.status("alpha")
    assert status["last_error"] and status["versions"]["1"]["last_error"]
    assert status["versions"]["1"]["state"] == "ready"


def test_failed_reload_with_a_readable_but_broken_archive(registry, store_dir, built, tmp_path):
    import zipfile

    broken = tmp_path / "broken.yyar"
    with zipfile.ZipFile(built["alpha_b"][0]) as src, zipfile.ZipFile(broken, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("models/"):
                data = data[:-10] + b"0123456789"  # checksum no longer matches
            dst.writestr(info, data)
    install(broken, store_dir, "alpha-1.yyar")
    with pytest.raises(ArchiveError):
        registry.reload("alpha")
    assert_matches(registry.predict("alpha", X), built["alpha_a"][1])
    assert "alpha" in registry.status("alpha")["name"] and registry.status("alpha")["last_error"]


def live_runtimes() -> list[ArchiveRuntime]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, ArchiveRuntime)]


def test_concurrent_reloads_leave_one_runtime_per_version(registry):
    errors = []

    def reload(name):
        try:
            registry.reload(name)
        except Exception as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=reload, args=("alpha",)) for _ in range(10)]
    threads += [threading.Thread(target=reload, args=("beta",)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    deadline = time.monotonic() + 30  # closed batcher threads exit after draining
    while len(live_runtimes()) != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    runtimes = live_runtimes()
    assert sorted((r.manifest.name, r.manifest.version) for r in runtimes) == [("alpha", 1), ("beta", 1)]
    workers = [t.name for t in threading.enumerate() if t.name.startswith(("yyai-alpha", "yyai-beta"))]
    assert sorted(workers) == ["yyai-alpha-v1", "yyai-beta-v1"]


def test_memory_is_flat_over_100_reloads(registry):
    process = psutil.Process(os.getpid())
    registry.reload("alpha")
    gc.collect()
    baseline = process.memory_info().rss
    for _ in range(100):
        registry.reload("alpha")
    gc.collect()
    grown_mb = (process.memory_info().rss - baseline) / 2**20
    print(f"RSS growth over 100 reloads: {grown_mb:.1f} MB")
    assert grown_mb < 50


def test_batching_stacks_concurrent_requests(store_dir, built):
    reg = Registry(ModelStore(store_dir), max_batch_size=32, max_delay_ms=200)
    try:
        reg.load("alpha")
        barrier = threading.Barrier(33)
        replies, errors = [None] * 33, []

        def one(i):
            barrier.wait()
            try:
                if i == 32:  # a bad request in the crowd fails alone
                    reg.predict("alpha", np.zeros((1, 3, 3, 1), np.float32))
                else:
                    replies[i] = reg.predict("alpha", X[i % 3 : i % 3 + 1])
            except InvalidInputError as error:
                errors.append((i, error))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(33)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [i for i, _ in errors] == [32]
        ref = built["alpha_a"][1]
        for i in range(32):
            np.testing.assert_allclose(replies[i].combined[0], ref["combined"][i % 3], atol=1e-5)
        histogram = reg.status("alpha")["versions"]["1"]["batch_sizes"]
        calls = sum(histogram.values())
        assert sum(int(size) * n for size, n in histogram.items()) == 32
        assert calls < 32, histogram
    finally:
        reg.close()


def test_batching_off_calls_the_runtime_directly(store_dir, built):
    reg = Registry(ModelStore(store_dir), batching=False)
    try:
        reg.load("beta")
        assert_matches(reg.predict("beta", X), built["beta"][1])
        assert reg.status("beta")["versions"]["1"]["batch_sizes"] == {"3": 1}
    finally:
        reg.close()


def test_new_version_becomes_default_and_pins_persist(registry, store_dir, built):
    install(built["alpha_v2"][0], store_dir, "alpha-2.yyar")
    registry.reload("alpha")
    assert registry.predict("alpha", X).version == 2
    assert_matches(registry.predict("alpha", X), built["alpha_v2"][1])
    registry.set_default("alpha", 1)
    assert registry.predict("alpha", X).version == 1
    fresh = Registry(ModelStore(store_dir))
    try:
        fresh.load_all()
        assert fresh.status("alpha")["default"] == 1 and fresh.status("alpha")["pinned"]
        assert_matches(fresh.predict("alpha", X), built["alpha_a"][1])
    finally:
        fresh.close()


def test_unload_and_purge(registry, store_dir, built):
    install(built["alpha_v2"][0], store_dir, "alpha-2.yyar")
    registry.reload("alpha")
    registry.unload("alpha", 2)
    with pytest.raises(ModelNotReadyError):
        registry.predict("alpha", X, version=2)
    assert registry.status("alpha")["versions"]["2"]["state"] == "unloaded"
    registry.remove("alpha", 2, purge=True)
    assert not (store_dir / "alpha-2.yyar").exists()
    assert registry.predict("alpha", X).version == 1  # the default fell back and serves


def test_watch_picks_up_a_new_archive(store_dir, built):
    reg = Registry(ModelStore(store_dir), watch=True, watch_interval=0.2)
    try:
        reg.load_all()
        install(built["alpha_v2"][0], store_dir, "alpha-2.yyar")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = reg.status("alpha")
            if status["default"] == 2 and status["versions"]["2"]["state"] == "ready":
                break
            time.sleep(0.1)
        assert_matches(reg.predict("alpha", X), built["alpha_v2"][1])
    finally:
        reg.close()
