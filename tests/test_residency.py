"""Loading on demand within a budget, in one process: cold starts, one load each, eviction order.

Real tiny Keras models in a real store and a real Registry. Requests for versions that are
not loaded come from many threads at once; the registry's own counters say how many loads
ran, and every answer is checked against the Keras models called directly. The eviction
order is also checked as a pure rule, on typed values.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from builders import install, pack_models, reference, sample_inputs

from yyai_kernel.errors import ModelNotFoundError, ModelNotReadyError
from yyai_kernel.registry.registry import Registry
from yyai_kernel.registry.residency import (
    Budget,
    Protection,
    Residency,
    Resident,
    eviction_order,
)
from yyai_kernel.store.store import ModelStore
from yyai_kernel.types import ModelRef, VersionState

X = sample_inputs(2)
NAMES = ("a", "b", "c", "d")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("residency-built")
    return {name: pack_models(root, name, 1, [40 + i]) for i, name in enumerate(NAMES)}


@pytest.fixture
def registry(built, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    for archive, _ in built.values():
        install(archive, store)
    reg = Registry(ModelStore(store), max_loaded=2)
    yield reg
    reg.close()


def predict(registry: Registry, name: str):
    return registry.submit(registry.resolve(ModelRef(name)), X).result(timeout=120)


def hammer(registry: Registry, name: str, clients: int = 8) -> list:
    """``clients`` threads ask for ``name`` at the same moment; every answer (or error)."""
    start = threading.Barrier(clients)

    def one(_):
        start.wait()
        try:
            return predict(registry, name)
        except Exception as error:  # noqa: BLE001 - collected and asserted on below
            return error

    with ThreadPoolExecutor(clients) as pool:
        return list(pool.map(one, range(clients)))


def status_after(registry: Registry, loads: int = 0, failures: int = 0):
    """The residency status once ``loads`` loads (and ``failures`` failed ones) are counted: a load
    releases its waiting requests first and then counts itself, so the answers can come first."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = registry.residency_status()
        if status.loads >= loads and status.load_failures >= failures:
            break
        time.sleep(0.02)
    return status


def loaded(registry: Registry) -> set[str]:
    return {s.name for s in registry.list() if s.loaded}


def test_concurrent_first_requests_share_one_load_and_eviction_reloads_on_demand(registry, built):
    expected = {name: reference(models, X)["combined"] for name, (_, models) in built.items()}
    answers = hammer(registry, "a")
    assert not [a for a in answers if isinstance(a, Exception)], answers
    for answer in answers:
        np.testing.assert_allclose(answer.combined, expected["a"], atol=1e-5)
    assert all(a.cold_start_s is not None for a in answers)  # each waited for the one load
    status = status_after(registry, 1)
    assert status.loads == 1 and status.cold_starts == 8 and status.evictions == 0

    predict(registry, "b")
    predict(registry, "c")  # a third version under --max-loaded 2: the least recently used (a) goes
    assert loaded(registry) == {"b", "c"}
    a = registry.status("a").versions[1]
    assert a.state is VersionState.AVAILABLE and "memory budget" in a.reason and a.memory_bytes is None

    answers = hammer(registry, "a")  # back on demand, one load for eight requests; b (now the LRU) goes
    assert not [x for x in answers if isinstance(x, Exception)], answers
    for answer in answers:
        np.testing.assert_allclose(answer.combined, expected["a"], atol=1e-5)
    status = status_after(registry, 4)
    assert status.loads == 4 and status.evictions == 2 and status.loaded == 2
    assert loaded(registry) == {"a", "c"}
    assert status.resident_bytes == sum(registry.status(n).versions[1].memory_bytes for n in ("a", "c"))
    assert all(registry.status(n).versions[1].memory_bytes > 0 for n in ("a", "c"))
    assert registry.status("a").versions[1].used_at is not None


def test_protected_versions_go_last_and_an_operators_unload_stays_unloaded(registry):
    registry.set_label("d", "stable", 1)  # d is loaded and protected by its label
    predict(registry, "a")
    predict(registry, "b")  # two versions only: the unprotected LRU goes, never d
    assert loaded(registry) == {"b", "d"}
    for name in ("c", "a", "c"):
        predict(registry, name)
        assert "d" in loaded(registry)
    registry.unload("d", 1)  # the operator's unload: no request loads it back
    with pytest.raises(ModelNotReadyError, match="was unloaded"):
        registry.submit(registry.resolve(ModelRef("d")), X)
    registry.load("d", 1)
    assert predict(registry, "d").version == 1


def test_a_version_whose_load_fails_answers_503_to_every_waiting_request(built, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    broken = store / "a-1.yyar"
    install(built["a"][0], store)
    data = bytearray(broken.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the checksum no longer matches
    broken.write_bytes(bytes(data))
    reg = Registry(ModelStore(store))
    try:
        answers = hammer(reg, "a", clients=4)
        assert all(isinstance(a, Exception) and getattr(a, "status", None) in (400, 503) for a in answers), answers
        assert status_after(reg, failures=1).load_failures == 1
        assert reg.status("a").versions[1].state is VersionState.FAILED
    finally:
        reg.close()


def test_the_warm_set_is_protected_versions_then_recent_defaults_bounded_by_warm(registry):
    registry.store.set_label("c", "stable", 1)
    registry.store.set_recent([("b", 1), ("d", 1)])
    registry.table.refresh()
    registry.config.warm = 3
    assert registry.warm_set() == [("c", 1), ("b", 1), ("d", 1)]
    registry.config.warm = 10
    assert registry.warm_set() == [("c", 1), ("b", 1), ("d", 1), ("a", 1)]
    predict(registry, "a")
    registry.persist_recent()
    assert registry.store.recent()[0] == ("a", 1)
    assert ModelStore(registry.store.root).recent()[:3] == [("a", 1), ("b", 1), ("d", 1)]  # persisted


# --- the rule itself ---------------------------------------------------------------------------


def test_eviction_order_is_unprotected_first_then_least_recently_used():
    residents = [Resident("p", 1, 10, 1.0, Protection.NAMED), Resident("d", 1, 10, 2.0, Protection.DEFAULT),
                 Resident("x", 1, 10, 5.0, Protection.NONE), Resident("y", 1, 10, 3.0, Protection.NONE),
                 Resident("e", 1, 10, 0.5, Protection.DEFAULT)]
    assert [r.name for r in eviction_order(residents)] == ["y", "x", "e", "d", "p"]


def test_fit_makes_room_for_the_incoming_cost_and_skips_a_busy_model():
    residents = [Resident("a", 1, 40, 1.0, Protection.NONE), Resident("b", 1, 40, 2.0, Protection.NONE),
                 Resident("c", 1, 40, 3.0, Protection.NAMED)]
    gone: list[str] = []

    def evict(r: Resident) -> bool:
        if r.name == "a":
            return False  # its model is busy swapping
        gone.append(r.name)
        residents.remove(r)
        return True

    residency = Residency(Budget(memory_bytes=100), lambda: list(residents), evict)
    evicted = residency.fit(("n", 1), incoming=30)  # 120 + 30 > 100: b goes (a is busy), then c
    assert [r.name for r in evicted] == ["b", "c"] and gone == ["b", "c"]
    assert residency.stats.evictions == 2
    assert Budget(max_loaded=2).over(3, 0) and not Budget(max_loaded=2).over(2, 10**12)
    assert not Budget().bounded and Residency(Budget(), lambda: residents, evict).fit(("n", 1), 10**12) == []


def test_a_request_that_raced_the_removal_of_its_version_leaves_no_trace(built, tmp_path):
    """A request resolved a version, then the version (and then the whole model) was purged before
    it reached the registry: it is answered 404 and leaves no slot behind, so the model's status
    lists no purged version and a removed model is not found (found under load by test_faults)."""
    store = tmp_path / "store"
    store.mkdir()
    install(built["a"][0], store)
    install(pack_models(tmp_path / "built", "a", 2, [49])[0], store)
    registry = Registry(ModelStore(store))
    try:
        first, second = registry.resolve(ModelRef("a", 1)), registry.resolve(ModelRef("a", 2))
        predict(registry, "a")  # v2, the default, serves
        registry.remove("a", 2, purge=True)  # v1 takes over
        with pytest.raises(ModelNotFoundError):
            registry.submit(second, X).result(timeout=120)
        assert list(registry.status("a").versions) == [1]
        registry.remove("a", 1, purge=True)  # the model is gone
        with pytest.raises(ModelNotFoundError):
            registry.submit(first, X).result(timeout=120)
        with pytest.raises(ModelNotFoundError):
            registry.status("a")
        assert registry.names() == [] and registry.table.versions("a") is None
    finally:
        registry.close()
