"""The planes called directly (no HTTP): the operations every front end shares.

Real tiny Keras models in a real store, a real Registry; each test checks a typed result
against the Keras models called directly or against the store's state. A request's model
reference is parsed and resolved once (``at``), as every front end does, then handed to
the data plane.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from builders import LABELS, install, pack_models, reference, sample_inputs

from yyai_kernel.errors import InvalidInputError, ModelNotFoundError, ModelNotReadyError
from yyai_kernel.hints import Hint, Step
from yyai_kernel.plane.planes import Planes
from yyai_kernel.protocol import v2codec
from yyai_kernel.registry.registry import Registry
from yyai_kernel.store.store import ModelStore
from yyai_kernel.types import ModelRef, ModelStatus, Prediction, VersionState

X = sample_inputs(3)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp-built")
    return {"alpha1": pack_models(out, "alpha", 1, [1, 2]), "alpha2": pack_models(out, "alpha", 2, [3]),
            "beta1": pack_models(out, "beta", 1, [4])}


@pytest.fixture
def plane(built, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    for key in ("alpha1", "beta1"):
        install(built[key][0], store)
    planes = Planes.over(Registry(ModelStore(store)))
    yield planes
    planes.close()


def at(planes: Planes, name: str, version=None):
    """The request's one resolution: its reference parsed, then resolved in the model's view."""
    return planes.data.resolve(ModelRef.parse(name, version))


def _request(name: str = "input", x: np.ndarray = X, outputs=None) -> v2codec.InferRequest:
    requested = [v2codec.RequestedOutput(o) for o in outputs] if outputs else None
    return v2codec.InferRequest(id="r1", inputs=[v2codec.RequestInput(name, "FP32", list(x.shape), x)],
                                outputs=requested)


def test_infer_returns_every_output_equal_to_keras(plane, built):
    plane.registry.load_all()
    result = plane.data.infer(at(plane, "alpha"), _request()).result()
    ref = reference(built["alpha1"][1], X)
    assert result.model_name == "alpha" and result.model_version == 1 and result.id == "r1"
    names = [name for name, _, _ in result.outputs]
    assert names == ["output", "m1", "m2"]
    np.testing.assert_allclose(result.outputs[0][1], ref["combined"], atol=1e-5)
    np.testing.assert_allclose(result.outputs[1][1], ref["members"][0], atol=1e-5)
    assert result.parameters == {"combined": "output", "members": ["m1", "m2"]}


def test_infer_refuses_an_unknown_output_before_running(plane):
    plane.registry.load_all()
    with pytest.raises(InvalidInputError, match="Unknown output 'nope'"):
        plane.data.infer(at(plane, "alpha", 1), _request(outputs=["nope"]))
    with pytest.raises(InvalidInputError, match="input is named 'input'"):
        plane.data.infer(at(plane, "alpha", 1), _request(name="x"))


def test_names_and_versions_follow_one_rule(plane):
    for bad in ("../x", "Alpha", ""):
        with pytest.raises(InvalidInputError, match="not a model name"):
            at(plane, bad)
    for bad in ("+1", " 1 ", "1.0", True, 0, "0"):
        with pytest.raises(InvalidInputError, match="positive integer"):
            at(plane, "alpha", bad)
    with pytest.raises(ModelNotFoundError, match="Did you mean 'alpha'"):
        plane.data.status("alpah")
    with pytest.raises(ModelNotFoundError, match="Did you mean 'alpha'"):
        at(plane, "alpah")


def test_metadata_states_the_preprocessing(plane):
    meta = plane.data.model_metadata(at(plane, "alpha"))
    assert meta.to_json()["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4, 4, 1]}]
    assert [o.name for o in meta.outputs] == ["output", "m1", "m2"]
    assert meta.parameters["preprocessed"] is True and meta.parameters["scale"] == pytest.approx(1 / 255)


def test_readiness_says_why_a_version_does_not_serve(plane):
    data = plane.data
    index = {(e.name, e.version): e for e in data.repository_index()}
    assert index[("alpha", "1")].state == "UNAVAILABLE" and "not loaded" in index[("alpha", "1")].reason
    with pytest.raises(ModelNotReadyError, match="not ready: not loaded"):
        data.model_ready(at(plane, "alpha"))
    with pytest.raises(ModelNotReadyError, match="still loading"):
        data.check_ready()
    plane.registry.load_all()
    data.mark_ready()
    data.check_ready()
    assert data.model_ready(at(plane, "alpha")) == 1
    plane.repository.unload("alpha")
    entry = {(e.name, e.version): e for e in data.repository_index()}[("alpha", "1")]
    assert (entry.state, entry.reason) == ("UNAVAILABLE", "unloaded")
    assert [e.name for e in data.repository_index(ready_only=True)] == ["beta"]
    with pytest.raises(ModelNotReadyError, match="was unloaded"):
        data.infer(at(plane, "alpha"), _request())


def test_a_version_being_loaded_is_waited_for_and_the_reply_says_it_was_a_cold_start(plane):
    """A request for a version that is marked loading (start-up) waits for that load and answers."""
    slot = plane.registry.table.ensure("alpha", create=True).slot(1)
    slot.state = VersionState.LOADING  # what the server marks before it starts loading
    result = plane.data.infer(at(plane, "alpha"), _request()).result(timeout=120)
    assert result.model_version == 1 and result.cold_start_s is not None and result.cold_start_s > 0
    warm = plane.data.infer(at(plane, "alpha"), _request()).result(timeout=60)
    assert warm.cold_start_s is None


def test_a_cold_start_that_waits_too_long_is_503_with_retry_after(built, tmp_path):
    """The wait for a load is bounded: past cold_start_timeout the request hears 503 and when to retry."""
    from yyai_kernel.registry.residency import Priority

    store = tmp_path / "store"
    store.mkdir()
    install(built["alpha1"][0], store)
    planes = Planes.over(Registry(ModelStore(store), cold_start_timeout=0.5))
    try:
        with planes.registry.residency.gate.hold(Priority.MANAGE):  # another load holds the gate
            pending = planes.data.infer(at(planes, "alpha"), _request())
            with pytest.raises(ModelNotReadyError, match=r"still loading after 0\.5 s") as caught:
                pending.result(timeout=30)
        assert caught.value.retry_after
        deadline = time.monotonic() + 120
        while not planes.registry.status("alpha").versions[1].ready:  # the load carried on
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert planes.data.infer(at(planes, "alpha"), _request()).result(timeout=60).model_version == 1
        # the load counts itself once it measured its cost, just after the version serves
        while (residency := planes.registry.residency_status()).loads < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert residency.cold_start_timeouts == 1 and residency.loads == 1
    finally:
        planes.close()


def test_images_are_preprocessed_and_named(plane, built):
    from yyai_kernel.runtime.images import encode_png

    plane.registry.load_all()
    pixels = (X[:2, :, :, 0] * 255).round().astype(np.uint8)
    pngs = [encode_png(p, rgb=False) for p in pixels]
    prediction = plane.data.submit_images(at(plane, "alpha"), pngs, ["a.png", "b.png"]).result()
    assert isinstance(prediction, Prediction) and prediction.filenames == ("a.png", "b.png")
    ref = reference(built["alpha1"][1], (pixels[..., None] / 255).astype(np.float32))
    np.testing.assert_allclose(prediction.combined, ref["combined"], atol=1e-5)
    reply = prediction.to_json()
    assert [row["filename"] for row in reply["predictions"]] == ["a.png", "b.png"]
    assert reply["predictions"][0]["top"] == LABELS[int(np.argmax(ref["combined"][0]))]
    assert prediction.top(0)[0] == reply["predictions"][0]["top"]
    assert len(prediction.top_k(0, 2)) == 2


def test_pin_and_follow_latest_say_which_version_is_the_default_and_why(plane, built):
    plane.registry.load_all()
    status = plane.repository.set_default("alpha", 1)
    assert status.pinned and status.default == 1
    result = plane.repository.add_archive(built["alpha2"][0])
    assert (result.name, result.version) == ("alpha", 2)
    assert result.model.default == 1 and "v1 is the default: pinned (v2 is newer)" in result.message
    assert result.model.default_why.hints == (Hint(Step.FOLLOW_LATEST, "alpha"),)  # each front end words it
    assert "DELETE /models/alpha/default" in result.to_json()["message"]  # REST's words, at the JSON edge
    assert "DELETE" not in result.message
    status = plane.repository.follow_latest("alpha")
    assert isinstance(status, ModelStatus) and not status.pinned
    assert status.default == 2 and "the latest version" in status.default_reason
    assert plane.data.predict(at(plane, "alpha"), X).version == 2


def test_samples_are_looked_up_by_manifest_name_only(plane):
    assert plane.data.bundled(at(plane, "alpha")).files == ()
    with pytest.raises(ModelNotFoundError, match="has no sample named"):
        plane.data.bundled_file(at(plane, "alpha"), "../../etc/passwd")
