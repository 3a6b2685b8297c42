"""Labels, the traffic policy and shadow comparison, without HTTP.

The policy parser and the sampler, the comparison of two outputs, the state file
(compatible with files that hold only pins, forgiving section by section), the store's
labels and policies, and the data plane's routing over a real Registry of tiny real
Keras models: labels resolve wherever a version goes, a canary that does not serve hands
its requests to the default, and shadow work past the queue's bound is dropped and counted.
"""

from __future__ import annotations

import json
import logging
import random
import time

import cv2
import numpy as np
import pytest
from builders import (
    INPUT_SPEC,
    clear_cut,
    install,
    pack_models,
    reference,
    sample_inputs,
)

from yyai_kernel.config import ServingConfig
from yyai_kernel.errors import ConflictError, InvalidInputError, ModelNotFoundError
from yyai_kernel.plane.planes import Planes
from yyai_kernel.protocol import v2codec
from yyai_kernel.registry.registry import Registry
from yyai_kernel.rollout.compare import compare_outputs
from yyai_kernel.runtime.images import thumbnail_png
from yyai_kernel.store.state import StoreState
from yyai_kernel.store.store import STATE_FILE, ModelStore
from yyai_kernel.types import (
    InputSpec,
    ModelRef,
    ModelStatus,
    OutputSpec,
    TrafficPolicy,
    TrafficSplit,
    check_label,
    parse_version_ref,
)

CLASSES = OutputSpec.classes(["a", "b", "c"])


# --- the policy document -----------------------------------------------------------------------


def test_a_policy_round_trips_through_its_json():
    policy = TrafficPolicy.parse({"canary": {"version": 3, "percent": 10}, "shadow": {"version": 4, "percent": 100},
                                  "sticky": True})
    assert policy == TrafficPolicy(TrafficSplit(3, 10.0), TrafficSplit(4, 100.0), True)
    assert TrafficPolicy.parse(json.loads(json.dumps(policy.to_json()))) == policy
    assert policy.versions() == {"canary": 3, "shadow": 4}
    assert TrafficPolicy.parse({"shadow": {"version": 2, "percent": 0}, "canary": None}).canary is None


@pytest.mark.parametrize("doc, words", [
    ([], "must be a JSON object"),
    ({}, "neither a canary nor a shadow"),
    ({"sticky": True}, "neither a canary nor a shadow"),
    ({"canary": {"version": 2, "percent": 10}, "mirror": 1}, "Unknown field(s) 'mirror'"),
    ({"canary": {"version": 2, "percent": 10, "weight": 3}}, "Unknown field(s) 'weight' in canary"),
    ({"canary": {"version": 2}}, "canary needs 'percent'"),
    ({"shadow": {"percent": 5}}, "shadow needs 'version'"),
    ({"canary": {"version": 2, "percent": 101}}, "canary.percent must be a number from 0 to 100, not 101"),
    ({"canary": {"version": 2, "percent": -1}}, "from 0 to 100"),
    ({"canary": {"version": 2, "percent": "10"}}, "from 0 to 100"),
    ({"canary": {"version": 2, "percent": True}}, "from 0 to 100"),
    ({"canary": {"version": 2, "percent": float("nan")}}, "from 0 to 100"),
    ({"canary": {"version": 0, "percent": 10}}, "canary.version: Version must be a positive integer"),
    ({"canary": {"version": "stable", "percent": 10}}, "positive integer"),
    ({"shadow": {"version": None, "percent": 10}}, "shadow.version: Version must be a positive integer, not None"),
    ({"canary": [2, 10]}, "canary must be an object"),
    ({"canary": {"version": 2, "percent": 10}, "sticky": "yes"}, "'sticky' must be true or false"),
])
def test_bad_policies_are_refused_with_the_field_named(doc, words):
    with pytest.raises(InvalidInputError) as refused:
        TrafficPolicy.parse(doc)
    assert words in refused.value.message


def test_labels_follow_one_rule_and_never_read_as_versions():
    assert parse_version_ref("stable") == "stable" and parse_version_ref("2") == 2 and parse_version_ref(None) is None
    assert check_label("canary-2_b") == "canary-2_b"
    for bad in ("Stable", "2x", "_x", "a" * 33, "a.b", "", "a/b"):
        with pytest.raises(InvalidInputError, match="label"):
            check_label(bad)
    for bad in ("Stable", "0", "-1", "1.5", "a" * 33, "sta ble"):
        with pytest.raises(InvalidInputError, match="positive integer or a label"):
            parse_version_ref(bad)


# --- choosing a side ---------------------------------------------------------------------------------


def test_sticky_keys_land_on_the_same_side_in_every_process():
    policy = TrafficPolicy(canary=TrafficSplit(2, 30), sticky=True)
    sides = {key: policy.choose("toy", 1, key, random.Random(0)).canary for key in map(str, range(2000))}
    again = {key: policy.choose("toy", 1, key, random.Random(99)).canary for key in map(str, range(2000))}
    assert sides == again  # a hash of the key, not the random draw
    share = sum(v == 2 for v in sides.values()) / len(sides)
    assert abs(share - 0.3) < 4 * (0.3 * 0.7 / 2000) ** 0.5
    wider = TrafficPolicy(canary=TrafficSplit(2, 60), sticky=True)
    assert all(wider.choose("toy", 1, k, random.Random()).canary == 2 for k, v in sides.items() if v == 2)
    unsticky = TrafficPolicy(canary=TrafficSplit(2, 50))
    rng = random.Random(1)
    assert len({unsticky.choose("toy", 1, "same-key", rng).canary for _ in range(50)}) == 2  # key ignored


def test_a_side_equal_to_the_default_is_idle_and_canary_requests_are_not_shadowed():
    rng = random.Random(0)
    both = TrafficPolicy(canary=TrafficSplit(2, 50), shadow=TrafficSplit(3, 100))
    choices = [both.choose("toy", 1, None, rng) for _ in range(400)]
    assert all((c.canary == 2) != (c.shadow == 3) for c in choices)  # exactly one side each
    assert TrafficPolicy(canary=TrafficSplit(1, 100)).choose("toy", 1, None, rng).canary is None
    assert TrafficPolicy(shadow=TrafficSplit(1, 100)).choose("toy", 1, None, rng).shadow is None
    assert TrafficPolicy(canary=TrafficSplit(2, 0)).choose("toy", 1, None, rng).canary is None


# --- comparing outputs -------------------------------------------------------------------------------


def test_classification_compares_top_label_and_largest_probability_gap():
    real = np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]], np.float32)
    shadow = np.array([[0.6, 0.3, 0.1], [0.1, 0.3, 0.6]], np.float32)
    rows = compare_outputs(real, CLASSES, shadow, CLASSES)
    assert [r.agree for r in rows] == [True, False]
    assert [r.top for r in rows] == ["a", "b"] and rows[1].shadow_top == "c"
    assert rows[0].abs_diff == pytest.approx(0.1, abs=1e-6) and rows[1].abs_diff == pytest.approx(0.3, abs=1e-6)
    reordered = compare_outputs(real, CLASSES, shadow[:, ::-1], OutputSpec.classes(["c", "b", "a"]))
    assert [(r.agree, round(r.abs_diff, 6)) for r in reordered] == [(r.agree, round(r.abs_diff, 6)) for r in rows]


def test_regression_compares_absolute_error_and_rounded_equality():
    spec = OutputSpec.values(["y"], rounding=1)
    rows = compare_outputs(np.array([[1.02], [2.0]]), spec, np.array([[1.04], [2.5]]), spec)
    assert [r.agree for r in rows] == [True, False]
    assert rows[1].abs_diff == pytest.approx(0.5)
    with pytest.raises(InvalidInputError, match="cannot be compared"):
        compare_outputs(np.zeros((1, 3)), CLASSES, np.zeros((1, 1)), spec)


def test_a_thumbnail_shows_the_input_pixels():
    pixels = np.random.default_rng(0).integers(0, 256, (4, 4), dtype=np.uint8)
    x = (pixels.astype(np.float32) / 255)[:, :, None]
    png = thumbnail_png(x, InputSpec.from_json(INPUT_SPEC), size=16)
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image.shape == (16, 16)
    np.testing.assert_array_equal(image[::4, ::4], pixels)
    assert thumbnail_png(np.zeros(10), InputSpec.from_json({"shape": [10], "dtype": "float32", "color": "rgb"})) is None


# --- the state file and the store ----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path, zips):
    root = tmp_path / "store"
    root.mkdir()
    for version in (1, 2, 3):
        members = {"models/m.h5": f"weights {version}".encode()}
        zips.craft_archive(root / f"digits-{version}.yyar", members=members,
                           manifest=zips.manifest_for(members, name="digits", version=version))
    return ModelStore(root)


def test_a_pins_only_file_reads_and_writes_as_before(store):
    store.pin("digits", 2)
    assert json.loads((store.root / STATE_FILE).read_text()) == {"pins": {"digits": 2}}
    data = {"pins": {"digits": 2}, "workers": {"generation": 7}}
    (store.root / STATE_FILE).write_text(json.dumps(data))
    store.scan()
    store.set_label("digits", "stable", 1)
    saved = json.loads((store.root / STATE_FILE).read_text())
    assert saved == {**data, "labels": {"digits": {"stable": 1}}}  # a key another writer added is kept


def test_labels_and_traffic_persist_and_guard_their_versions(store):
    policy = TrafficPolicy(canary=TrafficSplit(3, 10), shadow=TrafficSplit(2, 100), sticky=True)
    store.set_label("digits", "stable", 1)
    store.set_traffic("digits", policy)
    again = ModelStore(store.root)
    assert again.labels("digits") == {"stable": 1} and again.label("digits", "stable") == 1
    assert again.traffic("digits") == policy
    for version, words in ((1, "the label 'stable'"), (2, "the shadow of the traffic policy"),
                           (3, "the canary of the traffic policy")):
        with pytest.raises(ConflictError, match=words):
            again.remove("digits", version)
    assert again.versions("digits") == [1, 2, 3]
    with pytest.raises(ModelNotFoundError, match="no label 'canary'; its labels are stable"):
        again.label("digits", "canary")
    with pytest.raises(ModelNotFoundError, match="no version 9"):
        again.set_label("digits", "stable", 9)
    with pytest.raises(ModelNotFoundError):
        again.set_traffic("digits", TrafficPolicy(shadow=TrafficSplit(9, 5)))
    again.delete_label("digits", "stable")
    again.set_traffic("digits", None)
    again.remove("digits", 1)
    assert ModelStore(store.root).labels("digits") == {} and ModelStore(store.root).traffic("digits") is None
    assert json.loads((store.root / STATE_FILE).read_text()) == {"pins": {}}


@pytest.mark.parametrize("section, kept", [
    ({"labels": {"digits": {"Stable!": 1}}}, "pins"),
    ({"labels": [1]}, "pins"),
    ({"traffic": {"digits": {"canary": {"version": 2, "percent": 500}}}}, "pins"),
    ({"pins": {"digits": "two"}}, "labels"),
])
def test_a_bad_section_is_ignored_and_the_others_apply(store, caplog, section, kept):
    good = {"pins": {"digits": 1}, "labels": {"digits": {"stable": 2}}}
    (store.root / STATE_FILE).write_text(json.dumps({**good, **section}))
    with caplog.at_level(logging.WARNING, logger="yyai.store"):
        store.scan()
    assert store.state_error and STATE_FILE in store.state_error
    assert any("state file" in r.getMessage() for r in caplog.records)
    assert (store.pins() == {"digits": 1}) == (kept == "pins")
    assert (store.labels("digits") == {"stable": 2}) == (kept == "labels" or "labels" not in section)
    _state, problems = StoreState.parse({**good, **section})
    assert len(problems) == 1


# --- the data plane: labels and routing over a real registry ---------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("rollout-built")
    return {v: pack_models(out, "toy", v, [v]) for v in (1, 2)}


@pytest.fixture
def make_plane(built, tmp_path):
    """``make_plane(**settings)``: the planes over toy v1 (the default, pinned) and v2; closed after the test."""
    planes = []

    def make(**settings) -> Planes:
        store = tmp_path / f"store-{len(planes)}"
        store.mkdir()
        for archive, _ in built.values():
            install(archive, store)
        registry = Registry(ModelStore(store), ServingConfig(**settings))
        registry.load_all()
        planes.append(Planes.over(registry))
        planes[-1].repository.set_default("toy", 1)
        return planes[-1]

    yield make
    for plane in planes:
        plane.close()


def at(planes: Planes, name: str, version=None):
    """A request's one resolution, as a front end makes it."""
    return planes.data.resolve(ModelRef.parse(name, version))


def _request(x: np.ndarray, id_: str = "") -> v2codec.InferRequest:
    return v2codec.InferRequest(id=id_, inputs=[v2codec.RequestInput("input", "FP32", list(x.shape), x)],
                                outputs=None)


def test_a_label_resolves_wherever_a_version_goes(make_plane, built):
    plane = make_plane()
    status = plane.repository.set_label("toy", "candidate", 2)
    assert isinstance(status, ModelStatus) and status.labels == {"candidate": 2}
    x = sample_inputs(2)
    result = plane.data.infer(at(plane, "toy", "candidate"), _request(x)).result()
    assert result.model_version == 2
    np.testing.assert_allclose({n: a for n, a, _ in result.outputs}["output"],
                               reference(built[2][1], x)["combined"], atol=1e-5)
    assert plane.data.describe(at(plane, "toy", "candidate")).version == 2
    assert plane.data.model_ready(at(plane, "toy", "candidate")) == 2
    assert plane.data.model_metadata(at(plane, "toy", "candidate")).versions == ["2"]
    assert plane.data.bundled(at(plane, "toy", "candidate")).files == ()
    assert plane.repository.label(ModelRef("toy", label="candidate")).version == 2
    with pytest.raises(ModelNotFoundError, match="no label 'stable'"):
        plane.data.infer(at(plane, "toy", "stable"), _request(x))
    with pytest.raises(ConflictError, match="label 'candidate'"):
        plane.repository.remove("toy", 2, purge=True)
    assert plane.data.status("toy").versions[2].ready  # the refused purge changed nothing


def test_a_canary_that_does_not_serve_hands_its_requests_to_the_default(make_plane):
    plane = make_plane()
    plane.repository.set_traffic("toy", {"canary": {"version": 2, "percent": 100}})
    assert plane.data.infer(at(plane, "toy", None), _request(sample_inputs(1))).result().model_version == 2
    named = plane.data.infer(at(plane, "toy", 1), _request(sample_inputs(1))).result()
    assert named.model_version == 1  # named: as named
    plane.repository.unload("toy", 2)
    versions = [plane.data.infer(at(plane, "toy", None), _request(sample_inputs(1))).result().model_version
                for _ in range(5)]
    assert versions == [1] * 5
    canary = plane.data.status("toy").rollout.canary
    assert (canary.requests, canary.fallbacks) == (6, 5)


def test_shadow_work_past_the_queue_bound_is_dropped_and_counted(make_plane):
    plane = make_plane(shadow_max_pending=0)
    plane.repository.set_traffic("toy", {"shadow": {"version": 2, "percent": 100}})
    x = sample_inputs(3)
    for _ in range(4):
        result = plane.data.infer(at(plane, "toy", None), _request(x)).result()
        assert result.model_version == 1
    shadow = plane.data.status("toy").rollout.shadow
    assert (shadow.runs, shadow.dropped, shadow.rows_compared) == (0, 4, 0)


def test_shadow_agreement_equals_the_offline_comparison(make_plane, built):
    plane = make_plane()
    plane.repository.set_traffic("toy", {"shadow": {"version": 2, "percent": 100}})
    x = sample_inputs(80, seed=5)
    x = x[clear_cut(*(reference(built[v][1], x)["combined"] for v in (1, 2)))[:40]]
    pending = [plane.data.infer(at(plane, "toy", None), _request(x[start:start + 4])) for start in range(0, 40, 4)]
    assert [p.result().model_version for p in pending] == [1] * 10  # queued together: shadows stack up
    deadline = time.monotonic() + 30
    while plane.data.status("toy").rollout.shadow.rows_compared < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    shadow = plane.data.status("toy").rollout.shadow
    offline = reference(built[1][1], x)["combined"].argmax(1) == reference(built[2][1], x)["combined"].argmax(1)
    assert (shadow.rows_compared, shadow.rows_agreed, shadow.errors) == (40, int(offline.sum()), 0)
    kept = plane.repository.disagreements("toy")
    assert len(kept) == min(32, 40 - int(offline.sum())) and kept[0].id > kept[-1].id
    assert all(d.top != d.shadow_top and d.input.png for d in kept)
    plane.repository.set_traffic("toy", {"shadow": {"version": 2, "percent": 50}})  # a new policy starts afresh
    assert plane.data.status("toy").rollout.shadow.rows_compared == 0 and plane.repository.disagreements("toy") == []


# --- the CLI on a store folder ---------------------------------------------------------------------


def test_the_cli_sets_labels_and_traffic_on_a_store(store):
    from typer.testing import CliRunner

    from yyai_kernel.cli import app

    def run(*args):
        return CliRunner().invoke(app, [str(a) for a in args])

    assert run("label", "digits", "stable", 1, "--store", store.root).output == "digits@stable -> v1\n"
    assert run("label", "digits", "--store", store.root).output == "digits@stable -> v1\n"
    result = run("traffic", "digits", "--canary", "2:10", "--shadow", "1:100", "--sticky", "--store", store.root)
    assert result.exit_code == 0 and "canary v2 10%, shadow v1 100% (sticky)" in result.output, result.output
    reopened = ModelStore(store.root)
    assert reopened.labels("digits") == {"stable": 1}
    assert reopened.traffic("digits") == TrafficPolicy(TrafficSplit(2, 10), TrafficSplit(1, 100), True)
    table = run("models", "--store", store.root).output
    assert "stable=1" in table and "canary v2 10%" in table
    for args, words in ((("traffic", "digits", "--shadow", "3:50"), "already the default"),
                        (("traffic", "digits", "--canary", "2:150"), "from 0 to 100"),
                        (("traffic", "digits", "--canary", "two"), "VERSION:PERCENT"),
                        (("label", "digits", "Stable", 1), "not a version label"),
                        (("label", "digits", "beta"), "no label 'beta'")):
        refused = run(*args, "--store", store.root)
        assert refused.exit_code == 1 and words in refused.stderr, (args, refused.output)
    promoted = run("traffic", "digits", "--promote", "--store", store.root)
    assert promoted.exit_code == 0 and "no traffic policy" in promoted.output
    assert ModelStore(store.root).default_version("digits") == 2
    assert run("label", "digits", "stable", "--delete", "--store", store.root).output == "digits has no labels\n"
