"""The Preview tab's result panel: one row per image, one column per version compared.

Each row shows the image as given, then for each version the image as that version sees
it (resized and colour-converted as its manifest says; its caption says "scaled from 30×30",
or "stretched from 160×120" when the aspect changed), its headline label (or the labels of a
tie, never the first of them as if it had won), a bar chart
of every member's output with a top-k table beside it (classification) or a table of the
outputs (regression), and, when the prediction was explained, each member's Grad-CAM
overlay (or why it has none). Above the rows, one summary line per image says what each version
predicted and whether the versions agree. An empty panel says what to do.

OpenCV (through ``yyai_kernel.runtime.images``) comes in on first use: building the dashboard
imports none of it.
"""

from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from yyai_kernel.dashboard.records import attributions_png, row_labels, rows_table_html, tensor_png
from yyai_kernel.dashboard.render import (
    DISPLAY_PX,
    bar_chart_png,
    close_tree,
    image_widget,
    png_widget,
    regression_table_html,
    subtle_html,
    tie_text,
    top_k_table_html,
    with_classes,
)
from yyai_kernel.types import Explanation, Given, Numbers, Prediction, Records, VersionDescription

SUMMARY_ROWS = 12  # rows named in the summary above a table of rows
SHOWN_TENSORS = 4  # tensors drawn at most


def wrapping(flex: str | None = None) -> W.Layout:
    """A row of parts that wraps to the next line where the window is narrow, rather than scroll
    sideways (an ensemble's top-k table goes under its chart); ``flex="1 1 0px"`` lets a box
    share its line with others down to the width of its widest part."""
    return W.Layout(flex_flow="row wrap", align_items="flex-start", flex=flex)


EMPTY = ("<div class='yyai-empty'><b>No predictions yet.</b><br>"
         "Pick a model and a version on the left, choose a bundled sample or upload your own images, "
         "then press <b>Predict</b>.<br>Pick a second version under \"Compare with\" to see both side by side."
         "</div>")


class ResultsPanel:
    """The summary lines and the result rows; ``rows`` holds one HBox per image."""

    def __init__(self):
        self.summary = with_classes(W.HTML(), "yyai-summary")
        self.rows = with_classes(W.VBox(), "yyai-results")
        self.empty = with_classes(W.HTML(EMPTY), "yyai-empty-results")
        self.widget = with_classes(W.VBox([self.empty, self.summary, self.rows], layout=W.Layout(flex="1 1 auto")),
                                   "yyai-panel", "yyai-output")

    def clear(self) -> None:
        """No results: the panel says what to do."""
        self._set_rows([])
        self.summary.value = ""

    def show(self, name: str, images: list[tuple[str, bytes]], predictions: dict[int, Prediction],
             descriptions: dict[int, VersionDescription]) -> None:
        """One row per image: the image as given, then per version how it sees it and what it says."""
        from yyai_kernel.runtime.images import decode_image, encode_png

        compact = len(predictions) > 1
        rows, summary = [], []
        for i, (label, data) in enumerate(images):
            given = decode_image(data)
            height, width = given.shape[:2]
            given_box = W.VBox([
                W.HTML(f"<b>As given</b><br><span class='yyai-subtle'>{html.escape(label)} · {width}×{height}</span>"),
                image_widget(encode_png(given, rgb=False), height, width, css_class="yyai-given-image"),
            ], layout=W.Layout(width=f"{DISPLAY_PX + 16}px", flex="0 0 auto"))
            columns = [given_box] + [
                _column(name, prediction, i, data, descriptions[v], compact=compact, given=(height, width))
                for v, prediction in predictions.items()
            ]
            rows.append(with_classes(W.HBox(columns, layout=wrapping()), "yyai-result-row"))
            summary.append(summary_line(label, {v: answer_of(p, i) for v, p in predictions.items()}))
        self._set_rows(rows)
        self.summary.value = "<div class='yyai-summary-lines'>" + "<br>".join(summary) + "</div>"

    def show_rows(self, name: str, source: str, given: Given, predictions: dict[int, Prediction],
                  descriptions: dict[int, VersionDescription]) -> None:
        """Records or tensors and each version's answers: a table of the rows beside the answers;
        for one row, every member's outputs; a tensor drawn as a line or a heat map; and, when
        explained, each member's attributions per feature."""
        shape = next(iter(descriptions.values())).input.shape
        labels = row_labels(given, source, shape)
        parts: list[W.Widget] = [with_classes(W.HTML(rows_table_html(labels, _inputs(given, shape), predictions)),
                                              "yyai-rows")]
        if isinstance(given, Numbers):
            arrays = _arrays(given.array, shape)
            pictures = [png_widget(*tensor_png(a, label), "yyai-tensor-plot") for a, label in
                        zip(arrays[:SHOWN_TENSORS], labels)]
            parts.append(W.HBox(pictures, layout=wrapping()))
        compact = len(predictions) > 1
        if len(labels) == 1:
            parts.append(W.HBox([with_classes(W.VBox([W.HTML(headline_html(name, p, 0)),
                                                      outputs_widget(p, 0, descriptions[v], compact=compact)]),
                                              "yyai-result", f"yyai-result-v{v}")
                                 for v, p in predictions.items()], layout=wrapping()))
        for i, label in enumerate(labels):
            explained = [(v, p.explanations[i]) for v, p in predictions.items() if p.explanations is not None]
            for version, explanations in explained:
                if not any(e.attributions is not None for e in explanations.values()):
                    continue
                png, size = attributions_png(explanations)
                title = (f"<b>{html.escape(label)}</b>: how each feature moved v{version}'s answer (integrated "
                         "gradients from the all-zero input, the training mean of a normalised feature)")
                parts.append(with_classes(W.VBox([W.HTML(title), png_widget(png, size, "yyai-attribution-chart")]),
                                          "yyai-attributions"))
                missing = [f"{m}: {e.reason}" for m, e in explanations.items() if not e.available]
                if missing:
                    parts.append(W.HTML(subtle_html("; ".join(missing))))
        self._set_rows([with_classes(W.VBox(parts), "yyai-result-row")])
        answers = [summary_line(label, {v: answer_of(p, i) for v, p in predictions.items()})
                   for i, label in enumerate(labels[:SUMMARY_ROWS])]
        more = len(labels) - SUMMARY_ROWS
        self.summary.value = ("<div class='yyai-summary-lines'>" + "<br>".join(answers)
                              + (f"<br>… and {more} more rows in the table below" if more > 0 else "") + "</div>")

    def _set_rows(self, rows: list[W.Widget]) -> None:
        """Show new rows and close the old ones' widgets (each holds a comm)."""
        old, self.rows.children = self.rows.children, tuple(rows)
        self.empty.layout.display = "none" if rows else None
        for widget in old:
            close_tree(widget)


def _inputs(given: Given, shape: tuple[int, ...]) -> list[dict]:
    """Each row's inputs for the table (a tensor: its shape and mean)."""
    if isinstance(given, Records):
        return [dict(row) for row in given.rows]
    return [{"values": f"shape {list(a.shape)}, mean {float(np.mean(a)):.4g}"} for a in _arrays(given.array, shape)]


def _arrays(array: np.ndarray, shape: tuple[int, ...]) -> list[np.ndarray]:
    """The rows of a tensor as sent: the array itself when it has the input's shape, else each of its first axis."""
    return [array] if tuple(array.shape) == tuple(shape) else list(array)


def resize_note(given: tuple[int, int], seen: tuple[int, int]) -> str:
    """How the version resized an image of (height, width) ``given`` to ``seen``: "" when it did not."""
    if tuple(given) == tuple(seen):
        return ""
    (gh, gw), (sh, sw) = given, seen
    kept = abs(gw / gh - sw / sh) <= 0.01 * (sw / sh)
    return f", {'scaled' if kept else 'stretched'} from {gw}×{gh}"


def _column(name: str, prediction: Prediction, i: int, data: bytes, described: VersionDescription, *,
            compact: bool, given: tuple[int, int]) -> W.VBox:
    """What one version makes of one image: headline, the image as it sees it, its outputs."""
    from yyai_kernel.runtime.images import encode_png, model_view

    version = prediction.version
    seen = model_view(data, described.input)
    image = described.input.image
    assert image is not None  # the preview shows image inputs only
    caption = f"{seen.shape[1]}×{seen.shape[0]} {image.color.value}{resize_note(given, seen.shape[:2])}"
    side = 96 if compact else DISPLAY_PX
    view = image_widget(encode_png(seen), seen.shape[0], seen.shape[1], css_class="yyai-model-image", side=side)
    view_box = W.VBox([W.HTML(f"<b>As v{version} sees it</b><br><span class='yyai-subtle'>{caption}</span>"), view],
                      layout=W.Layout(width=f"{side + 16}px", flex="0 0 auto"))
    headline = headline_html(name, prediction, i)
    outputs = outputs_widget(prediction, i, described, compact=compact)
    body = [view_box, outputs] if compact else [W.HBox([view_box, outputs], layout=wrapping())]
    if prediction.explanations is not None:
        body.append(explained_row(prediction.explanations[i], side=96 if compact else 120))
    column = W.VBox([W.HTML(headline), *body],
                    layout=W.Layout(flex="1 1 0px", margin="0 0 0 12px", padding="0 0 0 12px",
                                    border_left="1px solid #e3e3e3"))
    return with_classes(column, "yyai-result", f"yyai-result-v{version}")


def headline_html(name: str, prediction: Prediction, i: int) -> str:
    """A version's answer for row ``i`` in one line: its label (or its tie) and probability."""
    version = prediction.version
    top, tied = prediction.top(i), prediction.tied(i)
    headline = f"<b>{html.escape(name)} v{version}</b>"
    if len(tied) > 1 and top is not None:  # no winner to name: "predicted daisy" would be the first label of the tie
        headline += (f": no single answer, <span class='yyai-top-label yyai-tie' data-version='{version}'>"
                     f"a {len(tied)}-way tie</span> between {html.escape(tie_text(tied))} "
                     f"<span class='yyai-subtle'>(p = {top[1]:.3f} each)</span>")
    elif top is not None:
        headline += (f": predicted <span class='yyai-top-label' data-version='{version}'>{html.escape(top[0])}</span> "
                     f"<span class='yyai-subtle'>(p = {top[1]:.3f})</span>")
    return headline


def outputs_widget(prediction: Prediction, i: int, described: VersionDescription, *, compact: bool) -> W.Widget:
    """Row ``i``'s outputs: every member's bar chart and the top-k table (classification), or the values."""
    if not described.classification:
        return with_classes(W.HTML(regression_table_html(prediction, i, has_combined=described.has_combined)),
                            "yyai-regression-table")
    png, size = bar_chart_png(prediction, i, described.labels, has_combined=described.has_combined,
                              panel_size=(2.1, 1.45) if compact else (2.9, 1.75))
    table = with_classes(W.HTML(top_k_table_html(prediction, i, described.labels,
                                                  has_combined=described.has_combined)), "yyai-topk-table")
    parts = [png_widget(png, size, "yyai-chart"), table]
    # compared versions stand side by side and leave no room for the table beside the chart
    return (W.VBox(parts, layout=W.Layout(align_items="flex-start")) if compact
            else W.HBox(parts, layout=wrapping("1 1 0px")))


def answer_of(prediction: Prediction, i: int) -> tuple[tuple[str, ...], float] | None:
    """Row ``i``'s answer: the label (or the labels of a tie) and its probability; None for regression."""
    top = prediction.top(i)
    return None if top is None else (tuple(prediction.tied(i)), top[1])


def summary_line(label: str, answers: dict[int, tuple[tuple[str, ...], float] | None]) -> str:
    """One image's line: each version's top label (or its tie), and whether the versions agree."""
    found = {v: a for v, a in answers.items() if a is not None}
    if not found:
        return f"<b>{html.escape(label)}</b>: see the outputs below."
    parts = [f"v{v} → <span class='yyai-summary-label'>{html.escape(_answer_text(labels))}</span> "
             f"({p:.2f}{' each' if len(labels) > 1 else ''})" for v, (labels, p) in found.items()]
    line = f"<b>{html.escape(label)}</b>: " + ", ".join(parts)
    if len(answers) > 1:
        agree = len({labels for labels, _ in found.values()}) == 1
        line += (" — <span class='yyai-agree'>the versions agree</span>" if agree
                 else " — <span class='yyai-disagree'>the versions disagree</span>")
    return line


def _answer_text(labels: tuple[str, ...]) -> str:
    return f"tie: {tie_text(list(labels))}" if len(labels) > 1 else labels[0]


def unbroken_hyphens(text: str) -> str:
    """HTML in which a hyphenated word ("2-D") never breaks at its hyphen in a narrow cell."""
    return " ".join(f"<span class='yyai-nowrap'>{word}</span>" if "-" in word else word for word in text.split(" "))


def explained_row(explanations: dict[str, Explanation], *, side: int) -> W.Widget:
    """Where each member looked: its Grad-CAM overlay, or why it has none."""
    cells = []
    for member, explained in explanations.items():
        title = f"<b>{html.escape(member)}</b>"
        if explained.available and explained.heatmap is not None and explained.overlay_png is not None:
            caption = f"{title}<br><span class='yyai-subtle'>{html.escape(explained.layer or '')}</span>"
            height, width = explained.heatmap.shape  # the overlay has the grid's proportions
            image = image_widget(explained.overlay_png, height, width, css_class="yyai-gradcam-overlay", side=side)
            cells.append(W.VBox([W.HTML(caption), image], layout=W.Layout(width=f"{side + 12}px", flex="0 0 auto")))
        else:
            note = unbroken_hyphens(html.escape(explained.reason.removeprefix("not available: ")))
            cells.append(with_classes(W.HTML(f"{title}<br><span class='yyai-subtle'>Grad-CAM not available: {note}"
                                             "</span>", layout=W.Layout(width=f"{side + 12}px")),
                                      "yyai-gradcam-na"))
    label = next((e.label for e in explanations.values() if e.available), None)
    heading = "Where each member looked (Grad-CAM"
    heading += f" for <b>{html.escape(label)}</b>)" if label is not None else ")"
    return with_classes(W.VBox([W.HTML(heading), W.HBox(cells, layout=W.Layout(flex_flow="row wrap"))]),
                        "yyai-gradcam")
