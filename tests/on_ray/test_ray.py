"""The Ray Serve model deployment on a real local Ray: 2 CPUs, loopback only, token auth on.

One Ray cluster serves the whole test session (``tests/raycluster.py``; starting one costs
tens of seconds on two cores), and this module deploys one application: two replicas of the deployment over
a temporary store of real archives whose models give different outputs. Requests go through
real deployment handles (``predict``, by multiplexed model id); expected outputs come from the
Keras models called directly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from builders import install, pack_models, reference, sample_inputs

X = sample_inputs(6)
APP = "yyai-models"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """alpha, beta, gamma (different weights); delta in two contents of the same version."""
    root = tmp_path_factory.mktemp("ray-built")
    built = {
        "alpha": pack_models(root, "alpha", 1, [1, 2]),
        "beta": pack_models(root, "beta", 1, [3]),
        "gamma": pack_models(root, "gamma", 1, [5]),
        "delta": pack_models(root, "delta", 1, [6]),
        "delta_b": pack_models(root, "delta", 1, [7]),
    }
    return {key: (path, reference(models, X)) for key, (path, models) in built.items()}


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory, archives):
    folder = tmp_path_factory.mktemp("ray-store")
    for key in ("alpha", "beta", "gamma", "delta"):
        install(archives[key][0], folder, f"{key}-1.yyar")
    return folder


@pytest.fixture(scope="module")
def models(ray_session, store_dir):
    """The deployment, 2 replicas of half a CPU, at most 2 archives each (no HTTP route)."""
    from ray import serve

    from yyai_kernel.ray_app import ModelDeployment

    app = ModelDeployment.options(num_replicas=2, ray_actor_options={"num_cpus": 0.5}).bind(
        str(store_dir), token=None, max_models=2, max_batch_rows=16, batch_wait_s=0.02)
    handle = serve.run(app, name=APP, route_prefix=None)
    yield handle
    serve.delete(APP)


def model_id(store_dir, name: str) -> str:
    from yyai_kernel.ray_app import ModelId
    from yyai_kernel.store.store import ModelStore

    return str(ModelId.of(ModelStore(store_dir).record(name, 1)))


def call(handle, mid: str, x: np.ndarray):
    return handle.options(multiplexed_model_id=mid).predict.remote(x)


def assert_output(output, ref, rows):
    for got, want in zip(output.members.values(), ref["members"]):
        np.testing.assert_allclose(got, want[rows], atol=1e-5)
    np.testing.assert_allclose(output.combined, ref["combined"][rows], atol=1e-5)


def replica_stats(handle) -> list:
    return handle.broadcast("stats").results()


def test_ray_listens_on_loopback_only(models, ray_session):
    """Every socket that this session's Ray processes listen on is bound to 127.0.0.1, the
    model replicas' inter-deployment gRPC servers included (keep_replica_grpc_on_loopback)."""
    assert ray_session.ray.util.get_node_ip_address() == "127.0.0.1"
    listening = ray_session.listening_addresses()
    assert listening, "no Ray listener found"
    assert listening <= {"127.0.0.1", "::ffff:127.0.0.1"}


def test_concurrent_requests_for_two_models_never_share_a_batch(models, store_dir, archives):
    """64 requests for alpha and beta in flight at once over two replicas that both hold
    both models: each reply equals its own model's Keras output, the two models disagree,
    and no batch ever mixed them."""
    ids = {name: model_id(store_dir, name) for name in ("alpha", "beta")}
    for mid in ids.values():  # both models on both replicas, so each replica sees both
        assert len(models.broadcast("warm", mid).results()) == 2
    before = replica_stats(models)
    rng = np.random.default_rng(1)
    plan = []
    for i in range(64):
        name = ("alpha", "beta")[i % 2]
        start = int(rng.integers(0, 5))
        rows = slice(start, start + int(rng.integers(1, 3)))
        plan.append((name, rows, call(models, ids[name], X[rows])))
    for name, rows, response in plan:
        assert_output(response.result(timeout_s=120), archives[name][1], rows)
    assert not np.allclose(archives["alpha"][1]["combined"], archives["beta"][1]["combined"], atol=1e-3)

    after = replica_stats(models)
    assert len(after) == 2
    assert all(s.mixed_batches == 0 for s in after), "Ray handed one batch call two models"
    # Calls for two models overlapping on one replica (max_concurrent_batches is 1) are
    # sub-batches of one batch that Ray split: mixed batches did arise, and were split.
    assert sum(s.overlapping_calls for s in after) > 0
    sent = {mid: sum(r.stop - r.start for n, r, _ in plan if ids[n] == mid) for mid in ids.values()}
    served = {mid: sum(s.rows.get(mid, 0) for s in after) - sum(s.rows.get(mid, 0) for s in before)
              for mid in ids.values()}
    assert served == sent
    calls = sum(sum(s.model_calls.values()) for s in after) - sum(sum(s.model_calls.values()) for s in before)
    assert calls < len(plan), "requests were never batched together"


def test_lru_evicts_above_max_models(models, store_dir, archives):
    """max_models=2: touching alpha, beta, then gamma evicts alpha on every replica, and a
    later alpha request loads it again and answers correctly."""
    alpha, beta, gamma = (model_id(store_dir, n) for n in ("alpha", "beta", "gamma"))
    for mid in (alpha, beta, gamma):
        models.broadcast("warm", mid).results()
    stats = replica_stats(models)
    assert [set(s.loaded) for s in stats] == [{beta, gamma}] * 2
    assert all(s.evictions >= 1 for s in stats)
    loads_before = sum(s.loads for s in stats)
    assert_output(call(models, alpha, X[:2]).result(timeout_s=120), archives["alpha"][1], slice(0, 2))
    assert sum(s.loads for s in replica_stats(models)) == loads_before + 1


def test_stale_model_id_is_refused_not_served(models, store_dir, archives):
    """An id whose sha256 the store no longer holds for that version fails with
    StaleModelIdError (409); the id of the new content serves the new content."""
    from yyai_kernel.errors import StaleModelIdError

    old = model_id(store_dir, "delta")
    install(archives["delta_b"][0], store_dir, "delta-1.yyar")  # same name and version, new bytes
    new = model_id(store_dir, "delta")
    assert new != old
    with pytest.raises(StaleModelIdError) as refused:
        call(models, old, X[:1]).result(timeout_s=120)
    assert "stale" in str(refused.value) and StaleModelIdError.status == 409
    assert_output(call(models, new, X[:3]).result(timeout_s=120), archives["delta_b"][1], slice(0, 3))


def test_bad_requests_get_typed_errors(models, store_dir):
    from yyai_kernel.errors import InvalidInputError, ModelNotFoundError

    with pytest.raises(InvalidInputError, match="not a model id"):
        call(models, "alpha:1:not-a-hash", X[:1]).result(timeout_s=60)
    with pytest.raises(InvalidInputError, match="not a model name"):
        call(models, "Alpha:1:" + "0" * 64, X[:1]).result(timeout_s=60)
    with pytest.raises(ModelNotFoundError):
        call(models, "omega:1:" + "0" * 64, X[:1]).result(timeout_s=60)
    with pytest.raises(InvalidInputError, match="expected"):
        call(models, model_id(store_dir, "beta"), np.zeros((1, 3, 3, 1), np.float32)).result(timeout_s=60)


def test_serve_config_matches_the_builder():
    """deploy/ray/serve_config.yaml validates against Ray's schema and the builder's args."""
    from ray.serve.schema import ServeDeploySchema

    from yyai_kernel.ray_app import DEPLOYMENT_NAME, AppArgs

    config = yaml.safe_load((REPO / "deploy/ray/serve_config.yaml").read_text())
    schema = ServeDeploySchema.parse_obj(config)
    (app,) = schema.applications
    assert app.import_path == "yyai_kernel.ray_app:build_app"
    AppArgs.model_validate(app.args)
    assert [d.name for d in app.deployments] == [DEPLOYMENT_NAME]
    assert schema.http_options.host == "127.0.0.1"
    assert AppArgs.model_validate({"store": "/s", "trusted": "a,b"}).trusted == ["a", "b"]
