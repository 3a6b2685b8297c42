"""The dashboard driven in-process, the way a person drives it, over a real Registry.

The store is a temporary copy of the bundled demo archives (``model_archives/``); every
expected label comes from ``model_archives/samples/expected.json``, which the archive
builder computed through the real preprocessing. Widget interactions are simulated by
setting values and calling ``button.click()``, which runs the same callbacks a browser
click runs. Nothing here waits on a timing threshold: background-thread tests poll for a
state with a bounded deadline.
"""

from __future__ import annotations

import datetime
import html
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from builders import demo_registry

from yyai_kernel.dashboard import TABS, Dashboard, models_table_html, top_of
from yyai_kernel.errors import ModelNotReadyError
from yyai_kernel.types import ModelStatus, OutputSpec, Prediction, VersionState

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "model_archives"
SAMPLES = DEMO / "samples"
EXPECTED = json.loads((SAMPLES / "expected.json").read_text()) if (SAMPLES / "expected.json").exists() else {}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The demo archives are committed; their absence is a failure, not a reason to skip.
assert all((DEMO / f).exists() for f in ("digits-1.yyar", "digits-2.yyar", "colorfulness-1.yyar")), (
    "the demo archives are missing: run `python scripts/make_demo_archives.py`"
)


def expected_label(archive: str, sample: str) -> str:
    """The label the archive's combined output picks for a bundled sample."""
    return str(int(np.argmax(EXPECTED[archive][sample]["combined"])))


def upload_entry(name: str, data: bytes) -> dict:
    """One FileUpload value entry, as ipywidgets 8 builds it from a browser upload."""
    return {"name": name, "type": "", "size": len(data), "content": memoryview(data),
            "last_modified": datetime.datetime.now(datetime.UTC)}


def deadline_wait(predicate, seconds: float = 30.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = demo_registry(tmp_path_factory.mktemp("dashboard-store"))
    yield reg
    reg.close()


@pytest.fixture
def dash(registry):
    registry.set_default("digits", 2)  # every test starts from the same defaults
    registry.store.unpin("digits")
    board = Dashboard(registry, refresh_interval=None)
    yield board
    board.close()


def pick(board: Dashboard, model: str, version: int, sample: str | None = None) -> None:
    board.preview.model_select.value = model
    board.preview.version_select.value = version
    if sample is not None:
        board.preview.sample_select.value = f"samples/{sample}"


# --- import weight --------------------------------------------------------------------------


def test_served_dashboard_imports_no_tensorflow():
    """Over the HTTP client (served), building the dashboard imports no TensorFlow/Keras/matplotlib."""
    code = textwrap.dedent("""
        import os, sys
        os.environ["YYAI_URL"] = "http://127.0.0.1:9"   # nothing listens: refresh shows an error
        os.environ["YYAI_TOKEN"] = "t"
        from yyai_kernel.dashboard import dashboard_from_env
        from yyai_kernel.client import YyaiClient
        board = dashboard_from_env()
        assert isinstance(board.backend, YyaiClient), board.backend
        assert "yyai-error" in board.status_line.value, board.status_line.value
        heavy = [m for m in ("tensorflow", "keras", "matplotlib", "yyai_kernel.registry.registry") if m in sys.modules]
        board.close()
        print("HEAVY", heavy)
    """)
    env = {k: v for k, v in os.environ.items() if k not in ("YYAI_URL", "YYAI_TOKEN", "VOILA_APP_PORT")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "HEAVY []" in out.stdout


def test_voila_port_alone_selects_the_client(monkeypatch):
    """Voila's VOILA_APP_PORT (without YYAI_URL) also means "served": the client on loopback."""
    from yyai_kernel.client import YyaiClient
    from yyai_kernel.dashboard import dashboard_from_env

    monkeypatch.delenv("YYAI_URL", raising=False)
    monkeypatch.setenv("VOILA_APP_PORT", "9")
    monkeypatch.setenv("VOILA_BASE_URL", "/base/")
    board = dashboard_from_env(refresh_interval=None)
    try:
        assert isinstance(board.backend, YyaiClient)
        assert board.backend.url == "http://127.0.0.1:9/base"
    finally:
        board.close()


# --- pickers and the table ----------------------------------------------------------------------


def test_pickers_list_models_versions_and_samples(dash):
    preview = dash.preview
    assert [v for _, v in preview.model_select.options] == ["colorfulness", "digits", "wine"]
    preview.model_select.value = "digits"
    labels = {v: label for label, v in preview.version_select.options}
    assert set(labels) == {1, 2}
    assert preview.version_select.value == 2 and "default" in labels[2] and "ready" in labels[2]
    assert [v for _, v in preview.compare_select.options] == [0, 1, 2]
    samples = [v for _, v in preview.sample_select.options]
    assert "samples/digit-3.png" in samples and "samples/digit-8-disputed.png" in samples
    assert not preview.sample_select.disabled


def test_models_table_shows_every_version(dash, registry):
    dash.refresh()
    table = dash.models.models_table.value
    for name, version in (("digits", 1), ("digits", 2), ("colorfulness", 1)):
        assert f"data-model='{name}' data-version='{version}'" in table
    assert "★ default" in table and "yyai-state-ready" in table
    assert "Load time" in table and "p50" in table and "Last error" in table
    status = {"m": ModelStatus.from_json({
        "name": "m", "default": 1, "pinned": True, "last_error": "v2: broken <b>",
        "versions": {"1": {"version": 1, "state": "ready", "requests": 7, "errors": 1, "load_time_s": 0.5,
                           "latency_ms": {"p50": 1.25, "p99": 3.0}, "last_error": None}}})}
    html = models_table_html(status)
    assert "(pinned)" in html and "1.25 ms" in html and "0.50 s" in html
    assert "broken &lt;b&gt;" in html  # errors are escaped, never injected


# --- predicting ----------------------------------------------------------------------------------


def test_predict_a_bundled_sample(dash):
    pick(dash, "digits", 2, "digit-3.png")
    dash.preview.predict_button.click()
    assert "yyai-ok" in dash.preview.predict_message.value, dash.preview.predict_message.value
    want = expected_label("digits-2.yyar", "digit-3.png")
    results = dash.preview.results
    assert f"<span class='yyai-top-label' data-version='2'>{want}</span>" in _html_of(results.rows)
    assert f"v2 → <span class='yyai-summary-label'>{want}</span>" in results.summary.value
    (row,) = results.rows.children
    _given, result = row.children
    assert "yyai-result-v2" in result._dom_classes
    # the image as given (8x8) and as the model sees it (8x8 gray), both shown enlarged
    images = _widgets_with_class(row, "yyai-given-image") + _widgets_with_class(row, "yyai-model-image")
    assert len(images) == 2 and all(bytes(i.value).startswith(PNG_MAGIC) for i in images)
    charts = _widgets_with_class(row, "yyai-chart")
    assert len(charts) == 1 and bytes(charts[0].value).startswith(PNG_MAGIC)
    (top_k,) = _widgets_with_class(row, "yyai-topk-table")  # beside the chart: the best labels, best first
    assert f"<td>{want}</td>" in top_k.value.split("<tr>")[2]  # rank 1, by the combined output


def test_upload_several_images(dash):
    files = ["digit-7.png", "digit-8-64rgb.png", "digit-3-64.png"]
    dash.preview.image_upload.value = tuple(upload_entry(f, (SAMPLES / f).read_bytes()) for f in files)
    assert dash.preview.source_toggle.value == "upload"
    pick(dash, "digits", 2)
    replies = dash.preview.predict()
    tops = [top_of(replies[2], i)[0] for i in range(len(files))]
    assert tops == [expected_label("digits-2.yyar", f) for f in files]
    assert len(dash.preview.results.rows.children) == 3
    # a 64x64 RGB upload is shown as given (64x64) and as the model sees it (8x8 gray)
    model_view = _widgets_with_class(dash.preview.results.rows.children[1], "yyai-model-image")[0]
    import cv2

    seen = cv2.imdecode(np.frombuffer(bytes(model_view.value), np.uint8), cv2.IMREAD_UNCHANGED)
    assert seen.shape == (8, 8)
    # #23: the caption says the image was resized (no note for the 8x8 one)
    captions = [_html_of(row) for row in dash.preview.results.rows.children]
    assert "8×8 grayscale<" in captions[0] and "8×8 grayscale, scaled from 64×64" in captions[1]

    dash.preview.image_upload.value = (upload_entry("wide.png", cv2.imencode(".png", np.zeros((120, 160), np.uint8))[1]
                                                    .tobytes()),)
    dash.preview.predict()
    assert "8×8 grayscale, stretched from 160×120" in _html_of(dash.preview.results.rows)


def test_compare_two_versions_side_by_side(dash, registry):
    """Preview never loads a version (#12): an unloaded version gets REST's 503 and a Load button.

    Before #12 comparing loaded v1 first, silently; now the person sees why nothing ran,
    in the words REST answers with, and loads v1 with the button.
    """
    preview = dash.preview
    pick(dash, "digits", 2, "digit-8-disputed.png")
    preview.compare_select.value = 1
    assert preview.predict_button.description == "Compare v2 / v1"
    dash.backend.unload("digits", 1)  # an operator unloads v1
    dash.refresh()
    assert {v: label for label, v in preview.compare_select.options}[1] == "v1 (unloaded)"
    with pytest.raises(ModelNotReadyError) as rest:  # what REST answers 503 with
        dash.backend.predict_images("digits", [(SAMPLES / "digit-3.png").read_bytes()], 1)
    preview.predict_button.click()
    message = preview.predict_message.value
    assert "yyai-error" in message and html.escape(rest.value.message) in message, message
    assert registry.status("digits").versions[1].state is VersionState.UNLOADED  # nothing loaded it
    assert not preview.results.rows.children
    assert preview.load_button.layout.display != "none" and preview.load_button.description == "Load v1"

    preview.load_button.click()  # the person's choice: load v1, then compare
    assert registry.status("digits").versions[1].state is VersionState.READY
    assert "Loaded digits v1" in preview.predict_message.value and "compared" in preview.predict_message.value
    assert preview.load_button.layout.display == "none"
    replies = preview.predict()
    assert set(replies) == {1, 2}
    v1, v2 = (top_of(replies[v])[0] for v in (1, 2))
    assert v1 == expected_label("digits-1.yyar", "digit-8-disputed.png")
    assert v2 == expected_label("digits-2.yyar", "digit-8-disputed.png")
    assert v1 != v2
    assert "the versions disagree" in preview.results.summary.value
    (row,) = preview.results.rows.children
    assert [c for c in row.children if "yyai-result-v1" in c._dom_classes]
    assert [c for c in row.children if "yyai-result-v2" in c._dom_classes]
    assert len(_widgets_with_class(row, "yyai-chart")) == len(_widgets_with_class(row, "yyai-topk-table")) == 2


def test_compare_with_a_version_never_loaded_loads_it_with_a_note(tmp_path):
    """#23: "v1 (available)" was offered, and Compare answered "not loaded; load it first" and
    showed nothing for v2 either. A version never loaded is loaded first, saying so."""
    registry = demo_registry(tmp_path)
    board = Dashboard(registry, refresh_interval=None)
    try:
        preview = board.preview
        said = []
        preview.predict_message.observe(lambda change: said.append(change["new"]), "value")
        pick(board, "digits", 2, "digit-8-disputed.png")
        assert {v: label for label, v in preview.compare_select.options}[1] == "v1 (available)"
        preview.compare_select.value = 1
        assert preview.load_button.layout.display == "none"  # nothing to do by hand
        preview.predict_button.click()
        assert any("yyai-busy" in m and "Loading digits v1 first: it was not loaded yet" in m for m in said), said
        message = preview.predict_message.value
        assert "yyai-ok" in message and "Loaded digits v1 in" in message and "1 image compared" in message, message
        assert registry.status("digits").versions[1].state is VersionState.READY
        assert {v: label for label, v in preview.compare_select.options}[1] == "v1 (ready)"  # truthful
        (row,) = preview.results.rows.children
        assert len(_widgets_with_class(row, "yyai-chart")) == 2
        assert "the versions disagree" in preview.results.summary.value
        assert preview.load_button.layout.display == "none"

        # an operator unloads v1: picking it again shows the Load button at once, and Predict never loads it
        board.backend.unload("digits", 1)
        board.refresh()
        preview.compare_select.value = 0
        preview.compare_select.value = 1
        assert preview.load_button.layout.display != "none" and preview.load_button.description == "Load v1"
        assert "v1 is unloaded: press Load v1" in preview.predict_message.value
        preview.predict_button.click()
        assert "yyai-error" in preview.predict_message.value
        assert "Press &quot;Load v1&quot; below to load it here." in preview.predict_message.value  # the next step
        assert registry.status("digits").versions[1].state is VersionState.UNLOADED
        preview.compare_select.value = 0  # nothing unloaded is picked: the note and the button go
        assert preview.load_button.layout.display == "none"
    finally:
        board.close()
        registry.close()


def test_a_tie_is_shown_as_a_tie():
    """#23: a five-way tie at 0.2 read "predicted daisy" (the first label of the tie)."""
    import cv2
    import keras

    from yyai_kernel.dashboard.render import bar_chart_figure

    flowers = ["daisy", "rose", "tulip", "dandelion", "sunflower"]
    undecided = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(5, activation="softmax", kernel_initializer="zeros")])
    board = Dashboard.for_models({"v1": undecided}, input={"scale": 1 / 255}, labels=flowers, name="flowers",
                                 refresh_interval=None)
    try:
        png = cv2.imencode(".png", np.full((4, 4), 128, np.uint8))[1].tobytes()
        board.preview.image_upload.value = (upload_entry("meadow.png", png),)
        (prediction,) = board.preview.predict().values()
        assert prediction.tied(0) == flowers and prediction.top(0) == ("daisy", pytest.approx(0.2))
        headline = _html_of(board.preview.results.rows)
        assert "predicted" not in headline, headline
        assert "no single answer" in headline
        assert "a 5-way tie</span> between daisy, rose, tulip, dandelion and sunflower" in headline
        assert "(p = 0.200 each)" in headline
        summary = board.preview.results.summary.value
        assert "tie: daisy, rose, tulip, dandelion and sunflower</span> (0.20 each)" in summary, summary
        figure = bar_chart_figure(prediction, 0, flowers, has_combined=True)
        titles = [" ".join(sub._suptitle.get_text().split()) for sub in figure.subfigs]
        assert any("5-way tie (0.20)" in t for t in titles) and not any("daisy" in t for t in titles), titles
    finally:
        board.close()
    one = Prediction("m", 1, {"m": np.array([[0.5, 0.3, 0.2]])}, None, OutputSpec.classes(["a", "b", "c"]))
    assert one.tied(0) == ["a"]


def test_regression_output_is_a_table(dash):
    pick(dash, "colorfulness", 1, "flower-1.png")
    replies = dash.preview.predict()
    value = replies[1].rows()[0]["combined"]["colorfulness"]
    assert value == pytest.approx(EXPECTED["colorfulness-1.yyar"]["flower-1.png"]["combined"][0], abs=1e-3)
    tables = _widgets_with_class(dash.preview.results.rows, "yyai-regression-table")
    assert len(tables) == 1 and "colorfulness" in tables[0].value and "combined" in tables[0].value
    assert "see the outputs below" in dash.preview.results.summary.value


def test_a_file_that_is_not_an_image_is_named_and_clears_the_old_prediction(dash):
    preview = dash.preview
    pick(dash, "digits", 2, "digit-3.png")
    preview.predict_button.click()
    assert preview.results.rows.children and preview.results.summary.value  # a prediction is on screen
    preview.image_upload.value = (upload_entry("notes.png", b"this is not an image"),)
    preview.predict_button.click()  # the guard catches the error and shows it
    message = preview.predict_message.value
    assert "yyai-error" in message and "notes.png" in message and "not an image" in message, message
    assert "body" not in message.lower() and "Traceback" not in message
    assert not preview.results.rows.children and not preview.results.summary.value  # no stale result
    assert preview.results.empty.layout.display != "none"  # the empty panel says what to do
    assert not preview.predict_button.disabled


def test_nothing_to_predict_is_explained(dash):
    pick(dash, "digits", 2)
    dash.preview.source_toggle.value = "upload"
    dash.preview.predict_button.click()
    message = dash.preview.predict_message.value
    assert "yyai-error" in message and "Upload one or more images" in message


def test_preview_layout_shows_what_the_source_needs_and_says_what_to_do(dash):
    preview = dash.preview
    assert preview.source_toggle.value == "sample"
    assert preview.sample_select.layout.display != "none" and preview.image_upload.layout.display == "none"
    preview.source_toggle.value = "upload"
    assert preview.sample_select.layout.display == "none" and preview.image_upload.layout.display != "none"
    preview.source_toggle.value = "sample"
    assert preview.sample_select.layout.display != "none" and preview.image_upload.layout.display == "none"
    # an empty result panel says what to do
    assert "press <b>Predict</b>" in preview.results.empty.value
    assert preview.results.empty.layout.display != "none"
    # the line about refreshing belongs to the Models tab, not above every tab
    dash.refresh()
    assert "Refresh" not in dash.status_line.value and "Refresh" in dash.refresh_note.value
    assert dash.refresh_note in list(_walk(dash.models.widget))
    assert dash.refresh_note not in list(_walk(preview.widget))


def test_charts_fit_their_titles_and_labels_and_come_with_a_top_k_table():
    """Titles inside the figure; tick labels (words too) never overlap; a top-k table per chart."""
    from itertools import combinations

    from matplotlib.axes import Axes
    from matplotlib.text import Text

    from yyai_kernel.dashboard.render import bar_chart_figure, top_k_table_html

    words = ["golden retriever", "labrador", "tabby cat", "persian cat", "airliner", "container ship",
             "sports car", "garbage truck", "espresso maker", "grand piano", "hen", "ostrich", "goldfish"]
    rng = np.random.default_rng(0)
    for labels in (words, [str(d) for d in range(10)]):
        members = {name: rng.dirichlet(np.ones(len(labels)), size=1).astype(np.float32)
                   for name in ("resnet50_finetuned_on_pets", "efficientnet_b0_finetuned", "mlp")}
        combined = np.mean(list(members.values()), axis=0)
        prediction = Prediction("animals", 3, members, combined, OutputSpec.classes(labels))
        for size in ((2.9, 1.75), (2.1, 1.45)):
            figure = bar_chart_figure(prediction, 0, labels, has_combined=True, panel_size=size)
            figure.canvas.draw()
            renderer, frame = figure.canvas.get_renderer(), figure.bbox
            texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text()]
            for box in (t.get_window_extent(renderer) for t in texts):  # titles and labels: all inside
                assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            titles = [t.get_window_extent(renderer) for t in texts if t.get_fontsize() == 9]
            assert len(titles) == 4 and not any(a.overlaps(b) for a, b in combinations(titles, 2))
            for axes in figure.findobj(Axes):
                ticks = [t.get_window_extent(renderer) for t in axes.get_xticklabels() + axes.get_yticklabels()
                         if t.get_text()]
                assert not any(a.overlaps(b) for a, b in combinations(ticks, 2)), labels
        table = top_k_table_html(prediction, 0, labels, has_combined=True)
        best = labels[int(np.argmax(combined[0]))]
        assert table.count("<tr>") == 1 + 5 and f"<td>{html.escape(best)}</td>" in table.split("<tr>")[2]
        assert all(name in table for name in members) and "combined" in table


# --- managing -----------------------------------------------------------------------------------


def test_promote_unload_reload(dash, registry):
    manage = dash.manage
    manage.manage_model.value = "digits"
    manage.manage_version.value = 1
    assert manage.default_button.button_style == "warning"  # v1 is not the default: the button stands out
    assert manage.load_button.icon != "upload"
    manage.default_button.click()
    assert "yyai-ok" in manage.manage_message.value, manage.manage_message.value
    assert "v1 is now the default of digits" in manage.manage_message.value
    assert registry.status("digits")["default"] == 1 and registry.status("digits")["pinned"]
    assert "default" in {v: label for label, v in manage.manage_version.options}[1]
    assert manage.default_button.button_style == "" and manage.default_button.disabled  # it already is
    assert not manage.follow_latest.value and "pinned" in manage.default_reason.value

    manage.manage_version.value = 2
    assert manage.default_button.button_style == "warning" and not manage.default_button.disabled
    manage.unload_button.click()
    assert "Unloaded digits v2" in manage.manage_message.value
    assert registry.status("digits")["versions"]["2"]["state"] == "unloaded"

    manage.reload_button.click()
    message = manage.manage_message.value
    assert "Reloaded digits" in message and "v1 is the default: pinned" in message, message
    assert registry.status("digits")["versions"]["1"]["state"] == "ready"
    assert not any(b.disabled for b in (manage.reload_button, manage.unload_button))


def test_follow_latest_undoes_a_pin(dash, registry):
    manage = dash.manage
    manage.manage_model.value = "digits"
    assert manage.follow_latest.value  # not pinned: the latest version is the default
    manage.manage_version.value = 1
    manage.default_button.click()
    assert registry.status("digits").pinned and not manage.follow_latest.value
    manage.follow_latest.value = True  # a person ticks the switch
    status = registry.status("digits")
    assert not status.pinned and status.default == 2
    message = manage.manage_message.value
    assert "digits follows its latest version again" in message and "v2 is the default: the latest" in message
    manage.follow_latest.value = False  # unticking pins the default it has now
    status = registry.status("digits")
    assert status.pinned and status.default == 2 and "pinned" in manage.manage_message.value


def test_manage_errors_are_messages(dash):
    manage = dash.manage
    manage.manage_model.value = "digits"
    # make the version unknown to the registry behind the dashboard's back
    manage.manage_version.options = [("v9", 9)]
    manage.manage_version.value = 9
    manage.default_button.click()
    assert "yyai-error" in manage.manage_message.value and "no version 9" in manage.manage_message.value


def test_install_archives_good_and_bad_then_delete_with_a_confirmation(dash, registry, tmp_path):
    manage = dash.manage
    manage.archive_upload.value = (upload_entry("broken.yyar", b"just some text"),)
    assert "yyai-error" in manage.archive_message.value
    assert "broken.yyar was not installed" in manage.archive_message.value
    assert "not a zip archive" in manage.archive_message.value
    assert manage.archive_progress.bar_style == "danger"
    assert manage.archive_upload.value == ()  # the same file can be chosen again

    manage.archive_upload.value = (upload_entry("notes.txt", b"hello"),)
    assert "not a .yyar archive" in manage.archive_message.value
    manage.archive_upload.value = (upload_entry("model.keras", b"PK\x03\x04 a Keras zip"),)  # #23: the next step
    assert "model.keras is a Keras model, not a .yyar archive: pack it first with `yyai archive --model model.keras" \
        in html.unescape(manage.archive_message.value)

    from builders import pack_models

    archive, _ = pack_models(tmp_path, "tiny", 1, [3])
    manage.archive_upload.value = (upload_entry(archive.name, archive.read_bytes()),)
    message = manage.archive_message.value
    assert "yyai-ok" in message, message
    assert "Installed tiny v1" in message and "v1 is the default: the latest version" in message
    assert manage.archive_progress.bar_style == "success"
    assert (manage.manage_model.value, manage.manage_version.value) == ("tiny", 1)  # what it installed
    assert "tiny" in [v for _, v in dash.preview.model_select.options]
    assert "data-model='tiny'" in dash.models.models_table.value
    assert registry.status("tiny")["versions"]["1"]["state"] == "ready"

    manage.delete_button.click()  # asks first
    assert manage.confirm_box.layout.display != "none"
    assert "Delete tiny v1 from the store?" in manage.confirm_text.value
    manage.cancel_button.click()
    assert manage.confirm_box.layout.display == "none" and "tiny" in registry.names()
    manage.delete_button.click()
    manage.confirm_button.click()
    assert "Deleted tiny v1; tiny has no versions left" in manage.manage_message.value, manage.manage_message.value
    assert "tiny" not in registry.names() and not list(registry.store.root.glob("tiny-*"))
    assert "tiny" not in [v for _, v in manage.manage_model.options]


# --- cosmetics (#23) -----------------------------------------------------------------------------


def test_every_tab_follows_the_model_picked_last(dash):
    """Each tab's Model picker used to start at the first model instead of following Preview."""
    dash.preview.model_select.value = "digits"  # a person picks digits in Preview
    manage_at = [cls.key for cls in TABS].index("manage")
    dash.tabs.selected_index = manage_at  # Manage is built now, and shows digits
    assert dash.manage.manage_model.value == "digits"
    assert dash.manage.manage_version.value == 2 and "default" in dash.manage.default_reason.value.lower()
    dash.manage.manage_model.value = "colorfulness"  # picked in Manage ...
    dash.tabs.selected_index = [cls.key for cls in TABS].index("rollout")
    assert dash.rollout.model_select.value == "colorfulness"  # ... the Rollout tab follows
    assert "colorfulness" in dash.rollout.policy.value
    dash.tabs.selected_index = [cls.key for cls in TABS].index("evaluate")
    assert dash.evaluate.model.value == "colorfulness"
    dash.tabs.selected_index = 0
    preview = dash.preview
    assert preview.model_select.value == "colorfulness" and preview.version_select.value == 1  # and Preview
    assert "samples/flower-1.png" in [v for _, v in preview.sample_select.options]
    dash.refresh()  # a refresh keeps every tab where it is
    assert (preview.model_select.value, dash.manage.manage_model.value) == ("colorfulness", "colorfulness")


def test_evaluate_offers_only_what_applies(dash, registry):
    """The zip's format help shows only for a zip; the Versions list says how to pick several; the best
    version that already is the default is not offered as "Make v2 the default"."""
    import yyai_kernel
    from yyai_kernel.evaluation.sets import set_from_archive

    tab = dash.evaluate
    tab.model.value = "digits"
    tab.shown()
    assert tab.source.value == "bundled" and tab.upload_help.layout.display == "none"
    tab.source.value = "upload"
    assert tab.upload_help.layout.display != "none" and "one folder per class" in tab.upload_help.value
    tab.source.value = "bundled"
    assert tab.upload_help.layout.display == "none"
    assert "Ctrl-click" in tab.versions_hint.value and "several" in tab.versions_hint.value

    registry.load("digits", 1)
    result = yyai_kernel.evaluate(dash.backend, "digits", [1, 2], set_from_archive(DEMO / "digits-2.yyar"),
                                  batch_size=64)
    assert registry.status("digits").default == 2 and not registry.status("digits").pinned  # the latest
    tab.show_result(result)
    assert "v2 scored best" in tab.message.value
    assert tab.promote_button.description == "v2 is the default" and tab.promote_button.disabled
    registry.set_default("digits", 1)  # pinned to v1: now there is something to promote
    dash.refresh()
    assert tab.promote_button.description == "Make v2 the default" and not tab.promote_button.disabled
    tab.promote()
    assert registry.status("digits").default == 2 and tab.promote_button.disabled


def test_evaluate_loads_a_version_never_loaded_and_says_where_to_load_an_unloaded_one(tmp_path):
    registry = demo_registry(tmp_path)
    board = Dashboard(registry, refresh_interval=None)
    try:
        tab = board.evaluate
        tab.model.value = "digits"
        tab.shown()
        said = []
        tab.message.observe(lambda change: said.append(change["new"]), "value")
        tab.versions.value = (1,)  # in the store, never loaded
        tab.run_button.click()
        assert any("Loading digits v1 first" in m for m in said), said
        assert deadline_wait(lambda: tab._job is None, 120) and "v1" in tab.message.value
        assert "yyai-ok" in tab.message.value, tab.message.value
        assert registry.status("digits").versions[1].state is VersionState.READY

        board.backend.unload("digits", 1)  # an operator's choice: Run does not undo it
        board.refresh()
        tab.versions.value = (1,)
        tab.run_button.click()
        message = tab.message.value
        assert "yyai-error" in message and "Load it in the Manage tab" in message, message
        assert registry.status("digits").versions[1].state is VersionState.UNLOADED
    finally:
        board.close()
        registry.close()


def test_shadow_runs_read_plainly():
    """"0 dropped (queue full)" read oddly: nothing wrong says so, and what went wrong says why."""
    from yyai_kernel.dashboard.rollout import shadow_runs_text

    assert shadow_runs_text(13, 0, 0) == "13 started, none failed or skipped"
    assert shadow_runs_text(13, 2, 0) == "13 started; 2 failed"
    assert shadow_runs_text(13, 0, 5) == "13 started; 5 skipped: the shadow queue was full"


# --- the package and its tabs ----------------------------------------------------------------------


def test_the_dashboard_is_a_package_of_small_parts():
    """#13: a shell, one module per tab, the rendering apart; small classes and functions."""
    import ast

    import yyai_kernel.dashboard as package

    folder = Path(package.__file__).parent
    assert {"shell.py", "preview.py", "models.py", "manage.py", "render.py"} <= {p.name for p in folder.glob("*.py")}
    for path in folder.glob("*.py"):
        text = path.read_text()
        for node in ast.walk(ast.parse(text)):
            size = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert size <= 60, f"{path.name}: {node.name} has {size} lines"
            elif isinstance(node, ast.ClassDef):
                assert size <= 300, f"{path.name}: {node.name} has {size} lines"
        assert "hasattr(" not in text and "_prediction_json" not in text and "read_manifest" not in text
        assert "_view_count" not in text or path.name == "shell.py"  # ipywidgets' private trait: one place


def test_a_tab_is_a_small_class_in_a_list(registry):
    import ipywidgets as W

    class Echo:
        key, title = "echo", "Echo"

        def __init__(self, shell):
            self.seen, self.widget = [], W.HTML()

        def update(self, status):
            self.seen.append(sorted(status.models))

        def shown(self):
            self.widget.value = "shown"

    board = Dashboard(registry, refresh_interval=None, tabs=TABS + (Echo,))
    try:
        assert board.tabs.titles[:3] == ("Preview", "Models", "Manage")
        assert board.tabs.titles == tuple(tab.title for tab in TABS) + ("Echo",)
        assert board.echo.seen[-1] == ["colorfulness", "digits", "wine"]
        board.tabs.selected_index = len(TABS)
        assert board.echo.widget.value == "shown"
    finally:
        board.close()


# --- refreshing and the live plot ------------------------------------------------------------------


def test_background_refresh_samples_and_stops(registry):
    board = Dashboard(registry, refresh_interval=0.05)
    try:
        assert deadline_wait(lambda: len(board.models.history) >= 4)
        assert "refresh every 0.05 s" in board.refresh_note.value
        board.backend.predict_images("digits", [(SAMPLES / "digit-1.png").read_bytes()])
        assert deadline_wait(lambda: "data-model='digits'" in board.models.models_table.value)
        board.tabs.selected_index = 1  # showing the Models tab draws the plot
        assert bytes(board.models.activity_plot.value).startswith(PNG_MAGIC)
        assert board.models.activity_plot.layout.display is None
    finally:
        board.close()
    assert board._thread is None
    count = len(board.models.history)
    time.sleep(0.2)
    assert len(board.models.history) == count  # stopped for good


def test_refresh_pauses_when_nobody_uses_the_page(registry):
    board = Dashboard(registry, refresh_interval=0.05, pause_after=0.2)
    try:
        assert deadline_wait(lambda: not board.auto_refresh.value)
        assert "Paused refreshing" in board.refresh_note.value
        count = len(board.models.history)
        time.sleep(0.2)
        assert len(board.models.history) == count
        board.auto_refresh.value = True  # a person ticks it again: refreshing resumes
        assert deadline_wait(lambda: len(board.models.history) > count)
    finally:
        board.close()


def test_a_new_view_resumes_and_a_closed_page_stops_refreshing(registry):
    """The front end counts its views (``_view_count``): that tells the thread if anyone looks."""
    board = Dashboard(registry, refresh_interval=0.05, pause_after=0.2)
    try:
        assert deadline_wait(lambda: not board.auto_refresh.value)  # e.g. a preheated kernel, unvisited
        board.widget._view_count = 1  # a browser renders the dashboard
        assert board.auto_refresh.value and "refresh every" in board.refresh_note.value
        count = len(board.models.history)
        assert deadline_wait(lambda: len(board.models.history) > count)
        board.widget._view_count = 0  # the page was closed
        time.sleep(0.1)
        count = len(board.models.history)
        time.sleep(0.2)
        assert len(board.models.history) == count
    finally:
        board.close()


def test_activity_plot_from_history(dash, registry):
    for _ in range(3):
        dash.backend.predict_images("digits", [(SAMPLES / "digit-2.png").read_bytes()])
        dash.refresh()
    dash.models.draw_activity()
    assert bytes(dash.models.activity_plot.value).startswith(PNG_MAGIC)
    digits = [sample["digits"] for _, sample in dash.models.history]
    assert digits[-1].requests >= digits[0].requests + 2
    assert digits[-1].p50 is not None


# --- helpers -------------------------------------------------------------------------------------


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def _widgets_with_class(root, css_class: str) -> list:
    return [w for w in _walk(root) if css_class in getattr(w, "_dom_classes", ())]


def _html_of(root) -> str:
    return "\n".join(w.value for w in _walk(root) if type(w).__name__ == "HTML")


def test_the_rollout_tab_sets_labels_and_a_shadow_and_shows_what_it_saw(dash, registry):
    """Label v1, shadow it at 100%, send every digit sample, then read the agreement (the offline one:
    v1 and v2 disagree only on digit-8-disputed.png) and that image among the disagreements."""
    tab = dash.rollout
    tab.model_select.value = "digits"
    tab.label_name.value, tab.label_version.value = "stable", 1
    tab.set_label()
    assert registry.store.labels("digits") == {"stable": 1}
    dash.preview.model_select.value = "digits"
    assert ("v1 (ready) · stable", 1) in dash.preview.version_select.options
    assert tab.candidate_select.value == 1
    tab.shadow_slider.value = 100
    tab.apply()
    assert registry.traffic("digits").shadow.percent == 100
    samples = sorted(p for p in SAMPLES.glob("digit-*.png"))
    for path in samples:
        assert dash.backend.predict_images("digits", [path.read_bytes()]).version == 2
    assert deadline_wait(lambda: dash.backend.status("digits").rollout.shadow.rows_compared == len(samples))
    dash.tabs.selected_index = TABS.index(type(tab))  # its place among all tabs (built or not)
    dash.refresh()
    assert f"{100 * (len(samples) - 1) / len(samples):.1f}%" in tab.figures.value
    assert tab.disagreements.value.count("yyai-disagreement'") == 1 and "<img" in tab.disagreements.value
    assert "digit-8-disputed" not in tab.disagreements.value  # one image per request: no file name
    assert "sent v2: <b>8</b>" in tab.disagreements.value and ">5</b>" in tab.disagreements.value
    assert f"{len(samples)} started, none failed or skipped" in tab.figures.value
    tab.roll_back()
    assert registry.traffic("digits") is None and tab.shadow_slider.value == 0
    tab.canary_slider.value = 10
    tab.apply()
    assert tab.promote().default == 1 and registry.traffic("digits") is None
    tab.delete_label()
    assert registry.store.labels("digits") == {}
    tab.model_select.value = "colorfulness"  # one version: the message says what to do first
    tab.canary_slider.value = 10
    tab.apply_button.click()
    assert "colorfulness has one version" in tab.message.value and "Install another version" in tab.message.value
