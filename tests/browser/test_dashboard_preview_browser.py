"""Preview's Explain toggle and drawing pad in a real browser (``yyai serve`` + headless Chromium).

Same set-up as ``test_dashboard_browser.py`` (its fixtures and helpers, a server of its
own over a copy of the demo archives). Grad-CAM: ticking "Explain (Grad-CAM)" on the
digits ensemble draws an overlay for each convolutional member, and the overlay the page
shows is the one ``POST /predictions/digits?explain=gradcam`` returns, while the MLP
member says "not available"; the view is copied to ``docs/gradcam.png`` for the README.
Drawing pad: a stroke drawn with the mouse on the pad is predicted, and the page's answer
is REST's answer for the same stroke rasterized here by the pad's own code. Fit: at 1024,
1280 and 1440 px wide, an ensemble's explained results, alone and compared with another
version, need no sideways scroll and show every image, chart and table in the window.
"""

from __future__ import annotations

import base64
import shutil

import cv2
import numpy as np
import pytest
import requests

from browser.test_dashboard_browser import (
    DOCS,
    HEADERS,
    SAMPLES,
    WAIT_MS,
    choose_source,
    select_option_starting,
    shot,
    watched_visit,
)


@pytest.fixture(scope="module")
def server(demo_dashboard):
    return demo_dashboard


def explain_digit_3(page) -> None:
    """Predict the bundled digit-3.png with digits v2, Explain ticked, and wait for the answer."""
    from playwright.sync_api import expect

    page.select_option(".yyai-model-select select", label="digits")
    expect(page.locator(".yyai-version-select select")).to_contain_text("v2 (default, ready)", timeout=WAIT_MS)
    choose_source(page, "Bundled sample")
    page.locator(".yyai-sample-select select").select_option(label="digit-3.png")
    page.locator(".yyai-explain-toggle input").check()
    page.locator(".yyai-predict-button").click()
    expect(page.locator(".yyai-predict-message")).to_contain_text("1 image predicted", timeout=WAIT_MS)


def rest_prediction(server, png: bytes, *, explain: bool = False) -> dict:
    reply = requests.post(f"{server.url}/predictions/digits", data=png,
                          params={"explain": "gradcam"} if explain else {},
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

    page, seen = watched_visit(browser, server)
    explain_digit_3(page)

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

    page, seen = watched_visit(browser, server)
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


# --- Preview fits the screen (#23) --------------------------------------------------------------

FIT_WIDTHS = (1024, 1280, 1440)
SHOWN_PARTS = ("yyai-given-image", "yyai-model-image", "yyai-chart", "yyai-topk-table", "yyai-gradcam-overlay")

# What a person could not see without scrolling sideways: the page's own horizontal scroll,
# any box inside the results that scrolls (or clips) sideways, and every part's box against
# the results panel and the window.
FIT_PROBE = """(parts) => {
    const out = document.querySelector('.yyai-output');
    const panel = out.getBoundingClientRect();
    const doc = document.documentElement;
    const scrolling = [out, ...out.querySelectorAll('*')]
        .filter((e) => getComputedStyle(e).overflowX !== 'visible' && e.scrollWidth > e.clientWidth + 1)
        .map((e) => `${e.className} ${e.scrollWidth}>${e.clientWidth}`);
    const outside = [];
    const counts = {};
    for (const part of parts) {
        const found = [...out.querySelectorAll('.' + part)];
        counts[part] = found.length;
        for (const e of found) {
            const b = e.getBoundingClientRect();
            if (b.width === 0 || b.left < panel.left - 1 || b.right > panel.right + 1 || b.right > window.innerWidth)
                outside.push(`${part} ${Math.round(b.left)}..${Math.round(b.right)} of ${Math.round(panel.left)}..`
                             + `${Math.round(panel.right)} (window ${window.innerWidth})`);
        }
    }
    return {pageScroll: doc.scrollWidth - doc.clientWidth, scrolling, outside, counts};
}"""

# The number of lines a piece of text takes where the page shows it.
LINES_OF = """([selector, text]) => {
    for (const root of document.querySelectorAll(selector)) {
        const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            const at = node.textContent.indexOf(text);
            if (at < 0) continue;
            const range = document.createRange();
            range.setStart(node, at);
            range.setEnd(node, at + text.length);
            return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
        }
    }
    return 0;
}"""


def assert_results_fit(page, width: int, *, versions: int, overlays: int) -> None:
    seen = page.evaluate(FIT_PROBE, list(SHOWN_PARTS))
    assert seen["pageScroll"] <= 0, (width, seen)
    assert not seen["scrolling"], (width, seen["scrolling"])
    assert not seen["outside"], (width, seen["outside"])
    counts = seen["counts"]
    assert counts["yyai-given-image"] == 1 and counts["yyai-model-image"] == versions, (width, counts)
    assert counts["yyai-chart"] == counts["yyai-topk-table"] == versions, (width, counts)
    assert counts["yyai-gradcam-overlay"] == overlays, (width, counts)


@pytest.mark.parametrize("width", FIT_WIDTHS)
def test_an_ensembles_results_fit_common_widths(browser, server, width):
    """digits v2 (three members and the combined output), explained, then compared with v1:
    no sideways scroll anywhere, and every image, chart and table inside the window."""
    from playwright.sync_api import expect

    page, seen = watched_visit(browser, server, width=width, height=900)
    explain_digit_3(page)
    assert_results_fit(page, width, versions=1, overlays=2)  # cnn_a and cnn_wide
    shot(page, f"08-fit-{width}")

    select_option_starting(page, ".yyai-compare-select select", "v1")
    page.locator(".yyai-predict-button").click()
    expect(page.locator(".yyai-predict-message")).to_contain_text("1 image compared", timeout=WAIT_MS)
    explained = requests.post(f"{server.url}/predictions/digits/1", params={"explain": "gradcam"},
                              data=(SAMPLES / "digit-3.png").read_bytes(), timeout=60,
                              headers={**HEADERS, "Content-Type": "image/png"}).json()["predictions"][0]
    v1_overlays = sum(e["available"] for e in explained["explanations"].values())
    assert_results_fit(page, width, versions=2, overlays=2 + v1_overlays)
    # a member without Grad-CAM says why, and "2-D" stays on one line in its narrow cell
    expect(page.locator(".yyai-gradcam-na").first).to_contain_text("2-D")
    assert page.evaluate(LINES_OF, [".yyai-gradcam-na", "2-D"]) == 1
    shot(page, f"09-fit-compared-{width}")
    assert not seen.errors, seen.errors
    page.close()
