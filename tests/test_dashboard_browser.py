"""The dashboard in a real browser: ``yyai serve`` + headless Chromium driven by Playwright.

A real server process serves a temporary copy of the bundled demo archives; Debian's
``chromium`` (``make test`` installs it; Playwright's own browser download does not work
here) opens the page with the token. The test uploads a digit image and reads the
predicted label off the page, switches version, compares two versions on a bundled
sample, reloads a model, promotes a version and checks through REST that the promotion
took effect, and uploads a text file as a ``.yyar`` and reads the error message. It saves
screenshots in ``tests/artifacts/`` and copies the comparison view to ``docs/dashboard.png``
for the README.

It also measures page-visit-to-interactive time: from navigation start to the moment the
dashboard's first widget (the Predict button) is in the DOM, recorded in the page by a
MutationObserver. That is printed and written to ``tests/artifacts/dashboard-timing.json``
as a benchmark; no assertion depends on it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from serving import start_server

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "model_archives"
SAMPLES = DEMO / "samples"
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS = ROOT / "docs"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "browser-test-token"
WAIT_MS = 90_000  # generous: model loads share two cores with everything else

# `make test` installs Debian's chromium; a missing browser or archive fails loudly.
assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install -y chromium (make test does it)"
assert (DEMO / "digits-2.yyar").exists(), "the demo archives are missing"

# Recorded in the page: when the first dashboard widget appears (ms since navigation start).
INTERACTIVE_PROBE = """
(() => {
  const mark = () => {
    if (window.__yyaiInteractive === undefined && document.querySelector('.yyai-predict-button')) {
      window.__yyaiInteractive = performance.now();
      return true;
    }
    return false;
  };
  new MutationObserver((_, observer) => { if (mark()) observer.disconnect(); })
    .observe(document, {childList: true, subtree: true});
})();
"""


def expected_label(archive: str, sample: str) -> str:
    expected = json.loads((SAMPLES / "expected.json").read_text())
    return str(int(np.argmax(expected[archive][sample]["combined"])))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("browser-store")
    for archive in DEMO.glob("*.yyar"):
        shutil.copyfile(archive, store / archive.name)
    srv = start_server(store, tmp_path_factory.mktemp("browser-work"), token=TOKEN)
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def browser():
    import playwright.sync_api as playwright_api
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def open_dashboard(browser, server):
    """A fresh page on the dashboard, and its visit-to-interactive time in ms."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(INTERACTIVE_PROBE)
    page.goto(f"{server.url}/?token={TOKEN}", wait_until="commit")
    button = page.locator(".yyai-predict-button")
    expect(button).to_be_enabled(timeout=WAIT_MS)
    interactive = page.evaluate("window.__yyaiInteractive")
    expect(page.locator(".yyai-model-select select option")).not_to_have_count(0, timeout=WAIT_MS)
    return page, interactive


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def select_option_starting(page, selector: str, prefix: str) -> None:
    """Pick the option of a dropdown whose label starts with ``prefix`` (labels carry states)."""
    select = page.locator(selector)
    labels = select.locator("option").all_inner_texts()
    matches = [label for label in labels if label.startswith(prefix)]
    assert matches, f"no option starting with {prefix!r} in {labels}"
    select.select_option(label=matches[0])


def choose_files(page, selector: str, files: list) -> None:
    """Click a FileUpload button and answer its file chooser (the input exists only on click)."""
    with page.expect_file_chooser() as chooser:
        page.locator(selector).click()
    chooser.value.set_files(files)


def open_tab(page, title: str) -> None:
    page.locator(".yyai-tabs .lm-TabBar-tab", has_text=title).click()


def test_dashboard_in_a_browser(browser, server, tmp_path, capsys):
    from playwright.sync_api import expect

    page, first_ms = open_dashboard(browser, server)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    shot(page, "01-opened")

    # 1. upload a digit image, read the predicted label off the page
    page.select_option(".yyai-model-select select", label="digits")
    expect(page.locator(".yyai-version-select select")).to_contain_text("v2 (default, ready)", timeout=WAIT_MS)
    choose_files(page, ".yyai-image-upload", [str(SAMPLES / "digit-3.png")])
    expect(page.locator(".yyai-upload-info")).to_contain_text("digit-3.png", timeout=WAIT_MS)
    page.locator(".yyai-predict-button").click()
    top = page.locator(".yyai-top-label[data-version='2']")
    expect(top).to_have_text(expected_label("digits-2.yyar", "digit-3.png"), timeout=WAIT_MS)
    expect(page.locator(".yyai-predict-message")).to_contain_text("1 image predicted", timeout=WAIT_MS)
    expect(page.locator(".yyai-given-image")).to_have_count(1)
    expect(page.locator(".yyai-model-image")).to_have_count(1)
    expect(page.locator(".yyai-chart")).to_have_count(1)
    shot(page, "02-predicted")

    # 2. switch version: v1 (not loaded yet: the dashboard loads it first)
    select_option_starting(page, ".yyai-version-select select", "v1")
    page.locator(".yyai-predict-button").click()
    expect(page.locator(".yyai-top-label[data-version='1']")).to_have_text(
        expected_label("digits-1.yyar", "digit-3.png"), timeout=WAIT_MS)

    # 3. compare two versions side by side, on a bundled sample they disagree on
    select_option_starting(page, ".yyai-version-select select", "v2")
    page.locator(".yyai-sample-select select").select_option(label="digit-8-disputed.png")
    select_option_starting(page, ".yyai-compare-select select", "v1")
    expect(page.locator(".yyai-predict-button")).to_contain_text("Compare v2 / v1", timeout=WAIT_MS)
    page.locator(".yyai-predict-button").click()
    expect(page.locator(".yyai-summary")).to_contain_text("the versions disagree", timeout=WAIT_MS)
    expect(page.locator(".yyai-top-label[data-version='1']")).to_have_text(
        expected_label("digits-1.yyar", "digit-8-disputed.png"))
    expect(page.locator(".yyai-top-label[data-version='2']")).to_have_text(
        expected_label("digits-2.yyar", "digit-8-disputed.png"))
    expect(page.locator(".yyai-result-v1 .yyai-chart")).to_have_count(1)
    expect(page.locator(".yyai-result-v2 .yyai-chart")).to_have_count(1)
    compare_shot = shot(page, "03-compared")

    # 4. reload a model, then promote v1 and check through REST
    open_tab(page, "Manage")
    page.select_option(".yyai-manage-model select", label="digits")
    select_option_starting(page, ".yyai-manage-version select", "v1")
    page.locator(".yyai-reload-button").click()
    expect(page.locator(".yyai-manage-message .yyai-ok")).to_contain_text("Reloaded digits", timeout=WAIT_MS)
    page.locator(".yyai-default-button").click()
    expect(page.locator(".yyai-manage-message .yyai-ok")).to_contain_text(
        "v1 is now the default of digits", timeout=WAIT_MS)
    headers = {"Authorization": f"token {TOKEN}"}
    status = requests.get(f"{server.url}/models/digits", headers=headers, timeout=30).json()
    assert status["default"] == 1 and status["pinned"] is True
    reply = requests.post(f"{server.url}/predictions/digits", data=(SAMPLES / "digit-3.png").read_bytes(),
                          headers={**headers, "Content-Type": "image/png"}, timeout=30).json()
    assert reply["version"] == 1  # REST clients now get v1

    # 5. a bad upload: a text file named .yyar
    bad = tmp_path / "not-a-model.yyar"
    bad.write_text("this is a text file, not a model archive\n")
    choose_files(page, ".yyai-archive-upload", [str(bad)])
    message = page.locator(".yyai-archive-message .yyai-error")
    expect(message).to_contain_text("not-a-model.yyar was not installed", timeout=WAIT_MS)
    expect(message).to_contain_text("not a zip archive")
    shot(page, "04-manage")

    # 6. the models table and the live plot; the background refresh brings in the REST request
    open_tab(page, "Models")
    v1_row = page.locator(".yyai-models-table tr[data-model='digits'][data-version='1']")
    expect(v1_row).to_contain_text("default (pinned)", timeout=WAIT_MS)
    digits = requests.get(f"{server.url}/models/digits", headers=headers, timeout=30).json()
    served = digits["versions"]["1"]["requests"]
    assert served == 3  # v1 answered: the version switch, the comparison and the REST call
    expect(v1_row.locator("td").nth(5)).to_have_text(str(served), timeout=WAIT_MS)
    expect(page.locator(".yyai-activity-plot")).to_be_visible(timeout=WAIT_MS)
    shot(page, "05-models")

    assert "Traceback" not in page.content()
    assert not errors, errors
    page.close()

    # a second visit: the server and the browser are warm
    page, second_ms = open_dashboard(browser, server)
    page.close()

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    timing = {"first_visit_ms": round(first_ms), "second_visit_ms": round(second_ms)}
    (ARTIFACTS / "dashboard-timing.json").write_text(json.dumps(timing) + "\n")
    DOCS.mkdir(exist_ok=True)
    shutil.copyfile(compare_shot, DOCS / "dashboard.png")
    with capsys.disabled():
        print(f"\n[bench] dashboard page visit to interactive: first visit {first_ms:.0f} ms, "
              f"second visit {second_ms:.0f} ms (navigation start to the first widget in the DOM)")


def test_sample_routes(server):
    """The REST side of "pick a bundled sample": list, bytes, unknown names, auth."""
    headers = {"Authorization": f"token {TOKEN}"}
    listed = requests.get(f"{server.url}/models/digits/samples", params={"version": 1}, headers=headers, timeout=30)
    assert listed.status_code == 200
    body = listed.json()
    assert body["name"] == "digits" and body["version"] == 1 and "samples/digit-3.png" in body["samples"]
    one = requests.get(f"{server.url}/models/digits/samples/samples%2Fdigit-3.png", headers=headers, timeout=30)
    assert one.status_code == 200 and one.headers["Content-Type"] == "image/png"
    assert one.content == (SAMPLES / "digit-3.png").read_bytes()
    for name in ("nothing.png", "..%2F..%2Fetc%2Fpasswd", "MANIFEST.json"):
        missing = requests.get(f"{server.url}/models/digits/samples/{name}", headers=headers, timeout=30)
        assert missing.status_code == 404 and "error" in missing.json()
    assert requests.get(f"{server.url}/models/digits/samples", timeout=30).status_code == 401
