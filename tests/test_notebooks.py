"""From a notebook model to a served version, in real notebooks that nbclient executes in a kernel.

1. ``YyaiClient(url, token).upload(model, ...)`` packs an in-memory Keras model and installs
   it on a running ``yyai serve``; the served outputs equal the model's own. ``pack_model``
   in the same notebook gives an archive whose runtime answers the same.
2. ``Dashboard.for_models({"v1": m1, "v2": m2}, ...)`` builds the dashboard over two
   in-memory models with no server, displays it, and compares the two versions on a
   bundled sample; each version's outputs equal its model's, and closing it removes its
   temporary store.

Each notebook prints one JSON line; the assertions are made here, on what the kernel printed.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from serving import start_server

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "model_archives" / "samples"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

MODELS = """
import json
import keras
import numpy as np

def small_cnn(seed):
    keras.utils.set_random_seed(seed)
    L = keras.layers
    return keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                             L.Dense(3, activation="softmax")], name=f"cnn{seed}")
"""


def run_notebook(cells: list[str], tmp_path: Path) -> nbformat.NotebookNode:
    """Execute the cells in a fresh python3 kernel (working directory ``tmp_path``); the executed notebook."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(textwrap.dedent(source).strip()) for source in cells]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def printed(nb: nbformat.NotebookNode) -> dict:
    """The JSON line the notebook's last cell printed."""
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    return json.loads(text.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("notebook-store")
    srv = start_server(store, tmp_path_factory.mktemp("notebook-work"))
    yield srv
    assert srv.stop() == 0


def test_upload_and_pack_model_serve_what_the_notebook_model_answers(server, tmp_path):
    images = [str(SAMPLES / f) for f in ("digit-3.png", "digit-7.png", "digit-8-64rgb.png")]
    nb = run_notebook([
        MODELS + "model = small_cnn(7)",
        f"""
        from yyai_kernel.client import YyaiClient
        client = YyaiClient({server.url!r}, {server.token!r})
        installed = client.upload(model, name="notebook", version=1, input={{"scale": 1 / 255}}, labels=["a", "b", "c"])
        """,
        f"""
        import yyai_kernel
        from yyai_kernel.runtime.images import preprocess
        from yyai_kernel.runtime.runtime import ArchiveRuntime

        paths = {images!r}
        images = [open(p, "rb").read() for p in paths]
        served = client.predict_image_files("notebook", paths, 1)
        x = np.stack([preprocess(data, client.describe("notebook", 1).input) for data in images])
        archive = yyai_kernel.pack_model(model, name="notebook", version=2, input={{"scale": 1 / 255}},
                                         labels=["a", "b", "c"], out=".")
        print(json.dumps({{"message": installed.message, "served": served.combined.tolist(),
                          "in_memory": model(x).numpy().tolist(),
                          "packed": ArchiveRuntime.load(archive)(x).combined.tolist(),
                          "archive": str(archive)}}))
        """,
    ], tmp_path)
    out = printed(nb)
    assert out["message"].startswith("Installed notebook v1.")
    np.testing.assert_allclose(out["served"], out["in_memory"], atol=1e-6)
    np.testing.assert_allclose(out["packed"], out["in_memory"], atol=1e-6)
    assert Path(tmp_path, out["archive"]).name == "notebook-2.yyar"
    status = server.get("/models/notebook").json()
    assert status["default"] == 1 and status["versions"]["1"]["state"] == "ready"


def test_dashboard_for_models_builds_and_predicts_in_a_kernel(tmp_path):
    sample = str(SAMPLES / "digit-3.png")
    nb = run_notebook([
        MODELS + "m1, m2 = small_cnn(1), small_cnn(2)",
        f"""
        from yyai_kernel.dashboard import Dashboard
        board = Dashboard.for_models({{"v1": m1, "v2": m2}}, input={{"scale": 1 / 255}}, labels=["a", "b", "c"],
                                     name="mine", samples=[{sample!r}])
        board
        """,
        """
        import os
        from yyai_kernel.runtime.images import preprocess

        preview = board.preview
        preview.model_select.value = "mine"
        preview.version_select.value = 2
        preview.compare_select.value = 1
        preview.sample_select.value = "samples/digit-3.png"
        replies = preview.predict()
        x = preprocess(board.backend.sample("mine", "samples/digit-3.png", 2), board.describe("mine", 2).input)[None]
        store = board.backend.planes.registry.store.root
        summary, message, location = preview.results.summary.value, preview.predict_message.value, board.location
        board.close()
        print(json.dumps({"v1": replies[1].combined.tolist(), "v2": replies[2].combined.tolist(),
                          "m1": m1(x).numpy().tolist(), "m2": m2(x).numpy().tolist(), "summary": summary,
                          "message": message, "location": location, "store_left": os.path.exists(store)}))
        """,
    ], tmp_path)
    assert any(WIDGET_VIEW in o.get("data", {}) for o in nb.cells[1].outputs), nb.cells[1].outputs  # displayed
    out = printed(nb)
    np.testing.assert_allclose(out["v1"], out["m1"], atol=1e-6)
    np.testing.assert_allclose(out["v2"], out["m2"], atol=1e-6)
    assert "digit-3.png" in out["summary"] and "1 image compared" in out["message"]
    assert out["location"] == "models from this notebook (in-process, no server)"
    assert out["store_left"] is False  # closing the dashboard removed its temporary store


def test_a_tabular_model_from_training_to_upload_and_yyai_evaluate_on_a_csv(server, tmp_path):
    """#27: a small tabular Keras model trained in a notebook, packed (its features and their
    normalisation), uploaded, then scored with ``yyai evaluate`` on a CSV of held-out rows."""
    nb = run_notebook([
        """
        import csv, json
        import keras
        import numpy as np

        rng = np.random.default_rng(5)
        n = 600
        age = rng.normal(45, 12, n)
        spend = rng.gamma(2.0, 30.0, n)
        plan = rng.choice(["free", "pro", "team"], n)
        leaves = ((age < 40) & (plan == "free")) | (spend < 25)
        labels = np.where(leaves, "leaves", "stays")
        features = [{"name": "age", "kind": "numeric", "mean": float(age.mean()), "std": float(age.std())},
                    {"name": "spend", "kind": "numeric", "mean": float(spend.mean()), "std": float(spend.std())},
                    {"name": "plan", "kind": "categorical", "vocabulary": ["free", "pro", "team"],
                     "encoding": "onehot"}]
        x = np.column_stack([(age - age.mean()) / age.std(), (spend - spend.mean()) / spend.std(),
                             *[(plan == p).astype(float) for p in ["free", "pro", "team"]]]).astype("float32")
        y = np.where(leaves, 1, 0)  # label order: stays, leaves
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(16, activation="relu"),
                                  keras.layers.Dense(2, activation="softmax")], name="churn")
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x[:500], y[:500], epochs=40, verbose=0)
        with open("held-out.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["age", "spend", "plan", "churned"])
            for i in range(500, n):
                writer.writerow([float(age[i]), float(spend[i]), plan[i], labels[i]])
        """,
        f"""
        from yyai_kernel.client import YyaiClient
        client = YyaiClient({server.url!r}, {server.token!r})
        installed = client.upload(model, name="churn", version=1, input={{"features": features}},
                                  labels=["stays", "leaves"])
        one = client.predict_records("churn", {{"age": 30, "spend": 10.0, "plan": "free"}})
        """,
        f"""
        !{sys.executable} -m yyai_kernel.cli evaluate churn:1 --data held-out.csv --target churned \\
            --server {server.url} --token {server.token} --json result.json
        result = json.load(open("result.json"))
        in_memory = float((model(x[500:]).numpy().argmax(1) == y[500:]).mean())
        print(json.dumps({{"message": installed.message, "one": one.top(0)[0], "exit": _exit_code,
                          "accuracy": result["versions"][0]["scores"]["accuracy"], "n": result["n_items"],
                          "in_memory": in_memory}}))
        """,
    ], tmp_path)
    out = printed(nb)
    assert out["message"].startswith("Installed churn v1") and out["exit"] == 0
    assert out["one"] == "leaves" and out["n"] == 100
    assert out["accuracy"] == pytest.approx(out["in_memory"], abs=1e-9)  # the served model is the notebook's
