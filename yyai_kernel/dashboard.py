"""The dashboard: ipywidgets for previewing predictions and swapping models.

One :class:`Dashboard` works over either backend with the same methods: an in-process
:class:`~yyai_kernel.registry.Registry` (a plain Jupyter notebook) or the HTTP
:class:`~yyai_kernel.client.YyaiClient` (the page ``yyai serve`` shows through Voila).
Served, the kernel behind a page visit imports no TensorFlow and loads no model: it asks
the one server over loopback, so a swap made here is the swap REST clients see, and a
visit is interactive within about two seconds. That is why this module imports only
ipywidgets at import time; OpenCV (for the image "as the model sees it") and matplotlib
(Agg, no pyplot) come in on first use.

What a person can do (three tabs):

* **Preview**: pick a model, a version, and a bundled sample or uploaded images; see each
  image as given beside the image as the model sees it, every member's output as a bar
  chart (regression: a table) and the combined output. "Compare with" runs a second
  version on the same images, side by side.
* **Models**: a table of every version (default, state, load time, requests, p50,
  last error) and a live plot of latency and throughput, refreshed by a background thread.
* **Manage**: reload a model, load / unload a version, make a version the default, and
  install a ``.yyar`` archive. Every action shows progress and ends with a clear message.

Widget callbacks catch every exception and show its message in the page (an exception in
a widget callback is otherwise invisible, or a traceback). Widgets carry stable CSS
classes (``yyai-*``) so that tests and styling can find them.
"""

from __future__ import annotations

import functools
import html
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable

import ipywidgets as W

log = logging.getLogger("yyai.dashboard")

HISTORY_SECONDS = 300.0  # how far back the live plot looks
DISPLAY_PX = 144  # the longer side of a previewed image, in CSS pixels
CHART_DPI = 80  # charts are drawn at this resolution and shown 1:1
# names of temporary copies of an uploaded archive (ours, and the server's spool files)
TEMP_UPLOAD_NAME = re.compile(r"\b(?:upload|upload-[A-Za-z0-9_]+)\.(?:yyar|part)\b")

CSS = """
<style>
.yyai-dashboard { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1500px; }
.yyai-dashboard h2 { margin: 4px 0 2px 0; font-size: 1.45em; }
.yyai-header { border-bottom: 1px solid #ddd; padding-bottom: 6px; margin-bottom: 6px; }
.yyai-subtle { color: #666; font-size: 0.9em; }
.yyai-pixelated { image-rendering: pixelated; border: 1px solid #ccc; background: #fafafa; }
.yyai-panel { border: 1px solid #e3e3e3; border-radius: 6px; padding: 8px; margin: 4px; background: #fff; }
.yyai-controls { background: #f7f8fa; }
.yyai-msg { padding: 4px 8px; border-radius: 4px; display: inline-block; margin: 2px 0; line-height: 1.4; }
.yyai-ok { background: #e6f4ea; color: #1e6b34; }
.yyai-error { background: #fdecea; color: #a61b1b; }
.yyai-busy { background: #eef3fb; color: #1f4f96; }
.yyai-spin { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 6px; vertical-align: -2px;
             border: 2px solid #9db7e0; border-top-color: #1f4f96; border-radius: 50%;
             animation: yyai-spin 0.8s linear infinite; }
@keyframes yyai-spin { to { transform: rotate(360deg); } }
table.yyai-table { border-collapse: collapse; font-size: 0.9em; }
table.yyai-table th { background: #f0f2f5; text-align: left; }
table.yyai-table th, table.yyai-table td { padding: 3px 9px; border-bottom: 1px solid #e6e6e6; }
table.yyai-table td.num { text-align: right; font-variant-numeric: tabular-nums; }
.yyai-state { padding: 1px 7px; border-radius: 9px; font-size: 0.85em; }
.yyai-state-ready { background: #e6f4ea; color: #1e6b34; }
.yyai-state-loading { background: #eef3fb; color: #1f4f96; }
.yyai-state-failed { background: #fdecea; color: #a61b1b; }
.yyai-state-unloaded, .yyai-state-available, .yyai-state-removed { background: #f0f0f0; color: #555; }
.yyai-top-label { font-size: 1.25em; font-weight: 600; }
.yyai-agree { color: #1e6b34; } .yyai-disagree { color: #a15c00; font-weight: 600; }
</style>
"""


# --- small helpers ------------------------------------------------------------------------


def error_text(error: BaseException) -> str:
    """A one-line message for a person: the yyai error's message, else the exception's text."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    return str(message).strip().splitlines()[0] if str(message).strip() else type(error).__name__


def _msg(kind: str, text: str) -> str:
    """HTML for a status message: kind is "ok", "error" or "busy" (busy shows a spinner)."""
    spinner = '<span class="yyai-spin"></span>' if kind == "busy" else ""
    return f'<span class="yyai-msg yyai-{kind}">{spinner}{html.escape(text)}</span>'


def _fmt(value, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    return f"{value}{suffix}"


def _prediction_json(result) -> dict:
    """A Registry's Prediction, the client's RemotePrediction or a JSON reply, as the JSON reply."""
    if hasattr(result, "to_json"):
        return result.to_json()
    if hasattr(result, "rows"):
        return {"model": result.name, "version": result.version, "predictions": result.rows()}
    return result


def top_of(row: dict) -> tuple[str, float] | None:
    """The best (label, probability) of a prediction row: combined, else the only member."""
    best = row.get("combined")
    if best is None and len(row.get("members", {})) == 1:
        best = next(iter(row["members"].values()))
    if isinstance(best, list) and best:
        return best[0]["label"], float(best[0]["probability"])
    return None


def _classes(widget: W.Widget, *names: str) -> W.Widget:
    for name in names:
        widget.add_class(name)
    return widget


def _image_widget(png: bytes, height: int, width: int, *, css_class: str, side: int = DISPLAY_PX) -> W.Image:
    """A PNG shown with its longer side at ``side`` CSS pixels, without smoothing small images."""
    scale = side / max(height, width, 1)
    image = W.Image(
        value=png,
        format="png",
        layout=W.Layout(width=f"{round(width * scale)}px", height=f"{round(height * scale)}px", flex="0 0 auto"),
    )
    return _classes(image, css_class, *(["yyai-pixelated"] if scale > 1 else []))


# --- charts (matplotlib, Agg, imported on first use) -----------------------------------------


def _figure(width_in: float, height_in: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=CHART_DPI)
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _panels(row: dict, has_combined: bool) -> list[tuple[str, object]]:
    """(title, output) per member, then the combined output (folded in when one member gives it)."""
    panels = list(row["members"].items())
    if has_combined and row.get("combined") is not None:
        if len(panels) == 1:
            panels = [(f"{panels[0][0]} = combined", row["combined"])]
        else:
            panels.append(("combined", row["combined"]))
    return panels


def bar_chart_png(row: dict, labels: list[str], *, has_combined: bool,
                  panel_size: tuple[float, float] = (2.9, 1.75)) -> tuple[bytes, tuple[int, int]]:
    """One bar chart per member and one for the combined output: (PNG, (width, height) in px).

    ``panel_size`` is one chart's (width, height) in inches, at 80 dpi.
    """
    panels = _panels(row, has_combined)
    columns = 2 if len(panels) > 1 else 1
    rows = (len(panels) + columns - 1) // columns
    size = (panel_size[0] * columns, panel_size[1] * rows + 0.1)
    figure = _figure(*size)
    for i, (title, out) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, i + 1)
        probability = {entry["label"]: entry["probability"] for entry in out}
        values = [probability.get(label, 0.0) for label in labels]
        best = max(range(len(values)), key=values.__getitem__)
        combined = title.endswith("combined")
        colors = ["#c9d6ea"] * len(values)
        colors[best] = "#d9822b" if combined else "#2f6db5"
        axes.bar(range(len(values)), values, color=colors)
        axes.set_ylim(0, 1)
        axes.set_xticks(range(len(labels)))
        axes.set_xticklabels(labels, fontsize=8, rotation=0 if max(map(len, labels)) <= 3 else 45)
        axes.tick_params(axis="y", labelsize=7)
        axes.set_title(f"{title}: {labels[best]} ({values[best]:.2f})", fontsize=9,
                       fontweight="bold" if combined else "normal")
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
    figure.tight_layout(pad=0.4)
    return _png(figure), (round(size[0] * CHART_DPI), round(size[1] * CHART_DPI))


def regression_table_html(row: dict, *, has_combined: bool) -> str:
    """Each member's regression outputs (and the combined ones) as a small HTML table."""
    panels = _panels(row, has_combined)
    names = list(panels[0][1]) if panels else []
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(
        f"<tr><td>{'<b>' + html.escape(title) + '</b>' if title.endswith('combined') else html.escape(title)}</td>"
        + "".join(f'<td class="num">{values[n]}</td>' for n in names)
        + "</tr>"
        for title, values in panels
    )
    return f'<table class="yyai-table yyai-regression"><tr><th>member</th>{head}</tr>{body}</table>'


def activity_plot_png(history: list[tuple[float, dict]], now: float) -> bytes:
    """Latency (p50 of each model's default version) and throughput over the last minutes."""
    figure = _figure(7.6, 2.3)
    latency = figure.add_subplot(1, 2, 1)
    throughput = figure.add_subplot(1, 2, 2)
    names = sorted({name for _, sample in history for name in sample})
    span = min(HISTORY_SECONDS, max(60.0, now - history[0][0])) if history else 60.0
    for name in names:
        points = [(t - now, s[name]) for t, s in history if name in s]
        if not points:
            continue
        xs = [x for x, _ in points]
        p50 = [s["p50"] for _, s in points]
        line = latency.plot(xs, [float("nan") if v is None else v for v in p50], label=name, lw=1.5,
                            marker="o", markersize=2)[0]
        rates_x, rates = [], []
        for (t0, s0), (t1, s1) in zip(points, points[1:]):
            if t1 > t0:
                rates_x.append(t1)
                rates.append(max(0.0, (s1["requests"] - s0["requests"]) / (t1 - t0)))
        throughput.plot(rates_x, rates, label=name, lw=1.5, marker="o", markersize=2,
                        color=line.get_color())
    for axes, title, unit in ((latency, "p50 latency", "ms"), (throughput, "throughput", "requests/s")):
        axes.set_title(title, fontsize=9)
        axes.set_ylabel(unit, fontsize=8)
        axes.set_xlabel("seconds ago", fontsize=8)
        axes.set_xlim(-span, 0)
        axes.set_ylim(bottom=0)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        for side in ("top", "right"):
            axes.spines[side].set_visible(False)
    if names:
        throughput.legend(fontsize=7, loc="upper left")
    figure.tight_layout(pad=0.4)
    return _png(figure)


# --- the dashboard ----------------------------------------------------------------------------


class Dashboard:
    """The yyai dashboard over a backend: a :class:`Registry` or a :class:`YyaiClient`.

    ``refresh_interval`` (seconds) starts a daemon thread that refreshes the models table
    and samples the live plot; None starts none (call :meth:`refresh` yourself). The
    thread pauses itself after ``pause_after`` seconds without anyone using the page, so
    that an abandoned page stops talking to the server and its kernel goes idle (and gets
    culled). Display the object (or ``.widget``) in a notebook; :meth:`close` stops the
    thread and closes the widgets.
    """

    def __init__(self, backend, *, refresh_interval: float | None = 2.0, pause_after: float = 900.0,
                 location: str = ""):
        self.backend = _backend(backend)
        self.refresh_interval = refresh_interval
        self.pause_after = pause_after
        self._last_used = time.monotonic()
        self.location = location
        self.history: deque[tuple[float, dict]] = deque()
        self.status: dict = {}  # the last status() of every model
        self._describe_cache: dict[tuple[str, int], dict] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._local = threading.local()  # ._local.quiet: this thread is changing values, not a person
        self._plot_drawn_at = 0.0
        self._views_seen = False  # a browser has shown the dashboard at least once
        self._paused_idle = False  # the refresh paused itself (not the person's checkbox)

        self._build()
        self.refresh()
        if refresh_interval:
            self.start()

    # --- building -------------------------------------------------------------------------

    @staticmethod
    def _w(widget: W.Widget, *classes: str) -> W.Widget:
        return _classes(widget, *classes)

    def _build(self) -> None:
        w = self._w
        wide = {"description_width": "100px"}
        self.header = w(W.HTML(), "yyai-header")
        self.status_line = w(W.HTML(), "yyai-status")

        # Preview tab
        self.model_select = w(W.Dropdown(description="Model", style=wide, layout=W.Layout(width="290px")),
                              "yyai-model-select")
        self.version_select = w(W.Dropdown(description="Version", style=wide, layout=W.Layout(width="290px")),
                                "yyai-version-select")
        self.compare_select = w(W.Dropdown(description="Compare with", style=wide, options=[("—", 0)], value=0,
                                           layout=W.Layout(width="290px")), "yyai-compare-select")
        self.source_toggle = w(W.ToggleButtons(options=[("Bundled sample", "sample"), ("My images", "upload")],
                                               value="sample", style={"button_width": "136px"}),
                               "yyai-source")
        self.sample_select = w(W.Dropdown(description="Sample", style=wide, layout=W.Layout(width="290px")),
                               "yyai-sample-select")
        self.image_upload = w(W.FileUpload(accept="image/*", multiple=True, description="Upload images",
                                           tooltip="Choose one or more image files (PNG, JPEG, ...)",
                                           layout=W.Layout(width="180px")), "yyai-image-upload")
        self.upload_info = w(W.HTML(), "yyai-upload-info")
        self.predict_button = w(W.Button(description="Predict", button_style="primary", icon="play",
                                         tooltip="Run the picked version (and the compared one) on the images",
                                         layout=W.Layout(width="180px")), "yyai-predict-button")
        self.predict_message = w(W.HTML(), "yyai-predict-message")
        self.summary = w(W.HTML(), "yyai-summary")
        self.results = w(W.VBox(), "yyai-results")

        controls = w(W.VBox([
            W.HTML("<b>What to run</b>"),
            self.model_select, self.version_select, self.compare_select,
            W.HTML("<b>On which images</b>"),
            self.source_toggle, self.sample_select,
            W.HBox([self.image_upload]), self.upload_info,
            W.HTML("&nbsp;"), self.predict_button, self.predict_message,
        ], layout=W.Layout(width="320px", min_width="320px")), "yyai-panel", "yyai-controls")
        output_panel = w(W.VBox([self.summary, self.results], layout=W.Layout(flex="1 1 auto")),
                         "yyai-panel", "yyai-output")
        preview_tab = W.HBox([controls, output_panel])

        # Models tab
        self.models_table = w(W.HTML(), "yyai-models-table")
        self.problems = w(W.HTML(), "yyai-problems")
        self.refresh_button = w(W.Button(description="Refresh now", icon="refresh",
                                         tooltip="Fetch every model's status now"), "yyai-refresh-button")
        self.auto_refresh = w(W.Checkbox(value=True, description="Refresh by itself", indent=False),
                              "yyai-auto-refresh")
        self.activity_plot = w(W.Image(format="png", layout=W.Layout(width="608px", display="none")),
                               "yyai-activity-plot")
        self.activity_note = w(W.HTML(), "yyai-activity-note")
        models_tab = W.VBox([
            W.HBox([self.refresh_button, self.auto_refresh]),
            self.models_table, self.problems,
            W.HTML("<b>Activity over the last five minutes</b>"),
            self.activity_plot, self.activity_note,
        ])

        # Manage tab
        self.manage_model = w(W.Dropdown(description="Model", style=wide, layout=W.Layout(width="290px")),
                              "yyai-manage-model")
        self.manage_version = w(W.Dropdown(description="Version", style=wide, layout=W.Layout(width="290px")),
                                "yyai-manage-version")
        button = functools.partial(W.Button, layout=W.Layout(width="170px"))
        self.reload_button = w(button(description="Reload model", icon="refresh",
                                      tooltip="Re-read the store and reload this model"), "yyai-reload-button")
        self.load_button = w(button(description="Load version", icon="upload",
                                    tooltip="Load this version so that it can serve"), "yyai-load-button")
        self.default_button = w(button(description="Make default", icon="star", button_style="warning",
                                       tooltip="Serve this version when a request names no version (pinned)"),
                                "yyai-default-button")
        self.unload_button = w(button(description="Unload version", icon="stop",
                                      tooltip="Stop serving this version; its archive stays in the store"),
                               "yyai-unload-button")
        self.manage_message = w(W.HTML(), "yyai-manage-message")
        self.archive_upload = w(W.FileUpload(accept=".yyar", multiple=False, description="Install .yyar",
                                             tooltip="Choose a .yyar model archive", icon="plus",
                                             layout=W.Layout(width="170px")), "yyai-archive-upload")
        self.archive_progress = w(W.IntProgress(value=0, min=0, max=3, description="",
                                                layout=W.Layout(width="290px", visibility="hidden")),
                                  "yyai-archive-progress")
        self.archive_message = w(W.HTML(), "yyai-archive-message")
        manage_tab = W.VBox([
            w(W.VBox([
                W.HTML("<b>A model and one of its versions</b>"),
                self.manage_model, self.manage_version,
                W.HBox([self.reload_button, self.load_button]),
                W.HBox([self.default_button, self.unload_button]),
                self.manage_message,
            ]), "yyai-panel"),
            w(W.VBox([
                W.HTML("<b>Install an archive</b> <span class='yyai-subtle'>(verified, added to the store, "
                       "loaded; a new latest version becomes the default unless the model is pinned)</span>"),
                W.HBox([self.archive_upload, self.archive_progress]),
                self.archive_message,
            ]), "yyai-panel"),
        ])

        self.tabs = w(W.Tab(children=[preview_tab, models_tab, manage_tab]), "yyai-tabs")
        for i, title in enumerate(["Preview", "Models", "Manage"]):
            self.tabs.set_title(i, title)
        self.widget = w(W.VBox([W.HTML(CSS), self.header, self.status_line, self.tabs]), "yyai-dashboard")
        self.widget._view_count = 0  # the front end counts its views: is anyone looking?
        self.widget.observe(self._on_views, "_view_count")

        # callbacks
        self.model_select.observe(self._guard(self._on_model, self.predict_message), "value")
        self.version_select.observe(self._guard(self._on_version, self.predict_message), "value")
        self.compare_select.observe(self._guard(self._on_compare, self.predict_message), "value")
        self.sample_select.observe(self._guard(self._on_sample, self.predict_message), "value")
        self.image_upload.observe(self._guard(self._on_images, self.predict_message), "value")
        self.predict_button.on_click(self._guard(self.predict, self.predict_message, observer=False))
        self.refresh_button.on_click(self._guard(lambda _: self.refresh(draw=True), self.status_line, observer=False))
        self.auto_refresh.observe(self._guard(lambda _: self.refresh(), self.status_line), "value")
        self.tabs.observe(self._guard(self._on_tab, self.status_line), "selected_index")
        self.manage_model.observe(self._guard(self._on_manage_model, self.manage_message), "value")
        self.reload_button.on_click(self._guard(self._action("reload"), self.manage_message, observer=False))
        self.load_button.on_click(self._guard(self._action("load"), self.manage_message, observer=False))
        self.default_button.on_click(self._guard(self._action("default"), self.manage_message, observer=False))
        self.unload_button.on_click(self._guard(self._action("unload"), self.manage_message, observer=False))
        self.archive_upload.observe(self._guard(self._on_archive, self.archive_message), "value")

    @property
    def _quiet(self) -> bool:
        """True while this thread changes widget values by code (observers then stay quiet)."""
        return getattr(self._local, "quiet", False)

    @_quiet.setter
    def _quiet(self, value: bool) -> None:
        self._local.quiet = value

    def _guard(self, fn: Callable, target: W.HTML, *, observer: bool = True) -> Callable:
        """Wrap a callback: a person sees an error message, never a traceback.

        Observers (not button clicks) are skipped while code, not a person, changes values.
        """

        @functools.wraps(fn)
        def guarded(*args):
            if observer and self._quiet:
                return None
            self._last_used = time.monotonic()
            try:
                return fn(*args)
            except Exception as error:  # noqa: BLE001 - every failure becomes a message
                log.info("dashboard action failed: %s", error, exc_info=True)
                target.value = _msg("error", error_text(error))
                return None

        return guarded

    # --- displaying -----------------------------------------------------------------------

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def start(self) -> None:
        """Start the background refresh (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._refresh_loop, name="yyai-dashboard-refresh", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the background refresh and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def close(self) -> None:
        """Stop refreshing and close every widget."""
        self.stop()
        _close_tree(self.widget)

    def _on_views(self, change) -> None:
        """A browser showed (or closed) the dashboard: a new view counts as use."""
        if (change["new"] or 0) > (change["old"] or 0):
            self._views_seen = True
            self._last_used = time.monotonic()
            if self._paused_idle:  # e.g. a preheated kernel that waited for its visitor
                self._paused_idle = False
                self._quiet = True
                try:
                    self.auto_refresh.value = True
                finally:
                    self._quiet = False
                try:
                    self.refresh()
                except Exception as error:  # noqa: BLE001
                    log.info("refresh failed: %s", error)

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_interval):
            if not self.auto_refresh.value:
                continue
            if self._views_seen and not self.widget._view_count:
                continue  # the page was closed: nobody to refresh for
            if time.monotonic() - self._last_used > self.pause_after:
                self._paused_idle = True
                self._quiet = True
                try:
                    self.auto_refresh.value = False
                finally:
                    self._quiet = False
                self.status_line.value = (
                    f'<span class="yyai-subtle">Paused refreshing after {self.pause_after / 60:g} minutes '
                    'without use; tick "Refresh by itself" to resume.</span>')
                continue
            try:
                self.refresh()
            except Exception as error:  # noqa: BLE001 - the loop outlives a server restart
                self.status_line.value = _msg("error", f"Could not refresh: {error_text(error)}")

    # --- refreshing -------------------------------------------------------------------------

    def refresh(self, *, draw: bool = False) -> None:
        """Fetch every model's status; update the table, the pickers and the live plot."""
        with self._lock:
            try:
                status = self.backend.status()
            except Exception as error:  # noqa: BLE001
                self.status_line.value = _msg("error", f"The server did not answer: {error_text(error)}")
                return
            now = time.time()
            self.status = status.get("models", {})
            self._record(now)
            self._set_value(self.models_table, models_table_html(self.status))
            self._set_value(self.problems, problems_html(status))
            self._set_value(self.header, self._header_html())
            self._set_value(self.status_line, self._status_text())
            self._sync_pickers()
            plot_due = now - self._plot_drawn_at >= 0.9 * (self.refresh_interval or 0)
            if draw or (self.tabs.selected_index == 1 and plot_due):  # draw only what someone sees
                self.draw_activity(now)

    def _status_text(self) -> str:
        if self.refresh_interval and self.auto_refresh.value and not self._stop.is_set():
            text = f"The table and the plot refresh every {self.refresh_interval:g} s."
        else:
            text = "Refreshed when you press \"Refresh now\"."
        return f'<span class="yyai-subtle">{text}</span>'

    @staticmethod
    def _set_value(widget: W.HTML, value: str) -> None:
        if widget.value != value:
            widget.value = value

    def _header_html(self) -> str:
        models = len(self.status)
        ready = sum(1 for m in self.status.values() for v in m["versions"].values() if v["state"] == "ready")
        where = f" · {html.escape(self.location)}" if self.location else ""
        return (f"<h2>yyai · model dashboard</h2><span class='yyai-subtle'>{models} model"
                f"{'s' if models != 1 else ''}, {ready} version{'s' if ready != 1 else ''} serving{where}</span>")

    def _record(self, now: float) -> None:
        sample = {}
        for name, model in self.status.items():
            versions = model["versions"]
            default = versions.get(str(model.get("default")), {})
            sample[name] = {
                "requests": sum(v.get("requests", 0) for v in versions.values()),
                "p50": (default.get("latency_ms") or {}).get("p50"),
            }
        self.history.append((now, sample))
        while self.history and self.history[0][0] < now - HISTORY_SECONDS:
            self.history.popleft()

    def draw_activity(self, now: float | None = None) -> None:
        """Redraw the latency / throughput plot from the sampled history."""
        now = time.time() if now is None else now
        self.activity_plot.value = activity_plot_png(list(self.history), now)
        self.activity_plot.layout.display = None
        self._plot_drawn_at = now
        self.activity_note.value = (
            "<span class='yyai-subtle'>p50 is over each default version's recent requests (the last 2048); "
            f"throughput is every version's requests per second between samples. {len(self.history)} samples."
            "</span>")

    def _on_tab(self, change) -> None:
        if change["new"] == 1:
            self.draw_activity()

    # --- pickers ----------------------------------------------------------------------------

    def _version_options(self, name: str | None) -> list[tuple[str, int]]:
        model = self.status.get(name) if name else None
        if not model:
            return []
        options = []
        for key, version in sorted(model["versions"].items(), key=lambda kv: int(kv[0])):
            tags = ["default"] if model.get("default") == int(key) else []
            tags.append(version["state"])
            options.append((f"v{key} ({', '.join(tags)})", int(key)))
        return options

    def _set_options(self, dropdown: W.Dropdown, options: list, preferred=None) -> None:
        """Replace a dropdown's options quietly, keeping its value when it still exists."""
        if list(dropdown.options) == options:
            return
        values = [value for _, value in options]
        keep = dropdown.value if dropdown.value in values else preferred if preferred in values else (
            values[0] if values else None)
        self._quiet = True
        try:
            dropdown.options = options
            dropdown.value = keep
        finally:
            self._quiet = False

    def _sync_pickers(self) -> None:
        names = sorted(self.status)
        model_options = [(n, n) for n in names]
        before = (self.model_select.value, self.version_select.value, self.manage_model.value)
        self._set_options(self.model_select, model_options)
        self._set_options(self.manage_model, model_options)
        self._sync_versions()
        if before[0] != self.model_select.value or before[1] != self.version_select.value:
            self._load_samples()

    def _sync_versions(self) -> None:
        name = self.model_select.value
        options = self._version_options(name)
        default = self.status.get(name, {}).get("default") if name else None
        self._set_options(self.version_select, options, preferred=default)
        self._set_options(self.compare_select, [("—", 0)] + options, preferred=0)
        manage = self._version_options(self.manage_model.value)
        manage_default = self.status.get(self.manage_model.value, {}).get("default")
        self._set_options(self.manage_version, manage, preferred=manage_default)
        self._label_predict_button()

    def _label_predict_button(self) -> None:
        other = self.compare_select.value
        if other and other != self.version_select.value:
            self.predict_button.description = f"Compare v{self.version_select.value} / v{other}"
        else:
            self.predict_button.description = "Predict"

    def _on_model(self, change) -> None:
        name = change["new"]
        default = self.status.get(name, {}).get("default")
        self._quiet = True
        try:
            self.version_select.options = self._version_options(name)
            self.version_select.value = default if default in [v for _, v in self.version_select.options] else (
                self.version_select.options[0][1] if self.version_select.options else None)
            self.compare_select.options = [("—", 0)] + self._version_options(name)
            self.compare_select.value = 0
        finally:
            self._quiet = False
        self._label_predict_button()
        self._set_results([])
        self.summary.value = ""
        self._load_samples()

    def _on_version(self, change) -> None:
        self._label_predict_button()
        self._load_samples()

    def _on_compare(self, change) -> None:
        self._label_predict_button()

    def _on_sample(self, change) -> None:
        if change["new"]:
            self.source_toggle.value = "sample"

    def _on_images(self, change) -> None:
        files = change["new"]
        if files:
            self.source_toggle.value = "upload"
            names = ", ".join(html.escape(f["name"]) for f in files)
            self.upload_info.value = f"<span class='yyai-subtle'>Uploaded: {names}</span>"
        else:
            self.upload_info.value = ""

    def _load_samples(self) -> None:
        """List the bundled samples of the picked version (none if the backend has none)."""
        name, version = self.model_select.value, self.version_select.value
        options: list = []
        if name and version:
            try:
                options = [(Path(s).name, s) for s in self.backend.samples(name, version)]
            except Exception as error:  # noqa: BLE001 - samples are optional
                log.info("no samples for %s v%s: %s", name, version, error)
        self._set_options(self.sample_select, options)
        self.sample_select.disabled = not options
        if not options and self.source_toggle.value == "sample" and self.image_upload.value:
            self.source_toggle.value = "upload"

    def describe(self, name: str, version: int) -> dict:
        """The backend's description of a version (cached: an archive's manifest never changes)."""
        key = (name, int(version))
        if key not in self._describe_cache:
            self._describe_cache[key] = self.backend.describe(name, int(version))
        return self._describe_cache[key]

    # --- predicting -------------------------------------------------------------------------

    def current_images(self) -> list[tuple[str, bytes]]:
        """The images to run: (label, bytes) of the uploads or of the picked sample."""
        if self.source_toggle.value == "upload":
            files = self.image_upload.value
            if not files:
                raise ValueError("Upload one or more images first (or pick a bundled sample).")
            return [(f["name"], bytes(f["content"])) for f in files]
        name, version, sample = self.model_select.value, self.version_select.value, self.sample_select.value
        if not sample:
            raise ValueError("This version bundles no sample images; upload your own.")
        return [(Path(sample).name, self.backend.sample(name, sample, version))]

    def _ensure_loaded(self, name: str, version: int) -> bool:
        """Load a version that does not serve yet (returns whether it had to)."""
        state = self.backend.status(name)["versions"].get(str(version), {}).get("state")
        if state == "ready":
            return False
        self.predict_message.value = _msg("busy", f"Loading {name} v{version} (it was {state})…")
        self.backend.load(name, version)
        return True

    def predict(self, _button=None) -> dict:
        """Run the picked version (and the compared one) on the picked images; show the results.

        Returns ``{version: JSON reply}`` (what ``POST /predictions`` answers).
        """
        name, version, other = self.model_select.value, self.version_select.value, self.compare_select.value
        if not name or not version:
            raise ValueError("Pick a model and a version first.")
        versions = [version] + ([other] if other and other != version else [])
        self.predict_button.disabled = True
        try:
            self.predict_message.value = _msg("busy", "Reading the images…")
            images = self.current_images()
            replies, loaded = {}, False
            for v in versions:
                loaded = self._ensure_loaded(name, v) or loaded
                self.predict_message.value = _msg("busy", f"Predicting with {name} v{v}…")
                replies[v] = _prediction_json(self.backend.predict_images(name, [data for _, data in images], v))
            self._show(name, versions, images, replies)
            if loaded:
                self.refresh()  # the pickers and the table show the new state
            took = "compared" if len(versions) > 1 else "predicted"
            self.predict_message.value = _msg(
                "ok", f"{len(images)} image{'s' if len(images) > 1 else ''} {took} at {time.strftime('%H:%M:%S')}.")
            return replies
        finally:
            self.predict_button.disabled = False

    def _show(self, name: str, versions: list[int], images: list[tuple[str, bytes]], replies: dict) -> None:
        """One row per image: the image as given, then per version how it sees it and what it says."""
        from .images import decode_image, encode_png, model_view

        specs = {v: self.describe(name, v) for v in versions}
        comparing = len(versions) > 1
        rows, summary = [], []
        for i, (label, data) in enumerate(images):
            given = decode_image(data)
            height, width = given.shape[:2]
            given_box = W.VBox([
                W.HTML(f"<b>As given</b><br>"
                       f"<span class='yyai-subtle'>{html.escape(label)} · {width}×{height}</span>"),
                _image_widget(encode_png(given, rgb=False), height, width, css_class="yyai-given-image"),
            ], layout=W.Layout(width=f"{DISPLAY_PX + 16}px", flex="0 0 auto"))
            columns, tops = [given_box], []
            for v in versions:
                row = replies[v]["predictions"][i]
                top = top_of(row)
                tops.append(top)
                columns.append(self._result_column(name, v, specs[v], data, row, top, compact=comparing,
                                                   model_view=model_view, encode_png=encode_png))
            rows.append(_classes(W.HBox(columns, layout=W.Layout(align_items="flex-start")), "yyai-result-row"))
            summary.append(self._summary_line(label, versions, tops))
        self._set_results(rows)
        self.summary.value = "<div class='yyai-summary-lines'>" + "<br>".join(summary) + "</div>"

    @staticmethod
    def _result_column(name, version, spec, data, row, top, *, compact, model_view, encode_png) -> W.VBox:
        """What one version makes of one image: headline, the image as it sees it, its outputs."""
        seen = model_view(data, spec["input"])
        caption = f"{seen.shape[1]}×{seen.shape[0]} {spec['input'].get('color', 'rgb')}"
        side = 96 if compact else DISPLAY_PX
        view = _image_widget(encode_png(seen), seen.shape[0], seen.shape[1], css_class="yyai-model-image", side=side)
        view_box = W.VBox([W.HTML(f"<b>As v{version} sees it</b><br><span class='yyai-subtle'>{caption}</span>"),
                           view], layout=W.Layout(width=f"{side + 16}px", flex="0 0 auto"))
        if top is not None:
            headline = (f"<b>{html.escape(name)} v{version}</b>: predicted "
                        f"<span class='yyai-top-label' data-version='{version}'>{html.escape(top[0])}</span> "
                        f"<span class='yyai-subtle'>(p = {top[1]:.3f})</span>")
        else:
            headline = f"<b>{html.escape(name)} v{version}</b>"
        has_combined = spec.get("has_combined", True)
        if spec["output"]["kind"] == "classification":
            png, (width, height) = bar_chart_png(row, spec["output"]["labels"], has_combined=has_combined,
                                                 panel_size=(2.1, 1.45) if compact else (2.9, 1.75))
            chart = _classes(W.Image(value=png, format="png", layout=W.Layout(
                width=f"{width}px", height=f"{height}px", flex="0 0 auto")), "yyai-chart")
        else:
            chart = _classes(W.HTML(regression_table_html(row, has_combined=has_combined)), "yyai-regression-table")
        body = [view_box, chart] if compact else [W.HBox([view_box, chart])]
        column = W.VBox([W.HTML(headline), *body],
                        layout=W.Layout(flex="0 0 auto", margin="0 0 0 12px", padding="0 0 0 12px",
                                        border_left="1px solid #e3e3e3"))
        return _classes(column, "yyai-result", f"yyai-result-v{version}")

    def _set_results(self, rows: list[W.Widget]) -> None:
        """Show new result rows and close the old ones' widgets (each holds a comm)."""
        old, self.results.children = self.results.children, tuple(rows)
        for widget in old:
            _close_tree(widget)

    @staticmethod
    def _summary_line(label: str, versions: list[int], tops: list) -> str:
        if all(t is None for t in tops):
            return f"<b>{html.escape(label)}</b>: see the outputs below."
        parts = [f"v{v} → <span class='yyai-summary-label'>{html.escape(t[0])}</span> ({t[1]:.2f})"
                 for v, t in zip(versions, tops) if t is not None]
        line = f"<b>{html.escape(label)}</b>: " + ", ".join(parts)
        if len(versions) > 1:
            agree = len({t[0] for t in tops if t is not None}) == 1
            line += (" — <span class='yyai-agree'>the versions agree</span>" if agree
                     else " — <span class='yyai-disagree'>the versions disagree</span>")
        return line

    # --- managing ---------------------------------------------------------------------------

    def _on_manage_model(self, change) -> None:
        name = change["new"]
        self._set_options(self.manage_version, self._version_options(name),
                          preferred=self.status.get(name, {}).get("default"))

    def _action(self, kind: str) -> Callable:
        return lambda _button=None: self.manage(kind)

    def manage(self, kind: str) -> str:
        """Run one management action ("reload", "load", "default", "unload") on the picked model.

        Shows a busy message while it runs and a success message after; returns that message.
        Errors propagate (the button's guard shows them).
        """
        name, version = self.manage_model.value, self.manage_version.value
        if not name:
            raise ValueError("Pick a model first.")
        if kind != "reload" and not version:
            raise ValueError("Pick a version first.")
        busy = {
            "reload": f"Reloading {name}…",
            "load": f"Loading {name} v{version}…",
            "default": f"Making v{version} the default of {name}…",
            "unload": f"Unloading {name} v{version}…",
        }[kind]
        buttons = (self.reload_button, self.load_button, self.default_button, self.unload_button)
        self.manage_message.value = _msg("busy", busy)
        for b in buttons:
            b.disabled = True
        started = time.perf_counter()
        try:
            if kind == "reload":
                self.backend.reload(name)
            elif kind == "load":
                self.backend.load(name, version)
            elif kind == "default":
                self.backend.set_default(name, version)
            else:
                self.backend.unload(name, version)
        finally:
            for b in buttons:
                b.disabled = False
            self._describe_cache.clear()
            self.refresh()
        took = time.perf_counter() - started
        model = self.status.get(name, {})
        default = model.get("default")
        done = {
            "reload": f"Reloaded {name} in {took:.1f} s; v{default} is the default.",
            "load": f"Loaded {name} v{version} in {took:.1f} s.",
            "default": f"v{version} is now the default of {name} (pinned).",
            "unload": f"Unloaded {name} v{version}; its archive stays in the store.",
        }[kind]
        self.manage_message.value = _msg("ok", done)
        return done

    def _on_archive(self, change) -> None:
        files = change["new"]
        if not files:
            return
        upload = files[0]
        try:
            self.install_archive(upload["name"], bytes(upload["content"]))
        except Exception:  # noqa: BLE001 - install_archive already showed the message
            pass
        finally:
            self._quiet = True
            try:
                self.archive_upload.value = ()  # so the same file can be chosen again
            finally:
                self._quiet = False

    def install_archive(self, filename: str, data: bytes) -> dict:
        """Install an uploaded archive through the backend, with progress and a final message.

        Any failure is shown in the page (red bar and message) and re-raised.
        """
        progress, message = self.archive_progress, self.archive_message
        progress.layout.visibility = "visible"
        progress.bar_style = "info"
        progress.value = 1
        message.value = _msg("busy", f"Received {filename} ({len(data) / 1024:,.0f} KiB); checking it…")
        folder = None
        try:
            if not filename.lower().endswith(".yyar"):
                raise ValueError(f"{filename} is not a .yyar archive; build one with `yyai archive`.")
            folder = tempfile.mkdtemp(prefix="yyai-upload-")
            path = os.path.join(folder, "upload.yyar")
            with open(path, "wb") as out:
                out.write(data)
            progress.value = 2
            message.value = _msg("busy", f"Verifying, storing and loading {filename}…")
            reply = self.backend.add_archive(path)
            progress.value = 3
            progress.bar_style = "success"
            message.value = _msg("ok", f"Installed {reply.name} v{reply.version} from {filename}.")
            self._describe_cache.clear()
            self.refresh()
            return reply
        except Exception as error:
            progress.value = 3
            progress.bar_style = "danger"
            # the error names a temporary copy (ours, or the server's spool file): name the upload
            text = TEMP_UPLOAD_NAME.sub(filename, error_text(error))
            message.value = _msg("error", f"{filename} was not installed: {text}")
            raise
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)


def _backend(backend):
    """The backend contract (``yyai_kernel.backend.Backend``) of what the caller handed in.

    A :class:`Registry` is wrapped in the data plane that serves it; anything else (a
    DataPlane, a YyaiClient) is used as it is. The check never imports the registry:
    when nothing imported it, the backend cannot be one.
    """
    registry_module = sys.modules.get("yyai_kernel.registry")
    if registry_module is not None and isinstance(backend, registry_module.Registry):
        from .dataplane import DataPlane

        return DataPlane(backend)
    return backend


def _close_tree(widget: W.Widget) -> None:
    for child in getattr(widget, "children", ()):
        _close_tree(child)
    widget.close()


def models_table_html(models: dict) -> str:
    """Every version of every model as one HTML table."""
    head = ("<tr><th>Model</th><th>Version</th><th>Default</th><th>State</th><th>Load time</th>"
            "<th>Requests</th><th>Errors</th><th>p50</th><th>p99</th><th>Last error</th></tr>")
    rows = []
    for name in sorted(models):
        model = models[name]
        versions = sorted(model["versions"].values(), key=lambda v: v["version"])
        for i, v in enumerate(versions):
            is_default = model.get("default") == v["version"]
            error = v.get("last_error") or (model.get("last_error") if i == 0 else None)
            latency = v.get("latency_ms") or {}
            pinned = " (pinned)" if model.get("pinned") else ""
            state = html.escape(v["state"])
            rows.append(
                f"<tr class='yyai-row' data-model='{html.escape(name)}' data-version='{v['version']}'>"
                f"<td>{'<b>' + html.escape(name) + '</b>' if i == 0 else ''}</td>"
                f"<td>v{v['version']}</td>"
                f"<td class='yyai-default-cell'>{'★ default' + pinned if is_default else ''}</td>"
                f"<td><span class='yyai-state yyai-state-{state}'>{state}</span></td>"
                f"<td class='num'>{_fmt(v.get('load_time_s'), 2, ' s')}</td>"
                f"<td class='num'>{v.get('requests', 0)}</td>"
                f"<td class='num'>{v.get('errors', 0)}</td>"
                f"<td class='num'>{_fmt(latency.get('p50'), 2, ' ms')}</td>"
                f"<td class='num'>{_fmt(latency.get('p99'), 2, ' ms')}</td>"
                f"<td class='yyai-error-cell'>{html.escape(error) if error else ''}</td></tr>"
            )
    if not rows:
        rows.append("<tr><td colspan='10'>No models yet: install a .yyar archive in the Manage tab.</td></tr>")
    return f"<table class='yyai-table yyai-models'>{head}{''.join(rows)}</table>"


def problems_html(status: dict) -> str:
    """The store's unreadable or duplicate archives, and a corrupt state file, if any."""
    items = [f"{html.escape(Path(p['path']).name)}: {html.escape(p['error'])}" for p in status.get("problems") or []]
    if status.get("state_error"):
        items.append(f"state file: {html.escape(str(status['state_error']))}")
    if not items:
        return ""
    return ("<div class='yyai-msg yyai-error'><b>Store problems</b><br>" + "<br>".join(items) + "</div>")


def dashboard_from_env(store: str | os.PathLike | None = None, **kwargs) -> Dashboard:
    """The dashboard for where it runs.

    Served by ``yyai serve`` (``YYAI_URL`` or Voila's ``VOILA_APP_PORT`` in the
    environment): over the HTTP client, with no TensorFlow in this kernel. Otherwise (a
    plain notebook): over an in-process Registry on ``store`` (default ``$YYAI_STORE`` or
    ``model_archives``), with every model's default version loaded.
    """
    if os.environ.get("YYAI_URL") or os.environ.get("VOILA_APP_PORT"):
        from .client import YyaiClient

        url = os.environ.get("YYAI_URL")
        if not url:
            base = os.environ.get("VOILA_BASE_URL", "/")
            url = f"http://127.0.0.1:{os.environ['VOILA_APP_PORT']}{base}"
        client = YyaiClient(url=url, token=os.environ.get("YYAI_TOKEN"))
        return Dashboard(client, location=f"served from {url.rstrip('/')}", **kwargs)

    from .quiet import quiet_tensorflow
    from .registry import Registry
    from .store import ModelStore

    quiet_tensorflow()  # keep TensorFlow's C++ start-up log out of the notebook (YYAI_LOG_LEVEL=debug shows it)
    root = Path(store or os.environ.get("YYAI_STORE") or "model_archives")
    registry = Registry(ModelStore(root))
    registry.load_all()
    return Dashboard(registry, location=f"in-process registry on {root}", **kwargs)
