"""Preview's inputs and pictures for a model that takes no image: a form of features, rows, tensors.

* :class:`RowInputs`: Preview's controls for such a model, the form and an upload of rows;
* :class:`FeatureForm`: one widget per feature of a table model (a number field, or a
  picker of its categories; a tensor among several inputs: its numbers as JSON), in the
  manifest's order, pre-filled from the first row of the version's bundled sample CSV (else
  each feature's training mean, its first category, zeros). :meth:`FeatureForm.records`
  is what it sends: one typed JSON record, so that the form's answer is REST's answer to
  the same record.
* a file a person uploads, or a bundled sample, is read as the model takes it (a CSV's
  rows, a JSON record or array, a ``.npy``) by ``protocol/records.py``'s ``given_of_file``.
* :func:`rows_table_html`: the results as a table, the inputs beside each version's answer.
* :func:`tensor_png`: a tensor as a person reads it: a line plot (1-D) or a heat map (2-D).
* :func:`attributions_png`: integrated gradients as a bar chart per member.

Widgets carry stable CSS classes (``yyai-feature``, ``yyai-feature-<i>`` in the form's
order, ``yyai-rows-table``, ``yyai-row-answer`` with ``data-version`` and ``data-row``).
matplotlib comes in on first use, through ``render.py``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import ipywidgets as W
import numpy as np

from yyai_kernel.dashboard.render import (
    CHART_DPI,
    _figure,
    _plain,
    _png,
    _short,
    file_button,
    with_classes,
)
from yyai_kernel.errors import InvalidInputError
from yyai_kernel.protocol import jsonparse
from yyai_kernel.protocol.records import given_of_file, read_csv
from yyai_kernel.types import Explanation, Feature, Given, InputKind, InputSpec, Prediction, Records

SAMPLE, UPLOAD, FORM = "sample", "upload", "form"  # Preview's sources of inputs (its images' too)
TABLE_SOURCES = [("Form", FORM), ("Bundled rows", SAMPLE), ("My rows (CSV)", UPLOAD)]
TENSOR_SOURCES = [("Bundled sample", SAMPLE), ("My file", UPLOAD)]
MAX_ROWS = 10_000  # rows a preview reads from one file
SHOWN_ROWS = 100  # rows the results table shows
SHOWN_FEATURES = 16  # input columns the results table shows


class RowInputs:
    """Preview's controls for a model that takes no image: the feature form and the upload of rows,
    and what each sends (:class:`~yyai_kernel.types.Given`, with how to name it on the page)."""

    def __init__(self) -> None:
        self.form = FeatureForm()
        self.upload = file_button("yyai-rows-upload", accept=".csv,.json,.npy", multiple=False,
                                  tooltip="Choose a CSV of rows (a header naming the features), a .json or a .npy",
                                  layout=W.Layout(width="180px", display="none"))

    def sources(self, backend: Any, name: str, version: int, spec: InputSpec) -> tuple[str, list, str]:
        """(heading, source options, the preferred one) for a version's input; a table's form is built."""
        if spec.kind is InputKind.TENSOR:
            return "<b>On which tensors</b>", TENSOR_SOURCES, SAMPLE
        self.prefill(backend, name, version, spec)
        return "<b>On which rows</b>", TABLE_SOURCES, FORM

    def given(self, source: str, backend: Any, name: str, version: int, sample: str | None) -> tuple[str, Given]:
        """What to run from ``source`` (the form, the upload, or the bundled ``sample``), and how to name it."""
        if source == FORM:
            return "the form", self.form.records()
        if source == UPLOAD:
            return self.uploaded()
        if not sample:
            raise ValueError(f"{name} v{version} bundles no sample rows: use the form, or upload a file.")
        data = backend.sample(name, sample, version)
        return PurePosixPath(sample).name, given_of_file(sample, data, max_rows=MAX_ROWS)

    def prefill(self, backend: Any, name: str, version: int, spec: InputSpec) -> None:
        """Build the form for ``spec``, filled from the first row of the version's first bundled CSV sample."""
        row = None
        try:
            found = backend.bundled(name, version)
            sample = next((f for f in found.files if f.lower().endswith(".csv")), None)
            row = first_row(backend.sample(name, sample, version)) if sample else None
        except Exception:  # noqa: BLE001 - a pre-fill is optional: the form keeps its defaults
            row = None
        self.form.build(spec, row)

    def uploaded(self) -> tuple[str, Given]:
        files = self.upload.value
        if not files:
            raise ValueError("Upload a CSV of rows (or a .json, a .npy) first, or fill in the form.")
        return files[0]["name"], given_of_file(files[0]["name"], bytes(files[0]["content"]), max_rows=MAX_ROWS)


class FeatureForm:
    """The form of a table model's features (or several inputs'), built for one input spec."""

    def __init__(self) -> None:
        self.spec: InputSpec | None = None
        self.fields: dict[str, W.Widget] = {}
        self.widget = with_classes(W.VBox(layout=W.Layout(display="none")), "yyai-feature-form")

    def build(self, spec: InputSpec, sample: Mapping[str, Any] | None = None) -> None:
        """One field per record key of ``spec``, filled from ``sample`` (a CSV row) where it has the key."""
        if spec == self.spec and sample is None:
            return
        self.spec = spec
        sample = sample or {}
        fields: dict[str, W.Widget] = {}
        features = {f.name: f for f in spec.features()}
        for i, key in enumerate(spec.record_keys()):
            feature = features.get(key)
            common = {"description": key, "tooltip": key, "style": {"description_width": "140px"},
                      "layout": W.Layout(width="290px")}
            if feature is None:  # a tensor among several inputs
                part = next(p for p in spec.inputs() if p.name == key)
                text = json.dumps(np.zeros(part.shape).tolist())
                widget: W.Widget = W.Textarea(value=str(sample.get(key, text)),
                                              placeholder=f"numbers of shape {list(part.shape)}", **common)
            elif feature.categorical_kind:
                value = str(sample.get(key, "")).strip()
                widget = W.Dropdown(options=list(feature.vocabulary),
                                    value=value if value in feature.vocabulary else feature.vocabulary[0], **common)
            else:
                widget = W.FloatText(value=_number(sample.get(key), feature), **common)
            fields[key] = with_classes(widget, "yyai-feature", f"yyai-feature-{i}")
        old, self.fields = self.widget.children, fields
        self.widget.children = tuple(fields.values())
        for widget in old:
            widget.close()

    def records(self) -> Records:
        """The form as one typed JSON record (numbers as numbers, categories as their text)."""
        if self.spec is None:
            raise ValueError("Pick a model that takes a table first.")
        record: dict[str, Any] = {}
        for key, widget in self.fields.items():
            if isinstance(widget, W.Textarea):
                record[key] = jsonparse.loads(widget.value or "null", what=f"The value of {key!r}")
            elif isinstance(widget, W.FloatText):
                record[key] = float(widget.value)
            else:
                record[key] = widget.value
        return Records((record,))


def _number(value: object, feature: Feature) -> float:
    """A sample's number for a field, else the feature's training mean (or 0)."""
    try:
        return float(str(value).strip())
    except ValueError:
        return float(feature.mean) if feature.mean is not None else 0.0


def first_row(data: bytes) -> dict[str, str] | None:
    """A CSV's first row (the form's pre-fill), or None when it has none."""
    try:
        return dict(read_csv(data, max_rows=MAX_ROWS).rows[0])
    except InvalidInputError:
        return None


def row_labels(given: Given, source: str, shape: tuple[int, ...]) -> list[str]:
    """How each row is named on the page: "rows.csv line 2", "the form", "x.npy [3]" (a tensor of the
    input's ``shape`` is one row; anything else, a batch)."""
    if isinstance(given, Records):
        if len(given) == 1 and not given.text:
            return [source]
        return [f"{source} {given.where(i)}" for i in range(len(given))]
    if tuple(given.array.shape) == tuple(shape):
        return [source]
    return [f"{source} [{i}]" for i in range(len(given.array))]


def answer_html(prediction: Prediction, i: int) -> str:
    """One row's answer in a cell: the top label and its probability, or the regression values."""
    top = prediction.top(i)
    if top is not None:
        tied = prediction.tied(i)
        label = "tie: " + ", ".join(tied) if len(tied) > 1 else top[0]
        return (f"<span class='yyai-row-answer' data-version='{prediction.version}' data-row='{i}'>"
                f"{html.escape(label)}</span> <span class='yyai-subtle'>{top[1]:.3f}</span>")
    row = prediction.rows()[i]
    values = row["combined"] if row["combined"] is not None else next(iter(row["members"].values()))
    text = ", ".join(f"{k} {v}" for k, v in values.items()) if isinstance(values, dict) else str(values)
    return (f"<span class='yyai-row-answer' data-version='{prediction.version}' data-row='{i}'>"
            f"{html.escape(text)}</span>")


def rows_table_html(labels: list[str], inputs: Sequence[Mapping[str, Any]], predictions: dict[int, Prediction]) -> str:
    """The rows (at most :data:`SHOWN_ROWS`) with their inputs (at most :data:`SHOWN_FEATURES`
    columns) beside each version's answer, and whether the versions agree."""
    keys = list(inputs[0])[:SHOWN_FEATURES] if inputs else []
    versions = list(predictions)
    head = "<th>row</th>" + "".join(f"<th>{html.escape(_short(k))}</th>" for k in keys)
    head += "".join(f"<th>v{v}</th>" for v in versions) + ("<th></th>" if len(versions) > 1 else "")
    body = []
    for i, label in enumerate(labels[:SHOWN_ROWS]):
        cells = "".join(f"<td class='num'>{html.escape(_cell(inputs[i].get(k)))}</td>" for k in keys)
        cells += "".join(f"<td>{answer_html(predictions[v], i)}</td>" for v in versions)
        if len(versions) > 1:
            answers = {tuple(p.tied(i)) for p in predictions.values()}
            cells += ("<td class='yyai-agree'>agree</td>" if len(answers) == 1 else
                      "<td class='yyai-disagree'>differ</td>")
        body.append(f"<tr class='yyai-row' data-row='{i}'><td>{html.escape(label)}</td>{cells}</tr>")
    more = len(labels) - SHOWN_ROWS
    note = f"<div class='yyai-subtle'>… and {more} more rows</div>" if more > 0 else ""
    return (f"<div style='overflow-x: auto; max-width: 100%'><table class='yyai-table yyai-rows-table'>"
            f"<tr>{head}</tr>{''.join(body)}</table>{note}</div>")


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return f"[{len(value)} values]"
    return "" if value is None else str(value)


def tensor_png(array: np.ndarray, title: str) -> tuple[bytes, tuple[int, int]]:
    """A 1-D tensor as a line plot, a 2-D one as a heat map (others: flattened to a line); (PNG, size)."""
    values = np.asarray(array, dtype=np.float64)
    figure = _figure(3.4, 2.1)
    axes = figure.add_subplot()
    if values.ndim == 2:
        image = axes.imshow(values, cmap="viridis", aspect="auto", interpolation="nearest")
        figure.colorbar(image, ax=axes, shrink=0.85)
    else:
        axes.plot(values.reshape(-1), lw=1.4, color="#2f6db5", marker="." if values.size <= 64 else None)
        axes.grid(alpha=0.3)
        _plain(axes)
    axes.set_title(title, fontsize=9)
    axes.tick_params(labelsize=7)
    width, height = figure.get_size_inches()
    return _png(figure), (round(width * CHART_DPI), round(height * CHART_DPI))


def attributions_png(explanations: dict[str, Explanation]) -> tuple[bytes, tuple[int, int]]:
    """Each member's integrated gradients as horizontal bars (features in the manifest's order); (PNG, size)."""
    found = [(m, e) for m, e in explanations.items() if e.available and e.attributions is not None]
    names = list(found[0][1].attributions or {}) if found else []
    height = 0.55 + 0.19 * len(names)
    figure = _figure(3.3 * max(1, len(found)), height)
    for k, (member, explained) in enumerate(found):
        axes = figure.add_subplot(1, len(found), k + 1)
        values = [explained.attributions.get(n) if explained.attributions else None for n in names]
        shown = [0.0 if v is None else float(v) for v in values]
        colors = ["#bbbbbb" if v is None else "#2f6db5" if v >= 0 else "#d9822b" for v in values]
        axes.barh(range(len(names)), shown, color=colors)
        axes.set_yticks(range(len(names)), [_short(n) for n in names], fontsize=7)
        axes.invert_yaxis()
        axes.axvline(0, color="#888", lw=0.8)
        axes.tick_params(labelsize=7)
        axes.set_title(f"{member}: why {explained.label}", fontsize=8)
        _plain(axes)
    width, height_in = figure.get_size_inches()
    return _png(figure), (round(width * CHART_DPI), round(height_in * CHART_DPI))
