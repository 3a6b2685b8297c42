"""Preview for models that take no image, in a real browser (``yyai serve`` + headless Chromium).

A server of its own over the wine demo (versions 1 and 2) and two models packed here
(``builders.table_models``): ``churn``, a table with categories, and ``signal``, a 1-D
tensor. A person fills the wine form (pre-filled from the bundled sample's first row),
predicts, ticks Explain and sees each member's integrated gradients as a bar chart (that
view is copied to ``docs/tabular-preview.png`` for the README); uploads a CSV of rows and
compares two versions on them, the results a table beside the inputs; picks a category in
the churn form; and uploads a ``.npy`` for the tensor model, drawn as a line plot. Every
answer the page shows is the answer REST gives for the same record, CSV or array.
"""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
import requests
from builders import DEMO, table_models
from serving import start_server

from browser.test_dashboard_browser import (
    DOCS,
    HEADERS,
    TOKEN,
    WAIT_MS,
    choose_files,
    choose_source,
    shot,
    watched_visit,
)

WINE_ROWS = (DEMO / "samples" / "wine-rows.csv").read_text()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("table-browser-store")
    for name in ("wine-1.yyar", "wine-2.yyar"):
        shutil.copyfile(DEMO / name, store / name)
    built = table_models(tmp_path_factory.mktemp("table-browser-models"))
    for name in ("churn", "signal"):
        shutil.copyfile(built[name][0], store / built[name][0].name)
    srv = start_server(store, tmp_path_factory.mktemp("table-browser-work"), token=TOKEN, dashboard=True)
    yield srv
    assert srv.stop() == 0


def rest(server, path: str, **kwargs) -> list[dict]:
    reply = requests.post(f"{server.url}{path}", headers={**HEADERS, **kwargs.pop("headers", {})}, timeout=60,
                          **kwargs)
    assert reply.status_code == 200, reply.text
    return reply.json()["predictions"]


def answer_of(row: dict) -> str:
    """How the page writes a row's answer: the top label, or a regression's values."""
    if row["top"] is not None:
        return row["top"]
    values = row["combined"]
    return ", ".join(f"{k} {v}" for k, v in values.items())


def test_table_and_tensor_models_in_preview(browser, server, tmp_path):
    from playwright.sync_api import expect

    page, seen = watched_visit(browser, server)

    # 1. the wine form, pre-filled from the bundled sample's first row; a person changes two fields
    page.select_option(".yyai-model-select select", label="wine")
    expect(page.locator(".yyai-version-select select")).to_contain_text("v2 (default, ready)", timeout=WAIT_MS)
    expect(page.locator(".yyai-source button.mod-active")).to_have_text("Form", timeout=WAIT_MS)
    header, first = WINE_ROWS.splitlines()[:2]
    features = header.split(",")
    record = dict(zip(features, map(float, first.split(","))))
    expect(page.locator(".yyai-feature-0 input")).to_have_value(str(record["alcohol"]), timeout=WAIT_MS)
    record.update(alcohol=12.5, proline=520.0)
    for name in ("alcohol", "proline"):
        field = page.locator(f".yyai-feature-{features.index(name)} input")
        field.fill(str(record[name]))
        field.press("Tab")
    page.locator(".yyai-predict-button").click()
    expect(page.locator(".yyai-predict-message")).to_contain_text("1 row predicted", timeout=WAIT_MS)
    by_rest = rest(server, "/predictions/wine", json=record)[0]
    expect(page.locator(".yyai-row-answer[data-version='2'][data-row='0']")).to_have_text(by_rest["top"])
    expect(page.locator(".yyai-top-label[data-version='2']")).to_have_text(by_rest["top"])

    # 2. explained: a bar chart of each feature's attribution per member
    page.locator(".yyai-explain-toggle input").check()
    expect(page.locator(".yyai-attributions")).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator(".yyai-attributions")).to_contain_text("integrated gradients")
    DOCS.mkdir(exist_ok=True)
    shutil.copyfile(shot(page, "07-tabular"), DOCS / "tabular-preview.png")
    page.locator(".yyai-explain-toggle input").uncheck()
    expect(page.locator(".yyai-attributions")).to_have_count(0, timeout=WAIT_MS)

    # 3. a CSV of rows, compared on two versions (v1 loads on first use): a table beside the inputs
    rows_csv = tmp_path / "rows.csv"
    rows_csv.write_text(WINE_ROWS)
    choose_source(page, "My rows (CSV)")
    expect(page.locator(".yyai-feature-form")).to_be_hidden()
    choose_files(page, ".yyai-rows-upload", [str(rows_csv)])
    expect(page.locator(".yyai-upload-info")).to_contain_text("rows.csv", timeout=WAIT_MS)
    page.select_option(".yyai-compare-select select", index=1)  # v1
    page.locator(".yyai-predict-button").click()
    expect(page.locator(".yyai-predict-message")).to_contain_text("6 rows compared", timeout=WAIT_MS)
    table = page.locator(".yyai-rows-table")
    expect(table).to_contain_text("alcohol")
    for version in (1, 2):
        answers = [r["top"] for r in rest(server, f"/predictions/wine/{version}", data=WINE_ROWS,
                                          headers={"Content-Type": "text/csv"})]
        shown = table.locator(f".yyai-row-answer[data-version='{version}']")
        expect(shown).to_have_text(answers)
    page.select_option(".yyai-compare-select select", index=0)

    # 4. a category picked in the churn form
    page.select_option(".yyai-model-select select", label="churn")
    expect(page.locator(".yyai-feature-2 select")).to_be_visible(timeout=WAIT_MS)
    page.locator(".yyai-feature-2 select").select_option("team")
    page.locator(".yyai-feature-3 select").select_option("south")
    page.locator(".yyai-predict-button").click()
    expect(page.locator(".yyai-predict-message")).to_contain_text("1 row predicted", timeout=WAIT_MS)
    churn = rest(server, "/predictions/churn", json={"age": 40.0, "income": 0.0, "plan": "team", "region": "south"})
    expect(page.locator(".yyai-row-answer[data-version='1'][data-row='0']")).to_have_text(churn[0]["top"])

    # 5. a tensor from a .npy, drawn as a line
    window = np.sin(np.linspace(0, 3, 16)).astype(np.float32)
    npy = tmp_path / "window.npy"
    np.save(npy, window)
    page.select_option(".yyai-model-select select", label="signal")
    expect(page.locator(".yyai-source button", has_text="My file")).to_be_visible(timeout=WAIT_MS)
    choose_source(page, "My file")
    choose_files(page, ".yyai-rows-upload", [str(npy)])
    page.locator(".yyai-predict-button").click()
    expect(page.locator(".yyai-predict-message")).to_contain_text("1 row predicted", timeout=WAIT_MS)
    expect(page.locator(".yyai-tensor-plot")).to_have_count(1)
    buffer = io.BytesIO()
    np.save(buffer, window)
    signal = rest(server, "/predictions/signal", data=buffer.getvalue(), headers={"Content-Type": "application/x-npy"})
    expect(page.locator(".yyai-row-answer[data-version='1'][data-row='0']")).to_have_text(answer_of(signal[0]))
    assert not seen.errors, seen.errors
    page.close()
