"""The Models tab: every version's status in one table, and a live plot of latency and throughput.

The table shows what each loaded version costs (measured at its load), and a line under
it what is loaded against the memory budget, with the loads, evictions and cold starts.

Each refresh of the shell records one sample per model (every version's request count,
and the default version's p50) in :attr:`ModelsTab.history`, which keeps the last
:data:`HISTORY_SECONDS`. The plot is drawn only while the tab is shown (drawing costs
matplotlib time that nobody would see). The refresh controls (the "Refresh by itself"
checkbox and the line saying how often the table refreshes) belong to the shell, which
runs the refresh thread; this tab shows them.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, ClassVar

import ipywidgets as W

from yyai_kernel.dashboard.render import (
    ActivitySample,
    activity_plot_png,
    models_table_html,
    problems_html,
    residency_html,
    with_classes,
)
from yyai_kernel.types import ServerStatus

if TYPE_CHECKING:
    from yyai_kernel.dashboard.shell import Dashboard

HISTORY_SECONDS = 300.0  # how far back the live plot looks


class ModelsTab:
    """The table of every version and the activity plot."""

    key: ClassVar[str] = "models"
    title: ClassVar[str] = "Models"
    lazy = False  # built with the dashboard: the activity plot samples every refresh from the start

    def __init__(self, shell: Dashboard):
        self.shell = shell
        self.history: deque[tuple[float, dict[str, ActivitySample]]] = deque()
        self._plot_drawn_at = 0.0
        self.models_table = with_classes(W.HTML(), "yyai-models-table")
        self.problems = with_classes(W.HTML(), "yyai-problems")
        self.residency = with_classes(W.HTML(), "yyai-residency-line")
        self.refresh_button = with_classes(W.Button(description="Refresh now", icon="refresh",
                                                    tooltip="Fetch every model's status now"), "yyai-refresh-button")
        self.activity_plot = with_classes(W.Image(format="png", layout=W.Layout(width="608px", display="none")),
                                          "yyai-activity-plot")
        self.activity_note = with_classes(W.HTML(), "yyai-activity-note")
        self.widget = W.VBox([
            W.HBox([self.refresh_button, shell.auto_refresh]), shell.refresh_note,
            self.models_table, self.residency, self.problems,
            W.HTML("<b>Activity over the last five minutes</b>"),
            self.activity_plot, self.activity_note,
        ])
        self.refresh_button.on_click(shell.guard(self._refresh_now, shell.status_line, observer=False))

    def update(self, status: ServerStatus) -> None:
        now = time.time()
        self._record(status, now)
        table = models_table_html(status.models)
        if self.models_table.value != table:
            self.models_table.value = table
        self.problems.value = problems_html(status)
        residency = residency_html(status)
        if self.residency.value != residency:
            self.residency.value = residency
        due = now - self._plot_drawn_at >= 0.9 * (self.shell.refresh_interval or 0)
        if due and self.shell.showing(self):  # draw only what someone sees
            self.draw_activity(now)

    def shown(self) -> None:
        self.draw_activity()

    def _refresh_now(self, _button=None) -> None:
        self.shell.refresh()
        self.draw_activity()

    def _record(self, status: ServerStatus, now: float) -> None:
        sample = {}
        for name, model in status.models.items():
            default = model.version(model.default) if model.default is not None else None
            sample[name] = ActivitySample(requests=sum(v.requests for v in model.versions.values()),
                                          p50=default.latency_ms.p50 if default else None)
        self.history.append((now, sample))
        while self.history and self.history[0][0] < now - HISTORY_SECONDS:
            self.history.popleft()

    def draw_activity(self, now: float | None = None) -> None:
        """Redraw the latency / throughput plot from the sampled history."""
        now = time.time() if now is None else now
        self.activity_plot.value = activity_plot_png(list(self.history), now, HISTORY_SECONDS)
        self.activity_plot.layout.display = None
        self._plot_drawn_at = now
        self.activity_note.value = (
            "<span class='yyai-subtle'>p50 is over each default version's recent requests (the last 2048); "
            f"throughput is every version's requests per second between samples. {len(self.history)} samples."
            "</span>")
