"""Rendering for the dashboard: CSS, messages, tables, images and charts.

Pure functions from the typed results of :mod:`yyai_kernel.types` to HTML strings, PNG
bytes or small widgets. Nothing here holds state, calls a backend or starts a thread; the
tabs call these. matplotlib (Agg, no pyplot) is imported on first use, so that building
the dashboard stays light: a served page visit imports no matplotlib until it draws.

Charts and their top-k tables share one notion of a *panel*: each member's output, then
the combined one (folded into the member's when there is only one). Each panel is a
one-output :class:`~yyai_kernel.types.Prediction`, so its top labels come from
``Prediction.top_k`` like everywhere else in yyai.
"""

from __future__ import annotations

import html
import io
import itertools
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple, cast

import ipywidgets as W

from yyai_kernel.types import ModelStatus, Prediction, ServerStatus, VersionState

DISPLAY_PX = 144  # the longer side of a previewed image, in CSS pixels
CHART_DPI = 80  # charts are drawn at this resolution and shown 1:1
TOP_K = 5  # rows of a top-k table, and bars of a chart of word labels
SHORT_LABEL = 3  # labels this short (digits, letters) fit side by side on an x-axis
MAX_SIDE_BY_SIDE = 12  # more labels than this, and a chart shows the top k instead
LABEL_CHARS = 18  # a longer label is shortened on a chart (the table shows it whole)

# ipywidgets' FileUpload always writes the number of files after its label ("Install .yyar (0)");
# these buttons show their label through CSS instead (file_button): css class -> label
FILE_BUTTONS = {
    "yyai-image-upload": "Upload images",
    "yyai-archive-upload": "Install .yyar",
    "yyai-eval-upload": "Upload a zip",
    "yyai-eval-upload-csv": "Upload a CSV",  # after the zip's: a table model's set (the later rule wins)
    "yyai-rows-upload": "Upload rows",
}

CSS = """
<style>
.yyai-dashboard { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1500px; }
.yyai-dashboard h2 { margin: 4px 0 2px 0; font-size: 1.45em; }
.yyai-header { border-bottom: 1px solid #ddd; padding-bottom: 6px; margin-bottom: 6px; }
.yyai-subtle { color: #666; font-size: 0.9em; }
.yyai-nowrap { white-space: nowrap; }
/* ipywidgets' boxes scroll (overflow: auto), which lets flex items shrink below their content
   and hides the rest behind a scrollbar; results wrap to the next line instead */
.yyai-output .widget-box { overflow: visible; }
.yyai-pixelated { image-rendering: pixelated; border: 1px solid #ccc; background: #fafafa; }
.yyai-panel { border: 1px solid #e3e3e3; border-radius: 6px; padding: 8px; margin: 4px; background: #fff; }
.yyai-controls { background: #f7f8fa; }
.yyai-msg { padding: 4px 8px; border-radius: 4px; display: inline-block; margin: 2px 0; line-height: 1.4; }
.yyai-ok { background: #e6f4ea; color: #1e6b34; }
.yyai-error { background: #fdecea; color: #a61b1b; }
.yyai-busy { background: #eef3fb; color: #1f4f96; }
.yyai-warn { background: #fff4e5; color: #8a4b00; }
.yyai-spin { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 6px; vertical-align: -2px;
             border: 2px solid #9db7e0; border-top-color: #1f4f96; border-radius: 50%;
             animation: yyai-spin 0.8s linear infinite; }
@keyframes yyai-spin { to { transform: rotate(360deg); } }
.yyai-empty { color: #555; padding: 18px 8px; line-height: 1.6; }
table.yyai-table { border-collapse: collapse; font-size: 0.9em; }
table.yyai-table th { background: #f0f2f5; text-align: left; }
table.yyai-table th, table.yyai-table td { padding: 3px 9px; border-bottom: 1px solid #e6e6e6; }
table.yyai-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.yyai-topk { align-self: flex-start; margin-left: 8px; }
.yyai-state { padding: 1px 7px; border-radius: 9px; font-size: 0.85em; }
.yyai-state-ready { background: #e6f4ea; color: #1e6b34; }
.yyai-state-loading { background: #eef3fb; color: #1f4f96; }
.yyai-state-failed { background: #fdecea; color: #a61b1b; }
.yyai-state-unloaded, .yyai-state-available, .yyai-state-removed { background: #f0f0f0; color: #555; }
.yyai-top-label { font-size: 1.25em; font-weight: 600; }
.yyai-agree { color: #1e6b34; } .yyai-disagree { color: #a15c00; font-weight: 600; }
.yyai-file-button { font-size: 0 !important; }
.yyai-file-button i, .yyai-file-button::after { font-size: var(--jp-widgets-font-size, 13px); }
.yyai-file-button i { margin-right: 0.4em; }
""" + "".join(f'.{css_class}::after {{ content: "{label}"; }}\n' for css_class, label in FILE_BUTTONS.items()) + """
</style>
"""


# --- messages and small widgets ----------------------------------------------------------


def error_text(error: BaseException) -> str:
    """A one-line message for a person: the yyai error's message, else the exception's text."""
    text = str(getattr(error, "message", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def message_html(kind: str, text: str) -> str:
    """HTML for a status message: kind is "ok", "error", "warn" or "busy" (busy shows a spinner)."""
    spinner = '<span class="yyai-spin"></span>' if kind == "busy" else ""
    return f'<span class="yyai-msg yyai-{kind}">{spinner}{html.escape(text)}</span>'


def subtle_html(text: str) -> str:
    return f'<span class="yyai-subtle">{html.escape(text)}</span>'


def fmt(value, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def with_classes(widget: W.Widget, *names: str) -> W.Widget:
    """The widget, with stable CSS classes (``yyai-*``) for tests and styling."""
    for name in names:
        widget.add_class(name)
    return widget


def dropdown(description: str, css_class: str, **kwargs) -> W.Dropdown:
    """A labelled picker of the dashboard's width (each with its own Layout: hiding one hides one)."""
    return with_classes(W.Dropdown(description=description, style={"description_width": "100px"},
                                   layout=W.Layout(width="290px"), **kwargs), css_class)


def file_button(css_class: str, **kwargs) -> W.FileUpload:
    """A FileUpload that reads as its label alone (:data:`FILE_BUTTONS`), without ipywidgets' file count."""
    return with_classes(W.FileUpload(description=FILE_BUTTONS[css_class], **kwargs), css_class, "yyai-file-button")


def image_widget(png: bytes, height: int, width: int, *, css_class: str, side: int = DISPLAY_PX) -> W.Image:
    """A PNG shown with its longer side at ``side`` CSS pixels, without smoothing small images."""
    scale = side / max(height, width, 1)
    image = W.Image(
        value=png,
        format="png",
        layout=W.Layout(width=f"{round(width * scale)}px", height=f"{round(height * scale)}px", flex="0 0 auto"),
    )
    return with_classes(image, css_class, *(["yyai-pixelated"] if scale > 1 else []))


def png_widget(png: bytes, size: tuple[int, int], css_class: str) -> W.Image:
    """A chart's PNG shown 1:1 at its (width, height) in pixels."""
    width, height = size
    return with_classes(W.Image(value=png, format="png", layout=W.Layout(
        width=f"{width}px", height=f"{height}px", flex="0 0 auto")), css_class)


def close_tree(widget: W.Widget) -> None:
    """Close a widget and its children (each holds a comm to the front end)."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    widget.close()


def show(widget: W.Widget, visible: bool) -> None:
    """Show or hide a widget (hidden ones take no room)."""
    widget.layout.display = None if visible else "none"


# --- pickers and tables ---------------------------------------------------------------------


def model_options(status: ServerStatus) -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(status.models)]


def version_options(model: ModelStatus | None) -> list[tuple[str, int]]:
    """A model's versions for a dropdown, each with its state and its labels:
    "v2 (default, ready)", "v1 (ready) · stable", "v3 (unloaded)"."""
    if model is None:
        return []
    options = []
    for number, version in sorted(model.versions.items()):
        tags = (["default"] if model.default == number else []) + [version.state.value]
        labels = sorted(label for label, v in model.labels.items() if v == number)
        options.append((f"v{number} ({', '.join(tags)})" + (f" · {', '.join(labels)}" if labels else ""), number))
    return options


def state_html(state: VersionState) -> str:
    return f"<span class='yyai-state yyai-state-{state.value}'>{state.value}</span>"


def models_table_html(models: Mapping[str, ModelStatus]) -> str:
    """Every version of every model as one HTML table."""
    head = ("<tr><th>Model</th><th>Version</th><th>Default</th><th>State</th><th>Load time</th>"
            "<th title='Measured at its load; it counts against --memory-budget'>Memory</th>"
            "<th>Requests</th><th>Errors</th><th>p50</th><th>p99</th><th>Last error</th></tr>")
    rows = []
    for name in sorted(models):
        model = models[name]
        for i, (number, v) in enumerate(sorted(model.versions.items())):
            error = v.last_error or (model.last_error if i == 0 else None)
            default = ("★ default" + (" (pinned)" if model.pinned else "")) if model.default == number else ""
            rows.append(
                f"<tr class='yyai-row' data-model='{html.escape(name)}' data-version='{number}'>"
                f"<td>{'<b>' + html.escape(name) + '</b>' if i == 0 else ''}</td>"
                f"<td>v{number}{_labels_of(model, number)}</td>"
                f"<td class='yyai-default-cell'>{default}</td>"
                f"<td>{state_html(v.state)}</td>"
                f"<td class='num'>{fmt(v.load_time_s, 2, ' s')}</td>"
                f"<td class='num yyai-memory-cell'>{memory_text(v.memory_bytes)}</td>"
                f"<td class='num yyai-requests-cell'>{v.requests}</td>"
                f"<td class='num'>{v.errors}</td>"
                f"<td class='num'>{fmt(v.latency_ms.p50, 2, ' ms')}</td>"
                f"<td class='num'>{fmt(v.latency_ms.p99, 2, ' ms')}</td>"
                f"<td class='yyai-error-cell'>{html.escape(error) if error else ''}</td></tr>"
            )
    if not rows:
        rows.append("<tr><td colspan='11'>No models yet: install a .yyar archive in the Manage tab.</td></tr>")
    return f"<table class='yyai-table yyai-models'>{head}{''.join(rows)}</table>"


def memory_text(size: int | None) -> str:
    """A measured size for people: ``12.3 MiB``; empty when the version is not loaded."""
    if size is None:
        return ""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def residency_html(status: ServerStatus) -> str:
    """One line: what is loaded against the budget, and the loads, evictions and cold starts so far."""
    residency = status.residency
    if residency is None:
        return ""
    budget = []
    if residency.budget_bytes is not None:
        budget.append(f"budget {memory_text(residency.budget_bytes)}")
    if residency.max_loaded is not None:
        budget.append(f"at most {residency.max_loaded} loaded")
    bound = f" of {', '.join(budget)}" if budget else " (no budget)"
    return (f"<div class='yyai-subtle yyai-residency'>{residency.loaded} version(s) loaded, "
            f"{memory_text(residency.resident_bytes) or '0 B'}{bound}; the process holding them uses "
            f"{memory_text(residency.process_rss_bytes)}. {residency.loads} loads, {residency.evictions} "
            f"unloaded for the budget, {residency.cold_starts} requests waited for a load "
            f"({residency.cold_start_wait_s:.1f} s in all).</div>")


def _labels_of(model: ModelStatus, number: int) -> str:
    labels = sorted(label for label, v in model.labels.items() if v == number)
    return "".join(f" <span class='yyai-state yyai-state-ready'>{html.escape(label)}</span>" for label in labels)


def problems_html(status: ServerStatus) -> str:
    """The store's unreadable or duplicate archives, and a corrupt state file, if any."""
    items = [f"{html.escape(Path(p.path).name)}: {html.escape(p.error)}" for p in status.problems]
    if status.state_error:
        items.append(f"state file: {html.escape(status.state_error)}")
    if not items:
        return ""
    return "<div class='yyai-msg yyai-error'><b>Store problems</b><br>" + "<br>".join(items) + "</div>"


def panels(prediction: Prediction, has_combined: bool) -> list[tuple[str, Prediction]]:
    """(title, one-output Prediction) per member, then the combined output.

    With one member that also gives the combined output, the two are one panel.
    """
    def one(output) -> Prediction:
        return Prediction(prediction.name, prediction.version, {"output": output}, None, prediction.output)

    found = [(member, one(out)) for member, out in prediction.members.items()]
    if has_combined and prediction.combined is not None:
        if len(found) == 1:
            return [(f"{found[0][0]} = combined", one(prediction.combined))]
        found.append(("combined", one(prediction.combined)))
    return found


def tie_text(labels: list[str], shown: int = TOP_K) -> str:
    """The labels of a tie for people: "daisy, rose and tulip", or the first few "and 3 more"."""
    if len(labels) > shown:
        return ", ".join(labels[:shown]) + f" and {len(labels) - shown} more"
    return ", ".join(labels[:-1]) + f" and {labels[-1]}" if len(labels) > 1 else "".join(labels)


def top_k_table_html(prediction: Prediction, i: int, labels: list[str], *, has_combined: bool,
                     k: int = TOP_K) -> str:
    """The k best labels of row ``i`` (by the combined output, else the first member), with each
    chart panel's probability of them: one column per member, then the combined one."""
    found = panels(prediction, has_combined)
    ranking = found[-1][1] if has_combined and prediction.combined is not None else found[0][1]
    head = "".join(f"<th>{html.escape(title)}</th>" for title, _ in found)
    body = []
    for rank, (label, _p) in enumerate(ranking.top_k(i, k), start=1):
        j = labels.index(label)
        cells = "".join(f"<td class='num'>{panel.best()[i][j]:.3f}</td>" for _, panel in found)
        body.append(f"<tr><td class='num'>{rank}</td><td>{html.escape(label)}</td>{cells}</tr>")
    return f"<table class='yyai-table yyai-topk'><tr><th>#</th><th>label</th>{head}</tr>{''.join(body)}</table>"


def regression_table_html(prediction: Prediction, i: int, *, has_combined: bool) -> str:
    """Each member's regression outputs of row ``i`` (and the combined ones) as a small table."""
    found = [(title, cast(dict[str, float], panel.label(panel.best()[i])))  # regression: {name: value}
             for title, panel in panels(prediction, has_combined)]
    names = list(found[0][1]) if found else []
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(
        f"<tr><td>{'<b>' + html.escape(title) + '</b>' if title.endswith('combined') else html.escape(title)}</td>"
        + "".join(f'<td class="num">{values[n]}</td>' for n in names)
        + "</tr>"
        for title, values in found
    )
    return f'<table class="yyai-table yyai-regression"><tr><th>member</th>{head}</tr>{body}</table>'


# --- charts (matplotlib, Agg, imported on first use) -----------------------------------------


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=CHART_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _plain(axes) -> None:
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)


def _fit(text: str, width_in: float, points: float) -> str:
    """Text wrapped to lines that fit ``width_in`` inches at ``points`` (a char is ~0.6 em)."""
    return textwrap.fill(text, max(8, int(width_in * 72 / (points * 0.6))))


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…"


def side_by_side(labels: list[str]) -> bool:
    """Whether every label fits under its own bar on the x-axis (digits, letters)."""
    return len(labels) <= MAX_SIDE_BY_SIDE and max(map(len, labels), default=0) <= SHORT_LABEL


def bar_chart_figure(prediction: Prediction, i: int, labels: list[str], *, has_combined: bool,
                     panel_size: tuple[float, float] = (2.9, 1.75)):
    """One bar chart per panel (each member, then combined) of row ``i``: a matplotlib Figure.

    Short labels stand side by side under vertical bars. Word labels would overlap there,
    so they get horizontal bars of the top k, one label per row.
    """
    found = panels(prediction, has_combined)
    vertical = side_by_side(labels)
    width, height = panel_size
    if not vertical:
        height = max(height, 0.6 + 0.22 * min(TOP_K, len(labels)))
    columns = 2 if len(found) > 1 else 1
    rows = (len(found) + columns - 1) // columns
    figure = _figure(width * columns, height * rows + 0.1)
    # one subfigure per panel, so that a title is centred on its panel, not on its (narrower) axes
    for sub, (title, panel) in zip(figure.subfigures(rows, columns, squeeze=False).flat, found):
        axes = sub.add_subplot()
        top = panel.top_k(i, 1 if vertical else TOP_K)
        best = set(panel.tied(i))  # every bar of a tie stands out, not the first of them
        combined = title.endswith("combined")
        best_color = "#d9822b" if combined else "#2f6db5"
        if vertical:
            values = panel.best()[i]
            axes.bar(range(len(values)), values, color=[best_color if label in best else "#c9d6ea" for label in labels])
            axes.set_ylim(0, 1)
            axes.set_xticks(range(len(labels)), labels, fontsize=8)
        else:
            names = [_short(label) for label, _ in reversed(top)]
            values = [p for _, p in reversed(top)]
            axes.barh(range(len(values)), values,
                      color=[best_color if label in best else "#c9d6ea" for label, _ in reversed(top)])
            axes.set_xlim(0, 1)
            axes.set_yticks(range(len(names)), names, fontsize=8)
        axes.tick_params(labelsize=7)
        answer = f"{len(best)}-way tie" if len(best) > 1 else top[0][0]
        sub.suptitle(_fit(f"{title}: {answer} ({top[0][1]:.2f})", width, 9), fontsize=9,
                     fontweight="bold" if combined else "normal")
        _plain(axes)
    return figure


def bar_chart_png(prediction: Prediction, i: int, labels: list[str], *, has_combined: bool,
                  panel_size: tuple[float, float] = (2.9, 1.75)) -> tuple[bytes, tuple[int, int]]:
    """:func:`bar_chart_figure` as (PNG, (width, height) in pixels)."""
    figure = bar_chart_figure(prediction, i, labels, has_combined=has_combined, panel_size=panel_size)
    width, height = figure.get_size_inches()
    return _png(figure), (round(width * CHART_DPI), round(height * CHART_DPI))


class ActivitySample(NamedTuple):
    """One model at one moment: every version's requests so far, and the default's p50 (ms)."""

    requests: int
    p50: float | None


def activity_plot_png(history: list[tuple[float, dict[str, ActivitySample]]], now: float, longest: float) -> bytes:
    """Latency (p50 of each model's default version) and throughput over the last ``longest`` seconds."""
    figure = _figure(7.6, 2.3)
    latency = figure.add_subplot(1, 2, 1)
    throughput = figure.add_subplot(1, 2, 2)
    names = sorted({name for _, sample in history for name in sample})
    span = min(longest, max(60.0, now - history[0][0])) if history else 60.0
    for name in names:
        points = [(t - now, s[name]) for t, s in history if name in s]
        xs = [x for x, _ in points]
        p50 = [float("nan") if s.p50 is None else s.p50 for _, s in points]
        line = latency.plot(xs, p50, label=name, lw=1.5, marker="o", markersize=2)[0]
        rates = [(t1, max(0.0, (s1.requests - s0.requests) / (t1 - t0)))
                 for (t0, s0), (t1, s1) in itertools.pairwise(points) if t1 > t0]
        throughput.plot([t for t, _ in rates], [r for _, r in rates], label=name, lw=1.5, marker="o",
                        markersize=2, color=line.get_color())
    for axes, title, unit in ((latency, "p50 latency", "ms"), (throughput, "throughput", "requests/s")):
        axes.set_title(title, fontsize=9)
        axes.set_ylabel(unit, fontsize=8)
        axes.set_xlabel("seconds ago", fontsize=8)
        axes.set_xlim(-span, 0)
        axes.set_ylim(bottom=0)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        _plain(axes)
    if names:
        throughput.legend(fontsize=7, loc="upper left")
    return _png(figure)
