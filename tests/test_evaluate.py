"""Evaluation on labelled sets: scores equal a reference computed with Keras run directly.

The store is a temporary copy of the bundled demo archives, which carry their own held-out
sets (manifest role ``eval``). The reference (tests/evalref.py) reads the same images
straight from the bundled zip, runs each member with Keras directly and scores with
scikit-learn (the oracle; yyai computes its scores with numpy).
"""

from __future__ import annotations

import csv
import io
import shutil
import zipfile
from pathlib import Path

import evalref
import numpy as np
import pytest
from evalref import (
    COLOR_SET,
    DEMO,
    bundled_rows,
    check_classification,
    expected_disagreements,
    reference,
)
from sklearn import metrics as skm

import yyai_kernel
from yyai_kernel import archive
from yyai_kernel.archive import kerasload
from yyai_kernel.errors import (
    ArchiveError,
    InvalidInputError,
    ModelNotFoundError,
    UnsafeMemberError,
    ZipBombError,
)
from yyai_kernel.evaluation.sets import open_set, set_from_archive, set_from_zip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("eval-store")
    for path in DEMO.glob("*.yyar"):
        shutil.copyfile(path, folder / path.name)
    return folder


@pytest.fixture(scope="module")
def registry(store):
    from yyai_kernel.plane.local import LocalBackend
    from yyai_kernel.registry.registry import Registry
    from yyai_kernel.store.store import ModelStore

    reg = Registry(ModelStore(store))
    for name, version in (("digits", 1), ("digits", 2), ("colorfulness", 1)):
        reg.load(name, version)
    yield LocalBackend.over(reg)  # the in-process Backend
    reg.close()


@pytest.fixture(scope="module")
def digits_reference(store):
    return evalref.digits_reference(store)


@pytest.fixture(scope="module")
def digits_result(registry):
    calls = []
    result = yyai_kernel.evaluate(registry, "digits", [1, 2], set_from_archive(DEMO / "digits-2.yyar"),
                                  batch_size=48, progress=lambda done, total: calls.append((done, total)))
    return result, calls


def test_bundled_digits_scores_equal_keras_run_directly(digits_result, digits_reference):
    result, calls = digits_result
    ref = digits_reference
    assert result.model == "digits" and result.kind == "classification"
    assert [v.version for v in result.versions] == [1, 2]
    assert result.bad_items == () and len(result.items) == len(ref["files"]) == 200
    assert [item.key for item in result.items] == ref["files"]
    for version in (1, 2):
        check_classification(result.version(version).scores, ref["truth"], ref[version]["combined"])
    # v1 has one member (no per-member block); v2 is an ensemble scored member by member.
    assert result.version(1).members == {} and result.version(2).output == "combined"
    assert list(result.version(2).members) == ["cnn_a", "mlp", "cnn_wide"]
    for member, scores in result.version(2).members.items():
        check_classification(scores, ref["truth"], ref[2][member])
    assert calls == [(48, 200), (96, 200), (144, 200), (192, 200), (200, 200)]


def test_disagreements_equal_the_set_difference(digits_result, digits_reference):
    result, _ = digits_result
    ref = digits_reference
    expected = expected_disagreements(ref)
    assert expected, "the demo versions are expected to disagree on some held-out images"
    pair = result.pair(1, 2)
    assert (pair.a, pair.b) == (1, 2)
    assert {d.key: (d.a, d.b) for d in pair.disagreements} == expected
    truth = dict(zip(ref["files"], ref["truth"]))
    assert all(d.truth == str(truth[d.key]) for d in pair.disagreements)


def test_json_and_csv_exports(digits_result, digits_reference):
    result, _ = digits_result
    body = result.to_json()
    assert body["n_items"] == 200 and body["pairs"][0]["count"] == len(result.pair(1, 2).disagreements)
    assert body["versions"][0]["scores"]["top_k"]["1"] == body["versions"][0]["scores"]["accuracy"]
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert list(rows[0]) == ["file", "label", "v1", "v1_probability", "v2", "v2_probability", "problem"]
    assert len(rows) == 200
    top2 = digits_reference[2]["combined"]
    for row, probs in zip(rows, top2):
        assert row["v2"] == str(int(probs.argmax()))
        assert float(row["v2_probability"]) == pytest.approx(float(probs.max()), abs=1e-6)


def test_bad_items_are_listed_and_the_run_completes(registry, digits_reference, tmp_path):
    ref = digits_reference
    picked = list(range(0, 200, 7))[:29]  # every class, a few of each
    good = [ref["files"][i] for i in picked]
    (tmp_path / "images").mkdir()
    for f in good:
        (tmp_path / f).write_bytes(ref["data"][f])
    png = ref["data"][good[0]]
    (tmp_path / "images" / "truncated.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "images" / "text.png").write_bytes(b"this is not an image")
    (tmp_path / "images" / "unknown.png").write_bytes(png)
    (tmp_path.parent / "outside.png").write_bytes(png)
    lines = ["file,label"] + [f"{f},{t}" for f, t in zip(good, ref["truth"][picked])]
    lines[5:5] = ["images/truncated.png,3", "images/text.png,4", "images/unknown.png,x", "../outside.png,1",
                  "/etc/passwd,1", "images/missing.png,2", "images/nolabel.png,", f"{good[0]},0"]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")

    result = yyai_kernel.evaluate(registry, "digits", [2], open_set(tmp_path), batch_size=8)
    reasons = {b.key: b.reason for b in result.bad_items}
    assert len(reasons) == len(result.bad_items) == 8
    assert "not a usable image" in reasons["images/truncated.png"]
    assert "not a usable image" in reasons["images/text.png"]
    assert "unknown label 'x'" in reasons["images/unknown.png"]
    assert "refused" in reasons["../outside.png"] and "refused" in reasons["/etc/passwd"]
    assert "does not exist" in reasons["images/missing.png"]
    assert "label is empty" in reasons["images/nolabel.png"]
    assert "listed twice" in reasons[good[0]]
    assert [i.key for i in result.items] == good  # the first row of good[0] counts, its repeat does not
    check_classification(result.version(2).scores, ref["truth"][picked], ref[2]["combined"][picked])
    exported = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert len(exported) == len(good) + len(result.bad_items)
    assert {(r["file"], r["problem"]) for r in exported if r["problem"]} == set(reasons.items())


def forms_of_the_digits_set(ref: dict, root: Path) -> dict[str, Path | bytes]:
    """The bundled set written in every form: CSV in a folder, class folders, zips of both."""
    csv_dir, class_dir = root / "csv", root / "classes"
    (csv_dir / "images").mkdir(parents=True)
    lines = ["file,label"]
    for f, t in zip(ref["files"], ref["truth"]):
        (csv_dir / f).write_bytes(ref["data"][f])
        (class_dir / str(t)).mkdir(parents=True, exist_ok=True)
        (class_dir / str(t) / Path(f).name).write_bytes(ref["data"][f])
        lines.append(f"{f},{t}")
    (csv_dir / "labels.csv").write_text("\n".join(lines) + "\n")
    zipped = {}
    for name, folder, top in (("csv-zip", csv_dir, ""), ("classes-zip", class_dir, "my-set/")):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, top + path.relative_to(folder).as_posix())
            zf.writestr("__MACOSX/._junk", b"resource fork")
        zipped[name] = buffer.getvalue()
    (root / "classes.zip").write_bytes(zipped["classes-zip"])
    return {"csv-folder": csv_dir, "csv-file": csv_dir / "labels.csv", "classes-folder": class_dir,
            "classes-zip-file": root / "classes.zip", **zipped}


def test_every_form_reads_the_same_set(registry, digits_reference, tmp_path):
    ref = digits_reference
    expected = {(Path(f).name, str(t)) for f, t in zip(ref["files"], ref["truth"])}
    results = {}
    for form, source in forms_of_the_digits_set(ref, tmp_path).items():
        dataset = set_from_zip(source) if isinstance(source, bytes) else open_set(source)
        assert dataset.kind == "classification" and dataset.problems == (), form
        assert {(Path(i.key).name, i.truth) for i in dataset.items} == expected, form
        for item in dataset.items[::40]:
            assert dataset.read(item.key) == ref["data"]["images/" + Path(item.key).name], form
        results[form] = yyai_kernel.evaluate(registry, "digits", [1], dataset)
    results["a path and one version"] = yyai_kernel.evaluate(registry, "digits", 1, tmp_path / "classes.zip")
    first = results["csv-folder"].version(1).scores
    for form, result in results.items():
        assert result.version(1).scores == first, form


def test_colorfulness_regression_and_pairs_with_a_packed_version(registry, store, tmp_path):
    import keras

    rows, data = bundled_rows(store / "colorfulness-1.yyar", COLOR_SET)
    files, truth = [f for f, _ in rows], np.array([float(t) for _, t in rows])
    ref1 = reference(store / "colorfulness-1.yyar", files, data)["combined"][:, 0]
    dataset = set_from_archive(store / "colorfulness-1.yyar")
    assert dataset.kind == "regression" and len(dataset) == 150

    # A second version from a notebook model: the same network with outputs 10% larger.
    with archive.open_archive(store / "colorfulness-1.yyar") as opened:
        base = kerasload.load_member(opened.member_path(opened.manifest.members[0]))
        manifest = opened.manifest
    louder = keras.Sequential([keras.Input((32, 32, 3)), base, keras.layers.Rescaling(1.1)], name="louder")
    yyai_kernel.pack_model(louder, name="colorfulness", version=2, input=manifest.input,
                           regression=manifest.output["names"], rounding=2, out=store)
    registry.reload("colorfulness")
    registry.load("colorfulness", 2)

    result = yyai_kernel.evaluate(registry, "colorfulness", [1, 2], dataset, tolerance=1.0)
    for version, predicted in ((1, ref1), (2, ref1 * 1.1)):
        scores = result.version(version).scores
        assert scores.n == 150
        assert scores.mae == pytest.approx(skm.mean_absolute_error(truth, predicted), rel=1e-5)
        assert scores.rmse == pytest.approx(np.sqrt(skm.mean_squared_error(truth, predicted)), rel=1e-5)
        assert scores.r2 == pytest.approx(skm.r2_score(truth, predicted), rel=1e-5)
    near_edge = np.abs(np.abs(0.1 * ref1) - 1.0) < 1e-3  # too close to the tolerance to compare floats
    expected = {f for f, p, edge in zip(files, ref1, near_edge) if abs(0.1 * p) > 1.0 and not edge}
    found = result.pair(1, 2).keys()
    assert expected <= found and found - expected <= {f for f, e in zip(files, near_edge) if e}
    assert result.tolerance == 1.0
    png = result.residual_plot()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    rows_out = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert list(rows_out[0])[:4] == ["file", "target", "v1", "v1_residual"]


def test_a_set_that_does_not_suit_the_model_is_refused(registry):
    digits = set_from_archive(DEMO / "digits-1.yyar")
    with pytest.raises(InvalidInputError, match="regression model"):
        yyai_kernel.evaluate(registry, "colorfulness", [1], digits)
    with pytest.raises(ModelNotFoundError):
        yyai_kernel.evaluate(registry, "digits", [7], digits)


def test_unsafe_or_unusable_sets_are_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("3/a.png", b"x")
        zf.writestr("../escape.png", b"x")
    with pytest.raises(UnsafeMemberError):
        set_from_zip(buffer.getvalue())
    with pytest.raises(ArchiveError):
        set_from_zip(b"not a zip at all")
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("3/a.png", bytes(32 * 1024 * 1024))
    with pytest.raises(ZipBombError):
        set_from_zip(bomb.getvalue())
    (tmp_path / "labels.csv").write_text("path,class\na.png,1\n")
    with pytest.raises(InvalidInputError, match="'file' column"):
        open_set(tmp_path / "labels.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no labelled images"):
        open_set(tmp_path / "empty")
    with pytest.raises(ModelNotFoundError, match="bundles no labelled set"):
        set_from_archive(DEMO / "digits-1.yyar", "eval/other.zip")


def test_regression_targets_must_be_numbers(tmp_path):
    (tmp_path / "labels.csv").write_text("file,target\na.png,1.5\nb.png,abc\nc.png,nan\n")
    dataset = open_set(tmp_path)
    assert dataset.kind == "regression"
    assert [(i.key, i.truth) for i in dataset.items] == [("a.png", 1.5)]
    assert {p.key for p in dataset.problems} == {"b.png", "c.png"}


def test_over_http_the_client_gives_the_registry_s_results(registry, digits_reference, tmp_path):
    """The same run through a real server and YyaiClient: the same scores, pairs and bad items."""
    from serving import start_server

    from yyai_kernel.client import YyaiClient

    store = tmp_path / "store"
    store.mkdir()
    for name in ("digits-1.yyar", "digits-2.yyar"):
        shutil.copyfile(DEMO / name, store / name)
    ref = digits_reference
    folder = tmp_path / "set"
    for f, t in zip(ref["files"][:70], ref["truth"]):
        (folder / str(t)).mkdir(parents=True, exist_ok=True)
        (folder / str(t) / Path(f).name).write_bytes(ref["data"][f])
    (folder / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    dataset = open_set(folder)
    local = yyai_kernel.evaluate(registry, "digits", [1, 2], dataset, batch_size=16)
    server = start_server(store, tmp_path / "work")
    try:
        with YyaiClient(server.url, server.token) as client:
            client.load("digits", 1)
            remote = yyai_kernel.evaluate(client, "digits", [1, None], dataset, batch_size=16)
    finally:
        assert server.stop() == 0
    assert [b.key for b in remote.bad_items] == [b.key for b in local.bad_items] == ["3/broken.png"]
    for version in (1, 2):
        a, b = remote.version(version).scores, local.version(version).scores
        assert (a.accuracy, a.confusion, a.top_k[:2]) == (b.accuracy, b.confusion, b.top_k[:2])
    assert remote.pair(1, 2) == local.pair(1, 2)
    assert [i.predicted for i in remote.items] == [i.predicted for i in local.items]
