"""Models that take no image: tables, tensors and several inputs, from the archive to the answer.

One ``yyai serve`` for the module, over the bundled wine demo (a table of 13 normalised
features, versions 1 and 2) and four seeded models packed here with ``pack_model``
(``builders.table_models``): ``churn`` (numbers with and without normalisation, a one-hot
and an index category), ``signal`` (a 1-D tensor, regression), ``grid`` (a 2-D tensor) and
``multi`` (a table, an int32 category index into an Embedding and a tensor, as three named
inputs). Every answer is checked against the Keras model called directly on the columns
written out by hand; every bad input is a 400 whose ``field`` names the feature or input.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
import zipfile

import numpy as np
import pytest
from builders import CHURN_FEATURES, CHURN_ROWS, DEMO, churn_columns, table_models
from serving import start_server
from typer.testing import CliRunner

import yyai_kernel
from yyai_kernel.archive import Manifest, read_manifest
from yyai_kernel.cli import app
from yyai_kernel.client import YyaiClient
from yyai_kernel.errors import InvalidInputError, ManifestError
from yyai_kernel.evaluation.jobs import wait_for
from yyai_kernel.evaluation.sets import open_set
from yyai_kernel.types import Feature, InputKind, InputSpec

WINE_ROWS = (DEMO / "samples" / "wine-rows.csv").read_text()
WINE = read_manifest(DEMO / "wine-2.yyar")
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return table_models(tmp_path_factory.mktemp("table-models"))


@pytest.fixture(scope="module")
def server(tmp_path_factory, built):
    store = tmp_path_factory.mktemp("table-store")
    for name in ("wine-1.yyar", "wine-2.yyar"):
        shutil.copyfile(DEMO / name, store / name)
    for path, _ in built.values():
        shutil.copyfile(path, store / path.name)
    srv = start_server(store, tmp_path_factory.mktemp("table-work"))
    assert srv.post("/models/wine/load", json={"version": 1}).status_code == 200  # v2 is the default
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def client(server):
    with YyaiClient(server.url, server.token) as c:
        yield c


def wine_records(text: str = WINE_ROWS) -> list[dict]:
    return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


def wine_columns(records: list[dict]) -> np.ndarray:
    """The wine model's input, normalised by hand from the manifest's means and stds."""
    return np.array([[(r[f.name] - f.mean) / f.std for f in WINE.input.features()] for r in records], np.float32)


def keras_model(archive, member: str):
    from yyai_kernel.archive import kerasload, open_archive

    with open_archive(archive) as opened:
        spec = next(m for m in opened.manifest.members if m.name == member)
        return kerasload.load_member(opened.member_path(spec))


def refused(reply, status: int, kind: str, field: str | None, *words: str) -> dict:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["type"] == kind and body.get("field") == field, body
    for word in words:
        assert word in body["error"], body
    return body


# --- the manifest ---------------------------------------------------------------------


def test_every_kind_of_input_round_trips_and_old_ones_stay_as_they_were(built):
    for name, (path, _) in built.items():
        data = json.loads(zipfile.ZipFile(path).read("MANIFEST.json"))
        assert InputSpec.from_json(data["input"]).to_json() == data["input"], name
    kinds = {name: read_manifest(path).input.kind for name, (path, _) in built.items()}
    assert kinds == {"churn": InputKind.TABLE, "signal": InputKind.TENSOR, "grid": InputKind.TENSOR,
                     "multi": InputKind.SEVERAL}
    multi = read_manifest(built["multi"][0]).input
    assert [(p.name, p.kind, p.dtype) for p in multi.inputs()] == [
        ("numeric", InputKind.TABLE, "float32"), ("plan", InputKind.TABLE, "int32"), ("history", InputKind.TENSOR,
                                                                                     "float32")]
    assert multi.shape == (6,) and multi.dtype == "float64" and multi.record_keys() == ("age", "income", "plan",
                                                                                          "history")
    churn = read_manifest(built["churn"][0]).input
    assert churn.shape == (6,) and churn.to_json()["features"] == CHURN_FEATURES  # columns: 1 + 1 + 3 + 1
    digits = json.loads(zipfile.ZipFile(DEMO / "digits-1.yyar").read("MANIFEST.json"))["input"]
    assert "kind" not in digits and InputSpec.from_json(digits).kind is InputKind.IMAGE


@pytest.mark.parametrize(("change", "field", "words"), [
    (lambda i: i["features"].append({"name": "age", "kind": "numeric"}), "input.features[4].name", "already"),
    (lambda i: i["features"][0].pop("std"), "input.features[0].std", "both"),
    (lambda i: i["features"][2]["vocabulary"].append("pro"), "input.features[2].vocabulary", "twice"),
    (lambda i: i["features"][2].update(encoding="hashed"), "input.features[2].encoding", "hashed"),
    (lambda i: i["features"][0].update(std=0), "input.features[0].std", "0"),
    (lambda i: i.update(dtype="int32"), "input.features[0].mean", "int32"),
    (lambda i: i.update(color="rgb"), "input.color", "color"),
])
def test_a_bad_table_spec_is_refused_naming_its_field(change, field, words):
    from conftest import manifest_for

    data = manifest_for({"models/m.keras": b"x"})
    data["input"] = {"kind": "table", "features": json.loads(json.dumps(CHURN_FEATURES))}
    change(data["input"])
    with pytest.raises(ManifestError) as refused_:
        Manifest.from_dict(data)
    assert refused_.value.field == field and words in refused_.value.message, refused_.value.message


def test_several_inputs_take_no_image_and_name_each_input_once():
    from conftest import manifest_for

    data = manifest_for({"models/m.keras": b"x"})
    table = {"kind": "table", "name": "a", "features": [{"name": "x", "kind": "numeric"}]}
    for parts, field in (([table, {"kind": "image", "shape": [8, 8, 1], "dtype": "float32", "color": "grayscale",
                                  "name": "b"}],
                          "input.inputs[1].kind"),
                         ([table, {**table, "features": [{"name": "y", "kind": "numeric"}]}], "input.inputs[1].name"),
                         ([table, {"kind": "tensor", "name": "x", "shape": [2], "dtype": "float32"}],
                          "input.inputs[1].name")):
        data["input"] = {"kind": "several", "inputs": parts}
        with pytest.raises(ManifestError) as refused_:
            Manifest.from_dict(data)
        assert refused_.value.field == field, refused_.value.message


def test_pack_model_refuses_a_table_that_does_not_make_the_models_columns(tmp_path, built):
    _, churn = built["churn"]
    with pytest.raises(ManifestError) as refused_:
        yyai_kernel.pack_model(churn, name="churn", version=9, labels=["a", "b"], out=tmp_path,
                               input={"features": [Feature.numeric("age"), Feature.categorical("plan", ["a", "b"])]})
    assert refused_.value.field == "input.features" and "make [3] columns" in refused_.value.message
    _, multi = built["multi"]
    with pytest.raises(ManifestError, match="give input as a list"):
        yyai_kernel.pack_model(multi, name="multi", version=9, labels=["a", "b"], out=tmp_path,
                               input={"kind": "tensor"})


def test_yyai_archive_with_a_features_file_and_inspect(tmp_path, built):
    _, churn = built["churn"]
    model = tmp_path / "churn.keras"
    churn.save(model)
    features = tmp_path / "features.json"
    features.write_text(json.dumps(CHURN_FEATURES))
    rows = tmp_path / "rows.csv"
    rows.write_text(CHURN_ROWS)
    runner = CliRunner()
    result = runner.invoke(app, ["archive", "--name", "churn", "--version", "3", "--model", str(model), "--features",
                                 str(features), "--labels", "stays,leaves", "--sample", str(rows), "-o",
                                 str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert read_manifest(tmp_path / "churn-3.yyar").input.to_json()["features"] == CHURN_FEATURES
    assert "feature plan: categorical (onehot): free, pro, team" in result.output
    shown = runner.invoke(app, ["inspect", str(tmp_path / "churn-3.yyar")])
    assert shown.exit_code == 0, shown.output
    assert "input: table of 4 features (2 numeric (1 normalised), 2 categorical), shape [6] float32" in shown.output
    assert "feature age: numeric, (x - 40) / 10" in shown.output and "verified: OK" in shown.output


# --- predictions over REST and the client ------------------------------------------------


def test_a_table_answers_json_records_and_csv_as_its_model_does(server, client):
    records = wine_records()
    expected = {v: np.asarray(keras_model(DEMO / f"wine-{v}.yyar", m)(wine_columns(records)))
                for v, m in ((1, "linear"), (2, "mlp"))}
    one = server.post("/predictions/wine", json=records[0], params={"raw": "true"})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["version"] == 2 and len(body["predictions"]) == 1
    row = body["predictions"][0]
    assert row["top"] == ["class_0", "class_1", "class_2"][int(expected[2][0].argmax())]
    np.testing.assert_allclose(row["raw"]["combined"], expected[2][0], atol=1e-6)
    assert row["members"]["mlp"][0]["label"] == row["top"]  # today's reply shape: labels by probability

    listed = server.post("/predictions/wine/1", json=records, params={"raw": "true"}).json()
    np.testing.assert_allclose([r["raw"]["combined"] for r in listed["predictions"]], expected[1], atol=1e-6)
    as_csv = server.post("/predictions/wine/1", data=WINE_ROWS, params={"raw": "true"},
                         headers={"Content-Type": "text/csv"}).json()
    assert as_csv["predictions"] == listed["predictions"]

    by_client = client.predict_records("wine", records, 1)
    np.testing.assert_allclose(by_client.combined, expected[1], atol=1e-6)
    np.testing.assert_allclose(client.predict_csv("wine", WINE_ROWS).combined, expected[2], atol=1e-6)

    rows_file = DEMO / "samples" / "wine-rows.csv"
    printed = CliRunner().invoke(app, ["predict", "wine:1", str(rows_file), "--server", server.url, "--token",
                                       server.token, "--json"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output)["predictions"] == [
        {k: v for k, v in r.items() if k != "raw"} for r in listed["predictions"]]
    shown = CliRunner().invoke(app, ["predict", "wine:1", str(rows_file), "--server", server.url, "--token",
                                     server.token])
    assert shown.exit_code == 0 and "wine-rows.csv line 2" in shown.output, shown.output


def test_a_canary_and_a_shadow_place_records_as_they_place_images(server):
    """A/B for a table model: records that name no version follow the traffic policy, and a
    shadow version fits the same records to its own input and is compared."""
    records = wine_records()
    try:
        assert server.request("PUT", "/models/wine/traffic", json={"canary": {"version": 1, "percent": 100}}
                              ).status_code == 200
        assert server.post("/predictions/wine", json=records).json()["version"] == 1
        assert server.post("/predictions/wine/2", json=records).json()["version"] == 2  # a named version is kept
        assert server.request("PUT", "/models/wine/traffic", json={"shadow": {"version": 1, "percent": 100}}
                              ).status_code == 200
        assert server.post("/predictions/wine", json=records).json()["version"] == 2
        deadline = time.monotonic() + 60
        while (figures := server.get("/models/wine").json()["rollout"]["shadow"])["rows_compared"] \
                + figures["errors"] + figures["dropped"] < len(records):
            assert time.monotonic() < deadline, figures
            time.sleep(0.1)
        assert (figures["rows_compared"], figures["errors"]) == (len(records), 0), figures
    finally:
        assert server.request("DELETE", "/models/wine/traffic").status_code == 200


def test_categories_index_and_one_hot_as_the_manifest_says(server, client, built):
    rows = list(csv.DictReader(io.StringIO(CHURN_ROWS)))
    _, model = built["churn"]
    expected = np.asarray(model(np.array([churn_columns(r) for r in rows], np.float32)))
    np.testing.assert_allclose(client.predict_csv("churn", CHURN_ROWS).combined, expected, atol=1e-6)
    typed = [{"age": int(r["age"]), "income": float(r["income"]), "plan": r["plan"], "region": r["region"]}
             for r in rows]
    np.testing.assert_allclose(client.predict_records("churn", typed).combined, expected, atol=1e-6)


GOOD = {"age": 41, "income": 3.5, "plan": "pro", "region": "north"}


@pytest.mark.parametrize(("body", "field", "words"), [
    ({k: v for k, v in GOOD.items() if k != "plan"}, "plan", "'plan' is missing"),
    ({**GOOD, "tenure": 3}, "tenure", "unknown feature 'tenure'"),
    ({**GOOD, "age": "41"}, "age", "must be a number, not the text '41'"),
    ({**GOOD, "age": True}, "age", "not true"),
    ({**GOOD, "age": None}, "age", "not null"),
    ({**GOOD, "plan": "gold"}, "plan", "not one of its categories: free, pro, team"),
    ({**GOOD, "region": 2}, "region", "not one of its categories"),
    ([GOOD, {**GOOD, "income": [1, 2]}], "income", "record 2"),
    ([1.0, 2.0, 3.0], None, "named features"),
    ([GOOD, 3], None, "only JSON objects"),
])
def test_bad_records_are_a_400_naming_the_feature(server, body, field, words):
    refused(server.post("/predictions/churn", json=body), 400, "InvalidInputError", field, words)


@pytest.mark.parametrize(("send", "field", "words"), [
    (lambda c: c.predict_records("churn", {k: v for k, v in GOOD.items() if k != "plan"}), "plan", "is missing"),
    (lambda c: c.predict_records("churn", {**GOOD, "tenure": 3}), "tenure", "unknown feature"),
    (lambda c: c.predict_records("churn", {**GOOD, "age": "41"}), "age", "must be a number"),
    (lambda c: c.predict_records("churn", {**GOOD, "plan": "gold"}), "plan", "not one of its categories"),
    (lambda c: c.predict_csv("churn", "age,income,plan,region\n41,x,pro,north\n"), "income", "line 2"),
    (lambda c: c.predict_tensor("signal", np.zeros(3, np.float32)), "window", "has shape [3]"),
    (lambda c: c.predict_tensor("grid", np.zeros((4, 5), np.float32)), "grid", "takes [4, 4]"),
])
def test_the_client_raises_the_400_naming_the_feature_or_shape(client, send, field, words):
    with pytest.raises(InvalidInputError) as raised:
        send(client)
    assert raised.value.field == field and words in str(raised.value), (raised.value.field, str(raised.value))


def test_bad_csv_lines_are_named_by_their_line(server):
    csv_ = {"Content-Type": "text/csv"}
    refused(server.post("/predictions/churn", data="age,income,plan,region\n41,3.5,pro,north\n41,x,pro,north\n",
                        headers=csv_), 400, "InvalidInputError", "income", "line 3", "'x', not a number")
    refused(server.post("/predictions/churn", data="age,income,plan\n41,3.5,pro\n", headers=csv_), 400,
            "InvalidInputError", "region", "is missing")
    refused(server.post("/predictions/churn", data="age,age\n1,2\n", headers=csv_), 400, "InvalidInputError", "age",
            "twice")
    refused(server.post("/predictions/churn", data=b"\xff\xfe", headers=csv_), 400, "InvalidInputError", None,
            "UTF-8")
    refused(server.post("/predictions/churn", data="age,income,plan,region\n", headers=csv_), 400,
            "InvalidInputError", None, "no rows")


def test_the_input_kind_decides_what_a_body_may_be(server):
    png = (DEMO / "samples" / "digit-3.png").read_bytes()
    refused(server.post("/predictions/wine", data=png, headers={"Content-Type": "image/png"}), 415,
            "UnsupportedMediaError", None, "a table of named features")
    refused(server.post("/predictions/signal", data=b"x,y\n1,2\n", headers={"Content-Type": "text/plain"}), 415,
            "UnsupportedMediaError", None, "a tensor")


def test_a_tensor_answers_json_numbers_and_npy(server, client, built):
    _, signal = built["signal"]
    x = np.linspace(-1, 1, 32, dtype=np.float32).reshape(2, 16)
    expected = np.asarray(signal(x))
    one = server.post("/predictions/signal", json=x[0].tolist(), params={"raw": "true"}).json()
    np.testing.assert_allclose(one["predictions"][0]["raw"]["combined"], expected[0], atol=1e-5)
    assert one["predictions"][0]["combined"] == {"level": round(float(expected[0][0]), 4)}
    batch = server.post("/predictions/signal", json=x.tolist(), params={"raw": "true"}).json()
    assert len(batch["predictions"]) == 2
    buffer = io.BytesIO()
    np.save(buffer, x)
    npy = server.post("/predictions/signal", data=buffer.getvalue(), params={"raw": "true"},
                      headers={"Content-Type": "application/x-npy"}).json()
    assert npy["predictions"] == batch["predictions"]
    np.testing.assert_allclose(client.predict_tensor("signal", x).combined, expected, atol=1e-5)
    _, grid = built["grid"]
    square = np.arange(16, dtype=np.float32).reshape(4, 4) / 16
    np.testing.assert_allclose(client.predict_tensor("grid", square).combined, np.asarray(grid(square[None])),
                               atol=1e-6)
    np.testing.assert_allclose(client.predict_records("signal", {"window": x[1].tolist()}).combined, expected[1:],
                               atol=1e-5)


@pytest.mark.parametrize(("body", "headers", "field", "words"), [
    (json.dumps([1, 2, 3]), JSON, "window", "has shape [3]; input 'window' takes [16] (one) or [batch, 16]"),
    (json.dumps([[1] * 16, [1] * 15]), JSON, None, "ragged"),
    (json.dumps(["a"] * 16), JSON, None, "not numbers"),
    (json.dumps({"window": [1] * 15}), JSON, "window", "has shape [15]; it takes [16]"),
    (json.dumps({"signal": [1] * 16}), JSON, "signal", "unknown feature 'signal'"),
    (b"\x93NUMPY not really", {"Content-Type": "application/x-npy"}, None, ".npy file cannot be read"),
    (b"PK\x03\x04", {"Content-Type": "application/x-npy"}, None, "not a .npy file"),
])
def test_bad_tensors_are_a_400_naming_the_shape(server, body, headers, field, words):
    refused(server.post("/predictions/signal", data=body, headers=headers), 400, "InvalidInputError", field, words)


def test_an_object_npy_is_refused_without_unpickling(server):
    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    refused(server.post("/predictions/signal", data=buffer.getvalue(), headers={"Content-Type": "application/x-npy"}),
            400, "InvalidInputError", None, "cannot be read")


def test_several_inputs_by_record_by_v2_and_by_client(server, client, built):
    _, multi = built["multi"]
    records = [{"age": 50, "income": 2.0, "plan": "team", "history": [0.1, 0.2, 0.3]},
               {"age": 30, "income": 1.0, "plan": "free", "history": [1.0, 0.0, -1.0]}]
    expected = np.asarray(multi({"numeric": np.array([[1.0, 2.0], [-1.0, 1.0]], np.float32),
                                 "plan": np.array([[2], [0]], np.int32),
                                 "history": np.array([r["history"] for r in records], np.float32)}))
    np.testing.assert_allclose(client.predict_records("multi", records).combined, expected, atol=1e-6)

    meta = server.get("/v2/models/multi").json()
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [
        ("numeric", "FP32", [-1, 2]), ("plan", "INT32", [-1, 1]), ("history", "FP32", [-1, 3])]
    infer = server.post("/v2/models/multi/infer", json={"inputs": [
        {"name": "history", "datatype": "FP32", "shape": [2, 3], "data": [r["history"] for r in records]},
        {"name": "plan", "datatype": "INT32", "shape": [2, 1], "data": [[2], [0]]},
        {"name": "numeric", "datatype": "FP32", "shape": [2, 2], "data": [[1.0, 2.0], [-1.0, 1.0]]}]})
    assert infer.status_code == 200, infer.text
    output = next(o for o in infer.json()["outputs"] if o["name"] == "output")
    np.testing.assert_allclose(np.reshape(output["data"], (2, 2)), expected, atol=1e-6)

    refused(server.post("/predictions/multi", json={**records[0], "history": [1, 2]}), 400, "InvalidInputError",
            "history", "has shape [2]; it takes [3]")
    refused(server.post("/predictions/multi", data="age,income,plan,history\n1,2,free,3\n",
                        headers={"Content-Type": "text/csv"}), 400, "InvalidInputError", "history", "a CSV cannot")
    with pytest.raises(InvalidInputError) as raised:
        client.predict_records("multi", {**records[0], "plan": "gold"})
    assert raised.value.field == "plan"


def test_integrated_gradients_explain_a_table_and_add_up(server, client):
    record = wine_records()[0]
    body = server.post("/predictions/wine", json=record, params={"explain": "integrated_gradients"}).json()
    explained = body["predictions"][0]["explanations"]["mlp"]
    assert explained["available"] and explained["method"] == "integrated_gradients"
    assert explained["label"] == body["predictions"][0]["top"]
    assert list(explained["attributions"]) == [f.name for f in WINE.input.features()]
    total = sum(explained["attributions"].values())
    assert total == pytest.approx(explained["value"] - explained["baseline"], abs=0.02)  # completeness, 32 steps
    by_client = client.predict_records("wine", record, explain="integrated_gradients").explanations[0]["mlp"]
    assert by_client.attributions == pytest.approx(explained["attributions"], abs=1e-6)

    churn = client.predict_records("churn", GOOD, explain="integrated_gradients").explanations[0]["churn_mlp"]
    assert churn.attributions["region"] is None and churn.attributions["plan"] is not None  # an index has no gradient
    refused(server.post("/predictions/wine", json=record, params={"explain": "gradcam"}), 400, "InvalidInputError",
            "explain", "?explain=integrated_gradients")
    refused(server.post("/predictions/signal", json=[0] * 16, params={"explain": "integrated_gradients"}), 400,
            "InvalidInputError", "explain", "a tensor")
    refused(server.post("/predictions/wine", json=wine_records() * 2, params={"explain": "integrated_gradients"}),
            413, "PayloadTooLargeError", None, "rows")


# --- evaluation --------------------------------------------------------------------------


def wine_eval_csv(target: str = "label") -> str:
    text = read_bundled_eval()
    return text.replace(",label\n", f",{target}\n", 1)


def read_bundled_eval() -> str:
    with zipfile.ZipFile(DEMO / "wine-2.yyar") as zf:
        return zf.read("eval/wine-eval.csv").decode()


def test_evaluate_a_csv_set_in_the_library_over_rest_and_in_the_cli(server, client, tmp_path):
    held_out = tmp_path / "held-out.csv"
    held_out.write_text(wine_eval_csv("cultivar") + ",".join(["13.0"] * 13) + ",class_9\n" + ",".join(["x"] * 13)
                        + ",class_1\n")
    dataset = open_set(held_out, target="cultivar")
    assert len(dataset) == 47 and dataset.kind is None  # the model decides: classification
    result = yyai_kernel.evaluate(client, "wine", [1, 2], dataset)
    assert result.kind.value == "classification" and len(result.items) == 45
    reasons = {b.key: b.reason for b in result.bad_items}
    assert "unknown label 'class_9'" in reasons["line 47"] and "not a usable row" in reasons["line 48"]
    assert "'x', not a number" in reasons["line 48"]
    pair = result.pair(1, 2)
    assert pair.disagreements and all(set(d.inputs) == set(WINE.input.record_keys()) for d in pair.disagreements)

    job = client.start_evaluation("wine", [1, 2], held_out, target="cultivar")
    over_rest = wait_for(client, job)
    assert over_rest.to_json()["pairs"] == result.to_json()["pairs"]
    bundled = wait_for(client, client.start_evaluation("wine", [1, 2], bundled="eval/wine-eval.csv"))
    assert bundled.version(1).scores.n == 45
    refused(server.post("/models/wine/evaluate", data=wine_eval_csv("cultivar"), headers={"Content-Type": "text/csv"}),
            400, "InvalidInputError", "target", "--target")
    refused(server.post("/models/wine/evaluate", data=b"file,digit\n3/digit-3.png,3\n",
                        headers={"Content-Type": "text/csv"}), 400, "InvalidInputError", "target", "a set of images")

    printed = CliRunner().invoke(app, ["evaluate", "wine:1", "wine:2", "--data", str(held_out), "--target",
                                       "cultivar", "--server", server.url, "--token", server.token])
    assert printed.exit_code == 0, printed.output
    assert f"v1 and v2 disagree on {len(pair.disagreements)} of 45 items" in printed.output
    assert "rows where v1 and v2 disagree" in printed.output and "alcohol" in printed.output


def test_a_set_of_images_on_a_table_model_is_refused(client):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("3/digit-3.png", (DEMO / "samples" / "digit-3.png").read_bytes())
    with pytest.raises(InvalidInputError, match=r"takes records .* but the set holds images"):
        client.start_evaluation("wine", [2], buffer.getvalue())
    with pytest.raises(InvalidInputError, match="target column names the truth of a table set") as raised:
        client.start_evaluation("wine", [2], buffer.getvalue(), target="label")
    assert raised.value.field == "target"
