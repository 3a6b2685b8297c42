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
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from yyai_kernel.dashboard import Dashboard, models_table_html, top_of

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
            "last_modified": datetime.datetime.now(datetime.timezone.utc)}


def deadline_wait(predicate, seconds: float = 30.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    from yyai_kernel.registry import Registry
    from yyai_kernel.store import ModelStore

    store = tmp_path_factory.mktemp("dashboard-store")
    for archive in DEMO.glob("*.yyar"):
        shutil.copyfile(archive, store / archive.name)
    reg = Registry(ModelStore(store))
    assert reg.load_all() == {}
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
    board.model_select.value = model
    board.version_select.value = version
    if sample is not None:
        board.sample_select.value = f"samples/{sample}"


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
        heavy = [m for m in ("tensorflow", "keras", "matplotlib", "yyai_kernel.registry") if m in sys.modules]
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
    assert [v for _, v in dash.model_select.options] == ["colorfulness", "digits"]
    dash.model_select.value = "digits"
    labels = dict((v, label) for label, v in dash.version_select.options)
    assert set(labels) == {1, 2}
    assert dash.version_select.value == 2 and "default" in labels[2] and "ready" in labels[2]
    assert [v for _, v in dash.compare_select.options] == [0, 1, 2]
    samples = [v for _, v in dash.sample_select.options]
    assert "samples/digit-3.png" in samples and "samples/digit-8-disputed.png" in samples
    assert not dash.sample_select.disabled


def test_models_table_shows_every_version(dash, registry):
    dash.refresh()
    table = dash.models_table.value
    for name, version in (("digits", 1), ("digits", 2), ("colorfulness", 1)):
        assert f"data-model='{name}' data-version='{version}'" in table
    assert "★ default" in table and "yyai-state-ready" in table
    assert "Load time" in table and "p50" in table and "Last error" in table
    status = {"m": {"name": "m", "default": 1, "pinned": True, "last_error": "v2: broken <b>",
                    "versions": {"1": {"version": 1, "state": "ready", "requests": 7, "errors": 1,
                                       "load_time_s": 0.5, "latency_ms": {"p50": 1.25, "p99": 3.0},
                                       "last_error": None}}}}
    html = models_table_html(status)
    assert "(pinned)" in html and "1.25 ms" in html and "0.50 s" in html
    assert "broken &lt;b&gt;" in html  # errors are escaped, never injected


# --- predicting ----------------------------------------------------------------------------------


def test_predict_a_bundled_sample(dash):
    pick(dash, "digits", 2, "digit-3.png")
    dash.predict_button.click()
    assert "yyai-ok" in dash.predict_message.value, dash.predict_message.value
    want = expected_label("digits-2.yyar", "digit-3.png")
    assert f"<span class='yyai-top-label' data-version='2'>{want}</span>" in _html_of(dash.results)
    assert f"v2 → <span class='yyai-summary-label'>{want}</span>" in dash.summary.value
    (row,) = dash.results.children
    given, result = row.children
    assert "yyai-result-v2" in result._dom_classes
    # the image as given (8x8) and as the model sees it (8x8 gray), both shown enlarged
    images = _widgets_with_class(row, "yyai-given-image") + _widgets_with_class(row, "yyai-model-image")
    assert len(images) == 2 and all(bytes(i.value).startswith(PNG_MAGIC) for i in images)
    charts = _widgets_with_class(row, "yyai-chart")
    assert len(charts) == 1 and bytes(charts[0].value).startswith(PNG_MAGIC)


def test_upload_several_images(dash):
    files = ["digit-7.png", "digit-8-64rgb.png", "digit-3-64.png"]
    dash.image_upload.value = tuple(upload_entry(f, (SAMPLES / f).read_bytes()) for f in files)
    assert dash.source_toggle.value == "upload"
    pick(dash, "digits", 2)
    replies = dash.predict()
    tops = [top_of(row)[0] for row in replies[2]["predictions"]]
    assert tops == [expected_label("digits-2.yyar", f) for f in files]
    assert len(dash.results.children) == 3
    # a 64x64 RGB upload is shown as given (64x64) and as the model sees it (8x8 gray)
    model_view = _widgets_with_class(dash.results.children[1], "yyai-model-image")[0]
    import cv2

    seen = cv2.imdecode(np.frombuffer(bytes(model_view.value), np.uint8), cv2.IMREAD_UNCHANGED)
    assert seen.shape == (8, 8)


def test_compare_two_versions_side_by_side(dash):
    pick(dash, "digits", 2, "digit-8-disputed.png")
    dash.compare_select.value = 1
    assert dash.predict_button.description == "Compare v2 / v1"
    dash.backend.unload("digits", 1)  # comparing loads v1 first
    replies = dash.predict()
    assert set(replies) == {1, 2}
    v1, v2 = (top_of(replies[v]["predictions"][0])[0] for v in (1, 2))
    assert v1 == expected_label("digits-1.yyar", "digit-8-disputed.png")
    assert v2 == expected_label("digits-2.yyar", "digit-8-disputed.png")
    assert v1 != v2
    assert "the versions disagree" in dash.summary.value
    (row,) = dash.results.children
    assert [c for c in row.children if "yyai-result-v1" in c._dom_classes]
    assert [c for c in row.children if "yyai-result-v2" in c._dom_classes]
    assert dash.backend.status("digits")["versions"]["1"]["state"] == "ready"


def test_regression_output_is_a_table(dash):
    pick(dash, "colorfulness", 1, "flower-1.png")
    replies = dash.predict()
    value = replies[1]["predictions"][0]["combined"]["colorfulness"]
    assert value == pytest.approx(EXPECTED["colorfulness-1.yyar"]["flower-1.png"]["combined"][0], abs=1e-3)
    tables = _widgets_with_class(dash.results, "yyai-regression-table")
    assert len(tables) == 1 and "colorfulness" in tables[0].value and "combined" in tables[0].value
    assert "see the outputs below" in dash.summary.value


def test_bad_image_shows_a_message_not_a_traceback(dash):
    pick(dash, "digits", 2)
    dash.image_upload.value = (upload_entry("notes.png", b"this is not an image"),)
    dash.predict_button.click()  # the guard catches the error and shows it
    assert "yyai-error" in dash.predict_message.value
    assert "not an image" in dash.predict_message.value
    assert "Traceback" not in dash.predict_message.value
    assert not dash.predict_button.disabled


def test_nothing_to_predict_is_explained(dash):
    pick(dash, "digits", 2)
    dash.source_toggle.value = "upload"
    dash.predict_button.click()
    assert "yyai-error" in dash.predict_message.value and "Upload one or more images" in dash.predict_message.value


# --- managing -----------------------------------------------------------------------------------


def test_promote_unload_reload(dash, registry):
    dash.manage_model.value = "digits"
    dash.manage_version.value = 1
    dash.default_button.click()
    assert "yyai-ok" in dash.manage_message.value, dash.manage_message.value
    assert "v1 is now the default of digits" in dash.manage_message.value
    assert registry.status("digits")["default"] == 1 and registry.status("digits")["pinned"]
    assert "default" in dict((v, label) for label, v in dash.manage_version.options)[1]

    dash.manage_version.value = 2
    dash.unload_button.click()
    assert "Unloaded digits v2" in dash.manage_message.value
    assert registry.status("digits")["versions"]["2"]["state"] == "unloaded"

    dash.reload_button.click()
    assert "Reloaded digits" in dash.manage_message.value, dash.manage_message.value
    assert registry.status("digits")["versions"]["1"]["state"] == "ready"
    assert not any(b.disabled for b in (dash.reload_button, dash.default_button, dash.unload_button))


def test_manage_errors_are_messages(dash):
    dash.manage_model.value = "digits"
    # make the version unknown to the registry behind the dashboard's back
    dash.manage_version.options = [("v9", 9)]
    dash.manage_version.value = 9
    dash.default_button.click()
    assert "yyai-error" in dash.manage_message.value and "no version 9" in dash.manage_message.value


def test_install_archives_good_and_bad(dash, registry, tmp_path):
    dash.archive_upload.value = (upload_entry("broken.yyar", b"just some text"),)
    assert "yyai-error" in dash.archive_message.value
    assert "broken.yyar was not installed" in dash.archive_message.value
    assert "not a zip archive" in dash.archive_message.value
    assert dash.archive_progress.bar_style == "danger"
    assert dash.archive_upload.value == ()  # the same file can be chosen again

    dash.archive_upload.value = (upload_entry("notes.txt", b"hello"),)
    assert "not a .yyar archive" in dash.archive_message.value

    from builders import pack_models

    archive, _ = pack_models(tmp_path, "tiny", 1, [3])
    dash.archive_upload.value = (upload_entry(archive.name, archive.read_bytes()),)
    assert "yyai-ok" in dash.archive_message.value, dash.archive_message.value
    assert "Installed tiny v1" in dash.archive_message.value
    assert dash.archive_progress.bar_style == "success"
    assert "tiny" in [v for _, v in dash.model_select.options]
    assert "data-model='tiny'" in dash.models_table.value
    assert registry.status("tiny")["versions"]["1"]["state"] == "ready"
    registry.remove("tiny", 1, purge=True)


# --- refreshing and the live plot ------------------------------------------------------------------


def test_background_refresh_samples_and_stops(registry):
    board = Dashboard(registry, refresh_interval=0.05)
    try:
        assert deadline_wait(lambda: len(board.history) >= 4)
        assert "refresh every 0.05 s" in board.status_line.value
        board.backend.predict_images("digits", [(SAMPLES / "digit-1.png").read_bytes()])
        assert deadline_wait(lambda: "data-model='digits'" in board.models_table.value)
        board.tabs.selected_index = 1  # showing the Models tab draws the plot
        assert bytes(board.activity_plot.value).startswith(PNG_MAGIC)
        assert board.activity_plot.layout.display is None
    finally:
        board.close()
    assert board._thread is None
    count = len(board.history)
    time.sleep(0.2)
    assert len(board.history) == count  # stopped for good


def test_refresh_pauses_when_nobody_uses_the_page(registry):
    board = Dashboard(registry, refresh_interval=0.05, pause_after=0.2)
    try:
        assert deadline_wait(lambda: not board.auto_refresh.value)
        assert "Paused refreshing" in board.status_line.value
        count = len(board.history)
        time.sleep(0.2)
        assert len(board.history) == count
        board.auto_refresh.value = True  # a person ticks it again: refreshing resumes
        assert deadline_wait(lambda: len(board.history) > count)
    finally:
        board.close()


def test_a_new_view_resumes_and_a_closed_page_stops_refreshing(registry):
    """The front end counts its views (``_view_count``): that tells the thread if anyone looks."""
    board = Dashboard(registry, refresh_interval=0.05, pause_after=0.2)
    try:
        assert deadline_wait(lambda: not board.auto_refresh.value)  # e.g. a preheated kernel, unvisited
        board.widget._view_count = 1  # a browser renders the dashboard
        assert board.auto_refresh.value and "refresh every" in board.status_line.value
        count = len(board.history)
        assert deadline_wait(lambda: len(board.history) > count)
        board.widget._view_count = 0  # the page was closed
        time.sleep(0.1)
        count = len(board.history)
        time.sleep(0.2)
        assert len(board.history) == count
    finally:
        board.close()


def test_activity_plot_from_history(dash, registry):
    for _ in range(3):
        dash.backend.predict_images("digits", [(SAMPLES / "digit-2.png").read_bytes()])
        dash.refresh()
    dash.draw_activity()
    assert bytes(dash.activity_plot.value).startswith(PNG_MAGIC)
    digits = [sample["digits"] for _, sample in dash.history]
    assert digits[-1]["requests"] >= digits[0]["requests"] + 2
    assert digits[-1]["p50"] is not None


# --- helpers -------------------------------------------------------------------------------------


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def _widgets_with_class(root, css_class: str) -> list:
    return [w for w in _walk(root) if css_class in getattr(w, "_dom_classes", ())]


def _html_of(root) -> str:
    return "\n".join(w.value for w in _walk(root) if type(w).__name__ == "HTML")
