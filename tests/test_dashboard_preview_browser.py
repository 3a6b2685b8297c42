"""Preview's Explain toggle and drawing pad in a real browser (``yyai serve`` + headless Chromium).

Same set-up as ``test_dashboard_browser.py`` (its fixtures and helpers, a server of its
own over a copy of the demo archives). Grad-CAM: ticking "Explain (Grad-CAM)" on the
digits ensemble draws an overlay for each convolutional member, and the overlay the page
shows is the one ``POST /predictions/digits?explain=gradcam`` returns, while the MLP
member says "not available"; the view is copied to ``docs/gradcam.png`` for the README.
Drawing pad: a stroke drawn with the mouse on the pad is predicted, and the page's answer
is REST's answer for the same stroke rasterized here by the pad's own code.
"""

from __future__ import annotations

import base64
import shutil

import cv2
import numpy as np
import pytest
import requests
from test_dashboard_browser import (
    DOCS,
    HEADERS,
    INTERACTIVE_PROBE,
    SAMPLES,
    TOKEN,
    WAIT_MS,
    choose_source,
    demo_server,
    headless_chromium,
    interactive,
    shot,
    watch,
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from demo_server(tmp_path_factory)


@pytest.fixture(scope="module")
def browser():
    yield from headless_chromium()


def visit(browser, server):
    """A fresh page on the dashboard, watched from its first request, once it is interactive."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(INTERACTIVE_PROBE)
    seen = watch(page, server)
    page.goto(f"{server.url}/?token={TOKEN}", wait_until="commit")
    interactive(page)
    return page, seen


def rest_prediction(server, png: bytes, *, explain: bool = False) -> dict:
    reply = requests.post(f"{server.url}/predictions/digits", data=png, params={"explain": "gradcam"} if explain else {},
                          headers={**HEADERS, "Content-Type": "image/png"}, timeout=60)
    assert reply.status_code == 200, reply.text
    return reply.json()["predictions"][0]


def shown_png(locator) -> np.ndarray:
    """The pixels of an <img> on the page (an ipywidgets Image: a blob URL), decoded."""
    data = locator.evaluate("""async (img) => {
        const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
        let text = ''; bytes.forEach((b) => { text += String.fromCharCode(b); });
        return btoa(text);
    }""")
    return cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_UNCHANGED)


def test_gradcam_overlay_in_preview(browser, server):
    from playwright.sync_api import expect

    page, seen = visit(browser, server)
    page.select_option(".yyai-model-select select", label="digits")
    expect(page.locator(".yyai-version-select select")).to_contain_text("v2 (default, ready)", timeout=WAIT_MS)
    choose_source(page, "Bundled sample")
    page.locator(".yyai-sample-select select").select_option(label="digit-3.png")
    page.locator(".yyai-explain-toggle input").check()
    page.locator(".yyai-predict-button").click()
    expect(page.locator(".yyai-predict-message")).to_contain_text("1 image predicted", timeout=WAIT_MS)

    # what REST says for the same image: which members explain, on which layer, with which overlay
    explained = rest_prediction(server, (SAMPLES / "digit-3.png").read_bytes(), explain=True)["explanations"]
    available = {m: e for m, e in explained.items() if e["available"]}
    assert set(available) == {"cnn_a", "cnn_wide"} and not explained["mlp"]["available"]
    gradcam = page.locator(".yyai-gradcam")
    expect(gradcam).to_contain_text(f"Grad-CAM for {available['cnn_a']['label']}")
    overlays = gradcam.locator(".yyai-gradcam-overlay")
    expect(overlays).to_have_count(2)
    missing = gradcam.locator(".yyai-gradcam-na")
    expect(missing).to_have_count(1)
    expect(missing).to_contain_text("mlp")
    expect(missing).to_contain_text("Grad-CAM not available")
    for i, member in enumerate(["cnn_a", "cnn_wide"]):  # the members' order in the manifest
        expect(gradcam).to_contain_text(available[member]["layer"])
        rest = cv2.imdecode(np.frombuffer(base64.b64decode(available[member]["overlay_png"]), np.uint8),
                            cv2.IMREAD_UNCHANGED)
        assert np.array_equal(shown_png(overlays.nth(i)), rest), member
    DOCS.mkdir(exist_ok=True)
    shutil.copyfile(shot(page, "06-gradcam"), DOCS / "gradcam.png")

    # unticked with results on screen: they run again, without explanations
    page.locator(".yyai-explain-toggle input").uncheck()
    expect(page.locator(".yyai-gradcam")).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator(".yyai-top-label[data-version='2']")).to_have_text(available["cnn_a"]["label"])
    assert not seen.errors, seen.errors
    page.close()


def test_drawing_pad_predicts(browser, server):
    from playwright.sync_api import expect

    from yyai_kernel.dashboard.drawpad import PAD_PX, DrawingPad
    from yyai_kernel.types import InputSpec

    page, seen = visit(browser, server)
    page.select_option(".yyai-model-select select", label="digits")
    expect(page.locator(".yyai-version-select select")).to_contain_text("v2 (default, ready)", timeout=WAIT_MS)
    choose_source(page, "Draw")
    pad = page.locator("canvas.yyai-drawing-pad")
    expect(pad).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(".yyai-sample-select")).to_be_hidden()
    box = pad.bounding_box()
    assert round(box["width"]) == PAD_PX  # the pad shows 1:1, so page offsets are the kernel's coordinates

    # one straight stroke down the middle: a "1" (the points in between lie on the same line)
    start, end = (96, 28), (96, 164)
    page.mouse.move(box["x"] + start[0], box["y"] + start[1])
    page.mouse.down()
    page.mouse.move(box["x"] + end[0], box["y"] + end[1], steps=12)
    page.mouse.up()
    page.locator(".yyai-predict-button").click()
    expect(page.locator(".yyai-predict-message")).to_contain_text("1 image predicted", timeout=WAIT_MS)
    expect(page.locator(".yyai-summary")).to_contain_text("drawing.png")

    # the same stroke, rasterized here by the pad's own code (its pen sized for the digits' 8x8 input)
    twin = DrawingPad()
    twin.set_input(InputSpec((8, 8, 1)))
    twin.strokes = [[start, end]]
    expected = rest_prediction(server, twin.png())
    expect(page.locator(".yyai-top-label[data-version='2']")).to_have_text(expected["top"])

    page.locator(".yyai-clear-drawing").click()
    page.locator(".yyai-predict-button").click()
    expect(page.locator(".yyai-predict-message .yyai-error")).to_contain_text("Draw something on the pad first",
                                                                              timeout=WAIT_MS)
    shot(page, "07-drawing")
    assert not seen.errors, seen.errors
    page.close()
