"""The Evaluate tab in a real browser: ``yyai serve`` + headless Chromium driven by Playwright.

One page visit: upload a labelled zip of about 50 MB (the bundled digits set in class
folders, padded with a 50 MB hidden file, so it crosses Tornado's default 10 MiB websocket
limit that the server raises on purpose), run an evaluation of v1 and v2, read the
scores off the page and check them against Keras run directly (tests/evalref.py), click
a confusion-matrix cell and see its images, see the disagreement gallery, download the
CSV, and promote the better version (checked over REST). The page must log no console
error. A screenshot goes to ``docs/evaluate.png`` for the README.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import zipfile
from pathlib import Path

import evalref
import numpy as np
import pytest
import requests
from evalref import expected_disagreements

from browser.test_dashboard_browser import (
    ARTIFACTS,
    DOCS,
    HEADERS,
    TOKEN,
    WAIT_MS,
    choose_files,
    open_dashboard,
    open_tab,
    watch,
)
from yyai_kernel.client import YyaiClient

PADDING_BYTES = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def store(server):
    return server.store


@pytest.fixture(scope="module")
def server(demo_dashboard):
    requests.post(f"{demo_dashboard.url}/models/digits/load", json={"version": 1}, headers=HEADERS,
                  timeout=120).raise_for_status()
    return demo_dashboard


def large_zip(ref: dict, path: Path) -> Path:
    """The 200 digits in class folders, and a hidden 50 MB file (ignored by the reader), stored."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for f, t in zip(ref["files"], ref["truth"]):
            zf.writestr(f"digits/{t}/{Path(f).name}", ref["data"][f])
        zf.writestr("digits/.padding", os.urandom(PADDING_BYTES))
    return path


def test_evaluate_tab_in_a_browser(browser, server, store, tmp_path):
    from playwright.sync_api import expect

    ref = evalref.digits_reference(store)
    zipped = large_zip(ref, tmp_path / "my-digits.zip")
    assert zipped.stat().st_size > PADDING_BYTES
    page, _ = open_dashboard(browser, server)
    seen = watch(page, server)
    open_tab(page, "Evaluate")
    page.select_option(".yyai-eval-model select", label="digits")
    page.locator(".yyai-eval-source button", has_text="Upload a zip").click()
    choose_files(page, ".yyai-eval-upload", [str(zipped)])
    expect(page.locator(".yyai-eval-upload-info")).to_contain_text("my-digits.zip", timeout=WAIT_MS)
    versions = page.locator(".yyai-eval-versions select")
    expect(versions.locator("option:checked")).to_have_count(2)  # every serving version, by default
    page.locator(".yyai-eval-run").click()

    message = page.locator(".yyai-eval-message .yyai-ok")
    expect(message).to_contain_text("v2 scored best", timeout=WAIT_MS)
    expect(message).to_contain_text(f"v1 and v2 disagree on {len(expected_disagreements(ref))} of 200 items")
    accuracy = {v: float((ref[v]["combined"].argmax(axis=1) == ref["truth"]).mean()) for v in (1, 2)}
    row = page.locator(".yyai-eval-scores tr", has_text="accuracy")
    expect(row).to_contain_text(f"{accuracy[1]:.4f}")
    expect(row).to_contain_text(f"{accuracy[2]:.4f}")

    # the shown matrix is the best version's (v2); its cells hold the reference's counts
    predicted = ref[2]["combined"].argmax(axis=1)
    counts = np.zeros((10, 10), dtype=int)
    np.add.at(counts, (ref["truth"], predicted), 1)
    t, p = next((t, p) for t in range(10) for p in range(10) if t != p and counts[t, p])
    cell = page.locator(f".yyai-cm-{t}-{p}")
    expect(cell).to_have_text(str(counts[t, p]))
    expect(page.locator(f".yyai-cm-{t}-{t}")).to_have_text(str(counts[t, t]))
    cell.click()
    expect(page.locator(".yyai-eval-cell")).to_contain_text(f"true {t}, predicted {p}", timeout=WAIT_MS)
    expect(page.locator(".yyai-eval-cell-item")).to_have_count(int(counts[t, p]))
    expect(page.locator(".yyai-eval-cell-item img")).to_have_count(int(counts[t, p]))
    expect(page.locator(".yyai-eval-disagreement")).to_have_count(len(expected_disagreements(ref)))

    with page.expect_download() as download:
        page.locator("a.yyai-download-link").click()
    assert download.value.suggested_filename == "digits-evaluation.csv"
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert sorted(r["file"].rsplit("/", 1)[-1] for r in rows) == sorted(Path(f).name for f in ref["files"])
    by_name = {Path(f).name: str(int(a)) for f, a in zip(ref["files"], predicted)}
    assert all(r["v2"] == by_name[r["file"].rsplit("/", 1)[-1]] for r in rows)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 1450})  # the page scrolls inside: show the galleries too
    page.screenshot(path=str(ARTIFACTS / "evaluate.png"), full_page=True)
    DOCS.mkdir(exist_ok=True)
    shutil.copyfile(ARTIFACTS / "evaluate.png", DOCS / "evaluate.png")

    # v2, the best, is the default already (the latest): nothing to promote (#23) ...
    promote = page.locator(".yyai-eval-promote")
    expect(promote).to_have_text("v2 is the default")
    expect(promote).to_be_disabled()
    # ... until an operator pins v1 (REST); the page's refresh then offers v2
    YyaiClient(server.url, TOKEN).set_default("digits", 1)
    expect(promote).to_have_text("Make v2 the default", timeout=WAIT_MS)
    promote.click()
    expect(page.locator(".yyai-eval-message .yyai-ok")).to_contain_text("v2 is the default: pinned", timeout=WAIT_MS)
    expect(promote).to_be_disabled(timeout=WAIT_MS)
    status = requests.get(f"{server.url}/models/digits", headers=HEADERS, timeout=30).json()
    assert status["default"] == 2 and status["pinned"] is True

    assert "Traceback" not in page.content()
    assert not seen.errors, seen.errors
    assert not seen.failed and not seen.external, (seen.failed, seen.external)
    page.close()
