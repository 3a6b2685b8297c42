"""One backend contract: the in-process LocalBackend and the HTTP YyaiClient agree.

The same archives are served twice, by a LocalBackend over a Registry in this process and by
a real ``yyai serve`` on a loopback port; every call of the Backend Protocol goes to both,
and the results must be of the same types and equal (outputs to float tolerance).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from builders import install, pack_models, sample_inputs
from serving import start_server

from yyai_kernel.client import YyaiClient
from yyai_kernel.errors import InvalidInputError, ModelNotFoundError, ModelNotReadyError
from yyai_kernel.plane.backend import Backend
from yyai_kernel.plane.local import LocalBackend
from yyai_kernel.registry.registry import Registry
from yyai_kernel.runtime.images import encode_png
from yyai_kernel.store.store import ModelStore
from yyai_kernel.types import (
    InstallResult,
    ModelStatus,
    ModelSummary,
    Prediction,
    TrafficPolicy,
    TrafficReport,
    TrafficSplit,
    VersionDescription,
    VersionLabel,
)

X = sample_inputs(2)


@pytest.fixture(scope="module")
def backends(tmp_path_factory):
    out = tmp_path_factory.mktemp("backend-built")
    archives = [pack_models(out, "alpha", 1, [1, 2])[0], pack_models(out, "beta", 1, [3])[0]]
    upload = pack_models(out, "alpha", 2, [4])[0]
    stores = []
    for which in ("local", "remote"):
        store = out / f"store-{which}"
        store.mkdir()
        for archive in archives:
            install(archive, store)
        stores.append(store)
    registry = Registry(ModelStore(stores[0]))
    registry.load_all()
    server = start_server(stores[1], out / "server")
    client = YyaiClient(server.url, server.token)
    yield {"local": LocalBackend.over(registry), "remote": client, "upload": upload}
    client.close()
    registry.close()
    assert server.stop() == 0
    shutil.rmtree(out, ignore_errors=True)


def _both(backends, call):
    return call(backends["local"]), call(backends["remote"])


def test_both_implement_the_protocol(backends):
    assert isinstance(backends["local"], Backend) and isinstance(backends["remote"], Backend)


def test_reading_gives_equal_typed_results(backends):
    local, remote = _both(backends, lambda b: b.list())
    assert all(isinstance(s, ModelSummary) for s in local + remote) and local == remote
    local, remote = _both(backends, lambda b: b.describe("alpha"))
    assert isinstance(local, VersionDescription) and isinstance(remote, VersionDescription)
    assert local.with_status(None) == remote.with_status(None)
    assert local.status.state == remote.status.state and local.status.members == remote.status.members
    local, remote = _both(backends, lambda b: b.status("alpha"))
    assert isinstance(local, ModelStatus) and isinstance(remote, ModelStatus)
    assert (local.default, local.pinned, local.default_reason) == (remote.default, remote.pinned,
                                                                    remote.default_reason)
    assert {v: s.state for v, s in local.versions.items()} == {v: s.state for v, s in remote.versions.items()}
    assert _both(backends, lambda b: b.samples("alpha")) == ([], [])


def test_predictions_are_equal(backends):
    local, remote = _both(backends, lambda b: b.predict("alpha", X))
    assert isinstance(local, Prediction) and isinstance(remote, Prediction)
    assert (local.name, local.version, local.output) == (remote.name, remote.version, remote.output)
    np.testing.assert_allclose(local.combined, remote.combined, atol=1e-6)
    for member in local.members:
        np.testing.assert_allclose(local.members[member], remote.members[member], atol=1e-6)
    pngs = [encode_png((x[:, :, 0] * 255).astype(np.uint8), rgb=False) for x in X]
    local, remote = _both(backends, lambda b: b.predict_images("alpha", pngs))
    np.testing.assert_allclose(local.combined, remote.combined, atol=1e-6)
    assert local.rows() == remote.rows() and local.top(1) == remote.top(1)


def test_errors_are_the_same_types(backends):
    for backend in (backends["local"], backends["remote"]):
        with pytest.raises(ModelNotFoundError):
            backend.describe("nosuch")
        with pytest.raises(InvalidInputError):
            backend.predict("alpha", np.zeros((1, 3, 3, 1), np.float32))


def test_managing_gives_equal_results(backends):
    for step in (lambda b: b.unload("beta"), lambda b: b.load("beta"), lambda b: b.set_default("alpha", 1),
                 lambda b: b.follow_latest("alpha"), lambda b: b.reload("beta")):
        local, remote = _both(backends, step)
        assert isinstance(local, ModelStatus) and isinstance(remote, ModelStatus)
        assert (local.default, local.pinned, local.loaded) == (remote.default, remote.pinned, remote.loaded)
    local, remote = _both(backends, lambda b: b.unload("beta", 1))
    with pytest.raises(ModelNotReadyError):
        backends["remote"].predict("beta", X)
    local, remote = _both(backends, lambda b: b.add_archive(backends["upload"]))
    assert isinstance(local, InstallResult) and isinstance(remote, InstallResult)
    assert (local.name, local.version, local.message) == (remote.name, remote.version, remote.message)
    assert local.model.default == remote.model.default == 2


def test_labels_and_traffic_give_equal_results(backends):
    """After the upload above, alpha has v1 and v2 (the default)."""
    steps = (lambda b: b.set_label("alpha", "stable", 1),
             lambda b: b.set_traffic("alpha", {"canary": {"version": 1, "percent": 0}, "sticky": True}),
             lambda b: b.clear_traffic("alpha"),
             lambda b: b.set_traffic("alpha", TrafficPolicy(shadow=TrafficSplit(1, 0))))
    for step in steps:
        local, remote = _both(backends, step)
        assert isinstance(local, ModelStatus) and isinstance(remote, ModelStatus)
        assert (local.labels, local.traffic, local.default) == (remote.labels, remote.traffic, remote.default)
        assert type(local.rollout) is type(remote.rollout)
    assert _both(backends, lambda b: b.labels("alpha")) == ({"stable": 1}, {"stable": 1})
    local, remote = _both(backends, lambda b: b.label("alpha", "stable"))
    assert local == remote == VersionLabel("alpha", "stable", 1)
    local, remote = _both(backends, lambda b: b.traffic_report("alpha"))
    assert isinstance(local, TrafficReport) and local.policy == remote.policy
    local, remote = _both(backends, lambda b: b.predict("alpha", X, "stable"))
    assert local.version == remote.version == 1
    assert _both(backends, lambda b: b.disagreements("alpha")) == ([], [])
    local, remote = _both(backends, lambda b: b.promote("alpha"))
    assert (local.default, local.pinned, local.traffic) == (remote.default, remote.pinned, remote.traffic) == \
        (1, True, None)
    local, remote = _both(backends, lambda b: b.delete_label("alpha", "stable"))
    assert local.labels == remote.labels == {}
    for backend in (backends["local"], backends["remote"]):
        with pytest.raises(ModelNotFoundError):
            backend.label("alpha", "stable")
        with pytest.raises(InvalidInputError):
            backend.set_traffic("alpha", {"canary": {"version": 2, "percent": 101}})
