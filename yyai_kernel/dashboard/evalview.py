"""Rendering for the Evaluate tab: the scores side by side, the confusion heat map, galleries.

Pure functions from an ``Evaluation`` (evalresults.py) to HTML strings and small widgets;
nothing here calls a backend or holds state. The heat map is a grid of buttons, so that a
click on a cell reaches the kernel (an image would not say where it was clicked); its
colours come from a matplotlib colormap (no pyplot), each row normalized, so the diagonal
reads as per-class recall. Past ``MAX_GRID_LABELS`` labels a grid is unreadable: the matrix
is then drawn as an image (matplotlib, Agg) and the most confused cells become buttons.
The CSV download is a ``data:`` link, which a browser saves without a kernel round trip.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from typing import cast

import ipywidgets as W

from yyai_kernel.dashboard.render import _figure, _png, with_classes
from yyai_kernel.evaluation.metrics import ClassificationScores, RegressionScores
from yyai_kernel.evaluation.results import Evaluation, ItemResult, VersionResult
from yyai_kernel.types import OutputKind

MAX_GRID_LABELS = 24
MOST_CONFUSED = 12
CELL_PX = 36
THUMB_PX = 56

EVAL_CSS = """
<style>
.yyai-cm-grid { gap: 2px; }
.yyai-cm-grid .widget-button { width: 36px; height: 30px; padding: 0; margin: 0; border-radius: 2px;
  font-variant-numeric: tabular-nums; font-size: 0.85em; }
.yyai-cm-head { text-align: center; font-size: 0.8em; color: #555; line-height: 30px; }
.yyai-eval-thumb { align-items: center; margin: 2px; }
.yyai-eval-caption { font-size: 0.75em; color: #444; text-align: center; line-height: 1.2; }
.yyai-eval-gallery { flex-wrap: wrap; max-width: 900px; }
table.yyai-eval-scores td.best { font-weight: 700; color: #1e6b34; }
a.yyai-download-link { display: inline-block; padding: 4px 10px; border: 1px solid #bbb; border-radius: 4px;
  text-decoration: none; color: #1f4f96; background: #f7f8fa; }
</style>
"""


def better(result: Evaluation) -> VersionResult:
    """The version that scored best: the highest accuracy, or the lowest MAE (first on ties)."""
    if result.kind is OutputKind.CLASSIFICATION:
        return max(result.versions, key=lambda v: cast(ClassificationScores, v.scores).accuracy)
    return min(result.versions, key=lambda v: cast(RegressionScores, v.scores).mae)


def scores_html(result: Evaluation) -> str:
    """One column per version (members after it), one row per score; the best in bold."""
    classify = result.kind is OutputKind.CLASSIFICATION
    rows = (("accuracy", "accuracy"), ("top-3", None), ("macro F1", "macro_f1")) if classify else (
        ("MAE", "mae"), ("RMSE", "rmse"), ("R²", "r2"))
    columns = []
    for version in result.versions:
        columns.append((f"v{version.version}", version.scores, True))
        columns += [(f"v{version.version} · {m}", s, False) for m, s in version.members.items()]
    head = "".join(f"<th>{html.escape(title)}</th>" for title, _, _ in columns)
    best = better(result).version
    body = []
    for title, attribute in rows:
        cells = []
        for name, scores, whole in columns:
            top_k = cast(ClassificationScores, scores).top_k if attribute is None else ()
            value = top_k[min(3, len(top_k)) - 1] if attribute is None else getattr(scores, attribute)
            mark = " best" if whole and name == f"v{best}" and attribute in ("accuracy", "mae") else ""
            cells.append(f"<td class='num{mark}'>{value:.4f}</td>")
        body.append(f"<tr><td>{title}</td>{''.join(cells)}</tr>")
    counts = "".join(f"<td class='num'>{s.n}</td>" for _, s, _ in columns)
    body.append(f"<tr><td>items scored</td>{counts}</tr>")
    return (f"<table class='yyai-table yyai-eval-scores'><tr><th></th>{head}</tr>{''.join(body)}</table>"
            f"<div class='yyai-subtle'>{len(result.items)} items of {html.escape(result.dataset)}"
            f"{f', {len(result.bad_items)} left out' if result.bad_items else ''}.</div>")


def summary_text(result: Evaluation) -> str:
    """One line: who scored best and where the versions disagree."""
    best = better(result)
    score = (f"accuracy {cast(ClassificationScores, best.scores).accuracy:.3f}"
             if result.kind is OutputKind.CLASSIFICATION else f"MAE {cast(RegressionScores, best.scores).mae:.3f}")
    text = f"Done: v{best.version} scored best ({score})"
    for pair in result.pairs:
        text += f"; v{pair.a} and v{pair.b} disagree on {len(pair.disagreements)} of {len(result.items)} items"
    return text + "."


def heat_colors(row: tuple[int, ...]) -> list[tuple[str, str]]:
    """(background, text colour) per cell of a confusion-matrix row, normalized by the row's total."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    total = max(sum(row), 1)
    cmap = colormaps["Blues"]
    return [(to_hex(cmap(0.08 + 0.92 * count / total)) if count else "#ffffff",
             "#ffffff" if count / total > 0.55 else "#222222" if count else "#c0c0c0") for count in row]


def confusion_grid(result: Evaluation, version: int, on_cell: Callable[[str, str], None]) -> W.Widget:
    """The confusion matrix of one version as a clickable heat map (rows: true, columns: predicted)."""
    scores = cast(ClassificationScores, result.version(version).scores)  # a confusion matrix: classification
    labels = scores.labels
    if len(labels) > MAX_GRID_LABELS:
        return _large_confusion(scores, on_cell)
    width = max(CELL_PX, 8 * max(map(len, labels)))
    children = [W.HTML("<div class='yyai-cm-head' title='rows: the true label; columns: the predicted one'>"
                       "true \\ predicted</div>")]
    children += [W.HTML(f"<div class='yyai-cm-head'>{html.escape(label)}</div>") for label in labels]
    for truth, row in zip(labels, scores.confusion):
        children.append(W.HTML(f"<div class='yyai-cm-head'>{html.escape(truth)}</div>"))
        for p, ((background, text), count) in enumerate(zip(heat_colors(row), row)):
            cell = W.Button(description=str(count), tooltip=f"true {truth}, predicted {labels[p]}: {count}",
                            style={"button_color": background, "text_color": text})
            cell.on_click(lambda _b, a=truth, b=labels[p]: on_cell(a, b))
            children.append(with_classes(cell, "yyai-cm-cell", f"yyai-cm-{_css(truth)}-{_css(labels[p])}"))
    grid = W.GridBox(children, layout=W.Layout(
        grid_template_columns=f"{width + 60}px " + f"{width}px " * len(labels), width="max-content"))
    return with_classes(grid, "yyai-cm-grid")


def _large_confusion(scores, on_cell) -> W.Widget:
    """Many labels: the matrix as an image, and the most confused cells as buttons."""
    import numpy as np

    counts = np.array(scores.confusion, dtype=float)
    figure = _figure(6, 5.4)
    axes = figure.add_subplot()
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    figure.colorbar(image, ax=axes, label="share of the true class")
    picture = W.Image(value=_png(figure), format="png")
    off = [(int(counts[t, p]), t, p) for t in range(len(counts)) for p in range(len(counts)) if t != p and counts[t, p]]
    buttons = []
    for count, t, p in sorted(off, reverse=True)[:MOST_CONFUSED]:
        truth, predicted = scores.labels[t], scores.labels[p]
        button = with_classes(W.Button(description=f"{truth} → {predicted}: {count}", layout=W.Layout(width="auto")),
                              "yyai-cm-cell")
        button.on_click(lambda _b, a=truth, b=predicted: on_cell(a, b))
        buttons.append(button)
    return W.VBox([picture, W.HTML("<b>Most confused</b>"), W.HBox(buttons, layout=W.Layout(flex_flow="row wrap"))])


def _css(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", label)


def image_format(data: bytes) -> str:
    """The ipywidgets Image format of some image bytes (the browser sniffs the rest)."""
    if data.startswith(b"\xff\xd8"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    return "png"


def thumb(data: bytes, caption: str, css_class: str) -> W.Widget:
    """One image of a gallery with a caption under it."""
    image = W.Image(value=data, format=image_format(data),
                    layout=W.Layout(width=f"{THUMB_PX}px", height=f"{THUMB_PX}px", object_fit="contain"))
    image.add_class("yyai-pixelated")
    return with_classes(W.VBox([image, W.HTML(f"<div class='yyai-eval-caption'>{caption}</div>")]),
                        "yyai-eval-thumb", css_class)


def answer(value) -> str:
    return f"{value:.2f}" if isinstance(value, float) else html.escape(str(value))


def item_caption(result: Evaluation, item: ItemResult) -> str:
    """The file's name, its truth and each version's answer."""
    name = html.escape(item.key.rsplit("/", 1)[-1])
    answers = " · ".join(f"v{v.version}: {answer(a)}" for v, a in zip(result.versions, item.predicted))
    return f"{name}<br>true {answer(item.truth)}<br>{answers}"


def rows_html(result: Evaluation, items: list[ItemResult], rows: dict[str, dict[str, str]],
              columns: int = 16) -> str:
    """Items of a table set as a table: the row's line, its truth, each version's answer, then its
    features (the first ``columns``)."""
    features = list(next(iter(rows.values()), {}))[:columns]
    head = "<th>row</th><th>true</th>" + "".join(f"<th>v{v.version}</th>" for v in result.versions)
    head += "".join(f"<th>{html.escape(f)}</th>" for f in features)
    body = []
    for item in items:
        row = rows.get(item.key, {})
        cells = "".join(f"<td>{answer(a)}</td>" for a in item.predicted)
        cells += "".join(f"<td class='num'>{html.escape(str(row.get(f, '')))}</td>" for f in features)
        body.append(f"<tr><td>{html.escape(item.key)}</td><td>{answer(item.truth)}</td>{cells}</tr>")
    return (f"<div style='overflow-x: auto; max-width: 100%'><table class='yyai-table'><tr>{head}</tr>"
            f"{''.join(body)}</table></div>")


def csv_link_html(result: Evaluation, filename: str) -> str:
    """A link that saves the per-item predictions as a CSV file (a data: URL, no round trip)."""
    data = base64.b64encode(result.to_csv().encode()).decode()
    return (f"<a class='yyai-download-link' download='{html.escape(filename)}' "
            f"href='data:text/csv;base64,{data}'>⬇ Download the predictions (CSV)</a>")


def bad_items_html(result: Evaluation, shown: int = 20) -> str:
    if not result.bad_items:
        return ""
    rows = "".join(f"<tr><td>{html.escape(b.key)}</td><td>{html.escape(b.reason)}</td></tr>"
                   for b in result.bad_items[:shown])
    more = (f"<div class='yyai-subtle'>… and {len(result.bad_items) - shown} more (see the CSV)</div>"
            if len(result.bad_items) > shown else "")
    return (f"<b>Left out ({len(result.bad_items)})</b><table class='yyai-table yyai-eval-bad-table'>"
            f"<tr><th>file</th><th>why</th></tr>{rows}</table>{more}")
