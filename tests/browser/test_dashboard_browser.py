"""The dashboard in a real browser: ``yyai serve`` + headless Chromium driven by Playwright.

A real server process serves a temporary copy of the bundled demo archives; Debian's
``chromium`` (``make test`` installs it; Playwright's own browser download does not work
here) opens the page. One visit does what a person does: it meets yyai's login page with a
wrong token and signs in with the right one; uploads a digit image and reads the predicted
label and its top-k table off the page; picks a version that was never loaded, which loads
with a note; compares with a version an operator unloaded, gets REST's 503 message and a
Load button, and loads it; the two versions are compared on a bundled sample; uploads a
file that is not an image; then reloads a model, promotes a version (checked through
REST), installs a bad and a good archive, deletes the good one after a confirmation, reads
the models table, and follows the latest version again. The page must log no console error
and ask nothing of any host but the server: it works offline (Font Awesome comes from
Voila's bundle, not a CDN). It saves screenshots in ``tests/artifacts/`` and copies the
comparison view to ``docs/dashboard.png`` for the README.

It also measures page-visit-to-interactive time: from navigation start to the moment the
dashboard's first widget (the Predict button) is in the DOM, recorded in the page by a
MutationObserver. That is printed and written to ``tests/artifacts/dashboard-timing.json``
as a benchmark; no assertion depends on it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import requests
from builders import demo_store
from serving import start_server

from yyai_kernel.client import YyaiClient

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "model_archives"
SAMPLES = DEMO / "samples"
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS = ROOT / "docs"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "browser-test-token"
HEADERS = {"Authorization": f"token {TOKEN}"}
WAIT_MS = 90_000  # generous: model loads share two cores with everything else

# `make test` installs Debian's chromium; a missing browser or archive fails loudly.
assert CHROMIUM.exists(), "Debian's chromium is missing: apt-get install -y chromium (make test does it)"
assert (DEMO / "digits-2.yyar").exists(), "the demo archives are missing"

# Recorded in the page: when the first dashboard widget appears (ms since navigation start).
# Classes too: a widget's class can arrive after its node is in the DOM.
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
    .observe(document, {childList: true, subtree: true, attributes: true, attributeFilter: ['class']});
})();
"""


def expected_label(archive: str, sample: str) -> str:
    expected = json.loads((SAMPLES / "expected.json").read_text())
    return str(int(np.argmax(expected[archive][sample]["combined"])))


def demo_server(tmp_path_factory):
    """A server over a copy of the demo archives, stopped cleanly at the end (a fixture's body): the
    browser package's ``demo_dashboard``, shared by its modules."""
    store = demo_store(tmp_path_factory.mktemp("browser-store"))
    srv = start_server(store, tmp_path_factory.mktemp("browser-work"), token=TOKEN, dashboard=True,
                       args=["--YyaiServer.kernel_closed_grace=3"])  # test_dashboard_kernels waits on it
    srv.store = store
    yield srv
    assert srv.stop() == 0


def headless_chromium():
    """Debian's chromium driven by Playwright (a fixture's body)."""
    import playwright.sync_api as playwright_api
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(demo_dashboard):
    return demo_dashboard


def watch(page, server) -> SimpleNamespace:
    """What a page logs and asks for: console errors, failed requests, requests off this server."""
    seen = SimpleNamespace(errors=[], failed=[], external=[])
    page.on("console", lambda m: seen.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: seen.errors.append(str(error)))
    page.on("requestfailed", lambda r: seen.failed.append(r.url))
    page.on("request", lambda r: seen.external.append(r.url)
            if r.url.startswith(("http:", "https:")) and not r.url.startswith(server.url) else None)
    return seen


def interactive(page) -> float:
    """Wait for the dashboard's widgets; the visit-to-interactive time in ms."""
    from playwright.sync_api import expect

    expect(page.locator(".yyai-predict-button")).to_be_enabled(timeout=WAIT_MS)
    expect(page.locator(".yyai-model-select select option")).not_to_have_count(0, timeout=WAIT_MS)
    return page.evaluate("window.__yyaiInteractive")


def watched_visit(browser, server, width: int = 1400, height: int = 1000):
    """A fresh page on the dashboard, watched from its first request (:func:`watch`), once it is
    interactive; ``(page, seen)``."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.add_init_script(INTERACTIVE_PROBE)
    seen = watch(page, server)
    page.goto(f"{server.url}/?token={TOKEN}", wait_until="commit")
    interactive(page)
    return page, seen


def open_dashboard(browser, server):
    """A fresh page on the dashboard (token in the URL), and its visit-to-interactive time in ms."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(INTERACTIVE_PROBE)
    page.goto(f"{server.url}/?token={TOKEN}", wait_until="commit")
    return page, interactive(page)


def sign_in(browser, server):
    """A fresh page that signs in the way a person does: a wrong token, yyai's login page, the right one."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(INTERACTIVE_PROBE)
    seen = watch(page, server)
    page.goto(f"{server.url}/?token=not-the-token")
    login = page.locator(".yyai-login")
    expect(login).to_contain_text("Paste the token that yyai serve printed")
    expect(login).to_contain_text("That token was not accepted")
    assert "jupyter server list" not in page.content()
    page.fill(".yyai-login input[name=token]", TOKEN)
    page.locator(".yyai-login button[type=submit]").click()
    return page, interactive(page), seen


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def select_option_starting(page, selector: str, prefix: str) -> None:
    """Pick the option of a dropdown whose label starts with ``prefix`` (labels carry states)."""
    select = page.locator(selector)
    labels = select.locator("option").all_inner_texts()
    matches = [i for i, label in enumerate(labels) if label.replace("\xa0", " ").startswith(prefix)]
    assert matches, f"no option starting with {prefix!r} in {labels}"
    select.select_option(index=matches[0])  # by place: a refresh may change the label's state meanwhile


def choose_files(page, selector: str, files: list) -> None:
    """Click a FileUpload button and answer its file chooser (the input exists only on click)."""
    with page.expect_file_chooser() as chooser:
        page.locator(selector).click()
    chooser.value.set_files(files)


def open_tab(page, title: str) -> None:
    page.locator(".yyai-tabs .lm-TabBar-tab", has_text=title).click()


def choose_source(page, label: str) -> None:
    page.locator(".yyai-source button", has_text=label).click()


def preview(page, server, tmp_path) -> Path:
    """Predict, a version loaded on first use, an unloaded one loaded by its button, compare, and a
    file that is not an image."""
    from playwright.sync_api import expect

    # the empty panel says what to do; only the picked source's control shows
    expect(page.locator(".yyai-empty-results")).to_contain_text("then press Predict")
    expect(page.locator(".yyai-sample-select")).to_be_visible()
    expect(page.locator(".yyai-image-upload")).to_be_hidden()

    # 1. upload a digit image, read the predicted label off the page, with its top-k table
    page.select_option(".yyai-model-select select", label="digits")
    expect(page.locator(".yyai-version-select select")).to_contain_text("v2 (default, ready)", timeout=WAIT_MS)
    choose_source(page, "My images")
    expect(page.locator(".yyai-sample-select")).to_be_hidden()
    choose_files(page, ".yyai-image-upload", [str(SAMPLES / "digit-3.png")])
    expect(page.locator(".yyai-upload-info")).to_contain_text("digit-3.png", timeout=WAIT_MS)
    page.locator(".yyai-predict-button").click()
    top = page.locator(".yyai-top-label[data-version='2']")
    expect(top).to_have_text(expected_label("digits-2.yyar", "digit-3.png"), timeout=WAIT_MS)
    expect(page.locator(".yyai-predict-message")).to_contain_text("1 image predicted", timeout=WAIT_MS)
    expect(page.locator(".yyai-empty-results")).to_be_hidden()
    for part in ("yyai-given-image", "yyai-model-image", "yyai-chart", "yyai-topk-table"):
        expect(page.locator(f".{part}")).to_have_count(1)
    shot(page, "02-predicted")

    # 2. v1 was never loaded: Predict loads it first and says so (#23); the picker then says "ready"
    select_option_starting(page, ".yyai-version-select select", "v1 (available)")
    load = page.locator(".yyai-preview-load-button")
    expect(load).to_be_hidden()
    page.locator(".yyai-predict-button").click()
    expect(page.locator(".yyai-top-label[data-version='1']")).to_have_text(
        expected_label("digits-1.yyar", "digit-3.png"), timeout=WAIT_MS)
    expect(page.locator(".yyai-predict-message .yyai-ok")).to_contain_text("Loaded digits v1 in")
    expect(page.locator(".yyai-version-select select")).to_contain_text("v1 (ready)", timeout=WAIT_MS)

    # 3. an operator unloads v1 (REST): picking it to compare offers Load at once, and Predict never
    #    loads it behind the operator's back (#12); the button loads it and compares, on a bundled
    #    sample the versions disagree on
    choose_source(page, "Bundled sample")
    expect(page.locator(".yyai-image-upload")).to_be_hidden()
    select_option_starting(page, ".yyai-version-select select", "v2")
    page.locator(".yyai-sample-select select").select_option(label="digit-8-disputed.png")
    YyaiClient(server.url, TOKEN).unload("digits", 1)
    expect(page.locator(".yyai-compare-select select")).to_contain_text("v1 (unloaded)", timeout=WAIT_MS)
    select_option_starting(page, ".yyai-compare-select select", "v1 (unloaded)")
    expect(load).to_have_text("Load v1", timeout=WAIT_MS)
    expect(page.locator(".yyai-predict-message .yyai-warn")).to_contain_text("v1 is unloaded: press Load v1")
    expect(page.locator(".yyai-predict-button")).to_contain_text("Compare v2 / v1")
    page.locator(".yyai-predict-button").click()
    expect(page.locator(".yyai-predict-message .yyai-error")).to_contain_text(
        "version 1 was unloaded", timeout=WAIT_MS)
    expect(page.locator(".yyai-result")).to_have_count(0)
    expect(load).to_be_visible()
    load.click()
    expect(page.locator(".yyai-summary")).to_contain_text("the versions disagree", timeout=WAIT_MS)
    expect(page.locator(".yyai-predict-message")).to_contain_text("Loaded digits v1")
    expect(load).to_be_hidden()
    expect(page.locator(".yyai-top-label[data-version='1']")).to_have_text(
        expected_label("digits-1.yyar", "digit-8-disputed.png"))
    expect(page.locator(".yyai-top-label[data-version='2']")).to_have_text(
        expected_label("digits-2.yyar", "digit-8-disputed.png"))
    for version in (1, 2):
        expect(page.locator(f".yyai-result-v{version} .yyai-chart")).to_have_count(1)
        expect(page.locator(f".yyai-result-v{version} .yyai-topk-table")).to_have_count(1)
    compare_shot = shot(page, "03-compared")

    # 4. a file that is not an image: named in the message, and no stale result stays
    notes = tmp_path / "notes.png"
    notes.write_text("these are notes, not a picture\n")
    choose_source(page, "My images")
    choose_files(page, ".yyai-image-upload", [str(notes)])
    expect(page.locator(".yyai-upload-info")).to_contain_text("notes.png", timeout=WAIT_MS)
    page.locator(".yyai-predict-button").click()
    error = page.locator(".yyai-predict-message .yyai-error")
    expect(error).to_contain_text("notes.png", timeout=WAIT_MS)
    expect(error).to_contain_text("not an image")
    assert "body" not in error.inner_text().lower()
    expect(page.locator(".yyai-result")).to_have_count(0)
    expect(page.locator(".yyai-empty-results")).to_be_visible()
    return compare_shot


def manage(page, server, tmp_path) -> None:
    """Reload, promote (the button stops standing out), a bad and a good install, delete with a confirmation."""
    from builders import pack_models
    from playwright.sync_api import expect

    open_tab(page, "Manage")
    page.select_option(".yyai-manage-model select", label="digits")
    select_option_starting(page, ".yyai-manage-version select", "v1")
    message = page.locator(".yyai-manage-message .yyai-ok")
    page.locator(".yyai-reload-button").click()
    expect(message).to_contain_text("Reloaded digits", timeout=WAIT_MS)
    expect(message).to_contain_text("v2 is the default: the latest version")
    expect(page.locator(".yyai-load-button i")).not_to_have_class(re.compile("fa-upload"))
    default = page.locator(".yyai-default-button")
    expect(default).to_have_class(re.compile("mod-warning"))
    default.click()
    expect(message).to_contain_text("v1 is now the default of digits", timeout=WAIT_MS)
    expect(default).not_to_have_class(re.compile("mod-warning"), timeout=WAIT_MS)
    expect(default).to_be_disabled()
    expect(page.locator(".yyai-follow-latest input")).not_to_be_checked()
    status = requests.get(f"{server.url}/models/digits", headers=HEADERS, timeout=30).json()
    assert status["default"] == 1 and status["pinned"] is True
    reply = requests.post(f"{server.url}/predictions/digits", data=(SAMPLES / "digit-3.png").read_bytes(),
                          headers={**HEADERS, "Content-Type": "image/png"}, timeout=30).json()
    assert reply["version"] == 1  # REST clients now get v1

    # a bad upload (a text file named .yyar), then a real archive, which ends up selected
    bad = tmp_path / "not-a-model.yyar"
    bad.write_text("this is a text file, not a model archive\n")
    choose_files(page, ".yyai-archive-upload", [str(bad)])
    installed = page.locator(".yyai-archive-message")
    expect(installed.locator(".yyai-error")).to_contain_text("not-a-model.yyar was not installed", timeout=WAIT_MS)
    expect(installed.locator(".yyai-error")).to_contain_text("not a zip archive")
    archive, _ = pack_models(tmp_path, "tiny", 1, [3])
    choose_files(page, ".yyai-archive-upload", [str(archive)])
    expect(installed.locator(".yyai-ok")).to_contain_text("Installed tiny v1", timeout=WAIT_MS)
    expect(installed.locator(".yyai-ok")).to_contain_text("v1 is the default: the latest version")
    expect(page.locator(".yyai-manage-model select")).to_have_value("tiny")
    shot(page, "04-manage")

    page.locator(".yyai-delete-button").click()
    confirm = page.locator(".yyai-confirm")
    expect(confirm).to_contain_text("Delete tiny v1 from the store?")
    assert requests.get(f"{server.url}/models/tiny", headers=HEADERS, timeout=30).status_code == 200
    confirm.locator(".yyai-confirm-delete").click()
    expect(message).to_contain_text("Deleted tiny v1; tiny has no versions left", timeout=WAIT_MS)
    expect(confirm).to_be_hidden()
    assert requests.get(f"{server.url}/models/tiny", headers=HEADERS, timeout=30).status_code == 404


def test_dashboard_in_a_browser(browser, server, tmp_path, capsys):
    from playwright.sync_api import expect

    page, first_ms, seen = sign_in(browser, server)
    assert "://cdn." not in page.content()
    shot(page, "01-opened")
    compare_shot = preview(page, server, tmp_path)
    manage(page, server, tmp_path)

    # the models table and the live plot; the background refresh brings in the REST request
    open_tab(page, "Models")
    expect(page.locator(".yyai-refresh-note")).to_contain_text("refresh every")
    assert "refresh" not in page.locator(".yyai-status").inner_text().lower()
    v1_row = page.locator(".yyai-models-table tr[data-model='digits'][data-version='1']")
    expect(v1_row).to_contain_text("default (pinned)", timeout=WAIT_MS)
    digits = requests.get(f"{server.url}/models/digits", headers=HEADERS, timeout=30).json()
    served = digits["versions"]["1"]["requests"]
    assert served == 3  # v1 answered: the prediction that loaded it, the comparison after Load, the REST call
    expect(v1_row.locator("td.yyai-requests-cell")).to_have_text(str(served), timeout=WAIT_MS)
    expect(page.locator(".yyai-activity-plot")).to_be_visible(timeout=WAIT_MS)
    shot(page, "05-models")

    # follow the latest version again: the pin is gone, v2 answers
    open_tab(page, "Manage")
    page.select_option(".yyai-manage-model select", label="digits")
    follow = page.locator(".yyai-follow-latest input")
    expect(follow).not_to_be_checked(timeout=WAIT_MS)  # digits is pinned
    follow.check()
    expect(page.locator(".yyai-manage-message .yyai-ok")).to_contain_text(
        "digits follows its latest version again; v2 is the default: the latest version", timeout=WAIT_MS)
    status = requests.get(f"{server.url}/models/digits", headers=HEADERS, timeout=30).json()
    assert status["default"] == 2 and status["pinned"] is False

    assert "Traceback" not in page.content()
    assert not seen.errors, seen.errors  # no console errors: nothing failed to load, offline included
    assert not seen.failed and not seen.external, (seen.failed, seen.external)
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


def test_login_page_without_a_token(server):
    """``/`` without the token: yyai's page (no Jupyter instructions), self-contained, with the form."""
    reply = requests.get(f"{server.url}/", timeout=30)
    assert reply.status_code == 200 and reply.url.startswith(f"{server.url}/login?next=")
    assert "Paste the token that <code>yyai serve</code> printed" in reply.text
    assert "jupyter server list" not in reply.text and "not accepted" not in reply.text
    assert '<form method="get" action="/">' in reply.text and 'name="token"' in reply.text
    assert TOKEN not in reply.text
    assert not re.search(r"(src|href)=\"https?://", reply.text)  # nothing to fetch from elsewhere
    elsewhere = requests.get(f"{server.url}/login", params={"next": "https://evil.example/"}, timeout=30)
    assert '<form method="get" action="/">' in elsewhere.text  # the form never sends a token off the server


def test_sample_routes(server):
    """The REST side of "pick a bundled sample": list, bytes, unknown names, auth."""
    headers = HEADERS
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


def test_rollout_tab_in_a_browser(browser, server):
    """A 100% shadow set from the Rollout tab; REST traffic; agreement and the disagreeing image appear.

    digits v2 (the default) and v1 agree on every bundled digit but digit-8-disputed.png, so
    after one request per digit sample the tab must show 12 of 13 rows agreeing and that image.
    """
    from playwright.sync_api import expect

    page, _ = open_dashboard(browser, server)
    seen = watch(page, server)
    open_tab(page, "Rollout")
    page.select_option(".yyai-rollout-model select", label="digits")
    expect(page.locator(".yyai-rollout-policy")).to_contain_text("no traffic policy", timeout=WAIT_MS)
    page.select_option(".yyai-rollout-candidate select", label="v1")
    readout = page.locator(".yyai-shadow-slider .widget-readout")
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type("100")
    page.keyboard.press("Enter")
    expect(readout).to_have_text("100")
    page.locator(".yyai-rollout-apply").click()
    message = page.locator(".yyai-rollout-message .yyai-ok")
    expect(message).to_contain_text("digits: shadow v1 at 100%", timeout=WAIT_MS)
    policy = requests.get(f"{server.url}/models/digits/traffic", headers=HEADERS, timeout=30).json()["policy"]
    assert policy == {"shadow": {"version": 1, "percent": 100.0}, "sticky": False}

    samples = sorted(SAMPLES.glob("digit-*.png"))
    for path in samples:  # real traffic, from a REST client: every reply is v2's
        reply = requests.post(f"{server.url}/predictions/digits", data=path.read_bytes(),
                              headers={**HEADERS, "Content-Type": "image/png"}, timeout=30).json()
        assert reply["version"] == 2
    figures = page.locator(".yyai-rollout-figures")
    expect(figures).to_contain_text(f"of {len(samples)} rows", timeout=WAIT_MS)
    expect(page.locator(".yyai-agreement")).to_have_text(f"{100 * (len(samples) - 1) / len(samples):.1f}%")
    expect(figures).to_contain_text("Latency p50 / p99")
    cards = page.locator(".yyai-disagreement")
    expect(cards).to_have_count(1, timeout=WAIT_MS)
    expect(cards.locator("img")).to_have_count(1)
    expect(cards).to_contain_text("sent v2: 8")
    expect(cards).to_contain_text("shadow v1: 5")
    shot(page, "06-rollout")

    page.locator(".yyai-rollback-button").click()
    expect(message).to_contain_text("Rolled back: v2 answers every request to digits again", timeout=WAIT_MS)
    assert requests.get(f"{server.url}/models/digits", headers=HEADERS, timeout=30).json()["traffic"] is None
    assert not seen.errors, seen.errors
    page.close()


# What a button shows: its label cut short (text-overflow) or not, and the text a person reads.
BUTTON_TEXT = """(button) => {
    const range = document.createRange();
    range.selectNodeContents(button);
    const after = getComputedStyle(button, '::after').content;
    const texts = [...button.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    const drawn = texts.filter((n) => { const r = document.createRange(); r.selectNode(n);
                                        return r.getBoundingClientRect().width > 0; });
    return {cut: button.scrollWidth > button.clientWidth + 1,
            reads: (drawn.map((n) => n.textContent.trim()).join(' ')
                    + (after && after !== 'none' ? after.replace(/^"|"$/g, '') : '')).trim()};
}"""


def test_buttons_read_whole_in_a_browser(browser, server):
    """#23: the "Bundled …" toggle was cut short, and file buttons read "Install .yyar (0)"."""
    from playwright.sync_api import expect

    page, _ = open_dashboard(browser, server)
    seen = watch(page, server)
    page.select_option(".yyai-model-select select", label="digits")
    sources = page.locator(".yyai-source button")
    expect(sources).to_have_count(3, timeout=WAIT_MS)  # digits can be drawn: "Draw" joins
    shown = [button.evaluate(BUTTON_TEXT) for button in sources.all()]
    assert [s["reads"] for s in shown] == ["Bundled sample", "My images", "Draw"], shown
    assert not any(s["cut"] for s in shown), shown
    tops = {round(button.bounding_box()["y"]) for button in sources.all()}
    assert len(tops) == 1, tops  # one row
    choose_source(page, "My images")
    assert page.locator(".yyai-image-upload").evaluate(BUTTON_TEXT) == {"cut": False, "reads": "Upload images"}

    open_tab(page, "Manage")
    install = page.locator(".yyai-archive-upload")
    expect(install).to_be_visible(timeout=WAIT_MS)
    assert install.evaluate(BUTTON_TEXT) == {"cut": False, "reads": "Install .yyar"}

    open_tab(page, "Evaluate")
    evaluate_sources = page.locator(".yyai-eval-source button")
    expect(evaluate_sources).to_have_count(2, timeout=WAIT_MS)
    assert [b.evaluate(BUTTON_TEXT)["reads"] for b in evaluate_sources.all()] == ["Bundled set", "Upload a zip"]
    expect(page.locator(".yyai-eval-model select")).to_have_value("digits")  # it follows Preview's model
    expect(page.locator(".yyai-eval-upload-help")).to_be_hidden()  # the zip format, for a zip only
    expect(page.locator(".yyai-eval-versions-hint")).to_contain_text("Ctrl-click")
    evaluate_sources.nth(1).click()
    expect(page.locator(".yyai-eval-upload-help")).to_be_visible()
    assert page.locator(".yyai-eval-upload").evaluate(BUTTON_TEXT) == {"cut": False, "reads": "Upload a zip"}
    shot(page, "10-buttons")
    assert not seen.errors, seen.errors
    page.close()
