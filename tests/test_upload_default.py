"""A new latest version becomes the default only once it serves.

The soak (``bench/soak.py``) found this: an upload of a new version of an unpinned model
made it the default as soon as its archive was in the store, before its runtime had
loaded, so requests that named no version got 503 ("version N is loading") for the
seconds the load took. The same held for a new archive picked up by a rescan. Now the old
default keeps answering until the new version serves (``Registry._refresh_defaults``).

Real tiny Keras models, a real store, and a thread that keeps predicting on the default
while the upload and the rescan run; loops are bounded in count and time.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from builders import install, pack_models, reference, sample_inputs
from conftest import craft_archive, manifest_for

from yyai_kernel.errors import ModelLoadError, ModelNotReadyError
from yyai_kernel.registry.registry import Registry
from yyai_kernel.store.store import ModelStore

X = sample_inputs(2)


def test_a_new_version_becomes_the_default_only_once_it_serves(tmp_path):
    built = tmp_path / "built"
    archives = {v: pack_models(built, "alpha", v, [10 + v]) for v in (1, 2, 3)}
    store = tmp_path / "store"
    store.mkdir()
    install(archives[1][0], store)
    registry = Registry(ModelStore(store))
    assert registry.load_all() == {}

    served, refused = [], []
    stop = threading.Event()

    def predict_on_the_default():
        deadline = time.monotonic() + 300
        while not stop.is_set() and time.monotonic() < deadline and len(served) < 1_000_000:
            try:
                served.append(registry.predict("alpha", X).version)
            except ModelNotReadyError as error:
                refused.append(error.message)

    threads = [threading.Thread(target=predict_on_the_default) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        while not served:  # the clients are running before anything changes
            assert all(t.is_alive() for t in threads)
            time.sleep(0.01)
        status = registry.add_archive(archives[2][0])  # an upload (POST /models)
        assert status["default"] == 2
        install(archives[3][0], store)  # an archive dropped into the folder, then a rescan
        status = registry.reload("alpha", force=False)
        assert status["default"] == 3
        count = len(served)
        while len(served) < count + 5:  # the clients are still running after the change
            assert all(t.is_alive() for t in threads)
            time.sleep(0.01)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        registry.close()

    assert refused == []
    assert served[0] == 1 and served[-1] == 3
    assert set(served) <= {1, 2, 3}


def test_a_new_default_that_fails_to_load_leaves_the_old_one_serving(tmp_path):
    good, models = pack_models(tmp_path / "built", "alpha", 1, [21])
    store = tmp_path / "store"
    store.mkdir()
    install(good, store)
    registry = Registry(ModelStore(store))
    try:
        assert registry.load_all() == {}
        junk = {"models/m.keras": b"not a Keras model"}  # a readable manifest, right checksums, no model
        craft_archive(store / "alpha-2.yyar", members=junk, manifest=manifest_for(junk, name="alpha", version=2))
        with pytest.raises(ModelLoadError):
            registry.reload("alpha", force=False)
        status = registry.status("alpha")
        assert status["default"] == 1 and status["versions"]["2"]["state"] == "failed"
        prediction = registry.predict("alpha", X)
        assert prediction.version == 1
        np.testing.assert_allclose(prediction.combined, reference(models, X)["combined"], rtol=1e-5, atol=1e-6)
    finally:
        registry.close()
