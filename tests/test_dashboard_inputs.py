"""Preview's explanations and drawing pad, driven in-process over a real Registry, and lazy tabs.

Widget events are simulated the way the browser sends them: values set on widgets, button
clicks, and the canvas's mouse events delivered as the custom messages ipycanvas's front end
sends (``{"event": "mouse_down", "x": .., "y": ..}``). The browser test drives the same in
Chromium.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from builders import demo_registry

from yyai_kernel.dashboard import TABS, Dashboard

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "model_archives"
SAMPLES = DEMO / "samples"
SEVEN = [(50, 40), (100, 40), (150, 40), (120, 105), (90, 170)]  # a "7" on the 192-pixel pad


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    reg = demo_registry(tmp_path_factory.mktemp("inputs-store"))
    yield reg
    reg.close()


@pytest.fixture
def dash(registry):
    board = Dashboard(registry, refresh_interval=None)
    yield board
    board.close()


def with_class(widget, name: str) -> list:
    """Every widget under ``widget`` that carries the CSS class ``name``, in page order."""
    found = [widget] if name in getattr(widget, "_dom_classes", ()) else []
    for child in getattr(widget, "children", ()):
        found += with_class(child, name)
    return found


def draw(pad, points) -> None:
    """One stroke, sent as ipycanvas's front end sends mouse events."""
    canvas = pad.canvas
    canvas._handle_custom_msg({"event": "mouse_down", "x": points[0][0], "y": points[0][1]}, [])
    for x, y in points[1:]:
        canvas._handle_custom_msg({"event": "mouse_move", "x": x, "y": y}, [])
    canvas._handle_custom_msg({"event": "mouse_up", "x": points[-1][0], "y": points[-1][1]}, [])


def test_explain_shows_each_members_overlay_and_says_not_available_for_the_mlp(dash, registry):
    preview = dash.preview
    preview.model_select.value = "digits"
    preview.version_select.value = 2
    preview.sample_select.value = "samples/digit-3.png"
    preview.explain_toggle.value = True  # nothing on screen yet: no prediction runs
    assert not preview.results.rows.children
    replies = preview.predict()
    explanations = replies[2].explanations[0]
    assert [m for m, e in explanations.items() if e.available] == ["cnn_a", "cnn_wide"]
    shown = with_class(preview.results.widget, "yyai-gradcam")
    assert len(shown) == 1 and "Grad-CAM for <b>3</b>" in shown[0].children[0].value
    overlays = with_class(shown[0], "yyai-gradcam-overlay")
    assert [bytes(o.value) for o in overlays] == [explanations["cnn_a"].overlay_png,
                                                  explanations["cnn_wide"].overlay_png]
    missing = with_class(shown[0], "yyai-gradcam-na")
    reads = re.sub(r"<[^>]+>", "", missing[0].value)  # the text, without the spans that keep "2-D" whole
    assert len(missing) == 1 and "Grad-CAM not available: this member has no 2-D convolutional layer" in reads
    from yyai_kernel.plane.local import LocalBackend

    direct = LocalBackend.over(registry).predict_images("digits", [(SAMPLES / "digit-3.png").read_bytes()], 2,
                                                    explain="gradcam").explanations[0]
    for member in ("cnn_a", "cnn_wide"):
        np.testing.assert_allclose(explanations[member].heatmap, direct[member].heatmap, atol=1e-6)
    preview.explain_toggle.value = False  # results on screen: they are run again, plain
    assert preview.results.rows.children and not with_class(preview.results.widget, "yyai-gradcam")
    assert "1 image predicted" in preview.predict_message.value


def test_the_drawing_pad_is_offered_for_small_gray_inputs_and_predicts(dash, registry):
    preview = dash.preview
    preview.model_select.value = "colorfulness"  # 32x32 RGB: no pad
    assert [v for _, v in preview.source_toggle.options] == ["sample", "upload"]
    preview.model_select.value = "digits"
    assert [v for _, v in preview.source_toggle.options] == ["sample", "upload", "draw"]
    assert preview.pad is None  # built only when someone picks "Draw"
    preview.source_toggle.value = "draw"
    pad = preview.pad
    assert pad is not None and preview.pad_box.layout.display is None
    assert preview.sample_select.layout.display == "none" and preview.image_upload.layout.display == "none"
    with pytest.raises(ValueError, match="Draw something"):
        preview.current_images()
    draw(pad, SEVEN)
    assert pad.line_width == 36.0  # 1.5 of the 8x8 input's pixels on a 192-pixel pad
    replies = preview.predict()
    assert replies[2].top(0)[0] == "7"
    assert with_class(preview.results.widget, "yyai-given-image")
    _name, png = preview.current_images()[0]
    direct = registry.predict("digits", np.stack([_preprocessed(png, registry)]), 2)
    np.testing.assert_allclose(replies[2].combined, direct.combined, atol=1e-6)
    pad.clear_button.click()
    assert pad.strokes == []
    preview.model_select.value = "colorfulness"  # the pad's model is gone: back to the samples
    assert preview.source_toggle.value == "sample" and preview.pad_box.layout.display == "none"


def _preprocessed(png: bytes, registry):
    from yyai_kernel.runtime.images import preprocess

    return preprocess(png, registry.describe("digits", 2).input)


def test_tabs_are_built_when_first_shown(registry):
    board = Dashboard(registry, refresh_interval=None)
    try:
        built = [type(t).__name__ for t in board.tab_list]
        assert built == ["PreviewTab", "ModelsTab"]  # Manage waits until someone opens it
        assert board.tabs.titles == tuple(cls.title for cls in TABS)
        assert not board.tabs.children[2].children  # a placeholder
        board.tabs.selected_index = 2
        assert board.tabs.children[2] is board.manage.widget
        assert "digits" in [v for _, v in board.manage.manage_model.options]  # it got the last status
        assert [type(t).__name__ for t in board.tab_list] == ["PreviewTab", "ModelsTab", "ManageTab"]
    finally:
        board.close()
